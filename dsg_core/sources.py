"""Calibration sources by name: real data, Gaussian noise, ZeroQ, DSG and every DSG ablation.

A source name plus a base generation config gives the config of that source, so that every source
of a comparison shares samples, iterations, seed and learning rate and differs only in its method:

==================  =========================================================
real                real training-split images (no generation)
gaussian            N(0,1) noise
zeroq               BN L2 matching (ZeroQ)
zeroq+priors        ZeroQ with the reference code's priors (the control)
dsg                 the base config as given (default SDA+LSE+SCI)
sda, lse, sci       one DSG component alone
sda+lse             the CVPR version
sda+lse+sci         the journal version
dsg-reference       SDA+LSE+SCI with the reference code's objective (``reference`` preset)
best                the ``best`` preset: dsg-reference, its pixels clamped to the valid range
==================  =========================================================

The first eleven are the reproduction's (issue 3: ``REPRODUCTION``); ``best`` is the recipe chosen
from their measurements (issue 18, ``docs/best.md``).
"""

from __future__ import annotations

from .errors import ConfigError
from .generation.config import GenerationConfig, preset

ABLATIONS = {"sda": (True, False, False), "lse": (False, True, False), "sci": (False, False, True),
             "sda+lse": (True, True, False), "sda+lse+sci": (True, True, True)}
REPRODUCTION = ("real", "gaussian", "zeroq", "zeroq+priors", "dsg", *ABLATIONS, "dsg-reference")
SOURCES = (*REPRODUCTION, "best")
LABELS = {"real": "Real", "gaussian": "Gaussian", "zeroq": "ZeroQ", "zeroq+priors": "ZeroQ + priors", "dsg": "DSG",
          "sda": "SDA", "lse": "LSE", "sci": "SCI", "sda+lse": "SDA+LSE", "sda+lse+sci": "SDA+LSE+SCI",
          "dsg-reference": "DSG reference", "best": "Best (DSG reference without SDA, pixels in range)"}


def label(source: str) -> str:
    """A source's display name ('zeroq' -> 'ZeroQ'); unknown names (imported sets) as they are."""
    return LABELS.get(source, source)


REFERENCE_FIELDS = ("init", "lr", "plateau_patience", "ce_weight", "tv_weight", "l2_weight", "jitter",
                    "jitter_target", "tv_form", "l2_form", "lse_mode")


def reference_priors(base: GenerationConfig, image_size: int) -> GenerationConfig:
    """The base config with the reference code's objective switched on: its priors in its forms,
    init, learning rate, patience and LSE mode (the ``reference`` preset's, see config.py)."""
    ref = preset("reference", image_size=image_size)
    return base.replace(**{name: getattr(ref, name) for name in REFERENCE_FIELDS})


def source_config(name: str, base: GenerationConfig, image_size: int) -> GenerationConfig | None:
    """The generation config of a source (None for real data)."""
    if name == "real":
        return None
    if name == "gaussian":
        return base.replace(method="gaussian")
    if name == "zeroq":
        return base.replace(method="zeroq")
    if name == "zeroq+priors":
        return reference_priors(base.replace(method="zeroq"), image_size)
    if name == "dsg":
        return base.replace(method="dsg")
    if name in ABLATIONS:
        sda, lse, sci = ABLATIONS[name]
        return base.replace(method="dsg", sda=sda, lse=lse, sci=sci)
    if name == "dsg-reference":
        return reference_priors(base.replace(method="dsg", sda=True, lse=True, sci=True), image_size)
    if name == "best":  # the recipe's pixel handling and SDA switch are part of it: a plan does not change them
        recipe = preset("best", image_size=image_size)
        return source_config("dsg-reference", base.replace(pixel_range=recipe.pixel_range),
                             image_size).replace(sda=recipe.sda)
    raise ConfigError(f"unknown calibration source {name!r}; choose from {', '.join(SOURCES)}")


def parse_sources(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise ConfigError("give at least one calibration source")
    for n in names:
        if n not in SOURCES:
            raise ConfigError(f"unknown calibration source {n!r}; choose from {', '.join(SOURCES)}")
    return names
