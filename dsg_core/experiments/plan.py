"""An experiment plan: what one run generates, quantizes and evaluates, in the engine's own words.

Every caller builds a :class:`Plan` — the dashboard's Run (``Settings.to_plan``), ``compare`` (from
its arguments), background jobs (from JSON) and ``bench/reproduce.py`` — and hands it to
:func:`~dsg_core.experiments.run.run`. The plan is frozen and serializable, so a stored run
carries the exact plan that made it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace

from ..errors import ConfigError
from ..generation import GenerationConfig
from ..generation.config import known_settings
from ..quant import QuantConfig
from ..sources import SOURCES, reference_priors, source_config

# The default quantization cell: W4A4 with ZeroQ's global min/max rule (docs/results.md says where
# the data matters and where a cell is the grid's luck).
DEFAULT_WBITS, DEFAULT_ABITS, DEFAULT_QUANTIZER = 4, 4, "minmax"
RUN_SOURCES = ("dsg", "zeroq", "gaussian", "real")  # what a Run calibrates with, in display order
# Fields added after plans were first stored, with the value that keeps a plan's old behaviour: left out
# of ``to_dict`` at that value, so an old plan's JSON (and its provenance config hash) stays the same.
NEW_FIELDS = {"only_cells": None, "reference_images": None, "diagnose_ranges": False}


@dataclass(frozen=True)
class Plan:
    """Sources x seeds x bit-widths x quantizers on one model.

    ``generation`` is the base config every generated source shares (samples, iterations, DSG's
    switches); each source changes only its method (``sources.source_config``). ``priors`` adds the
    reference code's priors to the BN-matching sources alike (a fair control). ``quant`` is the base
    quantization config; bits, quantizer and seed are set per row.
    """
    model: str
    sources: tuple[str, ...] = RUN_SOURCES
    seeds: tuple[int, ...] = (0,)
    bits: tuple[tuple[int, int], ...] = ((DEFAULT_WBITS, DEFAULT_ABITS),)
    quantizers: tuple[str, ...] = (DEFAULT_QUANTIZER,)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)
    priors: bool = False
    eval_images: int | None = None      # score on the first N test images; None = all
    jitter: tuple[float, ...] | None = None  # also top-1 with activation ranges scaled (quant/jitter.py)
    diagnose: bool = True               # diversity metrics of every set against real data
    weights: str | None = None          # a weights file replacing the registry's
    test_dir: str | None = None         # labelled test images replacing the embedded split
    workers: int = 1                    # sets generated / quantized at once (threads)
    snapshots: int = 0                  # keep images and statistics every N iterations of seed 0 (replay)
    title: str = ""
    only_cells: tuple[tuple[int, int, str], ...] | None = None  # instead of bits x quantizers
    reference_images: int | None = None  # diagnose against the pool's first N images (a fixed reference)
    diagnose_ranges: bool = False        # also activation ranges over real data's (``range_ratios``)

    def __post_init__(self):  # lists from JSON or argv become tuples, so the plan stays hashable
        for name in ("sources", "seeds", "quantizers"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "bits", tuple((int(w), int(a)) for w, a in self.bits))
        if self.jitter is not None:
            object.__setattr__(self, "jitter", tuple(float(f) for f in self.jitter))
        if self.only_cells is not None:
            object.__setattr__(self, "only_cells", tuple((int(w), int(a), str(q)) for w, a, q in self.only_cells))

    def validate(self) -> "Plan":
        """Every setting checked before minutes of generation."""
        unknown = [s for s in self.sources if s not in SOURCES]
        if unknown:
            raise ConfigError(f"unknown calibration source {unknown[0]!r}; choose from {', '.join(SOURCES)}")
        if not self.sources or not self.seeds or not self.bits or not self.quantizers:
            raise ConfigError("a plan needs at least one source, seed, bit-width and quantizer")
        if len(set(self.seeds)) != len(self.seeds) or any(not 0 <= s < 2**32 for s in self.seeds):
            raise ConfigError(f"seeds must be distinct integers in 0..2^32-1, got {list(self.seeds)}")
        if self.eval_images is not None and self.eval_images < 1:
            raise ConfigError(f"eval_images must be a positive number, not {self.eval_images}")
        if self.jitter is not None and (not self.jitter or any(not 0 < f < 100 for f in self.jitter)):
            raise ConfigError(f"range-jitter factors must be positive numbers below 100, got {list(self.jitter)}")
        if self.workers < 1:
            raise ConfigError(f"workers must be at least 1, not {self.workers}")
        if self.reference_images is not None and self.reference_images < 1:
            raise ConfigError(f"reference_images must be a positive number, not {self.reference_images}")
        if self.only_cells is not None and len(set(self.only_cells)) != len(self.only_cells):
            raise ConfigError(f"the plan's cells must be distinct, got {[list(c) for c in self.only_cells]}")
        self.generation.validate()
        for w, a, q in self.cells:
            self.quant_config(w, a, q, 0).validate()
        return self

    # ---- what the plan expands to -------------------------------------------------------------
    def source_config(self, source: str, seed: int, image_size: int) -> GenerationConfig | None:
        """The generation config of one source at one seed (None for real data)."""
        cfg = source_config(source, self.generation.replace(seed=seed), image_size)
        if cfg is not None and self.priors and cfg.uses_bn and not cfg.has_priors:
            cfg = reference_priors(cfg, image_size)
        return cfg

    def quant_config(self, wbits: int, abits: int, quantizer: str, seed: int) -> QuantConfig:
        return replace(self.quant, wbits=wbits, abits=abits, quantizer=quantizer, seed=seed)

    @property
    def generated(self) -> list[tuple[str, int]]:
        """(source, seed) of every set to generate, seed by seed in source order."""
        return [(src, seed) for seed in self.seeds for src in self.sources if src != "real"]

    @property
    def calibrations(self) -> list[tuple[str, int]]:
        """(source, seed) of every calibration set, real data included."""
        return [(src, seed) for seed in self.seeds for src in self.sources]

    @property
    def cells(self) -> list[tuple[int, int, str]]:
        """(wbits, abits, quantizer) of every quantization: ``only_cells`` as given, else high bits first."""
        if self.only_cells is not None:
            return list(self.only_cells)
        return [(w, a, q) for q in self.quantizers for w, a in sorted(self.bits, reverse=True)]

    def replace(self, **kw) -> "Plan":
        return replace(self, **kw)

    # ---- serialization: one place for JSON, the run store and background jobs ---------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["generation"], d["quant"] = self.generation.to_dict(resolved=False), asdict(self.quant)
        d["bits"] = [list(b) for b in self.bits]
        if self.only_cells is not None:
            d["only_cells"] = [list(c) for c in self.only_cells]
        return {k: v for k, v in d.items() if k not in NEW_FIELDS or v != NEW_FIELDS[k]}

    @classmethod
    def from_dict(cls, d: dict) -> "Plan":
        d = known_settings(cls, d, "plan")
        if isinstance(d.get("generation"), dict):
            d["generation"] = GenerationConfig.from_dict(d["generation"])
        if isinstance(d.get("quant"), dict):
            d["quant"] = QuantConfig(**known_settings(QuantConfig, d["quant"], "quantization"))
        try:
            return cls(**d)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"not a valid plan: {exc}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Plan":
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"not a plan (invalid JSON: {exc.msg})") from None


def parse_bits(text: str) -> list[tuple[int, int]]:
    """'4/4,6/6,8/8' -> [(4, 4), (6, 6), (8, 8)]."""
    out = []
    for part in text.split(","):
        try:
            w, a = part.strip().split("/")
            out.append((int(w), int(a)))
        except ValueError:
            raise ConfigError(f"bit-widths look like W/A, e.g. 4/4; got {part.strip()!r}") from None
    return out
