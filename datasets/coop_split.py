"""The one shared module for CoOp-style datasets: split files, few-shot caches, base/new classes.

Every dataset in this package (and the FDRD datasets) goes through these helpers so that
the same ``split_zhou_*.json`` file, ``NUM_SHOTS`` and ``SEED`` give the same images as in
CoOp (KaiyangZhou/CoOp), and so that a killed run never leaves a half-written file behind.
"""
from __future__ import annotations

import copy
import inspect
import json
import math
import os
import os.path as osp
import pickle
import random
import re
import shutil
import tempfile
import threading
from collections import defaultdict
from typing import Any, Callable, Mapping, Sequence

import gdown
from dassl.data.datasets import Datum, DatasetBase

from .atomic_io import atomic_write

SPLIT_KEYS = ("train", "val", "test")
SUBSAMPLE_CHOICES = ("all", "base", "new")
FEWSHOT_DIRNAME = "split_fewshot"
MAX_VAL_SHOTS = 4  # CoOp caps the few-shot validation set at 4 images per class.
PATH_CHECKS_PER_LIST = 100  # cached image paths probed per list to notice a moved DATASET.ROOT

COOP_DATASETS_MD = "https://github.com/KaiyangZhou/CoOp/blob/main/DATASETS.md"

# Google-Drive files linked from CoOp's DATASETS.md (commit 0f24bd6): dataset -> (file name, id).
# ImageNet has no split file; its class list (classnames.txt) plays that role.
GDRIVE_FILES: dict[str, tuple[str, str]] = {
    "ImageNet": ("classnames.txt", "1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF"),
    "Caltech101": ("split_zhou_Caltech101.json", "1hyarUivQE36mY6jSomru6Fjd-JzwcCzN"),
    "OxfordPets": ("split_zhou_OxfordPets.json", "1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs"),
    "StanfordCars": ("split_zhou_StanfordCars.json", "1ObCFbaAgVu0I-k_Au-gIUcefirdAuizT"),
    "OxfordFlowers": ("split_zhou_OxfordFlowers.json", "1Pp0sRXzZFZq15zVOzKjKBu4A9i01nozT"),
    "Food101": ("split_zhou_Food101.json", "1QK0tGi096I0Ba6kggatX1ee6dJFIcEJl"),
    "SUN397": ("split_zhou_SUN397.json", "1y2RD81BYuiyvebdN-JymPfyWYcd8_MUq"),
    "DescribableTextures": ("split_zhou_DescribableTextures.json", "1u3_QfB467jqHgNXC00UIzbLZRQCg2S7x"),
    "EuroSAT": ("split_zhou_EuroSAT.json", "1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o"),
    "UCF101": ("split_zhou_UCF101.json", "1I0S0q91hJfsV9Gf4xDIjgDq4AqBNJb1y"),
}


class DatasetNotFoundError(FileNotFoundError):
    """A dataset folder or file is missing; the message says where it was expected and how to get it."""

    def __init__(self, path: str, what: str, how: str):
        self.path = path
        self.what = what
        self.how = how
        super().__init__(f"{what} not found at {path}\n  How to get it: {how}")


class EmptyClassError(ValueError):
    """A class has no images in one split, which would silently shift labels or break few-shot sampling."""


def log(message: str) -> None:
    """Print one line; Dassl's logger tees stdout into the run's log.txt, so this is the run log."""
    print(f"[coop_split] {message}", flush=True)


def require_path(path: str, what: str, how: str) -> str:
    """Return ``path`` if it exists, else raise DatasetNotFoundError naming it, what it is and how to get it."""
    if not osp.exists(path):
        raise DatasetNotFoundError(path, what, how)
    return path


def dataset_root(cfg: Any) -> str:
    """``cfg.DATASET.ROOT`` as an absolute path, as CoOp resolves it (``~`` expanded)."""
    return osp.abspath(osp.expanduser(cfg.DATASET.ROOT))


def split_file_how(dataset_key: str, dataset_dir: str) -> str:
    """How to obtain a dataset's CoOp split file, for DatasetNotFoundError messages."""
    if dataset_key not in GDRIVE_FILES:
        return f"see the {dataset_key} section of CoOp's DATASETS.md ({COOP_DATASETS_MD})"
    filename, file_id = GDRIVE_FILES[dataset_key]
    return (
        f"download {filename} from https://drive.google.com/file/d/{file_id}/view "
        f"(CoOp's DATASETS.md, {dataset_key}) into {dataset_dir}, e.g. "
        f"`python -m datasets {dataset_key} {dataset_dir}`"
    )


# --------------------------------------------------------------------------- atomic files


def check_classes(splits: Mapping[str, Sequence[Datum]], source: str) -> None:
    """Fail loudly when a class has no images in some split, or a label has two class names.

    Dassl derives num_classes from the largest label and CoOp samples few-shot sets per label,
    so a silently empty class would shift the classifier or give a short few-shot set.
    """
    names: dict[int, str] = {}
    for split_name, items in splits.items():
        for item in items:
            known = names.setdefault(item.label, item.classname)
            if known != item.classname:
                raise ValueError(
                    f"{source}: label {item.label} is both {known!r} and {item.classname!r} ({split_name} split)"
                )
    if not names:
        raise EmptyClassError(f"{source}: no images at all")
    for label in range(max(names) + 1):
        if label not in names:
            raise EmptyClassError(f"{source}: label {label} has no images in any split (labels must be 0..N-1)")
    for split_name, items in splits.items():
        absent = sorted(set(names) - {item.label for item in items})
        if absent:
            raise EmptyClassError(
                f"{source}: class {names[absent[0]]!r} (label {absent[0]}) has no images in the {split_name} split"
                + (f" ({len(absent) - 1} more classes neither)" if len(absent) > 1 else "")
            )


def read_split(filepath: str, path_prefix: str) -> tuple[list[Datum], list[Datum], list[Datum]]:
    """Read a CoOp ``split_zhou_*.json`` ({train,val,test}: [[relpath, label, classname], ...]).

    Paths are joined to ``path_prefix``; missing images and empty classes are reported with the file name.
    """
    log(f"Reading split from {filepath}")
    with open(filepath, "r") as f:
        split = json.load(f)
    missing = [key for key in SPLIT_KEYS if key not in split]
    if missing:
        raise ValueError(f"{filepath}: split file lacks the {missing} lists")

    lists: dict[str, list[Datum]] = {}
    for key in SPLIT_KEYS:
        rows = [(osp.join(path_prefix, rel), int(label), classname) for rel, label, classname in split[key]]
        absent = [impath for impath, _, _ in rows if not osp.isfile(impath)]
        if absent:
            raise DatasetNotFoundError(
                absent[0],
                f"{len(absent)} of {len(rows)} {key} images listed in {filepath}",
                f"the split's paths are relative to {path_prefix}; extract the images there as CoOp's DATASETS.md says",
            )
        lists[key] = [Datum(impath=impath, label=label, classname=classname) for impath, label, classname in rows]
    check_classes(lists, filepath)
    return lists["train"], lists["val"], lists["test"]


def save_split(
    train: Sequence[Datum], val: Sequence[Datum], test: Sequence[Datum], filepath: str, path_prefix: str
) -> None:
    """Write a split file that read_split (and CoOp) can read; paths are stored relative to ``path_prefix``."""

    def relative(items: Sequence[Datum]) -> list[list]:
        rows = []
        for item in items:
            rel = osp.relpath(item.impath, path_prefix)
            if rel.startswith(os.pardir):
                raise ValueError(f"{item.impath} is not under the split's path prefix {path_prefix}")
            rows.append([rel, item.label, item.classname])
        return rows

    split = {"train": relative(train), "val": relative(val), "test": relative(test)}
    payload = json.dumps(split, indent=4, separators=(",", ": ")).encode("utf-8")
    atomic_write(filepath, lambda f: f.write(payload))
    log(f"Saved split to {filepath}")


# --------------------------------------------------------------------------- cached Datum lists


def _cache_problem(data: Any, keys: Sequence[str]) -> str | None:
    """Why a loaded cache cannot be used, or None; also notices image paths that no longer exist."""
    if not isinstance(data, dict):
        return f"holds a {type(data).__name__}, not a dict"
    for key in keys:
        if key not in data:
            return f"lacks the {key!r} list"
    for key, items in data.items():
        if not isinstance(items, list) or not all(isinstance(item, Datum) for item in items):
            return f"its {key!r} entry is not a list of Datum"
        stride = max(1, len(items) // PATH_CHECKS_PER_LIST)
        for item in items[::stride]:
            if not osp.isfile(item.impath):
                return f"lists {item.impath}, which does not exist (was DATASET.ROOT moved?)"
    return None


def load_cached_lists(filepath: str, keys: Sequence[str]) -> dict[str, list[Datum]] | None:
    """Load a pickled {name: [Datum]} cache; None (after one log line) when it is absent or unusable."""
    if not osp.exists(filepath):
        return None
    try:
        with open(filepath, "rb") as f:
            data = pickle.load(f)
    except Exception as exc:  # a truncated pickle raises EOFError, UnpicklingError, ValueError, ...
        log(f"Cache {filepath} is unreadable ({type(exc).__name__}: {exc}); rebuilding it")
        return None
    problem = _cache_problem(data, keys)
    if problem is not None:
        log(f"Cache {filepath} {problem}; rebuilding it")
        return None
    return data


def save_cached_lists(filepath: str, data: dict[str, list[Datum]]) -> None:
    """Pickle the lists atomically; a read-only dataset folder only costs the cache, not the run."""
    try:
        atomic_write(filepath, lambda f: pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL))
    except OSError as exc:
        log(f"Could not write cache {filepath} ({exc}); continuing without it")


def load_or_build_fewshot(
    cache_dir: str, num_shots: int, seed: int, build: Callable[[], tuple[list, list]]
) -> tuple[list, list]:
    """Return the cached (train, val) few-shot lists for (num_shots, seed), building and caching them if needed.

    The file is ``<cache_dir>/shot_{num_shots}-seed_{seed}.pkl`` as in CoOp, so a CoOp cache is reused
    (CoOp's ImageNet caches hold no "val" list; that reads as an empty one).
    """
    filepath = osp.join(cache_dir, f"shot_{num_shots}-seed_{seed}.pkl")
    cached = load_cached_lists(filepath, keys=("train",))
    if cached is not None:
        log(f"Loading few-shot data from {filepath}")
        return cached["train"], cached.get("val", [])
    train, val = build()
    save_cached_lists(filepath, {"train": list(train), "val": list(val)})
    log(f"Saved few-shot data to {filepath}")
    return train, val


# --------------------------------------------------------------------------- few-shot and class subsets


def fewshot_per_class(data: Sequence[Datum], num_shots: int, rng: random.Random) -> list[Datum]:
    """Sample ``num_shots`` items per label (all of them when a class has fewer), in first-seen label order.

    Same algorithm and draw order as Dassl's ``DatasetBase.generate_fewshot_dataset`` (repeat=False), but
    with an explicit generator: the cache is keyed by seed only, so its content must not depend on what
    else consumed the global ``random`` state before the dataset was built.
    """
    if num_shots < 1:
        return list(data)
    by_label: dict[int, list[Datum]] = defaultdict(list)
    for item in data:
        by_label[item.label].append(item)
    sampled: list[Datum] = []
    for items in by_label.values():
        sampled.extend(rng.sample(items, num_shots) if len(items) >= num_shots else items)
    return sampled


def fewshot_splits(
    train: list[Datum], val: list[Datum], num_shots: int, seed: int, cache_dir: str
) -> tuple[list[Datum], list[Datum]]:
    """CoOp's NUM_SHOTS rule: >=1 keeps that many train and min(shots, 4) val items per class; <=0 keeps all."""
    if num_shots < 1:
        return train, val

    def build() -> tuple[list[Datum], list[Datum]]:
        log(f"Creating a {num_shots}-shot dataset (seed {seed})")
        rng = random.Random(seed)
        return fewshot_per_class(train, num_shots, rng), fewshot_per_class(val, min(num_shots, MAX_VAL_SHOTS), rng)

    return load_or_build_fewshot(cache_dir, num_shots, seed, build)


def subsample_classes(*splits: Sequence[Datum], subsample: str = "all") -> tuple[list[Datum], ...]:
    """CoOp's base-to-new protocol: "base" keeps the first half (ceil) of the sorted labels of the first split,
    "new" the rest, relabelled from 0 in every split; "all" returns the splits unchanged."""
    if subsample not in SUBSAMPLE_CHOICES:
        raise ValueError(f"DATASET.SUBSAMPLE_CLASSES must be one of {SUBSAMPLE_CHOICES}, got {subsample!r}")
    if subsample == "all":
        return tuple(splits)
    labels = sorted({item.label for item in splits[0]})
    half = math.ceil(len(labels) / 2)
    selected = labels[:half] if subsample == "base" else labels[half:]
    relabel = {old: new for new, old in enumerate(selected)}
    log(f"Subsampling {subsample} classes: {len(selected)} of {len(labels)}")
    return tuple([relabelled(item, relabel[item.label]) for item in split if item.label in relabel] for split in splits)


def relabelled(item: Datum, label: int) -> Datum:
    """A copy of ``item`` with another label; copying instead of calling Datum(...) keeps subclasses
    (e.g. FDRD's caption items) and their extra fields. Datum's label is a read-only property over ``_label``."""
    clone = copy.copy(item)
    clone._label = label
    return clone


def apply_coop_protocol(
    cfg: Any, cache_dir: str, train: list[Datum], val: list[Datum], test: list[Datum]
) -> tuple[list[Datum], list[Datum], list[Datum]]:
    """Few-shot sampling (DATASET.NUM_SHOTS, SEED), then class subsetting (DATASET.SUBSAMPLE_CLASSES).

    CoOp's order: the few-shot cache holds all classes, so base and new runs share it.
    """
    train, val = fewshot_splits(train, val, int(cfg.DATASET.NUM_SHOTS), int(cfg.SEED), cache_dir)
    subsample = getattr(cfg.DATASET, "SUBSAMPLE_CLASSES", "all")
    train, val, test = subsample_classes(train, val, test, subsample=subsample)
    return train, val, test


class CoOpSplitDataset(DatasetBase):
    """A dataset defined by one CoOp split file; subclasses only name their folders.

    Subclasses set ``dataset_dir`` (folder under DATASET.ROOT), ``image_subdir`` (the folder the split's
    relative paths start from; "" for the dataset folder itself), ``split_file`` and ``images_how``
    (how to get the images; ``{root}`` stands for DATASET.ROOT).
    As in CoOp, ``self.dataset_dir`` becomes the absolute folder once constructed.
    """

    dataset_dir = ""
    image_subdir = ""
    split_file = ""
    images_how = f"see CoOp's DATASETS.md ({COOP_DATASETS_MD}); DATASET.ROOT is {{root}}"

    def __init__(self, cfg: Any):
        name = type(self).__name__
        root = dataset_root(cfg)
        how = self.images_how.format(root=root)
        self.dataset_dir = require_path(osp.join(root, type(self).dataset_dir), f"{name} dataset folder", how)
        self.image_dir = require_path(
            osp.normpath(osp.join(self.dataset_dir, self.image_subdir)), f"{name} image folder", how
        )
        self.split_path = require_path(
            osp.join(self.dataset_dir, self.split_file), f"{name} split file", split_file_how(name, self.dataset_dir)
        )
        self.split_fewshot_dir = osp.join(self.dataset_dir, FEWSHOT_DIRNAME)
        train, val, test = read_split(self.split_path, self.image_dir)
        train, val, test = apply_coop_protocol(cfg, self.split_fewshot_dir, train, val, test)
        super().__init__(train_x=train, val=val, test=test)


# --------------------------------------------------------------------------- downloads


def download_split(dataset_key: str, dst: str, timeout_s: float = 60.0) -> str:
    """Fetch a dataset's CoOp split file (ImageNet: classnames.txt) from Google Drive with gdown.

    ``dst`` is a file path or an existing folder. Fails after ``timeout_s`` seconds in all, and never
    leaves a partial file: gdown writes into a private temp folder and only a complete, parseable file
    is moved into place.
    """
    if dataset_key not in GDRIVE_FILES:
        raise ValueError(
            f"No known Google-Drive file for {dataset_key!r} (known: {sorted(GDRIVE_FILES)}); "
            f"fetch its files by hand following CoOp's DATASETS.md ({COOP_DATASETS_MD})"
        )
    filename, file_id = GDRIVE_FILES[dataset_key]
    target = osp.join(dst, filename) if osp.isdir(dst) else dst
    folder = osp.dirname(osp.abspath(target))
    os.makedirs(folder, exist_ok=True)
    tmp_dir = tempfile.mkdtemp(prefix=f".{filename}.", dir=folder)
    cancel = threading.Event()
    timer = threading.Timer(timeout_s, cancel.set)
    kwargs = {"id": file_id, "output": osp.join(tmp_dir, filename), "quiet": True}
    kwargs.update(_supported_kwargs(gdown.download, timeout=timeout_s, cancel=cancel))
    timer.start()
    try:
        downloaded = gdown.download(**kwargs)
        if cancel.is_set():
            raise TimeoutError(f"downloading {filename} took over {timeout_s:.0f} s")
        if not downloaded or not osp.isfile(downloaded):
            raise RuntimeError(f"gdown returned no file for {filename} (id {file_id})")
        _check_download(downloaded)
        os.replace(downloaded, target)
    finally:
        timer.cancel()
        shutil.rmtree(tmp_dir, ignore_errors=True)
    log(f"Downloaded {filename} to {target}")
    return target


def _supported_kwargs(function: Callable, **options: Any) -> dict[str, Any]:
    """The options ``function`` accepts: gdown gained ``timeout``/``cancel`` only in recent releases."""
    parameters = inspect.signature(function).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return options
    return {name: value for name, value in options.items() if name in parameters}


def _check_download(path: str) -> None:
    """Reject what Drive sends instead of the file (an HTML page, a cut-off body) before it replaces anything."""
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        text = f.read()
    if path.endswith(".json"):
        content = json.loads(text)
        if not isinstance(content, dict) or not all(key in content for key in SPLIT_KEYS):
            raise ValueError(f"{osp.basename(path)} from Google Drive is not a CoOp split file")
    elif not text.strip() or not all(re.match(r"n\d{8} \S", line) for line in text.splitlines() if line.strip()):
        raise ValueError(f"{osp.basename(path)} from Google Drive is not a '<wnid> <class name>' list")
