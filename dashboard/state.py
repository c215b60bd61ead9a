"""Settings of the dashboard: defaults, the sidebar that edits them, and their engine configs.

Every control is bound to a URL query parameter of the same name (Streamlit's
``bind="query-params"``), so a shared link reproduces the settings and the view; a parameter
equal to its default is dropped from the URL, and an invalid one is ignored with a warning in the
sidebar (``link_warnings``). The defaults live in
``DEFAULTS`` alone, sized so that a Run on the default model finishes within a minute on 2 cores.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import streamlit as st

from dsg_core.experiments import DEFAULT_ABITS, DEFAULT_QUANTIZER, DEFAULT_WBITS
from dsg_core.generation import GenerationConfig, preset
from dsg_core.models import default_model_name, list_models
from dsg_core.quant import QUANTIZERS, QuantConfig
from dsg_core.sources import reference_priors

from .text import code

REPO = Path(__file__).resolve().parents[1]

# One place to tune the interactive defaults (see docs/dashboard-speed.md for their timing).
DEFAULTS = dict(
    model=None,          # None = the registry's default model
    sda=True, eps=0.9,
    lse=True, lse_w=2.0,
    sci=True, sci_w=1.0,
    priors=False,
    samples=32, iters=100, seed=0, seeds=1,
    wbits=DEFAULT_WBITS, abits=DEFAULT_ABITS, quantizer=DEFAULT_QUANTIZER, compare=True,  # see dsg_core.experiments
    eval_images=300,     # test images each quantized model is scored on (the MNIST test split has 1,000)
)
WORKERS = min(2, os.cpu_count() or 1)        # sets generated / quantized at the same time
BATCH_SIZE = 32                               # images optimized together (LSE/SCI act within a batch)
COMPARE_BITS = ((8, 8), (6, 6), (4, 4), (3, 3))
BIT_CHOICES = (2, 3, 4, 5, 6, 8)
SOURCES = ("dsg", "zeroq", "gaussian", "real")  # what one Run calibrates with, in display order
EPSILONS = (0.3, 0.5, 0.7, 0.9, 1.0)         # the epsilon ablation's slack quantiles
LABELS = {"dsg": "DSG", "zeroq": "ZeroQ", "gaussian": "Gaussian", "real": "Real"}


def runs_dir() -> Path:
    """The run store's folder: $DSG_RUNS_DIR (tests use temporary folders) or runs/ in the repo."""
    return Path(os.environ.get("DSG_RUNS_DIR") or REPO / "runs")


@dataclass(frozen=True)
class Settings:
    model: str
    sda: bool
    eps: float
    lse: bool
    lse_w: float
    sci: bool
    sci_w: float
    priors: bool
    samples: int
    iters: int
    seed: int
    seeds: int
    wbits: int
    abits: int
    quantizer: str
    compare: bool
    eval_images: int

    @classmethod
    def from_dict(cls, d: dict) -> "Settings":
        """From a stored run's config, filling settings it predates with today's defaults."""
        merged = {**DEFAULTS, "model": default_model_name(), **{k: v for k, v in d.items() if k in DEFAULTS}}
        return cls(**merged)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seed, self.seed + self.seeds))

    def generation_config(self, image_size: int) -> GenerationConfig:
        """The base config every source of a run shares (DSG's own switches included)."""
        return preset("paper", image_size=image_size, samples=self.samples,
                     batch_size=min(self.samples, BATCH_SIZE), iterations=self.iters, seed=self.seed,
                     sda=self.sda, epsilon=self.eps, lse=self.lse, lse_weight=self.lse_w,
                     sci=self.sci, sci_weight=self.sci_w)

    def source_base(self, source: str, image_size: int) -> GenerationConfig:
        """Priors go to the BN-matching methods only: Gaussian noise stays N(0,1) noise."""
        base = self.generation_config(image_size)
        if self.priors and source in ("dsg", "zeroq"):
            return reference_priors(base, image_size)
        return base

    def bits(self) -> list[tuple[int, int]]:
        """The chosen pair plus, when comparing, the standard bit-widths (high to low)."""
        chosen = (self.wbits, self.abits)
        pairs = set(COMPARE_BITS) | {chosen} if self.compare else {chosen}
        return sorted(pairs, reverse=True)

    def quant_config(self, wbits: int, abits: int, seed: int) -> QuantConfig:
        return QuantConfig(wbits=wbits, abits=abits, quantizer=self.quantizer, seed=seed)

    @property
    def title(self) -> str:
        parts = [n for n, on in (("SDA", self.sda), ("LSE", self.lse), ("SCI", self.sci)) if on]
        return (f"DSG ({'+'.join(parts) or 'none'}){' + priors' if self.priors else ''} · eps {self.eps:g} · "
                f"{self.samples} samples × {self.iters} it · W{self.wbits}A{self.abits} {self.quantizer}")


def model_names() -> list[str]:
    return [s.name for s in list_models()]


# Settings field -> its control's key (= its query parameter), where the names differ
PARAM_KEYS = {"eval_images": "eval"}


def _same(raw: str, value) -> bool:
    if isinstance(value, bool):
        return raw.strip().lower() == str(value).lower()
    if isinstance(value, (int, float)):
        try:
            return float(raw) == float(value)
        except ValueError:
            return False
    return raw == str(value)


def link_warnings(raw: dict[str, str], settings: "Settings") -> list[str]:
    """One message per sidebar parameter of a link that its control did not take (out of range,
    misspelt): Streamlit drops such a value silently and shows the default, so say it. Parameters of
    the views' own controls (``view``, ``layer``, ...) are theirs to handle and are not checked."""
    values = {PARAM_KEYS.get(field, field): value for field, value in settings.to_dict().items()}
    return [f"The link's {code(f'{key}={text}')} is not a valid value for this control; using "
            f"{code(repr(values[key]))} instead."  # a code span: the link's text is never markdown
            for key, text in raw.items() if key in values and not _same(text, values[key])]


def drop_unrepresentable_params() -> None:
    """Remove link parameters that are numbers no control can hold (``inf``, ``1e400``, ``nan``):
    Streamlit's integer inputs raise OverflowError on them while seeding from the URL, which would
    replace the page. Called before any control is drawn; the sidebar's warning still names them.
    Controls are seeded from the URL the page was opened with (Streamlit keeps it apart from
    ``st.query_params``), so that copy is reset from the cleaned parameters too."""
    bad = [key for key in st.query_params if not _finite_or_text(st.query_params[key])]
    if not bad:
        return
    for key in bad:
        del st.query_params[key]
    from streamlit.runtime.state import get_session_state
    with get_session_state().query_params() as qp:
        qp.set_initial_query_params_from_current()


def _finite_or_text(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except (ValueError, OverflowError):
        return True  # not a number: the control's own check refuses it


def sidebar() -> Settings:
    """Draw the controls; each is bound to the query parameter named by its key. The link the
    session opened with is checked once, before the controls drop its invalid values."""
    raw = None if "link_warnings" in st.session_state else {k: st.query_params[k] for k in st.query_params}
    drop_unrepresentable_params()
    top = st.sidebar.container()  # the warnings go above the controls, where they are seen
    settings = _controls()
    if raw is not None:
        st.session_state["link_warnings"] = link_warnings(raw, settings)
    for message in st.session_state["link_warnings"]:
        top.warning(message)
    return settings


def _controls() -> Settings:
    sb, q = st.sidebar, dict(bind="query-params")
    names = model_names()
    default_model = default_model_name()
    sb.header("Model")
    model = sb.selectbox("Model", names, index=names.index(default_model), key="model", **q,
                         help="The network to synthesize data for and quantize. ImageNet models need their "
                              "weights on disk (see Bring your own model).")
    sb.header("Method (DSG)")
    sda = sb.toggle("SDA: slack distribution alignment", DEFAULTS["sda"], key="sda", **q,
                    help="Relax BN matching: deviations within a margin cost nothing.")
    eps = sb.slider("Slack quantile ε", 0.05, 1.0, DEFAULTS["eps"], 0.05, key="eps", disabled=not sda, **q,
                    help="Margins = this quantile of Gaussian-noise gaps. Larger = looser (paper: 0.9).")
    lse = sb.toggle("LSE: layerwise sample enhancement", DEFAULTS["lse"], key="lse", **q,
                    help="Each sample gets a favourite layer whose loss is weighted up.")
    lse_w = sb.slider("LSE weight", 1.0, 8.0, DEFAULTS["lse_w"], 0.5, key="lse_w", disabled=not lse, **q)
    sci = sb.toggle("SCI: sample correlation inhibition", DEFAULTS["sci"], key="sci", **q,
                    help="Match the batch's similarity spectrum to that of Gaussian noise.")
    sci_w = sb.slider("SCI weight", 0.0, 5.0, DEFAULTS["sci_w"], 0.1, key="sci_w", disabled=not sci, **q)
    priors = sb.toggle("Reference priors (DSG & ZeroQ)", DEFAULTS["priors"], key="priors", **q,
                       help="CE on random labels, TV and L2 priors, jitter, U[0,1) init, lr 0.9 — the "
                            "reference code's extras, applied to DSG and ZeroQ alike (a fair control).")
    sb.header("Generation")
    samples = sb.number_input("Samples per set", 2, 512, DEFAULTS["samples"], key="samples", **q)
    iters = sb.number_input("Iterations", 1, 2000, DEFAULTS["iters"], 10, key="iters", **q,
                            help="Adam steps per batch (the paper uses 500).")
    seed = sb.number_input("Seed", 0, 10_000, DEFAULTS["seed"], key="seed", **q)
    seeds = sb.number_input("Number of seeds", 1, 10, DEFAULTS["seeds"], key="seeds", **q,
                            help="Low-bit accuracy swings between seeds: run several to see the spread.")
    sb.header("Quantization")
    wbits = sb.select_slider("Weight bits", BIT_CHOICES, DEFAULTS["wbits"], key="wbits", **q)
    abits = sb.select_slider("Activation bits", BIT_CHOICES, DEFAULTS["abits"], key="abits", **q)
    quantizer = sb.selectbox("Quantizer", QUANTIZERS, index=QUANTIZERS.index(DEFAULTS["quantizer"]),
                             key="quantizer", **q,
                             help="dsg-avg: the paper's min/max averaged per sample. adaround/brecq learn "
                                  "the weight rounding from the calibration data (much slower).")
    compare = sb.toggle("Also W8A8, W6A6, W4A4, W3A3", DEFAULTS["compare"], key="compare", **q)
    eval_images = sb.number_input("Test images scored", 50, 50_000, DEFAULTS["eval_images"], 50, key="eval", **q,
                                  help="Each quantized model is scored on this many real test images.")
    return Settings(model=model, sda=sda, eps=float(eps), lse=lse, lse_w=float(lse_w), sci=sci,
                    sci_w=float(sci_w), priors=priors, samples=int(samples), iters=int(iters), seed=int(seed),
                    seeds=int(seeds), wbits=int(wbits), abits=int(abits), quantizer=quantizer, compare=compare,
                    eval_images=int(eval_images))
