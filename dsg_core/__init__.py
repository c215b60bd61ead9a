"""DSG Lab engine: diverse sample generation for data-free quantization.

Pure library (no UI imports): models, real data, generation (ZeroQ / DSG), diagnostics,
quantization and evaluation. ``python -m dsg_core`` exposes the same functions as a CLI.
"""

__version__ = "0.1.0"
