"""Settings of the dashboard: the sidebar that edits them, mirrored in the URL, and their one
translation into the engine's experiment plan (:meth:`Settings.to_plan`).

Every control is bound to a URL query parameter named as the engine names the setting
(``epsilon``, ``lse_weight``, ``iterations``...; the old short names of earlier links still work),
so a shared link reproduces the settings and the page. A parameter equal to its default is dropped
from the URL; an invalid one is ignored with a warning in the sidebar, shown as plain text.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import streamlit as st

from dsg_core.experiments import RUN_SOURCES, Plan
from dsg_core.generation import GenerationConfig
from dsg_core.generation.config import PIXEL_RANGES
from dsg_core.models import default_model_name, list_models
from dsg_core.quant import QUANTIZERS
from dsg_core.quant.jitter import SPAN_FACTORS

from .text import code

REPO = Path(__file__).resolve().parents[1]
PAPER = GenerationConfig()  # the paper's defaults (ε, LSE weight, SCI weight) live in the engine alone

# The live Run's defaults, chosen from measurement (docs/live-defaults.md): converged losses, three
# seeds, the cell where the data matters, within a minute on 2 cores.
DEFAULTS = dict(
    model=None,          # None = the registry's default model
    sda=PAPER.sda, epsilon=PAPER.epsilon,
    lse=PAPER.lse, lse_weight=PAPER.lse_weight,
    sci=PAPER.sci, sci_weight=PAPER.sci_weight,
    priors=False, pixel_range="clip",  # the honest comparison: DSG's lead that survives the valid range
    samples=10, iterations=320, seed=0, seeds=3,  # past every ZeroQ plateau, in a minute: docs/live-defaults.md
    wbits=3, abits=3, quantizer="minmax", compare=False,
    eval_images=300,     # test images per quantized model (of 1,000): scoring is a third of a Run (live-defaults.md)
)
WORKERS = min(2, os.cpu_count() or 1)        # sets generated / quantized at the same time
COMPARE_BITS = ((8, 8), (6, 6), (4, 4), (3, 3))
BIT_CHOICES = (2, 3, 4, 5, 6, 8)
OLD_NAMES = {"eps": "epsilon", "lse_w": "lse_weight", "sci_w": "sci_weight", "iters": "iterations",
             "eval": "eval_images"}  # links made before the engine's names were used in the URL
SETTING_KEYS = tuple(DEFAULTS)


def runs_dir() -> Path:
    """The run store's folder: $DSG_RUNS_DIR (tests use temporary folders) or runs/ in the repo."""
    return Path(os.environ.get("DSG_RUNS_DIR") or REPO / "runs")


@dataclass(frozen=True)
class Settings:
    model: str
    sda: bool
    epsilon: float
    lse: bool
    lse_weight: float
    sci: bool
    sci_weight: float
    priors: bool
    pixel_range: str
    samples: int
    iterations: int
    seed: int
    seeds: int
    wbits: int
    abits: int
    quantizer: str
    compare: bool
    eval_images: int

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def seed_list(self) -> tuple[int, ...]:
        return tuple(range(self.seed, self.seed + self.seeds))

    def bits(self) -> tuple[tuple[int, int], ...]:
        """The chosen pair plus, when comparing, the standard bit-widths (high to low)."""
        chosen = (self.wbits, self.abits)
        pairs = set(COMPARE_BITS) | {chosen} if self.compare else {chosen}
        return tuple(sorted(pairs, reverse=True))

    def to_plan(self, weights: str | None = None, test_dir: str | None = None) -> Plan:
        """The one translation of the sidebar into the engine's plan (the Run, the ablations and
        background jobs all start from it)."""
        generation = PAPER.replace(samples=self.samples, iterations=self.iterations, seed=self.seed, sda=self.sda,
                                   epsilon=self.epsilon, lse=self.lse, lse_weight=self.lse_weight, sci=self.sci,
                                   sci_weight=self.sci_weight, pixel_range=self.pixel_range)
        return Plan(model=self.model, sources=RUN_SOURCES, seeds=self.seed_list, bits=self.bits(),
                    quantizers=(self.quantizer,), generation=generation, priors=self.priors,
                    eval_images=self.eval_images, jitter=SPAN_FACTORS, weights=weights, test_dir=test_dir,
                    workers=WORKERS, snapshots=max(1, self.iterations // 20))

    @classmethod
    def from_plan(cls, plan: Plan) -> "Settings":
        """The sidebar that makes ``plan`` (loading a run sets the sidebar to its settings)."""
        g = plan.generation
        (w, a) = min(plan.bits)
        return cls(model=plan.model, sda=g.sda, epsilon=g.epsilon, lse=g.lse, lse_weight=g.lse_weight, sci=g.sci,
                   sci_weight=g.sci_weight, priors=plan.priors, pixel_range=g.pixel_range, samples=g.samples,
                   iterations=g.iterations, seed=plan.seeds[0], seeds=len(plan.seeds), wbits=w, abits=a,
                   quantizer=plan.quantizers[0], compare=len(plan.bits) > 1,
                   eval_images=plan.eval_images or DEFAULTS["eval_images"])

    @classmethod
    def from_legacy(cls, config: dict) -> "Settings":
        """A run stored before plans existed (its config is the sidebar's settings, short names)."""
        d = {OLD_NAMES.get(k, k): v for k, v in config.items()}
        merged = {**DEFAULTS, "model": default_model_name(), **{k: v for k, v in d.items() if k in DEFAULTS}}
        return cls(**merged)


def plan_of_record(config: dict) -> Plan:
    """The plan a stored run was made with, whether it stored a plan or (older runs) settings."""
    if "plan" in config:
        return Plan.from_dict(config["plan"])
    return Settings.from_legacy(config).to_plan(config.get("weights"), config.get("test_dir"))


def stale_notes(current: Plan, shown: Plan) -> list[str]:
    """What differs between the sidebar's plan and the run on screen, in words ('ε is 0.5, this
    view shows 0.9'); empty when the view shows the sidebar's settings."""
    notes = []
    pairs = [(f.name, getattr(current.generation, f.name), getattr(shown.generation, f.name))
             for f in fields(GenerationConfig)]
    pairs += [(name, getattr(current, name), getattr(shown, name))
              for name in ("model", "seeds", "bits", "quantizers", "priors", "eval_images")]
    names = {"epsilon": "ε", "lse_weight": "LSE weight", "sci_weight": "SCI weight", "sda": "SDA", "lse": "LSE",
             "sci": "SCI", "pixel_range": "pixel range", "eval_images": "test images", "quantizers": "quantizer"}
    for name, now, then in pairs:
        if now != then and name not in ("seed",):
            notes.append(f"{names.get(name, name.replace('_', ' '))} is {_show(now)}, this view shows {_show(then)}")
    return notes


def _show(v) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, tuple) and v and isinstance(v[0], tuple):
        return ", ".join(f"W{w}A{a}" for w, a in v)
    if isinstance(v, tuple):
        return ", ".join(map(str, v))
    return f"{v:g}" if isinstance(v, float) else str(v)


def model_names() -> list[str]:
    return [s.name for s in list_models()]


# ---------------------------------------------------------------------------------------- the link
def _same(raw: str, value) -> bool:
    if isinstance(value, bool):
        return raw.strip().lower() == str(value).lower()
    if isinstance(value, (int, float)):
        try:
            return float(raw) == float(value)
        except ValueError:
            return False
    return raw == str(value)


def link_warnings(raw: dict[str, str], settings: Settings) -> list[str]:
    """One message per sidebar parameter of a link that its control did not take (out of range,
    misspelt): Streamlit drops such a value silently and shows the default, so say it. Parameters of
    the views' own controls (``layer``, ...) are theirs to handle and are not checked."""
    values = settings.to_dict()
    return [f"The link's {code(f'{key}={text[:120]}')} is not a valid value for this control; using "
            f"{code(repr(values[key]))} instead."  # a code span: the link's text is never markdown
            for key, text in raw.items() if key in values and not _same(text, values[key])]


def clean_link() -> dict[str, str]:
    """Before any control reads the URL: rename the old short parameters (eps, iters, ...) to the
    engine's names, so old links keep working, and drop numbers no control can hold (inf, 1e400,
    nan: Streamlit's number inputs would raise OverflowError and replace the page). Returns the
    dropped ones so the sidebar can name them. Controls are seeded from the URL the page was opened
    with (Streamlit keeps it apart from ``st.query_params``), so that copy is reset as well."""
    changed, dropped = False, {}
    for old, new in OLD_NAMES.items():
        if old in st.query_params:
            value = st.query_params[old]
            del st.query_params[old]
            if new not in st.query_params:
                st.query_params[new] = value
            changed = True
    for key in list(st.query_params):  # the views' own numbers (layer, channel, ...) as well
        text = st.query_params[key]
        try:
            ok = math.isfinite(float(text)) and abs(float(text)) < 1e12
        except (ValueError, OverflowError):
            ok = True  # not a number at all: a control ignores it (the sidebar's warn)
        if not ok:
            if key in DEFAULTS:
                dropped[key] = text
            del st.query_params[key]
            changed = True
    if changed:
        from streamlit.runtime.state import get_session_state
        with get_session_state().query_params() as qp:
            qp.set_initial_query_params_from_current()
    return dropped


def apply_settings(settings: Settings) -> None:
    """Set every control to ``settings`` on the next script run, before the controls are drawn (a
    drawn control's value cannot change): loading a run sets the sidebar."""
    st.session_state["pending_settings"] = settings.to_dict()


def _take_pending() -> None:
    for key, value in st.session_state.pop("pending_settings", {}).items():
        st.session_state[key] = value


def sidebar() -> Settings:
    """Draw the controls; each is bound to the query parameter named by its key. The link the
    session opened with is checked once, before the controls drop its invalid values."""
    _take_pending()
    dropped = clean_link()
    raw = None if "link_warnings" in st.session_state else {k: st.query_params[k] for k in st.query_params}
    top = st.sidebar.container()  # the warnings go above the controls, where they are seen
    settings = _controls()
    if raw is not None:
        raw.update(dropped)
        st.session_state["link_warnings"] = link_warnings(raw, settings)
    for message in st.session_state["link_warnings"]:
        top.warning(message, icon=":material/warning:")  # markdown, with the link's text in a code span
    return settings


def _controls() -> Settings:
    sb, q = st.sidebar, dict(bind="query-params")
    names = model_names()
    d = DEFAULTS
    with sb.expander("Model and method", expanded=True):
        model = st.selectbox("Model", names, index=names.index(default_model_name()), key="model", **q,
                             help="The network to synthesize data for and quantize. ImageNet models need their "
                                  "weights on disk (see Your model).")
        sda = st.toggle("SDA: slack distribution alignment", d["sda"], key="sda", **q,
                        help="Relax BN matching: deviations within a margin cost nothing.")
        epsilon = st.slider("Slack quantile ε", 0.05, 1.0, d["epsilon"], 0.05, key="epsilon", disabled=not sda, **q,
                            help=f"Margins = this quantile of Gaussian-noise gaps. Larger = looser "
                                 f"(paper: {PAPER.epsilon:g}).")
        lse = st.toggle("LSE: layerwise sample enhancement", d["lse"], key="lse", **q,
                        help="Each sample gets a favourite layer whose loss is weighted up.")
        lse_weight = st.slider("LSE weight", 1.0, 8.0, d["lse_weight"], 0.5, key="lse_weight", disabled=not lse, **q)
        sci = st.toggle("SCI: sample correlation inhibition", d["sci"], key="sci", **q,
                        help="Match the batch's similarity spectrum to that of Gaussian noise.")
        sci_weight = st.slider("SCI weight", 0.0, 5.0, d["sci_weight"], 0.1, key="sci_weight", disabled=not sci, **q)
        priors = st.toggle("Reference priors (DSG & ZeroQ)", d["priors"], key="priors", **q,
                           help="CE on random labels, TV and L2 priors, jitter, U[0,1) init, lr 0.9 — the "
                                "reference code's extras, applied to DSG and ZeroQ alike (a fair control).")
        pixel_range = st.segmented_control(
            "Pixels", PIXEL_RANGES, default=d["pixel_range"], key="pixel_range", **q,
            help="free: unbounded, as the paper. clip: every image kept inside the valid input range after each "
                 "step (as MCT does). clamp-after: clamped once at the end. Much of DSG's measured advantage on "
                 "the MNIST models was pixels outside the valid range (see Evidence).") or d["pixel_range"]
    with sb.expander("Generation and quantization", expanded=False):
        samples = st.number_input("Samples per set", 2, 512, d["samples"], key="samples", **q)
        iterations = st.number_input("Iterations", 1, 2000, d["iterations"], 10, key="iterations", **q,
                                     help="Adam steps per batch (the paper uses 500; docs/live-defaults.md shows "
                                          "where ZeroQ's and DSG's losses plateau).")
        seed = st.number_input("First seed", 0, 10_000, d["seed"], key="seed", **q)
        seeds = st.number_input("Number of seeds", 1, 10, d["seeds"], key="seeds", **q,
                                help="Low-bit accuracy swings between seeds: every seed is shown as a dot.")
        wbits = st.select_slider("Weight bits", BIT_CHOICES, d["wbits"], key="wbits", **q)
        abits = st.select_slider("Activation bits", BIT_CHOICES, d["abits"], key="abits", **q)
        quantizer = st.selectbox("Quantizer", QUANTIZERS, index=QUANTIZERS.index(d["quantizer"]), key="quantizer",
                                 **q, help="dsg-avg: the paper's min/max averaged per sample. adaround/brecq learn "
                                           "the weight rounding from the calibration data (much slower).")
        compare = st.toggle("Also W8A8, W6A6, W4A4, W3A3", d["compare"], key="compare", **q)
        eval_images = st.number_input("Test images scored", 50, 50_000, d["eval_images"], 50, key="eval_images", **q,
                                      help="Each quantized model is scored on this many real test images.")
    return Settings(model=model, sda=sda, epsilon=float(epsilon), lse=lse, lse_weight=float(lse_weight), sci=sci,
                    sci_weight=float(sci_weight), priors=priors, pixel_range=pixel_range, samples=int(samples),
                    iterations=int(iterations), seed=int(seed), seeds=int(seeds), wbits=int(wbits), abits=int(abits),
                    quantizer=quantizer, compare=compare, eval_images=int(eval_images))

