"""Generation split over processes with PyTorch's own launcher (torchrun), shards and a manifest.

    torchrun --standalone --nproc_per_node 2 -m dsg_core generate --samples 256 --batch-size 32 --out set.safetensors
    torchrun --nnodes 2 --node_rank R --rdzv-backend c10d --rdzv-endpoint HOST:29400 --nproc_per_node 4 \\
        -m dsg_core generate ...                                       # several machines

Batch k of the request goes to rank k mod world_size. Every batch draws its init, labels and jitter
from generators seeded by (seed, k), and the margins from the seed alone, so the merged set is the
same as a one-process run with the same seed, whatever the number of processes (a test checks
bit-equality on CPU). Each rank writes ``<out>.shards/shard-RRRRR.safetensors``; rank 0 waits at a
barrier, checks every batch is present and writes the merged set plus ``manifest.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from .errors import DataError
from .fsutil import atomic_write_bytes
from .generation import GenerationConfig, SyntheticSet, generate
from .generation.generator import batches


def world() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment; (0, 1) outside it."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def shard_dir(out: Path) -> Path:
    return out.with_name(out.name + ".shards")


def my_batches(cfg: GenerationConfig, rank: int, size: int) -> list[int]:
    return [k for k, _ in batches(cfg.samples, cfg.batch_size) if k % size == rank]


def generate_shard(model, spec, cfg: GenerationConfig, out: Path, rank: int, size: int, device="cpu",
                   progress=None, cancel=None, precision: str = "fp32") -> Path | None:
    """Generate this rank's batches and write them as one shard (with their batch indices). A rank
    with no batch (more processes than batches: 32 samples are one batch of 32) writes none."""
    ks = my_batches(cfg, rank, size)
    if not ks:
        return None
    s = generate(model, spec.input_shape, cfg, model_name=spec.name, num_classes=spec.num_classes,
                     valid_range=spec.valid_range,
                 progress=progress, cancel=cancel, device=device, batch_indices=ks, precision=precision)
    s.history = [dict(h, rank=rank) for h in s.history]
    path = shard_dir(out) / f"shard-{rank:05d}.safetensors"
    s.config = {**s.config, "_batches": ks}
    return s.save(path)


def merge_shards(out: Path, cfg: GenerationConfig, size: int) -> SyntheticSet:
    """Concatenate the shards in batch order, check completeness, write the set and the manifest."""
    plan = batches(cfg.samples, cfg.batch_size)
    pieces: dict[int, torch.Tensor] = {}
    labels: dict[int, torch.Tensor] = {}
    shards, history, seconds, first = [], [], [], None
    for rank in range(size):
        path = shard_dir(out) / f"shard-{rank:05d}.safetensors"
        if not my_batches(cfg, rank, size):
            continue  # this rank had nothing to do
        s = SyntheticSet.load(path)
        first = first or s
        ks = s.config.pop("_batches")
        sizes = [plan[k][1] for k in ks]
        for k, img, lab in zip(ks, s.images.split(sizes),
                               (s.targets.split(sizes) if s.targets is not None else [None] * len(ks))):
            pieces[k] = img
            if lab is not None:
                labels[k] = lab
        history += s.history
        seconds.append(s.seconds)
        shards.append({"rank": rank, "file": path.name, "batches": ks,
                       "sha256": hashlib.sha256(path.read_bytes()).hexdigest()})
    missing = [k for k, _ in plan if k not in pieces]
    if missing:
        raise DataError(f"shards are missing batches {missing[:10]}: a rank failed; rerun it")
    order = [k for k, _ in plan]
    merged = SyntheticSet(images=torch.cat([pieces[k] for k in order]), model=first.model, config=cfg.to_dict(),
                          targets=torch.cat([labels[k] for k in order]) if labels else None,
                          delta=first.delta, gamma=first.gamma,
                          history=sorted(history, key=lambda h: (h["batch"], h["iteration"])),
                          seconds=max(seconds))
    merged.save(out)
    manifest = {"model": first.model, "config": cfg.to_dict(), "world_size": size, "samples": len(merged),
                "out": out.name, "shards": shards}
    atomic_write_bytes(shard_dir(out) / "manifest.json", json.dumps(manifest, indent=2).encode())
    return merged


def generate_distributed(model, spec, cfg: GenerationConfig, out: Path, device="cpu", progress=None,
                         cancel=None, precision: str = "fp32") -> SyntheticSet | None:
    """Run under torchrun: every rank generates its shard; rank 0 merges. Returns the set on rank 0."""
    import torch.distributed as dist
    rank, size = world()
    backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    try:
        generate_shard(model, spec, cfg, out, rank, size, device, progress if rank == 0 else None, cancel, precision)
        dist.barrier()
        return merge_shards(out, cfg, size) if rank == 0 else None
    finally:
        dist.destroy_process_group()
