"""Small file helpers of the demo builder: canonical JSON bytes, content hashes, tolerant reads.

Writes go through the project's one atomic writer (``trainers.atomic_io``, ``trainers.serialization``): an
interrupted build never leaves a half-written JSON or checkpoint that a later run would take for a finished one.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def json_bytes(payload: Any) -> bytes:
    """Canonical serialisation, so equal payloads give byte-identical files (needed for determinism)."""
    return (json.dumps(payload, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_json(path: Path) -> Any | None:
    """The parsed file, or None when it is missing or unreadable (treated as "not built")."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
