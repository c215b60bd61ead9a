"""Bring your own model: upload weights for a registry architecture (+ optional labelled test images)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dsg_core.errors import DSGError
from dsg_core.models import get_spec

from ..byom import WEIGHT_TYPES, check_weights, extract_images, save_upload, uploads_dir
from ..resources import real_data
from ..text import code, plain

CAPTION = ("What to look for: green checks, then press *Use this model* — the sidebar's Run will generate, "
           "quantize and evaluate with your weights.")
NOTES = ("Accepted: a **state dict** saved with safetensors (`.safetensors`) or `torch.save(model.state_dict())` "
         "(`.pt`/`.pth`, read with `weights_only=True`: nothing in the file is executed). **TorchScript files are "
         "not supported** in this dashboard. Test images: an optional zip in ImageFolder layout "
         "(`<class>/<image>.png`); without it, models of the embedded MNIST family use the built-in test split.")


def use_test_zip(upload, spec) -> str | None:
    """Extract and decode the labelled images once per content (the folder is named by its hash and
    the decoded images are the run's own cache, ``resources.real_data``); returns the folder or None
    (after st.error naming the upload, never a server path)."""
    try:
        root = extract_images(upload.getvalue())
        x, y, _ = real_data(spec.name, str(root))
    except DSGError as exc:
        st.error(plain(f"{upload.name}: {str(exc).replace(str(uploads_dir()), '…')}"))
        return None
    st.success(f"{len(x)} test images in {len(set(y.tolist()))} classes")
    return str(root)


@st.cache_data(max_entries=8, show_spinner="Checking the weights…")
def checked_weights(arch: str, path: str) -> list[str]:
    """Once per architecture and content-addressed file: a rerun does not load the weights again."""
    return check_weights(arch, Path(path))


def render(names: list[str]) -> None:
    st.caption(CAPTION)
    st.markdown(NOTES)
    current = st.session_state.get("custom")
    if current:
        st.info(f"In use: {code(current['label'])} for {code(current['model'])}.")
        st.button("Stop using my model", key="byom_clear", on_click=lambda: st.session_state.pop("custom", None))
    arch = st.selectbox("Architecture", names, key="byom_arch",
                        help="Your weights must come from this registry architecture (same layer names).")
    spec = get_spec(arch)
    st.caption(f"{arch}: input {spec.input_shape}, {spec.num_classes} classes. {spec.description}")
    weights = st.file_uploader("Weights (state dict)", type=list(WEIGHT_TYPES), key="byom_weights")
    images = st.file_uploader("Labelled test images (zip, optional)", type=["zip"], key="byom_images")
    if weights is None:
        return
    try:
        path = save_upload(weights.getvalue(), weights.name)
        facts = checked_weights(arch, str(path))
    except DSGError as exc:  # the message names the upload, not where the server keeps it
        st.error(plain(f"{weights.name}: {str(exc).replace(str(uploads_dir()), '…')}"))
        return
    st.success("Weights OK: " + "; ".join(facts))
    test_dir = use_test_zip(images, spec) if images is not None else None
    if images is not None and test_dir is None:
        return
    if spec.dataset != "mnist" and test_dir is None:
        st.warning(f"{arch} has no built-in test images: add a zip of labelled images to evaluate accuracy.")
        return
    st.button("Use this model", type="primary", key="byom_use", on_click=use_model,
              args=({"model": arch, "weights": str(path), "test_dir": test_dir, "label": weights.name},))


def use_model(custom: dict) -> None:
    """A button callback: runs before the rerun, so it may set the sidebar's model selector."""
    st.session_state["custom"] = custom
    st.session_state["model"] = custom["model"]
