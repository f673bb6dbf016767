"""Download the published FDRD caption files (and optionally CoOp's split files) into ``$DATA``.

    python -m tools.download_fdrd --root $DATA [--domains pets dtd ...] [--splits] [--timeout 30]

The DCAR authors' repository (github.com/wyf202322/DCAR) published ten caption files, several of them
later deleted from its HEAD; each is fetched from the commit that holds it and checked against its git
blob hash, so a truncated or altered download is never kept. Files already present and intact are
skipped. Every write is atomic. At the end, one line per file that could not be fetched, and why.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

if not __package__:  # started as a file: the imports below need the repository root, as `python -m` gives
    print("error: run this tool from the repository root as a module: python -m tools.download_fdrd ...", file=sys.stderr)
    sys.exit(2)

from trainers.atomic_io import atomic_write

REPOSITORY = "wyf202322/DCAR"
RAW_URL = "https://raw.githubusercontent.com/{repo}/{commit}/{path}"
_EARLY = "52a981ccf5017bd14e41c0b5459fe4bae7011d0c"  # the commit holding the "inter_*" files
_TESTS = "6fa4be2348f5ee4388cf2605f682922db5e5f704"  # the commit holding test/{flower,pets,plane}_test.json


@dataclass(frozen=True)
class CaptionFile:
    name: str  # file name under $DATA/fdrd
    domain: str
    commit: str
    path: str  # path inside the repository at that commit
    blob: str  # git blob id (sha1 of "blob <size>\0" + content)
    size: int


CAPTION_FILES: tuple[CaptionFile, ...] = (
    CaptionFile("inter_caltech-101_train.json", "caltech101", _EARLY, "FDRD/inter_caltech-101_train.json",
                "03966ae8f9c0eddc1521945a12bf30e95c3ead9a", 2161636),
    CaptionFile("inter_caltech-101_test.json", "caltech101", _EARLY, "FDRD/inter_caltech-101_test.json",
                "9b095e9f1add3934e85d5e98e50dde19616aeb85", 917832),
    CaptionFile("inter_car_train.json", "cars", _EARLY, "FDRD/inter_car_train.json",
                "06cfd9380660f8bfbcac430d60de497b90addf1c", 3114911),
    CaptionFile("inter_dtd_train.json", "dtd", _EARLY, "FDRD/inter_dtd_train.json",
                "bde430bc5aee318a91a87b26b8cb99d736ececb2", 1570660),
    CaptionFile("inter_dtd_test.json", "dtd", _EARLY, "FDRD/inter_dtd_test.json",
                "73b980723db326a08d4a6fc2f83bfc7fdda3ed7d", 675225),
    CaptionFile("inter_ucf101_train.json", "ucf101", _EARLY, "FDRD/inter_ucf101_train.json",
                "8bd867df9b19fa9a6e1f382e3180dfe7b5ff8503", 3544377),
    CaptionFile("inter_ucf101_test.json", "ucf101", _EARLY, "FDRD/inter_ucf101_test.json",
                "1181b20f18dbe323597653178c03059277fa0913", 1400718),
    CaptionFile("flower_test.json", "flowers", _TESTS, "FDRD/test/flower_test.json",
                "f259649df71f0ff2e70f8648c8c73ee93ea25f82", 2703130),
    CaptionFile("pets_test.json", "pets", _TESTS, "FDRD/test/pets_test.json",
                "674442947755b4e93eff150f975eab6a539374cf", 3454756),
    CaptionFile("plane_test.json", "aircraft", _TESTS, "FDRD/test/plane_test.json",
                "897a3c2be4357a590cbe77c715f257e9d9d8b6d4", 2564515),
)
NEVER_PUBLISHED = "SUN397 (train/test), Food101 (train/test), StanfordCars test, Flowers/Pets/Aircraft train"


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def fetch_url(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def download_captions(root: Path, domains: set[str] | None = None, timeout: float = 30.0,
                      fetch: Callable[[str, float], bytes] = fetch_url) -> tuple[list[str], list[str], list[str]]:
    """(written, already present, failed with reason) for the caption files of ``domains`` (None: all)."""
    written, present, failed = [], [], []
    for item in CAPTION_FILES:
        if domains and item.domain not in domains:
            continue
        target = root / "fdrd" / item.name
        if target.is_file() and git_blob_id(target.read_bytes()) == item.blob:
            present.append(item.name)
            continue
        url = RAW_URL.format(repo=REPOSITORY, commit=item.commit, path=item.path)
        try:
            data = fetch(url, timeout)
        except Exception as err:  # network errors come in many types; each is reported, none is fatal
            failed.append(f"{item.name}: {type(err).__name__}: {err} ({url})")
            continue
        if git_blob_id(data) != item.blob:
            failed.append(f"{item.name}: content differs from the published file ({len(data):,} bytes, "
                          f"expected {item.size:,}); not kept ({url})")
            continue
        atomic_write(str(target), lambda f, payload=data: f.write(payload))
        written.append(item.name)
    return written, present, failed


def download_splits(root: Path, domains: set[str] | None, timeout: float) -> list[str]:
    from datasets.coop_split import download_split, gdrive_files
    from datasets.fdrd_formats import DOMAINS

    failed = []
    on_drive = gdrive_files()
    # each domain's CoOp dataset, whose split file is the domain's class list (FGVCAircraft has none on Drive)
    for domain, spec in DOMAINS.items():
        key = spec.coop_name
        if key not in on_drive or (domains and domain not in domains):
            continue
        target = root / spec.coop_dir / spec.class_file
        if target.is_file():
            continue
        try:
            download_split(key, str(target), timeout_s=timeout)
        except Exception as err:
            failed.append(f"{spec.class_file} ({key}): {type(err).__name__}: {err}")
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="dataset root ($DATA); captions go to <root>/fdrd")
    parser.add_argument("--domains", nargs="+", help="only these FDRD domains (default: all published)")
    parser.add_argument("--splits", action="store_true", help="also fetch CoOp's split_zhou_*.json files (gdown)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request before giving up")
    args = parser.parse_args(argv)
    root = Path(args.root).expanduser()
    domains = set(args.domains) if args.domains else None

    written, present, failed = download_captions(root, domains, args.timeout)
    if args.splits:
        failed += download_splits(root, domains, args.timeout)
    print(f"FDRD captions in {root / 'fdrd'}: {len(written)} downloaded, {len(present)} already present.")
    print(f"Never published upstream: {NEVER_PUBLISHED}.")
    if failed:
        print(f"Could not fetch {len(failed)} file(s); nothing partial was left behind:")
        for line in failed:
            print(f"  - {line}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
