"""One log per attempt in an output folder, the newest always at ``log_latest.txt``.

Dassl never overwrites a log: the first run in a folder writes ``log.txt``, a re-run (a resume, an
``--eval-only`` re-test) writes ``log.txt-YYYY-MM-DD-HH-MM-SS``, so after a re-run ``log.txt`` belongs to
the *oldest* attempt. We keep Dassl's names (tools/results.py reads them), number the attempts, say in the
log which attempt it is, and point ``log_latest.txt`` at the newest.
"""
from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

LOG_FILE = "log.txt"
LATEST_LOG = "log_latest.txt"
_ATTEMPT_LOG = re.compile(r"^log\.txt-(?P<stamp>\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2})(-(?P<n>\d+))?$")


def attempt_logs(directory: str | os.PathLike) -> list[Path]:
    """The folder's attempt logs, oldest first: ``log.txt``, then the time-stamped ones."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stamped = [(match, path) for path in directory.iterdir() if (match := _ATTEMPT_LOG.match(path.name))]
    stamped.sort(key=lambda item: (item[0]["stamp"], int(item[0]["n"] or 1)))
    first = directory / LOG_FILE
    return ([first] if first.is_file() else []) + [path for _, path in stamped]


def next_log_path(directory: str | os.PathLike) -> Path:
    """Dassl's name for the next attempt's log, made unique (-2, -3 ...) when attempts start within a second."""
    directory = Path(directory)
    if not (directory / LOG_FILE).exists():
        return directory / LOG_FILE
    base = directory / (LOG_FILE + time.strftime("-%Y-%m-%d-%H-%M-%S"))
    path, n = base, 2
    while path.exists():
        path, n = base.with_name(f"{base.name}-{n}"), n + 1
    return path


def point_latest_at(log: Path) -> Path:
    """Make ``log_latest.txt`` beside ``log`` refer to it (relative symlink; hard link where links fail)."""
    latest = log.with_name(LATEST_LOG)
    staging = log.with_name(f".{LATEST_LOG}.{os.getpid()}")
    staging.unlink(missing_ok=True)
    try:
        os.symlink(log.name, staging)
    except OSError:
        os.link(log, staging)
    os.replace(staging, latest)  # atomic: a reader sees the old or the new target, never none
    return latest


def setup_run_log(output_dir: str) -> Path:
    """Start this attempt's log (Dassl's logger tees stdout into it) and say which attempt it is."""
    from dassl.utils import Logger

    directory = Path(output_dir)
    earlier = attempt_logs(directory)
    path = next_log_path(directory)
    # what dassl.utils.setup_logger does, with our file name (it takes log.txt-<time> for a folder)
    sys.stdout = Logger(str(path))
    try:
        point_latest_at(path)
        latest = f"the newest attempt's log is always {LATEST_LOG}"
    except OSError as error:  # a file system without links: this line still names the file
        latest = f"{LATEST_LOG} not updated: {error}"
    note = f"; earlier: {', '.join(p.name for p in earlier)}" if earlier else ""
    print(f"Log of attempt {len(earlier) + 1} in {directory}: {path.name} ({latest}){note}")
    return path
