"""Devices and memory: pick a device with a clear fallback, refuse runs that cannot fit.

A generation step keeps every activation of the forward pass for the backward pass, so its memory
grows as batch x (sum of activation sizes). We measure the activation sizes with one batch-1 forward
and refuse, before any work, a batch that would not fit in the memory available now.
"""

from __future__ import annotations

import ctypes
import warnings

import torch
import torch.nn as nn

from .errors import ConfigError

BYTES_PER_VALUE = 4
# saved activation + its gradient + allocator slack, measured on resnet20_mnist/resnet18 (see docs)
ACTIVATION_FACTOR = 3.0


def resolve_device(name: str = "cpu") -> torch.device:
    """'cpu', 'cuda', 'cuda:1', 'mps' or 'auto'. An unavailable accelerator falls back to the CPU with a warning."""
    name = (name or "cpu").lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if _mps() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        warnings.warn("CUDA was requested but no CUDA device is available (torch.cuda.is_available() is False): "
                      "running on the CPU instead", RuntimeWarning, stacklevel=2)
        return torch.device("cpu")
    if name == "mps" and not _mps():
        warnings.warn("MPS was requested but is not available: running on the CPU instead", RuntimeWarning,
                      stacklevel=2)
        return torch.device("cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}: use cpu, cuda, cuda:N, mps or auto") from None


def _mps() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return 1 << 62  # unknown: do not refuse


@torch.no_grad()
def activation_values(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Number of values all leaf modules output for one sample (probed where the model is; the
    device it will run on may be another)."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else "cpu"
    total = [0]

    def hook(_m, _inp, out):
        if isinstance(out, torch.Tensor):
            total[0] += out.numel()

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        model(torch.zeros((1, *input_shape), device=device))
    finally:
        for h in handles:
            h.remove()
    return total[0]


def estimate_generation_bytes(model: nn.Module, input_shape: tuple[int, ...], batch: int) -> int:
    per_sample = activation_values(model, input_shape) * BYTES_PER_VALUE * ACTIVATION_FACTOR
    return int(per_sample * batch)


def fit_batch_size(model: nn.Module, input_shape: tuple[int, ...], wanted: int, device) -> int:
    """The largest batch <= ``wanted`` that fits (``--batch-size auto``): a large run on a small
    device is split into more, smaller batches instead of refused. Raises when not even 1 fits."""
    device = torch.device(device)
    per_sample = estimate_generation_bytes(model, input_shape, 1)
    fits = int(0.8 * available_bytes(device) // max(per_sample, 1))
    if fits < 1:
        check_generation_fits(model, input_shape, 1, device)  # raises with the estimate
    return max(1, min(wanted, fits))


def check_generation_fits(model: nn.Module, input_shape: tuple[int, ...], batch: int, device) -> int:
    """Raise ConfigError with the estimate when a batch cannot fit; return the estimate otherwise."""
    device = torch.device(device)
    need, have = estimate_generation_bytes(model, input_shape, batch), available_bytes(device)
    if need > 0.8 * have:
        raise ConfigError(f"a batch of {batch} at {tuple(input_shape)} needs about {need / 2**30:.1f} GiB for "
                          f"generation but only {have / 2**30:.1f} GiB is available on {device}: lower the batch "
                          "size (samples are generated in several batches)")
    return need


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
_retained = False


def retain_freed_memory(trim_bytes: int = 1 << 30, mmap_bytes: int = 1 << 25) -> bool:
    """Keep freed heap memory in the process instead of handing it back to the OS (glibc only).

    Every generation iteration frees ~20 MB of activations and allocates them again. glibc's default
    trims the heap top and unmaps large chunks on free, so the next iteration page-faults all of it
    back in: 3,000-4,500 faults per iteration for resnet20_mnist at batch 64, against 16 with these
    thresholds, and 7% less time per iteration (docs/performance.md). The cost is that the process
    keeps its peak heap for the rest of its life (the dashboard's server included), which the next
    run needs anyway; chunks over ``mmap_bytes`` (32 MiB, the largest value every glibc accepts) are
    still mapped and unmapped. Process-wide, permanent and idempotent; returns whether glibc took it
    (False off glibc; with jemalloc or tcmalloc preloaded it is harmless and without effect).
    """
    global _retained
    if _retained:
        return True
    try:
        libc = ctypes.CDLL("libc.so.6")
        # the mmap threshold first: setting either one stops glibc's own raising of the mmap threshold,
        # so a trim threshold alone would leave large chunks unmapped on every free
        _retained = bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap_bytes) and libc.mallopt(_M_TRIM_THRESHOLD, trim_bytes))
    except (OSError, AttributeError):
        _retained = False
    return _retained
