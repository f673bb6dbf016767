"""Atomic file writes for the demo builder.

An interrupted build must never leave a half-written JSON or checkpoint that a later run would take
for a finished one, so every artefact is written to a temporary file in the same directory and then
moved into place with ``os.replace`` (atomic on POSIX within one filesystem).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from trainers.atomic_io import atomic_write


def json_bytes(payload: Any) -> bytes:
    """Canonical serialisation, so equal payloads give byte-identical files (needed for determinism)."""
    return (json.dumps(payload, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(str(path), lambda f: f.write(data))


def atomic_write_json(path: Path, payload: Any) -> None:
    atomic_write_bytes(path, json_bytes(payload))


def atomic_torch_save(path: Path, obj: Any) -> None:
    import torch

    atomic_write(str(path), lambda f: torch.save(obj, f))


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_json(path: Path) -> Any | None:
    """The parsed file, or None when it is missing or unreadable (treated as "not built")."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
