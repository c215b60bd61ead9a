"""Diverse sample generation: ZeroQ's BN matching and DSG's SDA + LSE + SCI, one generator."""

from .config import METHODS, PRESETS, GenerationConfig, preset
from .generator import Objective, generate
from .many import generate_many
from .margins import Margins, compute_margins
from .stats import BNStats, BNTargets, bn_targets
from .synthetic_set import SyntheticSet

__all__ = ["METHODS", "PRESETS", "GenerationConfig", "preset", "Objective", "generate", "generate_many", "Margins",
           "compute_margins", "BNStats", "BNTargets", "bn_targets", "SyntheticSet", "generate_named"]


def generate_named(model_name: str, cfg: GenerationConfig, *, weights: str | None = None, device="cpu",
                   progress=None, cancel=None, precision: str = "fp32") -> SyntheticSet:
    """Generate for a registry model by name (the entry point of the CLI and the dashboard)."""
    from ..models import get_spec, load_model
    spec = get_spec(model_name)
    model = load_model(model_name, weights=weights, device=device)
    return generate(model, spec.input_shape, cfg, model_name=model_name, num_classes=spec.num_classes,
                    valid_range=spec.valid_range, progress=progress, cancel=cancel, device=device, precision=precision)
