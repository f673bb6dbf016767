"""Tiny on-disk datasets in CoOp's real folder layouts, so dataset classes are tested on files, not mocks."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from PIL import Image

SPLITS = ("train", "val", "test")


def write_image(path: Path, shade: int = 0) -> Path:
    """An 8x8 JPEG (PNG if the suffix says so); distinct shades keep files distinct."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (shade % 256, 64, 128)).save(path)
    return path


def make_split_dataset(
    root: Path,
    dataset_dir: str,
    image_subdir: str,
    split_file: str,
    classnames: Sequence[str],
    counts: tuple[int, int, int] = (6, 3, 2),
) -> Path:
    """Images at ``<image dir>/<class i>/<split>_<k>.jpg`` plus a split_zhou json with relative paths.

    Returns the image dir (the split's path prefix).
    """
    image_dir = root / dataset_dir / image_subdir if image_subdir else root / dataset_dir
    split: dict[str, list] = {name: [] for name in SPLITS}
    for label, classname in enumerate(classnames):
        for split_name, count in zip(SPLITS, counts):
            for k in range(count):
                rel = f"class_{label:03d}/{split_name}_{k}.jpg"
                write_image(image_dir / rel, shade=label * 16 + k)
                split[split_name].append([rel, label, classname])
    (root / dataset_dir / split_file).write_text(json.dumps(split))
    return image_dir


def make_fgvc_aircraft(root: Path, variants: Sequence[str], counts: tuple[int, int, int] = (6, 3, 2)) -> Path:
    """fgvc_aircraft/{variants.txt, images_variant_<split>.txt, images/<id>.jpg} as in FGVC-Aircraft's data/."""
    folder = root / "fgvc_aircraft"
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "variants.txt").write_text("".join(f"{name}\n" for name in variants))
    image_id = 1000000
    for split_name, count in zip(SPLITS, counts):
        lines = []
        for label, name in enumerate(variants):
            for _ in range(count):
                image_id += 1
                write_image(folder / "images" / f"{image_id}.jpg", shade=label)
                lines.append(f"{image_id} {name}\n")
        (folder / f"images_variant_{split_name}.txt").write_text("".join(lines))
    return folder


def write_classnames(path: Path, classnames: dict[str, str]) -> Path:
    """CoOp's classnames.txt: ``<wnid> <class name>`` per line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{wnid} {name}\n" for wnid, name in classnames.items()))
    return path


def make_imagenet(root: Path, classnames: dict[str, str], n_train: int = 6, n_val: int = 3) -> Path:
    """imagenet/{classnames.txt, images/train/<wnid>/, images/val/<wnid>/}."""
    folder = root / "imagenet"
    write_classnames(folder / "classnames.txt", classnames)
    for label, wnid in enumerate(classnames):
        for split_name, count in (("train", n_train), ("val", n_val)):
            for k in range(count):
                write_image(folder / "images" / split_name / wnid / f"{wnid}_{k}.JPEG", shade=label * 16 + k)
    return folder


def make_imagenet_variant(
    root: Path, dataset_dir: str, image_subdir: str, folders: Sequence[str], classnames: dict[str, str], n: int = 2
) -> Path:
    """A test-only variant: ``<dataset_dir>/<image_subdir>/<folder>/*.png`` plus a classnames.txt copy and a README."""
    folder = root / dataset_dir
    write_classnames(folder / "classnames.txt", classnames)
    for index, name in enumerate(folders):
        for k in range(n):
            write_image(folder / image_subdir / name / f"{k}.png", shade=index * 16 + k)
    (folder / image_subdir / "README.txt").write_text("not a class\n")
    return folder
