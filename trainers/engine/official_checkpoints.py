"""Checkpoints written by the official code of a method (CoOp, MaPLe, CLIP-Adapter, fanrena/DPT's VPT/VLP/DPT).

Those trainers save through upstream Dassl: ``<output>/<registered name>/model.pth.tar-<epoch>`` (and
``model-best.pth.tar``), a ``checkpoint`` file naming the latest, each file a pickle of
``{"state_dict", "epoch", "optimizer", "scheduler", "val_result"}``. The folder names and state-dict keys are the
official modules' own; each trainer describes how they map onto ours with an :class:`OfficialLayout`, and
:func:`import_official` writes them in our layout, ready for ``--eval-only --model-dir``.

Reading is safe without trusting the file: Dassl pickles the LR scheduler's successor object (with its optimizer)
inside ``scheduler``, which ``torch.load(weights_only=True)`` refuses. :func:`read_official_checkpoint` unpickles
with a restricted ``find_class`` (the approach of the ``pickle`` documentation, "Restricting Globals"): tensors
and plain containers are rebuilt, every other object becomes an inert placeholder, and only ``state_dict`` and
``epoch`` are kept.
"""
from __future__ import annotations

import pickle
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import CheckpointError
from ..serialization import atomic_torch_save
from .checkpoint import write_commit

__all__ = ["CheckpointError", "OfficialLayout", "ConvertedCheckpoint", "read_official_checkpoint",
           "official_model_file", "import_official", "take", "as_fp32"]

LATEST_FILE = "checkpoint"  # Dassl's marker naming the latest model file of a folder
BEST_FILE = "model-best.pth.tar"

StateDicts = dict[str, dict[str, torch.Tensor]]


@dataclass
class ConvertedCheckpoint:
    """Our folders' state dicts, the config overrides the weights imply, and notes for the user."""

    states: StateDicts
    overrides: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class OfficialLayout:
    """How one method's official checkpoints look and how they become ours.

    ``name`` is the ``--from`` name; ``folders`` the official trainer's registered model names (its checkpoint
    folders); ``convert`` maps ``{official folder: state dict}`` to a :class:`ConvertedCheckpoint`."""

    name: str
    source: str
    folders: tuple[str, ...]
    convert: Callable[[StateDicts], ConvertedCheckpoint]


# ---- reading ---------------------------------------------------------------------------------------------------

class _Inert:
    """Stands in for any pickled object that is not a tensor or a plain container: runs no code, keeps nothing."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass

    def __setitem__(self, key, value):
        pass

    def append(self, value):
        pass

    def extend(self, values):
        pass


_TENSOR_GLOBALS = {
    ("torch._utils", "_rebuild_tensor"), ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor_v3"),
    ("torch._utils", "_rebuild_parameter"), ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch._tensor", "_rebuild_from_type_v2"), ("torch", "Size"), ("torch", "Tensor"),
    ("torch.nn.parameter", "Parameter"),
    ("collections", "OrderedDict"), ("collections", "defaultdict"),
    ("builtins", "dict"), ("builtins", "list"), ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "tuple"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _TENSOR_GLOBALS:
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        return _Inert


_restricted_pickle = types.ModuleType("restricted_pickle")
_restricted_pickle.Unpickler = _RestrictedUnpickler
_restricted_pickle.load = lambda file, **kwargs: _RestrictedUnpickler(file, **kwargs).load()


def read_official_checkpoint(path: Path) -> dict[str, Any]:
    """``{"state_dict": {key: tensor}, "epoch": int}`` of an upstream Dassl checkpoint file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No checkpoint at {path}.")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=False, pickle_module=_restricted_pickle)
    except Exception as err:  # corrupt or foreign files fail in many ways
        raise CheckpointError(f"Cannot read {path} as a Dassl checkpoint ({type(err).__name__}: {err}).") from err
    state = obj.get("state_dict") if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} has no state_dict of tensors; is it a checkpoint of a Dassl trainer?")
    epoch = obj.get("epoch")
    return {"state_dict": {k.removeprefix("module."): v for k, v in state.items()},
            "epoch": epoch if isinstance(epoch, int) else None}


def official_model_file(folder: Path, epoch: int | str | None) -> Path:
    """``model.pth.tar-<epoch>``, ``model-best.pth.tar`` for ``"best"``, or (None) the file Dassl marked latest."""
    folder = Path(folder)
    if epoch == "best":
        return folder / BEST_FILE
    if epoch is not None:
        return folder / f"model.pth.tar-{epoch}"
    marker = folder / LATEST_FILE
    name = marker.read_text().strip().splitlines()[0] if marker.is_file() and marker.read_text().strip() else ""
    if not name:
        raise CheckpointError(f"{folder} has no '{LATEST_FILE}' file naming its latest model: pass --epoch N "
                              f"(the N of model.pth.tar-N) or --epoch best.")
    return folder / name


# ---- converting --------------------------------------------------------------------------------------------------

def take(state: dict[str, torch.Tensor], key: str, where: str, ndim: int | tuple[int, ...]) -> torch.Tensor:
    """``state[key]`` with the expected number of dimensions, or a CheckpointError naming what is there."""
    if key not in state:
        raise CheckpointError(f"{where} has no '{key}' (keys: {sorted(state)[:8]}); is it the right --from?")
    tensor = state[key]
    if tensor.dim() not in ((ndim,) if isinstance(ndim, int) else ndim):
        raise CheckpointError(f"{where}: '{key}' has shape {tuple(tensor.shape)}, expected {ndim} dimensions.")
    return tensor


def as_fp32(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our learnable parameters are fp32 master weights; official ones are often fp16."""
    return {k: v.detach().to(torch.float32).contiguous() for k, v in state.items()}


def import_official(layout: OfficialLayout, src: Path, dst: Path, epoch: int | str | None = None,
                    trainer: str = "") -> tuple[ConvertedCheckpoint, str]:
    """Read ``src`` (an official run's output folder), write our layout into ``dst`` (one file per module, and,
    given our ``trainer``'s name, the commit record that lets --eval-only check it); returns the conversion and
    the model file name written (``--load-epoch`` takes its number)."""
    src, dst = Path(src), Path(dst)
    missing = [name for name in layout.folders if not (src / name).is_dir()]
    if missing:
        raise CheckpointError(f"{src} is not the output folder of an official {layout.source} run: it lacks "
                              f"{', '.join(repr(m) for m in missing)} (expected folders: {', '.join(layout.folders)}).")
    states, epochs, filename = {}, set(), None
    for name in layout.folders:
        path = official_model_file(src / name, epoch)
        ckpt = read_official_checkpoint(path)
        states[name] = ckpt["state_dict"]
        epochs.add(ckpt["epoch"])
        filename = filename or path.name
    if len(epochs) > 1:
        raise CheckpointError(f"The folders of {src} hold different epochs {sorted(epochs, key=str)}: pass --epoch.")
    converted = layout.convert(states)
    stored_epoch = epochs.pop()
    if stored_epoch is None:  # not an int in the file: the number in the file name, else 0
        stored_epoch = int(filename.rsplit("-", 1)[1]) if filename.rsplit("-", 1)[-1].isdigit() else 0
    files = {}
    for name, state in converted.states.items():
        files[name] = dst / name / filename
        files[name].parent.mkdir(parents=True, exist_ok=True)
        atomic_torch_save({"state_dict": state, "epoch": stored_epoch, "optimizer": None, "scheduler": None,
                           "val_result": None, "imported_from": f"{layout.source}: {src}"}, files[name])
    if trainer:
        write_commit(dst, int(stored_epoch), trainer, files)
    return converted, filename
