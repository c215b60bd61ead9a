"""User models remembered across processes, so that ``user:<name>`` works by name everywhere.

A background job, a ``torchrun`` rank, a run reloaded from History or a later command runs in another
process than the one that loaded the user's model. :func:`remember` writes a small record of how the
model was loaded (its files with their SHA-256, its completed card, whether the user trusted it);
:func:`recall`, called by the registry for an unknown ``user:`` name, repeats the same validated load.
Trust was given for those bytes: a file that changed since is refused, not loaded.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from ..errors import DSGError, ModelError
from ..fsutil import atomic_write_bytes, cache_dir
from .registry import USER_PREFIX, ModelSpec


def store_dir() -> Path:
    return cache_dir() / "user_models"


def _record_path(name: str) -> Path:
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", name[len(USER_PREFIX):])
    return store_dir() / f"{stem}.json"


def _digest(path: str | None) -> str | None:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path and Path(path).is_file() else None


def _files(source: dict) -> dict[str, str | None]:
    """The files a load reads (the model file, a definition's .py file), by absolute path."""
    files = [source.get("path")]
    definition = source.get("definition") or ""
    where = definition.rpartition(":")[0]
    if where.endswith(".py"):
        files.append(where)
    return {f: _digest(f) for f in files if f}


def remember(user) -> Path:
    """Write the record of a loaded :class:`~dsg_core.models.user.UserModel` (replacing an older one)."""
    record = {"name": user.name, "source": user.source, "card": user.card.to_dict(),
              "files": _files(user.source)}
    path = _record_path(user.name)
    atomic_write_bytes(path, json.dumps(record, indent=1).encode())
    return path


def recall(name: str) -> ModelSpec | None:
    """Register ``name`` again from its record; None when there is none. ModelError when the record's
    files are gone or changed, or the load now fails."""
    path = _record_path(name)
    if not name.startswith(USER_PREFIX) or not path.is_file():
        return None
    from .card import ModelCard
    from .user import load_user
    try:
        record = json.loads(path.read_text())
        source, card = record["source"], record["card"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ModelError(f"the record of {name} ({path}) is unreadable: load the model again from its file") from None
    for file, digest in record.get("files", {}).items():
        if _digest(file) != digest:
            state = "changed" if Path(file).is_file() else "gone"
            raise ModelError(f"{name} was loaded from {file}, which is {state} since: load it again from its file "
                             "(and its card)")
    try:
        card = ModelCard.from_dict(card, source=f"the record of {name}")
        user = load_user(source.get("path"), like=source.get("like"), card=card, definition=source.get("definition"),
                         trust_program=bool(source.get("trust")), name=name)
    except DSGError as exc:
        raise ModelError(f"{name} cannot be loaded again from its record: {exc}") from None
    return user.register()


def fingerprint(name: str) -> str | None:
    """A short hash of a remembered model's files: caches keyed by model name (``compare --cache``)
    add it, so sets generated for an earlier version of the file are not reused."""
    path = _record_path(name)
    if not name.startswith(USER_PREFIX) or not path.is_file():
        return None
    try:
        files = json.loads(path.read_text()).get("files", {})
    except (OSError, ValueError, AttributeError):
        return None
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]
