"""Atomic file writes with no dependency beyond the standard library (usable before Dassl is installed)."""
from __future__ import annotations

import os
import os.path as osp
import tempfile
from typing import IO, Any, Callable


def atomic_write(filepath: str, write: Callable[[IO[bytes]], Any]) -> None:
    """Run ``write`` on a temp file in the same folder, fsync, then os.replace, so readers never see half a file.

    ``write`` streams into the file (ImageNet's preprocessed.pkl is too big to build as one bytes object).
    """
    folder = osp.dirname(osp.abspath(filepath))
    os.makedirs(folder, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(prefix=f".{osp.basename(filepath)}.", suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would hide shared data roots from colleagues
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, filepath)
    except BaseException:
        if osp.exists(tmp_path):
            os.unlink(tmp_path)
        raise
    _fsync_dir(folder)


def atomic_write_bytes(filepath: str, payload: bytes) -> None:
    atomic_write(filepath, lambda f: f.write(payload))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: str) -> None:
    """Persist the rename itself (POSIX); a no-op where directories cannot be opened."""
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
