"""Bring your own model: weights for a registry architecture, or a torch.export program with its model card
(+ optional labelled images)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dsg_core.errors import DSGError
from dsg_core.models import get_spec

from ..byom import WEIGHT_TYPES, card_from_form, check_program, check_weights, extract_images, save_upload, uploads_dir
from ..resources import real_data
from ..text import code, plain

CAPTION = ("What to look for: green checks, then press *Use this model* — the sidebar's Run will generate, "
           "quantize and evaluate with your weights.")
NOTES = ("Accepted: a **state dict** saved with safetensors (`.safetensors`) or `torch.save(model.state_dict())` "
         "(`.pt`/`.pth`, read with `weights_only=True`: nothing in the file is executed). **TorchScript files are "
         "not supported** in this dashboard. Test images: an optional zip in ImageFolder layout "
         "(`<class>/<image>.png`); without it, models of the embedded MNIST family use the built-in test split.")
KINDS = ("Weights for a registry architecture", "A torch.export program (.pt2)")
PROGRAM_NOTES = ("Any architecture with BatchNorm layers, saved with `torch.export.save` after "
                 "`torch.export.export(model.eval(), (torch.zeros(2, C, H, W),), "
                 "dynamic_shapes=({0: torch.export.Dim('batch')},))`. The card says what the program cannot: "
                 "the normalization (mean/std per channel, for pixels in [0, 1]) and, optionally, class names; "
                 "input shape and classes are read from the program. See docs/your-model.md.")
TRUST_WHY = ("A program is code-like: loading it runs the graph it defines, so load only files from a source "
             "you trust (a state dict, by contrast, is only numbers).")


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
    current = st.session_state.get("custom")
    if current:
        st.info(f"In use: {code(current['label'])} for {code(current['model'])}.")
        st.button("Stop using my model", key="byom_clear", on_click=lambda: st.session_state.pop("custom", None))
    if st.radio("Your model", KINDS, key="byom_kind", horizontal=True) == KINDS[1]:
        render_program()
        return
    st.markdown(NOTES)
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


def render_program() -> None:
    """A .pt2 upload, the trust checkbox, the card form and optional images -> what was inferred and checked."""
    st.markdown(PROGRAM_NOTES)
    program = st.file_uploader("Program (.pt2)", type=["pt2"], key="byom_program")
    trust = st.checkbox("I trust this file", key="byom_trust", help=TRUST_WHY)
    st.caption(TRUST_WHY)
    with st.expander("Model card", expanded=True):
        shape = st.text_input("Input shape C, H, W (empty: read from the program)", key="byom_shape")
        mean = st.text_input("Mean per channel, for pixels in [0, 1]", key="byom_mean", placeholder="0.1307")
        std = st.text_input("Std per channel", key="byom_std", placeholder="0.3081")
        classes = st.number_input("Classes (0: read from the output)", min_value=0, value=0, step=1,
                                  key="byom_classes")
        class_names = st.text_input("Class names, comma-separated (optional)", key="byom_class_names")
        mnist = st.checkbox("Real data: the embedded MNIST digits (1x28x28 models)", key="byom_mnist")
    images = st.file_uploader("Labelled images (zip, optional): real and test data", type=["zip"],
                              key="byom_program_images")
    if program is None:
        return
    if not trust:
        st.warning("Tick *I trust this file* to load the program.")
        return
    try:
        path = save_upload(program.getvalue(), program.name)
        image_dir = str(extract_images(images.getvalue())) if images is not None else None
        card = card_from_form(shape=shape, mean=mean, std=std, num_classes=int(classes), class_names=class_names,
                              mnist=mnist, image_dir=image_dir)
        user = check_program(path, card)
    except DSGError as exc:  # the message names the upload, not where the server keeps it
        st.error(plain(f"{program.name}: {str(exc).replace(str(uploads_dir()), '…')}"))
        return
    st.success(f"Program OK: {code(user.name)}, input {user.card.input_shape}, {user.card.num_classes} classes")
    st.markdown("\n".join(f"- {note}" for note in user.notes))
    if user.card.dataset != "mnist" and image_dir is None:
        st.warning("Add a zip of labelled images (or tick the MNIST digits for a 1x28x28 model): the app needs "
                   "real images to calibrate and test on.")
        return
    st.button("Use this model", type="primary", key="byom_use_program", on_click=use_program,
              args=(user, image_dir, program.name))


def use_program(user, image_dir: str | None, label: str) -> None:
    """A button callback: registers the program by name (remembered, so background jobs and History
    find it in their own processes), then selects it like uploaded weights."""
    spec = user.register(remember=True)
    use_model({"model": spec.name, "weights": None, "test_dir": image_dir, "label": label})
