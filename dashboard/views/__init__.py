"""One module per page (or part of one); each starts with a caption saying what it shows."""

from __future__ import annotations

import streamlit as st

NEEDS_RUN = ("Press **Run** in the sidebar to fill this page (about a minute at the defaults: three seeds of DSG, "
             "ZeroQ and Gaussian noise, quantized and scored), or open a saved run from *History & jobs*. The "
             "**Evidence** page needs no run.")


def intro(caption: str, result) -> bool:
    """The page's caption; False (after saying how to fill it) when nothing ran yet."""
    st.caption(caption)
    if result is None:
        st.info(NEEDS_RUN)
        return False
    return True
