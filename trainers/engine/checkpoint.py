"""Checkpoints as one atomic unit, loadable with ``torch.load(weights_only=True)``.

Layout of an output folder after epoch E (Dassl's per-module files, so CoOp-style ``--model-dir`` /
``--load-epoch`` work unchanged, plus one commit record)::

    <module>/model.pth.tar-E         per learnable module: state_dict, optimizer, scheduler, epoch, val_result
    trainer_state/model.pth.tar-E    what the whole run shares: torch/numpy/python/CUDA RNG states, AMP scaler,
                                     best val result, the trainer-owned state (CLIPTrainer.TRAINER_STATE)
    last_checkpoint.json             the commit: epoch, trainer, and every file above with its sha256

The files of epoch E are written first (each atomically), the commit record last: a run killed at any point
resumes from the last committed epoch, never from a mix of epochs. A commit record that names a missing file,
a file whose content changed, or another trainer's modules is an error, not "no checkpoint".
"""
from __future__ import annotations

import ast
import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic_io import atomic_write_text
from ..errors import CheckpointError
from ..serialization import load_torch_file

COMMIT_FILE = "last_checkpoint.json"
STATE_DIR = "trainer_state"
LEGACY_MARKER = "checkpoint"  # Dassl's per-module "latest" marker (outputs written before the commit record)
FORMAT = 1


def epoch_filename(epoch: int) -> str:
    """Dassl's name for the checkpoint after ``epoch`` completed epochs (1-based)."""
    return f"model.pth.tar-{epoch}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# ---- RNG states ---------------------------------------------------------------------------------
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
    torch.set_rng_state(state["torch"])
    pos, has_gauss, cached = state["numpy_rest"]
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(ast.literal_eval(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def capture_state(obj: Any) -> dict[str, Any]:
    """The state of one trainer-owned object, in weights_only-loadable form.

    Random generators (Python ``random.Random``, numpy ``Generator``/``RandomState``, ``torch.Generator``)
    and anything with ``state_dict()`` / ``load_state_dict()``."""
    if isinstance(obj, random.Random):
        return {"kind": "python_random", "state": repr(obj.getstate())}
    if isinstance(obj, np.random.Generator):
        return {"kind": "numpy_generator", "state": json.dumps(obj.bit_generator.state)}
    if isinstance(obj, np.random.RandomState):
        _, keys, pos, has_gauss, cached = obj.get_state()
        return {"kind": "numpy_random_state", "state": [torch.from_numpy(keys.astype(np.int64)), int(pos),
                                                         int(has_gauss), float(cached)]}
    if isinstance(obj, torch.Generator):
        return {"kind": "torch_generator", "state": obj.get_state()}
    if callable(getattr(obj, "state_dict", None)) and callable(getattr(obj, "load_state_dict", None)):
        return {"kind": "state_dict", "state": obj.state_dict()}
    raise TypeError(f"cannot checkpoint a {type(obj).__name__}: give it state_dict()/load_state_dict()")


def restore_state(obj: Any, saved: dict[str, Any]) -> None:
    kind, state = saved["kind"], saved["state"]
    if kind == "python_random":
        obj.setstate(ast.literal_eval(state))
    elif kind == "numpy_generator":
        obj.bit_generator.state = json.loads(state)
    elif kind == "numpy_random_state":
        keys, pos, has_gauss, cached = state
        obj.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    elif kind == "torch_generator":
        obj.set_state(state)
    else:
        obj.load_state_dict(state)


def is_random_generator(obj: Any) -> bool:
    return isinstance(obj, (random.Random, np.random.Generator, np.random.RandomState, torch.Generator))


# ---- files --------------------------------------------------------------------------------------
def load_checkpoint(path: Path, allow_unsafe: bool = False) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No checkpoint at {path}. Check --model-dir and --load-epoch (the files are "
                              f"named model.pth.tar-<epoch>).")
    ckpt = load_torch_file(path, what="checkpoint", error=CheckpointError, allow_unsafe=allow_unsafe,
                           fix="delete it (a resumed run then trains that epoch again) or restore it")
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt and "rng" not in ckpt:
        raise CheckpointError(f"{path} is not a checkpoint of this project or Dassl (found {type(ckpt).__name__} "
                              "without a 'state_dict').")
    return ckpt


@dataclass
class Commit:
    """A committed checkpoint: the completed epoch, the trainer that wrote it, and its files."""
    directory: Path
    epoch: int
    trainer: str
    files: dict[str, Path]  # module name (and STATE_DIR) -> file

    @property
    def modules(self) -> list[str]:
        return [name for name in self.files if name != STATE_DIR]


def write_commit(directory: Path, epoch: int, trainer: str, files: dict[str, Path]) -> None:
    """Record epoch ``epoch`` as the one to resume from: the last, atomic step of a checkpoint."""
    directory = Path(directory)
    record = {
        "format": FORMAT,
        "epoch": epoch,
        "trainer": trainer,
        "files": {name: {"path": path.relative_to(directory).as_posix(), "sha256": sha256_file(path)}
                  for name, path in files.items()},
    }
    atomic_write_text(directory / COMMIT_FILE, json.dumps(record, indent=1) + "\n")


def read_commit(directory: Path, verify: bool = True) -> Commit | None:
    """The committed checkpoint of ``directory``; None when there is none. Raises CheckpointError when the
    record is unreadable or (``verify``) names a missing file or one whose content changed since the commit."""
    directory = Path(directory)
    marker = directory / COMMIT_FILE
    if not marker.is_file():
        return None
    fix = f"restore the files, or delete {marker} (and the checkpoint folders) to train from scratch"
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
        epoch, trainer, entries = int(record["epoch"]), str(record["trainer"]), record["files"]
        files = {name: directory / entry["path"] for name, entry in entries.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise CheckpointError(f"The resume marker {marker} is damaged ({type(err).__name__}: {err}); {fix}.") from None
    if verify:
        for name, path in files.items():
            if not path.is_file():
                raise CheckpointError(f"The resume marker {marker} names {path} (epoch {epoch}), which is missing; "
                                      f"{fix}.")
            if sha256_file(path) != entries[name]["sha256"]:
                raise CheckpointError(f"{path} is not the file the resume marker {marker} committed for epoch "
                                      f"{epoch} (its content changed: copied from another run?); {fix}.")
    return Commit(directory, epoch, trainer, files)


def legacy_commit(directory: Path, names: list[str]) -> Commit | None:
    """Resume point of an output folder written before the commit record (Dassl's per-module markers, the
    RNG states inside each module's file): usable only when every module names the same epoch."""
    directory = Path(directory)
    markers = {name: directory / name / LEGACY_MARKER for name in names}
    present = {name: marker for name, marker in markers.items() if marker.is_file()}
    if not present:
        return None
    files, epochs = {}, {}
    for name, marker in present.items():
        lines = marker.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        path = directory / name / (lines[0].strip() if lines else "")
        if not lines or not path.is_file():
            raise CheckpointError(f"The resume marker {marker} names {path}, which is missing; restore it, or "
                                  f"delete {marker} to train from scratch.")
        epoch = path.name.rsplit("-", 1)[-1]
        if not epoch.isdigit():
            raise CheckpointError(f"The resume marker {marker} names {path.name}, not an epoch checkpoint "
                                  "(model.pth.tar-<epoch>); write the last epoch's file name into it, or delete it.")
        files[name], epochs[name] = path, epoch
    missing = sorted(set(names) - set(present))
    if missing or len(set(epochs.values())) > 1:
        found = ", ".join(f"{name}: epoch {epoch}" for name, epoch in epochs.items())
        raise CheckpointError(
            f"{directory} holds a mixed checkpoint ({found}{'; none for ' + ', '.join(missing) if missing else ''}): "
            "its modules were saved at different epochs by an older version. Delete the checkpoint folders to train "
            "from scratch, or use another --output-dir."
        )
    return Commit(directory, int(next(iter(epochs.values()))), "", files)
