"""One run per output folder: a lock file that a second run refuses, and that a crash cannot leave stuck.

The lock is an ``flock`` on ``<output>/.run.lock``: the kernel drops it when the holding process ends in any
way (exit, exception, SIGKILL, OOM kill), so a crashed run never blocks the next one; the file itself only
tells a refused run who holds the lock. Checks that the folder is a usable, writable folder come first, so a
wrong ``--output-dir`` fails before any data is read.
"""
from __future__ import annotations

import errno
import os
import socket
import sys
import time
from pathlib import Path

from ..errors import OutputDirError

LOCK_FILE = ".run.lock"

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; runs are not protected from each other there
    fcntl = None


class OutputDirLock:
    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.path = self.directory / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> "OutputDirLock":
        directory = self.directory
        if directory.exists() and not directory.is_dir():
            raise OutputDirError(f"--output-dir {directory} is a file, not a folder; choose another --output-dir.")
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as err:
            raise OutputDirError(f"Cannot write into --output-dir {directory} ({err.strerror or err}): make it "
                                 "writable or choose another --output-dir.") from None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                os.close(fd)
                if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                raise OutputDirError(f"Another run is writing into {directory} ({self._holder()}): wait for it to "
                                     "finish or choose another --output-dir. (A run that crashed releases the lock "
                                     "by itself.)") from None
        holder = f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}: " \
                 f"{' '.join(sys.argv)}\n"
        os.ftruncate(fd, 0)
        os.write(fd, holder.encode("utf-8", errors="replace"))
        self._fd = fd
        return self

    def _holder(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8", errors="replace").strip() or "holder unknown"
        except OSError:
            return "holder unknown"

    def release(self) -> None:
        """Empty the file and drop the lock (the file stays: deleting it would let two runs lock two files)."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        except OSError:
            pass
        os.close(self._fd)  # closing drops the flock
        self._fd = None

    def __enter__(self) -> "OutputDirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
