"""Atomic file writes: the project's one writer for caches, checkpoints, results, downloads and demo assets.

Standard library only (usable before Dassl or torch are installed, e.g. by the FDRD downloader). A
reader never sees half a file: the data goes to a hidden temp file in the same folder, is fsynced, then
``os.replace``d over the target. A write killed before the rename (SIGKILL, power loss) leaves only its
temp file, named ``.<target>.<host>-<pid>.<random>.tmp``; the next write of the same target, or
:func:`remove_orphan_temp_files`, deletes the temp files of processes that no longer run (and any older
than a day, e.g. from another host of a cluster), never those of a concurrent writer.
"""
from __future__ import annotations

import os
import os.path as osp
import re
import socket
import tempfile
import time
from typing import IO, Any, Callable

ORPHAN_MAX_AGE_S = 24 * 3600  # a temp file this old is an orphan whatever wrote it


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname()) or "host"


def atomic_write(filepath: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> None:
    """Run ``write`` on a temp file in the same folder, fsync, then os.replace, so readers never see half a file.

    ``write`` streams into the file (a download, a large list). On any error the temp file is removed and the
    previous content of ``filepath``, if any, is untouched.
    """
    filepath = os.fspath(filepath)
    folder = osp.dirname(osp.abspath(filepath))
    os.makedirs(folder, exist_ok=True)
    remove_orphan_temp_files(filepath)
    fd, tmp_path = tempfile.mkstemp(prefix=f".{osp.basename(filepath)}.{_host()}-{os.getpid()}.", suffix=".tmp",
                                    dir=folder)
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


def atomic_write_bytes(filepath: str | os.PathLike, payload: bytes) -> None:
    atomic_write(filepath, lambda f: f.write(payload))


def atomic_write_text(filepath: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(filepath, text.encode("utf-8"))


def remove_orphan_temp_files(filepath: str | os.PathLike) -> list[str]:
    """Delete the temp files that interrupted writes of ``filepath`` left behind; returns their paths."""
    filepath = os.fspath(filepath)
    folder, name = osp.split(osp.abspath(filepath))
    try:
        entries = os.listdir(folder)
    except OSError:
        return []
    pattern = re.compile(re.escape(f".{name}.") + r"(?:(?P<host>\w+)-(?P<pid>\d+)\.)?[^/]*\.tmp$")
    removed = []
    for entry in entries:
        match = pattern.fullmatch(entry)
        if match is None:
            continue
        path = osp.join(folder, entry)
        try:
            age = time.time() - os.stat(path).st_mtime
        except OSError:
            continue
        same_host_dead = match["host"] == _host() and not _alive(int(match["pid"]))
        if same_host_dead or age > ORPHAN_MAX_AGE_S:
            try:
                os.unlink(path)
                removed.append(path)
            except OSError:
                pass
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


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
