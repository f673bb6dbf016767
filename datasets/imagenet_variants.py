"""Test-only ImageNet variants (V2, Sketch, A, R), labelled through ImageNet's classnames.txt.

As in CoOp, each variant's labels are 0..K-1 over its own classes (K = 1000 for V2/Sketch, 200 for A/R),
so a classifier built from ``dataset.classnames`` is K-way; ``dataset.imagenet_labels[label]`` gives the
matching ImageNet-1k label (position of the wnid in classnames.txt) for 1000-way evaluation.
"""
from __future__ import annotations

import os.path as osp
from typing import Any

from dassl.data.datasets import DATASET_REGISTRY, DatasetBase

from .coop_split import DatasetNotFoundError, check_classes, dataset_root, log, require_path
from .imagenet import name_wnid_folders, read_class_folders, read_imagenet_classnames, subfolders


class ImageNetVariant(DatasetBase):
    """Reads ``<dataset_dir>/<image_subdir>/<wnid>/*`` with classnames.txt; subclasses name the folders.

    Evaluation-only, as in CoOp: train_x and test are the whole set, and NUM_SHOTS / SUBSAMPLE_CLASSES do not apply.
    """

    prompt_template = "a photo of a {}."  # CoOp's, for all four variants
    dataset_dir = ""
    image_subdir = ""
    images_how = ""

    def __init__(self, cfg: Any):
        name = type(self).__name__
        root = dataset_root(cfg)
        how = self.images_how.format(root=root)
        self.dataset_dir = require_path(osp.join(root, type(self).dataset_dir), f"{name} dataset folder", how)
        self.image_dir = require_path(osp.join(self.dataset_dir, self.image_subdir), f"{name} image folder", how)
        classnames = read_imagenet_classnames(self.find_classnames_file(root))
        classes = self.list_classes(classnames)
        if not classes:
            raise DatasetNotFoundError(osp.join(self.image_dir, "<wnid>"), f"{name} class folders", how)
        folders, wnids = zip(*classes)
        named = name_wnid_folders(wnids, classnames, self.image_dir)
        imagenet_label = {wnid: label for label, wnid in enumerate(classnames)}
        self.imagenet_labels = [imagenet_label[wnid] for wnid in wnids]
        data = read_class_folders(self.image_dir, [(folder, cname) for folder, (_, cname) in zip(folders, named)], how)
        check_classes({"test": data}, self.image_dir)
        super().__init__(train_x=data, test=data)

    def find_classnames_file(self, root: str) -> str:
        """CoOp expects a copy of ImageNet's classnames.txt in the variant's folder; ImageNet's own is a fallback."""
        own = osp.join(self.dataset_dir, "classnames.txt")
        fallback = osp.join(root, "imagenet", "classnames.txt")
        if not osp.exists(own) and osp.exists(fallback):
            log(f"{own} is missing; using {fallback}")
            return fallback
        return require_path(
            own, f"{type(self).__name__} classnames.txt", f"copy {fallback} there (CoOp DATASETS.md)"
        )

    def list_classes(self, classnames: dict[str, str]) -> list[tuple[str, str]]:
        """(image folder, wnid) per label, in label order: here the sorted wnid folders, as in CoOp."""
        return [(folder, folder) for folder in subfolders(self.image_dir)]


@DATASET_REGISTRY.register()
class ImageNetV2(ImageNetVariant):
    """ImageNetV2 matched-frequency: folders are named by ImageNet label, 0..999."""

    dataset_dir = "imagenetv2"
    image_subdir = "imagenetv2-matched-frequency-format-val"
    images_how = (
        "extract https://s3-us-west-2.amazonaws.com/imagenetv2public/imagenetv2-matched-frequency.tar.gz to "
        "{root}/imagenetv2 (CoOp DATASETS.md, ImageNetV2)"
    )

    def list_classes(self, classnames: dict[str, str]) -> list[tuple[str, str]]:
        return [(str(label), wnid) for label, wnid in enumerate(classnames)]


@DATASET_REGISTRY.register()
class ImageNetSketch(ImageNetVariant):
    """ImageNet-Sketch: 1,000 wnid folders."""

    dataset_dir = "imagenet-sketch"
    image_subdir = "images"
    images_how = (
        "download ImageNet-Sketch (https://github.com/HaohanWang/ImageNet-Sketch) and extract it to "
        "{root}/imagenet-sketch, giving images/<wnid>/ (CoOp DATASETS.md, ImageNet-Sketch)"
    )


@DATASET_REGISTRY.register()
class ImageNetA(ImageNetVariant):
    """ImageNet-A: 200 wnid folders (README.txt beside them is skipped)."""

    dataset_dir = "imagenet-adversarial"
    image_subdir = "imagenet-a"
    images_how = (
        "download ImageNet-A (https://github.com/hendrycks/natural-adv-examples) and extract it to "
        "{root}/imagenet-adversarial, giving imagenet-a/<wnid>/ (CoOp DATASETS.md, ImageNet-A)"
    )


@DATASET_REGISTRY.register()
class ImageNetR(ImageNetVariant):
    """ImageNet-R: 200 wnid folders (README.txt beside them is skipped)."""

    dataset_dir = "imagenet-rendition"
    image_subdir = "imagenet-r"
    images_how = (
        "download ImageNet-R (https://github.com/hendrycks/imagenet-r) and extract it to "
        "{root}/imagenet-rendition, giving imagenet-r/<wnid>/ (CoOp DATASETS.md, ImageNet-R)"
    )
