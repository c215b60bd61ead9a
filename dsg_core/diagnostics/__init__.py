"""Diagnostics: how homogenized is a synthetic set, and how does it compare with real data?"""

from .convergence import Convergence, convergence, plateau
from .embedding import embed, embedding_frame
from .metrics import diversity_metrics, effective_rank, mean_offdiag_cosine, similarity_spectrum
from .pixels import clamp_to_range, pixel_range_metrics
from .probe import Probe, probe
from .ranges import activation_ranges, layer_range_frame, named_activation_ranges, range_ratios
from .report import BETTER, REAL, Diagnosis, diagnose

__all__ = ["embed", "embedding_frame", "diversity_metrics", "effective_rank", "mean_offdiag_cosine",
           "similarity_spectrum", "Probe", "probe", "BETTER", "REAL", "Diagnosis", "diagnose",
           "clamp_to_range", "pixel_range_metrics", "activation_ranges", "layer_range_frame",
           "named_activation_ranges", "range_ratios", "Convergence", "convergence", "plateau"]
