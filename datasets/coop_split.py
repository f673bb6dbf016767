"""The one shared module for CoOp-style datasets: split files, few-shot caches, base/new classes.

Every dataset in this package (and the FDRD datasets) goes through these helpers so that
the same ``split_zhou_*.json`` file, ``NUM_SHOTS`` and ``SEED`` give the same images as in
CoOp (KaiyangZhou/CoOp), and so that a killed run never leaves a half-written file behind.
"""
from __future__ import annotations

import copy
import hashlib
import inspect
import json
import math
import os
import os.path as osp
import random
import re
import shutil
import tempfile
import threading
from collections import defaultdict
from typing import Any, Callable, Mapping, Sequence

import gdown
from dassl.data.datasets import DATASET_REGISTRY, Datum, DatasetBase

from trainers.atomic_io import atomic_write, remove_orphan_temp_files
from trainers.errors import ConfigError, DataError, DataNotFoundError

SPLIT_KEYS = ("train", "val", "test")
SUBSAMPLE_CHOICES = ("all", "base", "new")
FEWSHOT_DIRNAME = "split_fewshot"
MAX_VAL_SHOTS = 4  # CoOp caps the few-shot validation set at 4 images per class.
CACHE_FORMAT = 1  # version of the JSON caches (few-shot selections, ImageNet's preprocessed lists)

COOP_DATASETS_MD = "https://github.com/KaiyangZhou/CoOp/blob/main/DATASETS.md"

def gdrive_files() -> dict[str, tuple[str, str]]:
    """Registered dataset -> (file name, Google-Drive id) of its CoOp split file, from each dataset class's own
    ``split_file`` and ``split_file_gdrive_id`` (the links of CoOp's DATASETS.md, commit 0f24bd6)."""
    files = {}
    for name in sorted(DATASET_REGISTRY.registered_names()):
        dataset = DATASET_REGISTRY.get(name)
        if getattr(dataset, "split_file_gdrive_id", ""):
            files[name] = (dataset.split_file, dataset.split_file_gdrive_id)
    return files


class DatasetNotFoundError(DataNotFoundError):
    """A dataset folder or file is missing; the message says where it was expected and how to get it."""

    def __init__(self, path: str, what: str, how: str):
        self.path = path
        self.what = what
        self.how = how
        super().__init__(f"{what} not found at {path}\n  How to get it: {how}")


class EmptyClassError(DataError):
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
    known = gdrive_files()
    if dataset_key not in known:
        return f"see the {dataset_key} section of CoOp's DATASETS.md ({COOP_DATASETS_MD})"
    filename, file_id = known[dataset_key]
    return (
        f"download {filename} from https://drive.google.com/file/d/{file_id}/view "
        f"(CoOp's DATASETS.md, {dataset_key}) into {dataset_dir}, e.g. "
        f"`python -m datasets {dataset_key} {dataset_dir}`"
    )


# --------------------------------------------------------------------------- atomic files


def check_classes(splits: Mapping[str, Sequence[Datum]], source: str) -> None:
    """Fail loudly when a class has no images in some split, or a label has two class names.

    Dassl derives num_classes from the largest label and CoOp samples few-shot sets per label,
    so a silently empty class would shift the classifier or give a short few-shot set. The val split is
    the exception: Dassl accepts a class without val images and CoOp's protocol does not use val, so that
    is one warning (model selection with TEST.FINAL_MODEL best_val then ignores the class).
    """
    names: dict[int, str] = {}
    for split_name, items in splits.items():
        for item in items:
            known = names.setdefault(item.label, item.classname)
            if known != item.classname:
                raise DataError(
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
            message = (f"{source}: class {names[absent[0]]!r} (label {absent[0]}) has no images in the {split_name} "
                       f"split" + (f" ({len(absent) - 1} more classes neither)" if len(absent) > 1 else ""))
            if split_name == "val" and items:
                log(f"Warning: {message}; validation (TEST.FINAL_MODEL best_val) will not see it")
                continue
            raise EmptyClassError(message)


def read_split(filepath: str, path_prefix: str) -> tuple[list[Datum], list[Datum], list[Datum]]:
    """Read a CoOp ``split_zhou_*.json`` ({train,val,test}: [[relpath, label, classname], ...]).

    Paths are joined to ``path_prefix``; malformed rows, missing images and empty classes are reported with the
    file name (and the row).
    """
    log(f"Reading split from {filepath}")
    refetch = "fetch the split file again (see CoOp's DATASETS.md)"
    split = read_json_file(filepath, "split file", refetch)
    if not isinstance(split, dict):
        raise DataError(f"{filepath}: a split file is a JSON object with train/val/test lists, not a "
                        f"{type(split).__name__}; {refetch}")
    missing = [key for key in SPLIT_KEYS if key not in split]
    if missing:
        raise DataError(f"{filepath}: split file lacks the {missing} lists; {refetch}")

    lists: dict[str, list[Datum]] = {}
    for key in SPLIT_KEYS:
        if not isinstance(split[key], list):
            raise DataError(f"{filepath}: {key!r} is a {type(split[key]).__name__}, not a list of rows; {refetch}")
        rows = [_split_row(row, index, key, filepath, path_prefix) for index, row in enumerate(split[key])]
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


def read_json_file(filepath: str, what: str, fix: str) -> Any:
    """Parse a JSON file; a syntax error (e.g. a truncated download) or non-UTF-8 bytes name the file and where."""
    try:
        with open(filepath, "r", encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise DataError(f"{filepath} ({what}) is not valid JSON: {err.msg} at line {err.lineno}, column {err.colno} "
                        f"(a truncated or damaged file?); {fix}") from None
    except UnicodeDecodeError as err:
        raise DataError(f"{filepath} ({what}) is not UTF-8 text (byte {err.start}); {fix}") from None


def _split_row(row: Any, index: int, key: str, filepath: str, path_prefix: str) -> tuple[str, int, str]:
    where = f"{filepath}: {key} row {index}"
    if not isinstance(row, (list, tuple)) or len(row) != 3:
        raise DataError(f"{where} is {row!r}; every row must be [relative path, integer label, class name]")
    rel, label, classname = row
    if isinstance(label, bool) or not isinstance(label, int):
        if isinstance(label, str) and label.strip().lstrip("-").isdigit():
            label = int(label)
        else:
            raise DataError(f"{where} has label {label!r}; labels must be integers 0..N-1")
    if not isinstance(rel, str) or not rel or not isinstance(classname, str):
        raise DataError(f"{where} is {row!r}; the path and the class name must be strings")
    return osp.join(path_prefix, rel), label, classname


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


# --------------------------------------------------------------------------- caches (JSON, content-keyed)
#
# Caches never hold code: they are JSON (a planted file can at worst be wrong, and then it does not match its
# key). Each is keyed by the content of what it was derived from, so editing a split or caption file, or adding
# images, invalidates it instead of silently reusing a stale selection. Pickled caches of older versions and of
# CoOp (*.pkl) are never loaded.


def content_key(*paths: str, extra: Any = None) -> str:
    """sha256 over the bytes of ``paths`` (in order) and the JSON of ``extra``."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(osp.basename(path).encode() + b"\0")
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    digest.update(json.dumps(extra, sort_keys=True).encode())
    return digest.hexdigest()


def _read_cache(filepath: str, key: str) -> dict[str, Any] | None:
    """The cache's JSON when it exists, parses and carries ``key``; otherwise None (with one log line)."""
    if not osp.exists(filepath):
        return None
    remove_orphan_temp_files(filepath)
    try:
        with open(filepath, "r", encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:  # truncated or damaged: rebuilt
        log(f"Cache {filepath} is unreadable ({type(exc).__name__}: {exc}); rebuilding it")
        return None
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
        log(f"Cache {filepath} has an unknown format; rebuilding it")
        return None
    if data.get("key") != key:
        log(f"Cache {filepath} was made from other source files (edited since?); rebuilding it")
        return None
    return data


def _write_cache(filepath: str, data: dict[str, Any]) -> None:
    """Write atomically; a read-only dataset folder only costs the cache, not the run."""
    payload = json.dumps({"format": CACHE_FORMAT, **data}, separators=(",", ":")).encode("utf-8")
    try:
        atomic_write(filepath, lambda f: f.write(payload))
    except OSError as exc:
        log(f"Could not write cache {filepath} ({exc}); continuing without it")


def _note_legacy_pickle(filepath: str) -> None:
    legacy = osp.splitext(filepath)[0] + ".pkl"
    if osp.exists(legacy):
        log(f"Ignoring {legacy}: pickled caches are never loaded (unpickling can run code); {osp.basename(filepath)} "
            "replaces it")


def load_item_lists(filepath: str, key: str, base_dir: str, keys: Sequence[str]) -> dict[str, list[Datum]] | None:
    """Lists of plain Datum cached by :func:`save_item_lists` under ``key``; None when absent or stale."""
    data = _read_cache(filepath, key)
    if data is None:
        return None
    try:
        return {name: [Datum(impath=osp.join(base_dir, rel), label=int(label), classname=str(classname))
                       for rel, label, classname in data["lists"][name]] for name in keys}
    except (KeyError, TypeError, ValueError) as exc:
        log(f"Cache {filepath} is malformed ({type(exc).__name__}: {exc}); rebuilding it")
        return None


def save_item_lists(filepath: str, key: str, base_dir: str, lists: Mapping[str, Sequence[Datum]]) -> None:
    rows = {name: [[osp.relpath(item.impath, base_dir), item.label, item.classname] for item in items]
            for name, items in lists.items()}
    _write_cache(filepath, {"key": key, "lists": rows})


def load_or_build_fewshot(
    cache_dir: str,
    num_shots: int,
    seed: int,
    build: Callable[[], tuple[list, list]],
    *,
    source_key: str,
    pools: Mapping[str, Sequence[Datum]],
) -> tuple[list, list]:
    """The (train, val) few-shot lists for (num_shots, seed), from ``<cache_dir>/shot_{K}-seed_{S}.json`` or
    built by ``build`` and cached there.

    ``build`` returns items taken from ``pools`` (the full lists they are sampled from, in file order); the cache
    stores each item as (pool, position, path) and is keyed by ``source_key``, the :func:`content_key` of the
    files the pools were read from (split or caption files), so an edited source invalidates it. Items come
    back as the very objects of the pools (FDRD's keep their captions).
    """
    filepath = osp.join(cache_dir, f"shot_{num_shots}-seed_{seed}.json")
    key = hashlib.sha256(json.dumps([source_key, num_shots, seed]).encode()).hexdigest()
    _note_legacy_pickle(filepath)
    cached = _read_cache(filepath, key)
    if cached is not None:
        lists = _resolve_selection(cached, pools, cache_dir)
        if lists is not None:
            log(f"Loading few-shot data from {filepath}")
            return lists["train"], lists["val"]
        log(f"Cache {filepath} does not match the dataset's items; rebuilding it")
    train, val = build()
    where = {id(item): (name, position) for name, pool in pools.items() for position, item in enumerate(pool)}
    selection = {}
    for list_name, items in (("train", train), ("val", val)):
        try:
            selection[list_name] = [[*where[id(item)], _relpath(item.impath, cache_dir)] for item in items]
        except KeyError:
            raise ValueError(f"load_or_build_fewshot: build() returned an item that is not in pools "
                             f"{sorted(pools)}") from None
    _write_cache(filepath, {"key": key, "selection": selection})
    log(f"Saved few-shot data to {filepath}")
    return list(train), list(val)


def _relpath(impath: str, cache_dir: str) -> str:
    return osp.relpath(impath, osp.dirname(osp.abspath(cache_dir)))


def _resolve_selection(data: dict[str, Any], pools: Mapping[str, Sequence[Datum]], cache_dir: str):
    """The cached selection as pool items, or None if any entry does not name the same image."""
    try:
        lists = {}
        for list_name in ("train", "val"):
            items = []
            for pool_name, position, rel in data["selection"][list_name]:
                item = pools[pool_name][int(position)]
                if _relpath(item.impath, cache_dir) != rel:
                    return None
                items.append(item)
            lists[list_name] = items
        return lists
    except (KeyError, IndexError, TypeError, ValueError):
        return None


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
    train: list[Datum], val: list[Datum], num_shots: int, seed: int, cache_dir: str, source_key: str
) -> tuple[list[Datum], list[Datum]]:
    """CoOp's NUM_SHOTS rule: >=1 keeps that many train and min(shots, 4) val items per class; <=0 keeps all."""
    if num_shots < 1:
        return train, val

    def build() -> tuple[list[Datum], list[Datum]]:
        rng = random.Random(seed)
        sampled = fewshot_per_class(train, num_shots, rng), fewshot_per_class(val, min(num_shots, MAX_VAL_SHOTS), rng)
        log(f"Created a {num_shots}-shot dataset (seed {seed}): {describe_shots(sampled[0], num_shots)} train, "
            f"{describe_shots(sampled[1], min(num_shots, MAX_VAL_SHOTS))} val images")
        return sampled

    return load_or_build_fewshot(cache_dir, num_shots, seed, build, source_key=source_key,
                                 pools={"train": train, "val": val})


def describe_shots(items: Sequence[Datum], num_shots: int) -> str:
    """"48 (16 per class)", or the real range when some classes have fewer images than asked for."""
    counts = defaultdict(int)
    for item in items:
        counts[item.label] += 1
    if not counts:
        return "0"
    low, high = min(counts.values()), max(counts.values())
    if low == high == num_shots:
        return f"{len(items)} ({num_shots} per class)"
    short = sum(1 for n in counts.values() if n < num_shots)
    return (f"{len(items)} ({low} to {high} per class: {short} of {len(counts)} classes have fewer than {num_shots} "
            "and keep all of theirs)")


def subsample_classes(*splits: Sequence[Datum], subsample: str = "all") -> tuple[list[Datum], ...]:
    """CoOp's base-to-new protocol: "base" keeps the first half (ceil) of the sorted labels of the first split,
    "new" the rest, relabelled from 0 in every split; "all" returns the splits unchanged."""
    if subsample not in SUBSAMPLE_CHOICES:
        raise ConfigError(f"DATASET.SUBSAMPLE_CLASSES must be one of {SUBSAMPLE_CHOICES}, got {subsample!r}")
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
    cfg: Any, cache_dir: str, train: list[Datum], val: list[Datum], test: list[Datum], source_key: str
) -> tuple[list[Datum], list[Datum], list[Datum]]:
    """Few-shot sampling (DATASET.NUM_SHOTS, SEED), then class subsetting (DATASET.SUBSAMPLE_CLASSES).

    CoOp's order: the few-shot cache holds all classes, so base and new runs share it. ``source_key``: the
    :func:`content_key` of the files train and val were read from (it keys the few-shot cache).
    """
    train, val = fewshot_splits(train, val, int(cfg.DATASET.NUM_SHOTS), int(cfg.SEED), cache_dir, source_key)
    subsample = getattr(cfg.DATASET, "SUBSAMPLE_CLASSES", "all")
    train, val, test = subsample_classes(train, val, test, subsample=subsample)
    return train, val, test


class CoOpSplitDataset(DatasetBase):
    """A dataset defined by one CoOp split file; subclasses only name their folders.

    Subclasses set ``dataset_dir`` (folder under DATASET.ROOT), ``image_subdir`` (the folder the split's
    relative paths start from; "" for the dataset folder itself), ``split_file`` (and its
    ``split_file_gdrive_id``), ``prompt_template`` and ``images_how`` (how to get the images; ``{root}`` stands
    for DATASET.ROOT).
    As in CoOp, ``self.dataset_dir`` becomes the absolute folder once constructed.
    """

    dataset_dir = ""
    image_subdir = ""
    split_file = ""
    #: the split file's Google-Drive id (CoOp's DATASETS.md): `python -m datasets NAME DST` fetches it
    split_file_gdrive_id = ""
    #: CLIP's zero-shot prompt for the class names (trainers/engine/templates.py reads it; "" = "a photo of a {}.")
    prompt_template = ""
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
        train, val, test = apply_coop_protocol(cfg, self.split_fewshot_dir, train, val, test,
                                               content_key(self.split_path))
        super().__init__(train_x=train, val=val, test=test)


# --------------------------------------------------------------------------- downloads


def download_split(dataset_key: str, dst: str, timeout_s: float = 60.0) -> str:
    """Fetch a dataset's CoOp split file (ImageNet: classnames.txt) from Google Drive with gdown.

    ``dst`` is a file path or an existing folder. Fails after ``timeout_s`` seconds in all, and never
    leaves a partial file, nor a folder it created for nothing: gdown writes into a private temp folder
    and only a complete, parseable file is moved into place. Failures are DataError naming the file.
    """
    known = gdrive_files()
    if dataset_key not in known:
        raise DataError(
            f"No known Google-Drive file for {dataset_key!r} (known: {sorted(known)}); "
            f"fetch its files by hand following CoOp's DATASETS.md ({COOP_DATASETS_MD})"
        )
    filename, file_id = known[dataset_key]
    target = osp.join(dst, filename) if osp.isdir(dst) else dst
    folder = osp.dirname(osp.abspath(target))
    created = _missing_ancestors(folder)
    os.makedirs(folder, exist_ok=True)
    tmp_dir = tempfile.mkdtemp(prefix=f".{filename}.", dir=folder)
    cancel = threading.Event()
    timer = threading.Timer(timeout_s, cancel.set)
    kwargs = {"id": file_id, "output": osp.join(tmp_dir, filename), "quiet": True}
    kwargs.update(_supported_kwargs(gdown.download, timeout=timeout_s, cancel=cancel))
    url = f"https://drive.google.com/file/d/{file_id}/view"
    timer.start()
    try:
        try:
            downloaded = gdown.download(**kwargs)
        except Exception as err:  # requests' connection errors, gdown's FileURLRetrievalError, ...
            raise DataError(f"Could not download {filename} for {dataset_key} from {url} ({type(err).__name__}: "
                            f"{_first_line(err)}). Without network, download it elsewhere and copy it to "
                            f"{target}.") from None
        if cancel.is_set():
            raise DataError(f"Downloading {filename} from {url} took over {timeout_s:.0f} s; try again, or download "
                            f"it by hand to {target}.")
        if not downloaded or not osp.isfile(downloaded):
            raise DataError(f"gdown returned no file for {filename} ({url}); download it by hand to {target}.")
        _check_download(downloaded)
        os.replace(downloaded, target)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        for path in reversed(created):  # innermost first; only folders that are still empty
            try:
                os.rmdir(path)
            except OSError:
                break
        raise
    finally:
        timer.cancel()
        shutil.rmtree(tmp_dir, ignore_errors=True)
    log(f"Downloaded {filename} to {target}")
    return target


def _missing_ancestors(folder: str) -> list[str]:
    """The folders ``os.makedirs(folder)`` would create, outermost first."""
    missing = []
    while folder and not osp.exists(folder):
        missing.append(folder)
        parent = osp.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return list(reversed(missing))


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else "no details"


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
        try:
            content = json.loads(text)
        except ValueError:
            content = None
        if not isinstance(content, dict) or not all(key in content for key in SPLIT_KEYS):
            raise DataError(f"{osp.basename(path)} from Google Drive is not a CoOp split file (a quota or login "
                            "page?); try again later or download it by hand")
    elif not text.strip() or not all(re.match(r"n\d{8} \S", line) for line in text.splitlines() if line.strip()):
        raise DataError(f"{osp.basename(path)} from Google Drive is not a '<wnid> <class name>' list")
