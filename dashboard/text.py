"""User strings (link parameters, file names, model names) shown as text, never as markdown.

``st.warning``/``st.error``/``st.info`` render their body as markdown, so a link's ``eps=[x](https://...)``
or an upload named ``![](https://tracker)`` would become a live link or a fetched image inside the
app's own message. Escaping every ASCII punctuation character (CommonMark allows a backslash before
any of them) leaves the text as typed: no link, image, emphasis, code span, HTML tag, math, emoji
shortcode, Streamlit colour directive or autolinked URL can form.
"""

from __future__ import annotations

import re
import string

_PUNCT = re.compile("([" + re.escape(string.punctuation) + "])")


def plain(text: object) -> str:
    """``text`` escaped for a markdown body: it displays exactly as given, on one line."""
    return _PUNCT.sub(r"\\\1", " ".join(str(text).split()))


def code(text: object) -> str:
    """``text`` as an inline code span that no backtick inside it can close early (CommonMark: a fence
    longer than any run of backticks within); nothing inside a code span is markdown."""
    text = " ".join(str(text).split())
    fence = "`" * (max(map(len, re.findall("`+", text)), default=0) + 1)
    pad = " " if text[:1] == "`" or text[-1:] == "`" else ""
    return f"{fence}{pad}{text}{pad}{fence}"
