"""Presentation mode: larger text and images for a projector (our own CSS, no user input in it)."""

from __future__ import annotations

import streamlit as st

PRESENT_CSS = """
<style>
html, body, [data-testid="stMarkdownContainer"] p, [data-testid="stMarkdownContainer"] li { font-size: 1.25rem; }
[data-testid="stCaptionContainer"] { font-size: 1.1rem; }
h1 { font-size: 2.6rem !important; } h2 { font-size: 2.0rem !important; } h3 { font-size: 1.6rem !important; }
</style>
"""


def apply(present: bool) -> None:
    if present:
        st.html(PRESENT_CSS)


def thumb(present: bool) -> int:
    """Sample thumbnails' width in pixels: readable on a screen, and on a projector."""
    return 128 if present else 84
