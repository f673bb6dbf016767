"""A disk cache of frozen CLIP image features for evaluation.

Methods whose image path is plain frozen CLIP (zero-shot, CoOp, CLIP-Adapter before its adapter) encode
the same test images identically in every run of a sweep. The cache stores the raw image features of a
whole split, keyed by the backbone file, the test transform, the precision and the list of images (paths,
sizes and modification times), so any change to one of them is a new key rather than a stale hit.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..atomic_io import remove_orphan_temp_files
from ..errors import CheckpointError
from ..serialization import atomic_torch_save, load_torch_file


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")
    return Path(base).expanduser() / "prompt-clip" / "image-features"


def _file_identity(path: str) -> list:
    try:
        stat = os.stat(path)
        return [os.path.abspath(path), stat.st_size, int(stat.st_mtime)]
    except OSError:
        return [path]  # a model name rather than a file


def cache_key(backbone: str, transform: str, precision: str, impaths: Sequence[str]) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps([_file_identity(backbone), transform, precision]).encode())
    for path in impaths:
        digest.update(json.dumps(_file_identity(path)).encode())
    return digest.hexdigest()[:32]


class ImageFeatureCache:
    def __init__(self, directory: str | Path | None):
        self.directory = Path(directory).expanduser() if directory else default_cache_dir()

    def get_or_compute(self, key: str, compute: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, bool]:
        """(features, whether they came from the cache)."""
        path = self.directory / f"{key}.pt"
        if path.is_file():
            remove_orphan_temp_files(path)
            try:
                features = load_torch_file(path, what="feature cache", error=CheckpointError)
                if isinstance(features, torch.Tensor):
                    return features, True
                print(f"Ignoring feature cache {path} (not a tensor); recomputing it")
            except CheckpointError as err:
                print(f"Ignoring unreadable feature cache: {err} Recomputing it.")
        features = compute()
        atomic_torch_save(features, path)
        return features, False
