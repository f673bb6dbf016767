"""FGVC-Aircraft: 100 aircraft variants, read from the dataset's own split txt files (CoOp has no json for it)."""
from __future__ import annotations

import os.path as osp
from typing import Any

from dassl.data.datasets import DATASET_REGISTRY, Datum, DatasetBase

from trainers.errors import DataError

from .coop_split import (FEWSHOT_DIRNAME, apply_coop_protocol, check_classes, content_key, dataset_root,
                         require_path)

SPLITS = ("train", "val", "test")


@DATASET_REGISTRY.register()
class FGVCAircraft(DatasetBase):
    """Classes are the lines of ``variants.txt`` (label = line index); ``images_variant_<split>.txt`` lines
    are ``<image id> <variant name>`` with images at ``images/<image id>.jpg``."""

    dataset_dir = "fgvc_aircraft"
    prompt_template = "a photo of a {}, a type of aircraft."
    images_how = (
        "extract https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz, keep "
        "only its data/ folder and move it to {root}/fgvc_aircraft (CoOp DATASETS.md, FGVCAircraft)"
    )

    def __init__(self, cfg: Any):
        root = dataset_root(cfg)
        how = self.images_how.format(root=root)
        self.dataset_dir = require_path(osp.join(root, type(self).dataset_dir), "FGVCAircraft dataset folder", how)
        self.image_dir = require_path(osp.join(self.dataset_dir, "images"), "FGVCAircraft image folder", how)
        self.split_fewshot_dir = osp.join(self.dataset_dir, FEWSHOT_DIRNAME)
        variants_file = require_path(osp.join(self.dataset_dir, "variants.txt"), "FGVCAircraft class list", how)
        with open(variants_file, "r") as f:
            classnames = [line.strip() for line in f if line.strip()]
        label_of = {name: label for label, name in enumerate(classnames)}

        splits = {split: self.read_split_file(split, label_of, how) for split in SPLITS}
        check_classes(splits, osp.join(self.dataset_dir, "images_variant_{train,val,test}.txt"))
        sources = [variants_file] + [osp.join(self.dataset_dir, f"images_variant_{split}.txt") for split in SPLITS]
        train, val, test = apply_coop_protocol(
            cfg, self.split_fewshot_dir, splits["train"], splits["val"], splits["test"], content_key(*sources)
        )
        super().__init__(train_x=train, val=val, test=test)

    def read_split_file(self, split: str, label_of: dict[str, int], how: str) -> list[Datum]:
        """One ``images_variant_<split>.txt``; unknown variants and missing images name the file and line."""
        filepath = require_path(
            osp.join(self.dataset_dir, f"images_variant_{split}.txt"), f"FGVCAircraft {split} split file", how
        )
        items = []
        with open(filepath, "r", encoding="utf-8") as f:
            for line_no, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                image_id, _, classname = line.strip().partition(" ")
                if classname not in label_of:
                    raise DataError(f"{filepath}:{line_no}: variant {classname!r} is not in variants.txt")
                impath = require_path(
                    osp.join(self.image_dir, f"{image_id}.jpg"), f"image listed at {filepath}:{line_no}", how
                )
                items.append(Datum(impath=impath, label=label_of[classname], classname=classname))
        return items
