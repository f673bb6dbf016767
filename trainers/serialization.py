"""Reading and writing torch files safely: the one place that calls ``torch.load`` and ``torch.jit.load``.

Loading is ``weights_only=True`` (tensors and plain containers: nothing in the file can run). Two formats
can only be read by executing code stored in them, so they need an explicit opt-in
(``MODEL.ALLOW_UNSAFE_LOAD True``), and a line in the log says when it happens:
- TorchScript archives (OpenAI's original CLIP ``.pt`` files): ``torch.jit.load``;
- torch files that pickle Python objects (e.g. checkpoints of upstream Dassl/CoOp): ``weights_only=False``.
A file that is not a torch file at all (empty, truncated, random bytes, a plain pickle) is reported as such.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import torch

from .atomic_io import atomic_write
from .errors import UserError

UNSAFE_KEY = "MODEL.ALLOW_UNSAFE_LOAD"
# torch.save's legacy (non-zip) format starts with a pickled magic number: PROTO 2, LONG1 of 10 bytes
_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))


def is_torchscript_archive(path: str | os.PathLike) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("constants.pkl") for name in archive.namelist())


def file_format_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be a torch file (empty, truncated, not torch's format), or None if it may be one."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        return "is empty (0 bytes): probably an interrupted copy or download"
    with open(path, "rb") as f:
        head = f.read(len(_LEGACY_MAGIC))
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if not any(name.endswith("data.pkl") for name in names):
            return "is a zip archive but not a PyTorch file (it has no data.pkl)"
        return None
    if head.startswith(b"PK\x03\x04"):
        return f"is a truncated zip archive ({size:,} bytes, no end of archive): an interrupted copy or download"
    if head == _LEGACY_MAGIC:
        return None
    if head[:1] == b"\x80":
        return "is a plain Python pickle, not a PyTorch file"
    return f"is not a PyTorch file ({size:,} bytes starting with {head[:8]!r}): corrupt, or another kind of file"


def load_torch_file(path: str | os.PathLike, *, what: str, error: type[UserError], allow_unsafe: bool = False,
                    fix: str = "") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with every failure as ``error`` naming the file.

    ``what`` says what the file is ("checkpoint", "CLIP checkpoint"); ``fix`` is appended to the messages
    about unreadable files (e.g. "delete it and re-run to train that epoch again").
    """
    path = Path(path)
    suffix = f"; {fix}" if fix else ""
    problem = file_format_problem(path)
    if problem is not None:
        raise error(f"The {what} {path} {problem}{suffix}.")
    if is_torchscript_archive(path):
        raise error(f"The {what} {path} is a TorchScript archive, which is not a {what} of this project.")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # the unpickler and the zip reader raise many types
        text = str(err)
        if "Weights only load failed" not in text or "Unsupported operand" in text:
            raise error(f"The {what} {path} is corrupt ({type(err).__name__}: {_first_line(text)}){suffix}.") from None
        if not allow_unsafe:
            raise error(
                f"The {what} {path} stores Python objects besides tensors (e.g. written by upstream Dassl/CoOp), "
                f"and loading those can run code from the file. If you trust it, set {UNSAFE_KEY} True."
            ) from None
    print(f"Loading {path} with torch.load(weights_only=False) because {UNSAFE_KEY} is True: this runs any code "
          "stored in the file")
    return torch.load(str(path), map_location="cpu", weights_only=False)


def load_torchscript_state_dict(path: str | os.PathLike, *, what: str, error: type[UserError],
                                allow_unsafe: bool = False) -> dict[str, torch.Tensor]:
    """The state dict of a TorchScript archive; ``torch.jit.load`` runs the archive's code, so only on opt-in."""
    if not allow_unsafe:
        raise error(
            f"The {what} {path} is a TorchScript archive (the format of OpenAI's original .pt files). Reading it "
            f"runs torch.jit.load, which executes code stored in the file. If you trust the file, set {UNSAFE_KEY} "
            "True; or use the same weights as a plain state dict (open_clip_pytorch_model.bin from the Hugging Face "
            "Hub, see README: CLIP weights)."
        )
    print(f"Loading TorchScript archive {path} with torch.jit.load because {UNSAFE_KEY} is True: this runs code "
          "stored in the file")
    try:
        return torch.jit.load(str(path), map_location="cpu").state_dict()
    except Exception as err:
        raise error(f"The {what} {path} is a damaged TorchScript archive ({type(err).__name__}: "
                    f"{_first_line(str(err))}).") from None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:200] if text.strip() else "no details"
