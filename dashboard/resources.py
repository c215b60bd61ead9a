"""Read-only things shared by every session: the loaded model and its real data.

The model is cached with ``st.cache_resource`` and loaded on the first render (it is small). Real
images are *not* needed to draw the page, and reading the embedded MNIST file takes seconds, so they
load in a background thread when the page first renders (:func:`prefetch`) and the Run picks them
up from the same process-wide cache. A run works on its own copy of the model
(``Context.private_model``): generation and probes put hooks on the network, and two sessions
running at once must not see each other's hooks.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass

import streamlit as st
import torch
import torch.nn as nn

from dsg_core.data import real_split
from dsg_core.data.folder import load_image_folder
from dsg_core.errors import DataError
from dsg_core.models import ModelSpec, get_spec, load_model

_DATA: dict[tuple[str, str | None], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
_DATA_LOCK = threading.Lock()
KEEP_USER_FOLDERS = 2  # decoded user uploads kept in memory (each up to DSG_LIMIT_DECODED_BYTES)


@dataclass(frozen=True)
class Context:
    """A model ready to run: its spec and weights, and where its real images come from."""
    spec: ModelSpec
    model: nn.Module
    weights: str | None       # a user's weights file, None for the registry's own
    test_dir: str | None      # a user's labelled image folder, None for the embedded data

    def private_model(self) -> nn.Module:
        return copy.deepcopy(self.model)

    def data(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(test images, test labels, calibration pool); loads on first use, then cached."""
        return real_data(self.spec.name, self.test_dir)


@st.cache_resource(show_spinner="Loading the model…", max_entries=8)
def _model(name: str, weights: str | None) -> nn.Module:
    return load_model(name, weights=weights)


def check_data(spec: ModelSpec, test_dir: str | None) -> None:
    """Fail before a run, not after: ImageNet models have no embedded test images."""
    if spec.dataset != "mnist" and not test_dir:
        raise DataError(f"{spec.name} has no embedded real images to test on: upload a zip of labelled test "
                        "images (ImageFolder layout) in 'Bring your own model'")


def real_data(name: str, test_dir: str | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Process-wide cache (thread-safe: the Run's worker thread and the prefetch thread share it)."""
    key = (name, test_dir)
    with _DATA_LOCK:
        if key not in _DATA:
            spec = get_spec(name)
            check_data(spec, test_dir)
            if test_dir:  # a user folder serves as both test set and calibration pool
                x, y = load_image_folder(test_dir, spec)
                for old in [k for k in _DATA if k[1]][:-KEEP_USER_FOLDERS + 1 or None]:
                    del _DATA[old]  # the oldest uploads: a series of them must not pile up in memory
                _DATA[key] = (x, y, x)
            else:
                test_x, test_y = real_split(name, "test")
                _DATA[key] = (test_x, test_y, real_split(name, "train")[0])
        return _DATA[key]


def prefetch(name: str, test_dir: str | None) -> None:
    """Start loading real data in the background (errors surface later, when the Run needs it)."""
    if (name, test_dir) in _DATA:
        return
    threading.Thread(target=_quietly, args=(name, test_dir), daemon=True, name="dsg-prefetch").start()


def _quietly(name: str, test_dir: str | None) -> None:
    try:
        real_data(name, test_dir)
    except Exception:  # noqa: BLE001  the Run reloads and reports it properly
        pass


def context(name: str, weights: str | None = None, test_dir: str | None = None) -> Context:
    """Load the model (once per process); raises DSGError with a readable message."""
    spec = get_spec(name)
    model = _model(name, weights)
    check_data(spec, test_dir)
    prefetch(name, test_dir)
    return Context(spec, model, weights, test_dir)


