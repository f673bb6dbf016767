"""Checkpoints that load with ``torch.load(weights_only=True)``, written atomically.

Same file layout as Dassl (``<output>/<model name>/model.pth.tar-<epoch>`` plus a ``checkpoint`` file
naming the latest), so CoOp-style ``--model-dir/--load-epoch`` and resume work unchanged. We also store
the RNG states so that a resumed run continues exactly as an uninterrupted one.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datasets.atomic_io import atomic_write, atomic_write_bytes

LATEST_FILE = "checkpoint"


class CheckpointError(RuntimeError):
    pass


def atomic_torch_save(obj: Any, path: Path) -> None:
    atomic_write(str(path), lambda f: torch.save(obj, f))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(str(path), text.encode("utf-8"))


def rng_state() -> dict[str, Any]:
    _, keys, pos, has_gauss, cached = np.random.get_state()
    state = {  # tensors and plain Python only, so weights_only loading accepts it
        "torch": torch.get_rng_state(),
        "numpy": torch.from_numpy(keys.astype(np.int64)),
        "numpy_rest": [int(pos), int(has_gauss), float(cached)],
        "python": repr(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    import ast

    torch.set_rng_state(state["torch"])
    pos, has_gauss, cached = state["numpy_rest"]
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(ast.literal_eval(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(state: dict[str, Any], directory: Path, filename: str) -> Path:
    path = Path(directory) / filename
    atomic_torch_save(state, path)
    atomic_write_text(Path(directory) / LATEST_FILE, filename + "\n")
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No checkpoint at {path}. Check --model-dir and --load-epoch (the files are "
                              f"named model.pth.tar-<epoch>).")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:
        if os.environ.get("TRUST_CHECKPOINTS") == "1":
            return torch.load(str(path), map_location="cpu", weights_only=False)
        raise CheckpointError(
            f"{path} holds pickled Python objects and cannot be loaded safely ({type(err).__name__}). It was "
            "probably written by upstream Dassl/CoOp; if you trust the file, set TRUST_CHECKPOINTS=1."
        ) from err


def latest_checkpoint(directory: Path) -> Path | None:
    marker = Path(directory) / LATEST_FILE
    if not marker.is_file():
        return None
    name = marker.read_text().strip().splitlines()[0] if marker.read_text().strip() else ""
    path = Path(directory) / name
    return path if name and path.is_file() else None
