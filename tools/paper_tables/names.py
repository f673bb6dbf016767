"""The papers' names for methods and datasets, and their orders: one place, so a table and a plot never disagree."""
from __future__ import annotations

import re
from typing import Iterable, Sequence

from tools.results import GroupSummary

# Trainer name (normalised: lower case, letters and digits only) -> method name as the papers print it.
METHOD_NAMES: dict[str, str] = {
    "zeroshotclip": "CLIP",
    "zeroshotclip2": "CLIP",
    "zsclip": "CLIP",
    "clip": "CLIP",
    "coop": "CoOp",
    "mycoop": "CoOp",  # the name DPT's repository registers its CoOp baseline under
    "cocoop": "CoCoOp",
    "clipadapter": "CLIP-Adapter",
    "maple": "MaPLe",
    "vpt": "VPT",
    "vlp": "VLP",
    "dpt": "DPT",
    "dcar": "DCAR",
    "filip": "FILIP",
    "alip": "ALIP",
    "fineclip": "FineCLIP",
}
ZERO_SHOT_METHODS = frozenset({"CLIP"})  # trained on nothing: one result serves every shot count

DCAR_METHOD_ORDER = ("CLIP", "CoOp", "CLIP-Adapter", "MaPLe", "FILIP", "ALIP", "FineCLIP", "DCAR")
DPT_METHOD_ORDER = ("CLIP", "CoOp", "CoCoOp", "CLIP-Adapter", "VPT", "MaPLe", "VLP", "DPT")

# Dataset alias (normalised; FDRD domain keys, CoOp config names, Dassl class names) -> display name.
DATASET_NAMES: dict[str, str] = {
    "caltech101": "Caltech101",
    "caltech": "Caltech101",
    "oxfordpets": "OxfordPets",
    "pets": "OxfordPets",
    "stanfordcars": "StanfordCars",
    "cars": "StanfordCars",
    "car": "StanfordCars",
    "oxfordflowers": "Flowers102",
    "flowers102": "Flowers102",
    "flowers": "Flowers102",
    "flower": "Flowers102",
    "food101": "Food101",
    "food": "Food101",
    "fgvcaircraft": "FGVCAircraft",
    "aircraft": "FGVCAircraft",
    "plane": "FGVCAircraft",
    "sun397": "SUN397",
    "dtd": "DTD",
    "describabletextures": "DTD",
    "ucf101": "UCF101",
    "eurosat": "EuroSAT",
    "imagenet": "ImageNet",
    "imagenetv2": "ImageNetV2",
    "imagenetsketch": "ImageNet-Sketch",
    "imageneta": "ImageNet-A",
    "imagenetr": "ImageNet-R",
}
FDRD_DATASETS = (
    "Caltech101", "OxfordPets", "StanfordCars", "Flowers102", "Food101", "FGVCAircraft", "SUN397", "DTD", "UCF101",
)
FEWSHOT_DATASETS = (
    "ImageNet", "Caltech101", "OxfordPets", "StanfordCars", "Flowers102", "Food101", "FGVCAircraft", "SUN397", "DTD",
    "EuroSAT", "UCF101",
)
#: domain generalisation: the source, then the four shifted test sets (CoOp's and MaPLe's order)
IMAGENET_VARIANTS = ("ImageNet", "ImageNetV2", "ImageNet-Sketch", "ImageNet-A", "ImageNet-R")
RECALL_KS = (1, 5, 10)
DIRECTIONS = ("i2t", "t2i")
PAPER_AVERAGE_LABEL = "AVG"  # the DCAR table's label for the mean over domains


def normalise(name: str) -> str:
    """Lower case, letters and digits only: ``ViT-B/32``, ``vit_b32`` -> ``vitb32``."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def method_name(trainer: str) -> str:
    """The paper's name for a trainer (``ZeroshotCLIP`` -> ``CLIP``); unknown trainers keep their own name."""
    return METHOD_NAMES.get(normalise(trainer), trainer)


def dataset_name(name: str) -> str:
    """Display name of a dataset or FDRD domain (``fdrd_pets``, ``pets``, ``oxford_pets`` -> ``OxfordPets``)."""
    key = normalise(name)
    if key.startswith("fdrd") and len(key) > len("fdrd"):
        key = key[len("fdrd") :]
    return DATASET_NAMES.get(key, name)


def summary_dataset(summary: GroupSummary) -> str | None:
    """A group's dataset display name: the FDRD domain when there is one, else the dataset."""
    raw = summary.domain or summary.dataset
    return dataset_name(raw) if raw else None


def ordered(names: Iterable[str], order: Sequence[str]) -> list[str]:
    """``names`` in the paper's order, unknown ones after it alphabetically."""
    names = set(names)
    return [n for n in order if n in names] + sorted(names - set(order))
