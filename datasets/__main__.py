"""``python -m datasets DATASET DST``: download a dataset's CoOp split file (see coop_split.download_split)."""
from __future__ import annotations

import sys

from .coop_split import GDRIVE_FILES, download_split


def main(argv: list[str]) -> int:
    """Lives here rather than in coop_split so ``-m`` does not run an already-imported module twice."""
    if len(argv) != 2:
        print(f"usage: python -m datasets DATASET DST   (DATASET in {sorted(GDRIVE_FILES)}; DST a file or folder)")
        return 2
    download_split(argv[0], argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
