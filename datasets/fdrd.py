"""FDRD (DCAR's Fine-class Described Retrieval Dataset) as a Dassl dataset, one domain per run.

``cfg.DATASET.NAME = "FDRD"`` and ``cfg.DATASET.FDRD_DOMAIN`` in {caltech101, pets, cars, flowers,
food101, aircraft, sun397, dtd, ucf101, synthetic} (configs/datasets/fdrd_<domain>.yaml).

Layout under ``DATASET.ROOT`` ($DATA):
- the CoOp dataset folder of the domain (images and its class list: ``split_zhou_*.json``;
  ``fgvc_aircraft/variants.txt`` for aircraft; ``synthetic_fine/split_synthetic_fine.json``);
- the caption files in ``$DATA/fdrd/`` (or DATASET.FDRD_CAPTION_DIR), flat or in train/ and test/
  subfolders; the accepted names are listed in ``datasets/fdrd_formats.py``. Fetch them with
  ``python -m tools.download_fdrd``.

Splits: train = the train caption file (CoOp train + val images), test = the test caption file.
FDRD publishes no validation split. ``DATASET.FDRD_VAL_PER_CLASS`` = n > 0 holds n pairs per class out of
the train file as ``val`` (the same pairs for every seed and method, drawn before few-shot sampling), so
recipes can be tuned with ``TEST.SPLIT val`` without ever looking at the test split. With n = 0 (default)
``val`` is empty and Dassl's DataManager builds no val loader; keep ``TEST.FINAL_MODEL = "last_step"``
then, since with "best_val" Dassl would select on the *test* set.

Labels follow the CoOp class order of the domain, so a class keeps the same label as in CoOp.
Every item is a :class:`CaptionDatum`; the trainer reads ``item.caption`` by dataset index.
"""
from __future__ import annotations

import os.path as osp
import random
from typing import Any, Sequence

from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum

from .coop_split import (
    DatasetNotFoundError,
    content_key,
    dataset_root,
    describe_shots,
    fewshot_per_class,
    load_or_build_fewshot,
    require_path,
    split_file_how,
)
from .fdrd_formats import (
    DOWNLOAD_HINT,
    CaptionRecord,
    DomainSpec,
    FDRDFormatError,
    caption_file_candidates,
    check_class_coverage,
    count_overlong,
    find_caption_file,
    get_domain,
    load_meta_categories,
    parse_caption_file,
    read_class_list,
)

__all__ = [
    "FDRD",
    "CaptionDatum",
    "DatasetNotFoundError",
    "FDRDFormatError",
    "add_config",
    "add_fdrd_config",
    "load_meta_categories",
]

MISSING_EXAMPLES = 5  # image paths quoted when images are missing


def log(message: str) -> None:
    """One line on stdout, which Dassl tees into the run's log.txt."""
    print(f"[fdrd] {message}", flush=True)


def add_config(cfg: Any) -> None:
    """Register the FDRD keys with their defaults, only where missing (train.py calls every add_config).

    FDRD_DOMAIN: which domain to load; FDRD_CAPTION_DIR: caption folder ("" = <DATASET.ROOT>/fdrd);
    FDRD_HARD_NEGATIVES: keep the JSON ``negative`` captions (used only by the optional
    hard-negative report; False gives every item ``negatives == ()``); FDRD_VAL_PER_CLASS: pairs per class
    held out of the train file as a validation split (0 = no val split).
    """
    defaults = {"FDRD_DOMAIN": "", "FDRD_CAPTION_DIR": "", "FDRD_HARD_NEGATIVES": True, "FDRD_VAL_PER_CLASS": 0}
    for key, value in defaults.items():
        if key not in cfg.DATASET:
            cfg.DATASET[key] = value


add_fdrd_config = add_config


class CaptionDatum(Datum):
    """A Dassl Datum with its caption: the image-caption pair is the unit of FDRD retrieval."""

    def __init__(
        self,
        impath: str,
        label: int,
        classname: str,
        caption: str,
        negatives: Sequence[str] = (),
        caption_id: int = 0,
        domain: int = 0,
    ):
        super().__init__(impath=impath, label=label, domain=domain, classname=classname)
        self._caption = caption
        self._negatives = tuple(negatives)
        self._caption_id = int(caption_id)

    @property
    def caption(self) -> str:
        return self._caption

    @property
    def negatives(self) -> tuple[str, ...]:
        """The file's hard negatives (4 per flower/pets/aircraft test entry, none elsewhere)."""
        return self._negatives

    @property
    def caption_id(self) -> int:
        """Index of the pair in its caption file; retrieval ground truth is by index, never by text."""
        return self._caption_id

    def replace(self, **changes: Any) -> "CaptionDatum":
        """A copy with some fields changed (relabelling for base/new, dropping negatives)."""
        fields = dict(
            impath=self.impath, label=self.label, classname=self.classname, caption=self.caption,
            negatives=self.negatives, caption_id=self.caption_id, domain=self.domain,
        )
        fields.update(changes)
        return CaptionDatum(**fields)

    def __repr__(self) -> str:
        return f"CaptionDatum(label={self.label}, caption_id={self.caption_id}, impath={self.impath!r})"


@DATASET_REGISTRY.register()
class FDRD(DatasetBase):
    """One FDRD domain: CaptionDatum train/test lists, CoOp labels, optional few-shot train subset."""

    is_retrieval = True  # the trainer switches to Recall@K evaluation on this flag

    def __init__(self, cfg: Any):
        spec = get_domain(getattr(cfg.DATASET, "FDRD_DOMAIN", ""))
        root = dataset_root(cfg)
        self.domain_name = spec.name
        self.spec = spec
        self.dataset_root = root
        self.caption_dir = osp.abspath(osp.expanduser(getattr(cfg.DATASET, "FDRD_CAPTION_DIR", "") or osp.join(root, "fdrd")))
        self.classnames_all = read_class_list(self._class_file(spec, root))
        self.caption_files = {split: self._caption_file(spec, split) for split in ("train", "test")}

        records = {}
        for split, path in self.caption_files.items():
            records[split] = parse_caption_file(path, spec, self.classnames_all)
            check_class_coverage(records[split], self.classnames_all, path)
        self._report_overlong(records)
        self._check_images(records)
        keep_negatives = bool(getattr(cfg.DATASET, "FDRD_HARD_NEGATIVES", True))
        train = self._to_datums(records["train"], keep_negatives)
        test = self._to_datums(records["test"], keep_negatives)

        val_per_class = int(getattr(cfg.DATASET, "FDRD_VAL_PER_CLASS", 0))
        train, val = hold_out_per_class(train, val_per_class, str(self.caption_files["train"]))
        num_shots = int(cfg.DATASET.NUM_SHOTS)
        if num_shots >= 1:
            train = self._fewshot(train, num_shots, int(cfg.SEED), root, val_per_class)
            if not keep_negatives:
                train = [item.replace(negatives=()) for item in train]
        subsample = getattr(cfg.DATASET, "SUBSAMPLE_CLASSES", "all")
        train, val, test = subsample_caption_classes(train, val, test, subsample=subsample)
        log(f"{spec.name}: {len(train):,} train pairs, {len(val):,} val pairs, {len(test):,} test pairs, "
            f"{len({item.label for item in test})} classes")
        super().__init__(train_x=train, val=val, test=test)
        # DCAR's category swaps draw siblings from these groups (None: nearest classes by CLIP text)
        self.meta_categories = load_meta_categories(spec.name, [self.lab2cname[i] for i in range(self.num_classes)], root)

    # ---- files --------------------------------------------------------------------------------
    @staticmethod
    def _class_file(spec: DomainSpec, root: str) -> str:
        path = osp.join(root, spec.coop_dir, spec.class_file)
        if spec.coop_name == "FGVCAircraft":
            how = ("extract https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz, "
                   f"keep data/ and rename it to {osp.join(root, spec.coop_dir)} (CoOp DATASETS.md, FGVCAircraft)")
        elif spec.coop_name is None:
            how = "generate the synthetic domain first (tools/demo) into DATASET.ROOT"
        else:
            how = split_file_how(spec.coop_name, osp.join(root, spec.coop_dir))
        what = f"CoOp class list of FDRD domain {spec.name!r} (labels follow CoOp's class order)"
        return require_path(path, what, how)

    def _caption_file(self, spec: DomainSpec, split: str) -> str:
        path = find_caption_file(self.caption_dir, spec, split)
        if path is None:
            expected = " or ".join(str(p) for p in caption_file_candidates(self.caption_dir, spec, split))
            raise DatasetNotFoundError(
                osp.join(self.caption_dir, spec.caption_files(split)[0]),
                f"FDRD {spec.name} {split} caption file (looked for {expected})",
                f"run `{DOWNLOAD_HINT}`; files never published upstream (see the table in "
                "datasets/fdrd_formats.py) must be generated in FDRD Format A",
            )
        return str(path)

    def _check_images(self, records: dict[str, list[CaptionRecord]]) -> None:
        """One error for all missing images: a count, a few examples and the folder searched."""
        missing = [
            record.image for split in ("train", "test") for record in records[split]
            if not osp.isfile(osp.join(self.dataset_root, record.image))
        ]
        if missing:
            total = sum(len(split_records) for split_records in records.values())
            image_dir = osp.join(self.dataset_root, self.spec.image_dir)
            raise DatasetNotFoundError(
                image_dir,
                f"{len(missing):,} of {total:,} FDRD {self.spec.name} images (first {min(len(missing), MISSING_EXAMPLES)}: "
                f"{', '.join(missing[:MISSING_EXAMPLES])}; paths relative to {self.dataset_root})",
                f"extract the {self.spec.coop_name or self.spec.name} images under {image_dir} as CoOp's "
                "DATASETS.md describes (FDRD reuses the CoOp images)",
            )

    def _to_datums(self, records: list[CaptionRecord], keep_negatives: bool) -> list[CaptionDatum]:
        return [
            CaptionDatum(
                impath=osp.join(self.dataset_root, record.image),
                label=record.label,
                classname=record.classname,
                caption=record.caption,
                negatives=record.negatives if keep_negatives else (),
                caption_id=record.caption_id,
            )
            for record in records
        ]

    def _report_overlong(self, records: dict[str, list[CaptionRecord]]) -> None:
        captions = [record.caption for split in ("train", "test") for record in records[split]]
        overlong = count_overlong(captions)
        if overlong:
            log(f"{self.spec.name}: {overlong} of {len(captions):,} captions exceed CLIP's 77-token context; "
                "kept (the text encoder truncates them)")

    def _fewshot(self, train: list[CaptionDatum], num_shots: int, seed: int, root: str,
                 val_per_class: int = 0) -> list[CaptionDatum]:
        """NUM_SHOTS image-caption pairs per class, cached per (shots, seed) in $DATA/fdrd/split_fewshot_<domain>/
        (``..._val<n>/`` when n pairs per class are held out for validation: another pool, another cache),
        keyed by the content of the class list and the train caption file (an edit rebuilds the selection)."""
        suffix = f"_val{val_per_class}" if val_per_class > 0 else ""
        cache_dir = osp.join(root, "fdrd", f"split_fewshot_{self.spec.name}{suffix}")

        def build() -> tuple[list[CaptionDatum], list[CaptionDatum]]:
            sampled = fewshot_per_class(train, num_shots, random.Random(seed))
            log(f"Created a {num_shots}-shot {self.spec.name} train set (seed {seed}): "
                f"{describe_shots(sampled, num_shots)} pairs")
            return sampled, []

        source_key = content_key(self._class_file(self.spec, root), self.caption_files["train"])
        fewshot, _ = load_or_build_fewshot(cache_dir, num_shots, seed, build, source_key=source_key,
                                           pools={"train": train})
        return list(fewshot)


#: seed of the validation hold-out: fixed, so every seed and every method is tuned on the same pairs
VAL_HOLDOUT_SEED = 0


def hold_out_per_class(
    train: list[CaptionDatum], per_class: int, source: str = "the train caption file"
) -> tuple[list[CaptionDatum], list[CaptionDatum]]:
    """Split ``per_class`` pairs of every class off ``train`` as a validation split: ``(rest, val)``, both in
    file order. The draw uses its own generator (:data:`VAL_HOLDOUT_SEED`), independent of the run's seed.
    Every class must keep at least one training pair."""
    if per_class <= 0:
        return train, []
    by_label: dict[int, list[CaptionDatum]] = {}
    for item in train:
        by_label.setdefault(item.label, []).append(item)
    too_small = sorted(item[0].classname for item in by_label.values() if len(item) <= per_class)
    if too_small:
        raise FDRDFormatError(
            f"DATASET.FDRD_VAL_PER_CLASS {per_class} leaves no training pair for {len(too_small)} class(es) of "
            f"{source} (e.g. {', '.join(too_small[:3])}); lower it")
    rng = random.Random(VAL_HOLDOUT_SEED)
    held = {id(item) for label in sorted(by_label) for item in rng.sample(by_label[label], per_class)}
    return [item for item in train if id(item) not in held], [item for item in train if id(item) in held]


def subsample_caption_classes(
    *splits: list[CaptionDatum], subsample: str = "all"
) -> tuple[list[CaptionDatum], ...]:
    """CoOp's base/new protocol (first ceil(N/2) sorted labels of the first split = base) on every split,
    keeping the captions: coop_split.subsample_classes would rebuild plain Datum objects and lose them."""
    if subsample not in ("all", "base", "new"):
        raise FDRDFormatError(f"DATASET.SUBSAMPLE_CLASSES must be all, base or new; got {subsample!r}")
    if subsample == "all":
        return tuple(splits)
    labels = sorted({item.label for item in splits[0]})
    half = (len(labels) + 1) // 2
    selected = labels[:half] if subsample == "base" else labels[half:]
    relabel = {old: new for new, old in enumerate(selected)}
    log(f"Subsampling {subsample} classes: {len(selected)} of {len(labels)}")
    return tuple(
        [item.replace(label=relabel[item.label]) for item in items if item.label in relabel]
        for items in splits
    )
