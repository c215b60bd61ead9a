"""Generation settings: one dataclass, switchable parts, two named presets.

``method`` picks the family; the component switches make every ablation one config away:

=========  ====================================================================
gaussian   N(0,1) noise in model-input space, no optimization
zeroq      per-sample BN-statistics L2 matching + input prior (ZeroQ)
dsg        SDA (slack hinge) + LSE (layer-wise enhancement) + SCI (decorrelation)
=========  ====================================================================

The image priors (CE on target labels, TV, L2, translation jitter) are independent of the method, so
``zeroq`` + priors is the control that separates DSG's own terms from the priors.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import NamedTuple

from ..errors import ConfigError

METHODS = ("gaussian", "zeroq", "dsg")
INITS = ("gaussian", "uniform")
SCHEDULES = ("plateau", "cosine", "constant")
PRESETS = ("paper", "reference")
PIXEL_RANGES = ("free", "clip", "clamp-after")  # see GenerationConfig.pixel_range


class Components(NamedTuple):
    """DSG's three parts, each in force or not."""
    sda: bool
    lse: bool
    sci: bool


@dataclass(frozen=True)
class GenerationConfig:
    method: str = "dsg"
    samples: int = 64
    batch_size: int = 64
    iterations: int = 500
    lr: float = 0.5                 # ZeroQ's Adam learning rate
    schedule: str = "plateau"       # "plateau" (ZeroQ: ReduceLROnPlateau), "cosine" or "constant"
    plateau_patience: int = 100     # ReduceLROnPlateau patience (ZeroQ), in iterations
    seed: int = 0
    init: str = "gaussian"          # N(0,1) or U[0,1) (reference code), in model-input space
    input_prior: bool = True        # per-channel mean 0 / std 1 of the image itself (ZeroQ)
    # SDA: slack margins delta/gamma = epsilon-quantile of Gaussian-noise statistic gaps
    sda: bool = True
    epsilon: float = 0.9
    margin_samples: int = 128       # Gaussian images used to measure the gaps (once)
    delta: float | None = None      # hand-set margins (same for every layer) override epsilon
    gamma: float | None = None
    # LSE: sample j's loss at layer (j mod N) weighted lse_weight instead of 1
    lse: bool = True
    lse_weight: float = 2.0
    # SCI: match the batch's cosine-similarity spectrum to an i.i.d. Gaussian batch's
    sci: bool = True
    sci_weight: float = 1.0
    # Priors of the reference code (DeepInversion-style), all off in the paper preset
    ce_weight: float = 0.0
    tv_weight: float = 0.0
    l2_weight: float = 0.0
    jitter: int = 0                 # max random translation in pixels per iteration
    targets: tuple[int, ...] | None = None  # chosen target labels (cycled); None = balanced random
    # Pixels against the valid input range [(0 - mean) / std, (1 - mean) / std] per channel:
    # "free" leaves them unbounded (the paper), "clip" projects the images onto the range after every
    # optimizer step (as MCT does), "clamp-after" clamps once at the end (issue: diversity or range?)
    pixel_range: str = "free"

    @property
    def uses_bn(self) -> bool:
        return self.method != "gaussian"

    @property
    def components(self) -> Components:
        """SDA, LSE and SCI actually in force: ZeroQ and Gaussian use none of them."""
        on = self.method == "dsg"
        return Components(on and self.sda, on and self.lse, on and self.sci)

    @property
    def label(self) -> str:
        """Short human name, e.g. 'DSG (SDA+LSE)', 'ZeroQ + priors'."""
        clipped = "" if self.pixel_range == "free" else f" [{self.pixel_range}]"
        if self.method == "gaussian":
            return "Gaussian" + clipped
        parts = [n for n, on in zip(("SDA", "LSE", "SCI"), self.components) if on]
        name = "ZeroQ" if self.method == "zeroq" else f"DSG ({'+'.join(parts) or 'none'})"
        return name + (" + priors" if self.has_priors else "") + clipped

    @property
    def has_priors(self) -> bool:
        return bool(self.ce_weight or self.tv_weight or self.l2_weight or self.jitter)

    def validate(self) -> "GenerationConfig":
        checks = [
            (self.method in METHODS, f"method must be one of {', '.join(METHODS)}, not {self.method!r}"),
            (self.init in INITS, f"init must be one of {', '.join(INITS)}, not {self.init!r}"),
            (self.pixel_range in PIXEL_RANGES,
             f"pixel range must be one of {', '.join(PIXEL_RANGES)}, not {self.pixel_range!r}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}, not {self.schedule!r}"),
            (self.samples >= 1, f"samples must be a positive number, not {self.samples}"),
            (self.batch_size >= 1, f"batch size must be positive, not {self.batch_size}"),
            (self.iterations >= 1 or self.method == "gaussian",
             f"iterations must be a positive number, not {self.iterations}"),
            (0.0 < self.epsilon <= 1.0, f"epsilon (the slack quantile) must be in (0, 1], not {self.epsilon}"),
            (self.lr > 0, f"learning rate must be positive, not {self.lr}"),
            (self.lse_weight >= 1.0, f"LSE weight must be >= 1 (1 = no enhancement), not {self.lse_weight}"),
            (self.margin_samples >= 2, "margin_samples must be at least 2"),
            (self.jitter >= 0 and self.plateau_patience >= 1, "jitter must be >= 0 and patience >= 1"),
        ]
        for name in ("sci_weight", "ce_weight", "tv_weight", "l2_weight", "delta", "gamma"):
            v = getattr(self, name)
            checks.append((v is None or (v >= 0 and v == v and v != float("inf")),
                           f"{name} must be a finite number >= 0, not {v}"))
        checks.append(((self.delta is None) == (self.gamma is None), "give both delta and gamma, or neither"))
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)
        return self

    def replace(self, **kw) -> "GenerationConfig":
        return replace(self, **kw)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["targets"] = list(self.targets) if self.targets is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "GenerationConfig":
        d = known_settings(cls, d, "generation")
        if d.get("targets") is not None:
            d["targets"] = tuple(int(t) for t in d["targets"])
        return cls(**d)


def known_settings(cls, d: dict, what: str) -> dict:
    """A copy of ``d`` when every key is a field of the dataclass ``cls``; else a ConfigError naming
    the unknown ones (a stored or typed config must not be half read)."""
    unknown = set(d) - {f.name for f in fields(cls)}
    if unknown:
        raise ConfigError(f"unknown {what} settings: {', '.join(sorted(unknown))}")
    return dict(d)


def preset(name: str, image_size: int = 28, **overrides) -> GenerationConfig:
    """Named starting points.

    ``paper``: the brief's formulas and nothing else (N(0,1) init, Adam lr 0.5, plateau 100).
    ``reference``: the reference code's full objective: U[0,1) init, Adam lr 0.9, CE on random
    labels (1.0), TV and L2 priors (0.01 each), jitter of 30 px at 224 px scaled to the image size.
    """
    if name == "paper":
        base = GenerationConfig()
    elif name == "reference":
        base = GenerationConfig(init="uniform", lr=0.9, ce_weight=1.0, tv_weight=0.01, l2_weight=0.01,
                                jitter=max(1, round(30 * image_size / 224)))
    else:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return base.replace(**overrides)
