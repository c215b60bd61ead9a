"""Experiments: a :class:`Plan` of sources x seeds x bit-widths x quantizers, and :func:`run` that
carries it out (generate, diagnose, quantize, evaluate, save). See ``plan.py`` and ``run.py``."""

from .plan import DEFAULT_ABITS, DEFAULT_QUANTIZER, DEFAULT_WBITS, RUN_SOURCES, Plan, parse_bits
from .run import (
                  Resources,
                  RunResult,
                  TestSet,
                  diagnose_sets,
                  generate_ahead,
                  in_parallel,
                  quantize_and_evaluate,
                  reopen,
                  result_row,
                  run,
                  task_names,
                  title_of,
)
from .sets import SetCache, calibration_set, calibration_sets, file_digest, generated_sets, real_calibration

__all__ = ["Plan", "run", "RunResult", "Resources", "TestSet", "task_names", "title_of", "quantize_and_evaluate",
           "result_row", "reopen", "diagnose_sets", "generate_ahead", "in_parallel", "parse_bits", "SetCache",
           "calibration_set", "calibration_sets", "generated_sets", "real_calibration", "file_digest", "DEFAULT_WBITS",
           "DEFAULT_ABITS", "DEFAULT_QUANTIZER", "RUN_SOURCES"]
