"""Shared links are untrusted input (issue 19, items 3 and 4): any query string renders the page
without an exception, and a parameter's text is shown as text, never as markdown."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from dashboard.state import OLD_NAMES  # noqa: E402
from dashboard.text import code, plain  # noqa: E402

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")
KEYS = ["model", "sda", "epsilon", "lse", "lse_weight", "sci", "sci_weight", "priors", "pixel_range", "samples",
        "iterations", "seed", "seeds", "wbits", "abits", "quantizer", "compare", "eval_images", "tab", "layer",
        "channel", "emb", "run", "present", "ev_model", "ev_pixels", "ev_layer", "x", *OLD_NAMES]
NUMBERS = ["inf", "-inf", "nan", "1e400", "-1e400", "1e999", "1e300", "-1e300", "1e23", "-5", "0", "2", "0.5",
           "9" * 5000, "1_000", "0x10", "", " ", "true", "True", "Homogenization", "History", "Learn"]
INJECTION = "2` [CLICKME](https://evil.example/phish) ![IMG](https://evil.example/track.png) `"


def render(params: dict[str, str]) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update(params)
    return at.run()


@pytest.fixture(autouse=True)
def _runs(tmp_path, monkeypatch):
    monkeypatch.setenv("DSG_RUNS_DIR", str(tmp_path))


@pytest.mark.parametrize("params", [{"iters": "inf"}, {"iterations": "1e400"}, {"seed": "-inf"}, {"eval": "1e999"},
                                    {"samples": "nan"}, {"tab": "Homogenization", "channel": "inf"}])
def test_numbers_no_control_can_hold_are_named_not_fatal(params):
    """Attack: ?iters=inf (also 1e400, seed=-inf, eval=1e999) replaced the page with an OverflowError."""
    at = render(params)
    assert not at.exception, at.exception
    key, value = next(iter(params.items())) if "tab" not in params else ("channel", "inf")
    if key != "channel":  # a view's own parameter is its own to handle: dropped quietly
        name = OLD_NAMES.get(key, key)  # an old link's name is read as the engine's
        assert any(f"`{name}={value}`" in w.value for w in at.sidebar.warning)
    assert key not in at.query_params


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(KEYS), st.one_of(st.sampled_from(NUMBERS), st.text(max_size=40)),
                       max_size=5))
def test_any_query_string_renders_without_an_exception(params):
    at = render(params)
    assert not at.exception, (params, at.exception)


def test_link_text_is_never_markdown():
    """Attack: ?eps=2`+[CLICKME](https://evil...)+![IMG](https://evil.../track.png)+` put a live link and a
    fetched remote image into the app's own sidebar warning."""
    at = render({"epsilon": INJECTION, "model": "[x](https://evil.example)", "sda": "![i](https://evil.example/i.png)"})
    assert not at.exception
    warnings = [w.value for w in at.sidebar.warning]
    assert len(warnings) == 3
    for w in warnings:
        outside = re.sub(r"(`+) .*? \1|(`+)[^`].*?\2", "", w)  # the text outside code spans
        assert "](" not in outside and "https" not in outside, w
    assert code(f"epsilon={INJECTION}") in warnings[0]
    assert code(f"epsilon={INJECTION}").startswith("``") and "`" * 3 not in code(f"epsilon={INJECTION}")


def test_plain_escapes_every_markdown_character():
    text = "my ![m](https://x.y/t.png) *b* <img src=x> $x$ :red[r] `c` # h\n\n- l"
    escaped = plain(text)
    assert re.sub(r"\\(.)", r"\1", escaped) == " ".join(text.split())  # reads the same
    punct = "[" + re.escape(string.punctuation) + "]"
    assert re.fullmatch(rf"(?:(?!{punct}).|\\{punct})*", escaped)  # each punctuation mark escaped
