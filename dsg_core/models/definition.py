"""A network from the user's Python code: ``FILE.py:FUNCTION`` or ``package.module:FUNCTION``.

The function returns an ``nn.Module`` (torch.hub's ``hubconf.py`` convention: a function per model,
callable without arguments); its weights usually come from a state dict given beside it. Importing
the file runs it, so the caller must have been told to trust it (CLI: ``--trust-model-file``).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import torch.nn as nn

from ..errors import ConfigError, ModelError


def _why(exc: BaseException) -> str:
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first[:200]}" if first else type(exc).__name__


def parse_reference(ref: str) -> tuple[str, str]:
    """(module or file, function name)."""
    where, sep, func = ref.rpartition(":")
    if not sep or not where or not func.isidentifier():
        raise ConfigError(f"--model-def takes FILE.py:FUNCTION or package.module:FUNCTION, got {ref!r}")
    return where, func


def _import(where: str) -> ModuleType:
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise ModelError(f"model definition file not found: {path}")
        # a unique module name per file: two users' model.py files do not collide in sys.modules
        name = f"dsg_user_def_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # the user's file: report, do not crash
            sys.modules.pop(name, None)
            raise ModelError(f"importing {path.name} failed: {_why(exc)}") from None
        return module
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as exc:
        raise ModelError(f"cannot import {where!r}: {_why(exc)} (give FILE.py:FUNCTION for a file)") from None
    except Exception as exc:
        raise ModelError(f"importing {where} failed: {_why(exc)}") from None


def build_from_definition(ref: str, trust: bool = False) -> nn.Module:
    """Call the function ``ref`` names and return its network in eval mode."""
    where, func = parse_reference(ref)
    if not trust:
        raise ModelError(f"--model-def {ref} runs the Python code in {where}: pass --trust-model-file "
                         "(API: trust_program=True) if you trust its source")
    module = _import(where)
    fn = getattr(module, func, None)
    if not callable(fn):
        public = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")][:8]
        raise ModelError(f"{where} has no function {func!r} (it has: {', '.join(public) or 'none'})")
    try:
        model = fn()
    except Exception as exc:
        raise ModelError(f"{func}() raised {_why(exc)}") from None
    if not isinstance(model, nn.Module):
        raise ModelError(f"{func}() returned a {type(model).__name__}, not a torch.nn.Module")
    return model.eval()
