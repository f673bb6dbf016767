"""ImageNet-1k, read from wnid folders and CoOp's classnames.txt; the val set is also the test set."""
from __future__ import annotations

import os
import os.path as osp
from typing import Any, Sequence

from dassl.data.datasets import DATASET_REGISTRY, Datum, DatasetBase
from dassl.utils import listdir_nohidden

from trainers.errors import DataError

from .coop_split import (
    FEWSHOT_DIRNAME,
    apply_coop_protocol,
    check_classes,
    content_key,
    dataset_root,
    load_item_lists,
    log,
    require_path,
    save_item_lists,
    split_file_how,
)


def read_imagenet_classnames(filepath: str) -> dict[str, str]:
    """``<wnid> <class name>`` lines -> {wnid: class name}, in file order (= ImageNet label order)."""
    classnames: dict[str, str] = {}
    with open(filepath, "r", encoding="utf-8") as f:
        for line in f:
            wnid, _, classname = line.strip().partition(" ")
            if wnid:
                classnames[wnid] = classname
    return classnames


def subfolders(folder: str) -> list[str]:
    """Sorted names of the class folders in ``folder`` (files such as README.txt are skipped)."""
    return sorted(entry.name for entry in os.scandir(folder) if entry.is_dir() and not entry.name.startswith("."))


def read_class_folders(image_dir: str, classes: Sequence[tuple[str, str]], how: str) -> list[Datum]:
    """Items of ``image_dir/<folder>/*`` for each (folder, class name); the label is the position in ``classes``."""
    items = []
    for label, (folder, classname) in enumerate(classes):
        class_dir = require_path(osp.join(image_dir, folder), f"class folder of {classname!r}", how)
        items.extend(
            Datum(impath=osp.join(class_dir, name), label=label, classname=classname)
            for name in listdir_nohidden(class_dir, sort=True)
        )
    return items


def name_wnid_folders(folders: Sequence[str], classnames: dict[str, str], source: str) -> list[tuple[str, str]]:
    """Pair each wnid folder with its class name; an unknown wnid is an error naming the folder."""
    unknown = [folder for folder in folders if folder not in classnames]
    if unknown:
        raise DataError(f"{source}: folders {unknown[:5]} are not wnids listed in classnames.txt")
    return [(folder, classnames[folder]) for folder in folders]


@DATASET_REGISTRY.register()
class ImageNet(DatasetBase):
    """Labels follow the sorted wnid folders of images/train (as CoOp); the parsed lists are cached in
    ``preprocessed.json`` because listing 1.28M files takes minutes, keyed by classnames.txt and the
    modification times of the class folders (adding or removing an image changes its folder's). NUM_SHOTS
    applies to train only."""

    dataset_dir = "imagenet"
    # ImageNet has no CoOp split file: its class list plays that role (and comes from CoOp's Google Drive)
    split_file = "classnames.txt"
    split_file_gdrive_id = "1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF"
    prompt_template = "a photo of a {}."
    images_how = (
        "extract the ILSVRC-2012 train and val sets to {root}/imagenet/images/{{train,val}}, each with 1,000 "
        "wnid folders such as n01440764 (val sorted into wnid folders too); CoOp DATASETS.md, ImageNet"
    )

    def __init__(self, cfg: Any):
        root = dataset_root(cfg)
        how = self.images_how.format(root=root)
        self.dataset_dir = require_path(osp.join(root, type(self).dataset_dir), "ImageNet dataset folder", how)
        self.image_dir = osp.join(self.dataset_dir, "images")
        self.preprocessed = osp.join(self.dataset_dir, "preprocessed.json")
        self.split_fewshot_dir = osp.join(self.dataset_dir, FEWSHOT_DIRNAME)
        classnames_file = require_path(
            osp.join(self.dataset_dir, self.split_file),
            f"ImageNet {self.split_file}",
            split_file_how("ImageNet", self.dataset_dir),
        )
        key = content_key(classnames_file, extra=self.folder_stamps(how))
        cached = load_item_lists(self.preprocessed, key, self.image_dir, keys=("train", "test"))
        if cached is None:
            cached = self.read_folders(classnames_file, how)
            save_item_lists(self.preprocessed, key, self.image_dir, cached)
            log(f"Saved the image lists to {self.preprocessed}")
        train, test = cached["train"], cached["test"]

        train, _, test = apply_coop_protocol(cfg, self.split_fewshot_dir, train, [], test, key)
        super().__init__(train_x=train, val=test, test=test)

    def folder_stamps(self, how: str) -> dict[str, list]:
        """(name, mtime) of every class folder of images/train and images/val: cheap to list, and changed
        whenever an image is added to or removed from the folder."""
        stamps = {}
        for split in ("train", "val"):
            split_dir = require_path(osp.join(self.image_dir, split), f"ImageNet {split} folder", how)
            stamps[split] = [[entry.name, entry.stat().st_mtime_ns] for entry in sorted(os.scandir(split_dir),
                             key=lambda e: e.name) if entry.is_dir() and not entry.name.startswith(".")]
        return stamps

    def read_folders(self, classnames_file: str, how: str) -> dict[str, list[Datum]]:
        """Read images/train and images/val; both must hold the same wnid folders so labels agree."""
        classnames = read_imagenet_classnames(classnames_file)
        folders = {}
        for split in ("train", "val"):
            split_dir = require_path(osp.join(self.image_dir, split), f"ImageNet {split} folder", how)
            folders[split] = subfolders(split_dir)
        if folders["train"] != folders["val"]:
            raise DataError(
                f"{self.image_dir}: train has {len(folders['train'])} wnid folders and val {len(folders['val'])}, "
                "or they differ; val must be sorted into the same wnid folders as train"
            )
        classes = name_wnid_folders(folders["train"], classnames, self.image_dir)
        data = {
            "train": read_class_folders(osp.join(self.image_dir, "train"), classes, how),
            "test": read_class_folders(osp.join(self.image_dir, "val"), classes, how),
        }
        check_classes(data, self.image_dir)
        return data
