"""One module per tab; each exposes ``render(...)`` and starts with a caption saying what to look for."""

from __future__ import annotations

import streamlit as st

NEEDS_RUN = "Press **Run** in the sidebar to fill this view (about a minute on the default settings)."


def intro(caption: str, result) -> bool:
    """The view's what-to-look-for caption; False (after saying how to fill it) when nothing ran yet."""
    st.caption(caption)
    if result is None:
        st.info(NEEDS_RUN)
        return False
    return True
