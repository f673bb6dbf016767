"""Images that cannot be decoded are reported with their file and split, not as a PIL traceback.

Dassl's ``DatasetWrapper`` opens each image when a batch needs it, so a corrupt or 0-byte file surfaces
mid-training or at test time, inside a DataLoader worker, as ``OSError: image file is truncated`` without a
file name. :class:`CheckedDatasetWrapper` names the file and the split; ``DATASET.VERIFY_IMAGES`` decodes
every image once when the dataset is built (:func:`verify_images`) to find them all before training.
"""
from __future__ import annotations

from typing import Iterable, Sequence

from dassl.data.data_manager import DatasetWrapper
from PIL import Image
from tqdm import tqdm

from ..errors import ImageReadError

#: what PIL raises for unreadable files: UnidentifiedImageError and "image file is truncated" are OSErrors;
#: some decoders raise SyntaxError or ValueError on malformed headers
IMAGE_ERRORS = (OSError, SyntaxError, ValueError)
MAX_LISTED = 5


def _fix(paths: Sequence[str]) -> str:
    return (f"replace {'it' if len(paths) == 1 else 'them'} with the original image(s) from the dataset archive, "
            "or remove the entries from the split file")


class CheckedDatasetWrapper(DatasetWrapper):
    """Dassl's wrapper; ``split`` is set by the trainer once the loaders exist."""

    split = "a"

    def __getitem__(self, idx):
        try:
            return super().__getitem__(idx)
        except IMAGE_ERRORS as err:
            path = self.data_source[idx].impath
            raise ImageReadError(f"The {self.split} image {path} cannot be read ({type(err).__name__}: {err}); "
                                 f"{_fix([path])}. DATASET.VERIFY_IMAGES True checks every image before "
                                 "training.") from None


def verify_images(splits: dict[str, Iterable]) -> None:
    """Decode every image of every split; one error listing the unreadable ones (count, first few, split)."""
    bad: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    items = [(split, item.impath) for split, data in splits.items() for item in data]
    for split, path in tqdm(items, desc="verifying images"):
        if path in seen:
            continue
        seen.add(path)
        try:
            with Image.open(path) as image:
                image.convert("RGB")
        except IMAGE_ERRORS as err:
            bad.append((split, path, f"{type(err).__name__}: {err}"))
    if bad:
        listed = "; ".join(f"{path} ({split} split, {why})" for split, path, why in bad[:MAX_LISTED])
        more = f" and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
        raise ImageReadError(f"{len(bad)} of {len(seen)} images cannot be read: {listed}{more}; "
                             f"{_fix([p for _, p, _ in bad])}.")
    print(f"Verified {len(seen):,} images: all readable")
