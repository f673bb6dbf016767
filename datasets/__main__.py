"""``python -m datasets DATASET DST``: download a dataset's CoOp split file (see coop_split.download_split)."""
from __future__ import annotations

import sys

from trainers.errors import EXIT_INTERRUPTED, EXIT_USER_ERROR, UserError

from .coop_split import download_split, gdrive_files


def main(argv: list[str]) -> int:
    """Lives here rather than in coop_split so ``-m`` does not run an already-imported module twice."""
    if len(argv) != 2:
        print(f"usage: python -m datasets DATASET DST   (DATASET in {sorted(gdrive_files())}; DST a file or folder)")
        return EXIT_USER_ERROR
    try:
        download_split(argv[0], argv[1])
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted; nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
