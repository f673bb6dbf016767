"""Atomic file writes for the demo builder.

An interrupted build must never leave a half-written JSON or checkpoint that a later run would take
for a finished one, so every artefact is written to a temporary file in the same directory and then
moved into place with ``os.replace`` (atomic on POSIX within one filesystem).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Callable


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    # A unique sibling name, opened normally so the file gets the umask's permissions (mkstemp's 0600
    # would make shared data roots unreadable to other users).
    path.parent.mkdir(parents=True, exist_ok=True)
    temp_path = path.with_name(f".{path.name}.{os.getpid()}.{time.time_ns()}.tmp")
    try:
        write(temp_path)
        os.replace(temp_path, path)
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise


def json_bytes(payload: Any) -> bytes:
    """Canonical serialisation, so equal payloads give byte-identical files (needed for determinism)."""
    return (json.dumps(payload, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    _atomic_write(path, lambda temp: temp.write_bytes(data))


def atomic_write_json(path: Path, payload: Any) -> None:
    atomic_write_bytes(path, json_bytes(payload))


def atomic_torch_save(path: Path, obj: Any) -> None:
    import torch

    _atomic_write(path, lambda temp: torch.save(obj, temp))


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_json(path: Path) -> Any | None:
    """The parsed file, or None when it is missing or unreadable (treated as "not built")."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
