"""Pure parsing of FDRD caption files: both JSON formats, per-domain image paths, CoOp class labels.

No Dassl import, so every rule here is unit-testable on the real caption files without images.
``datasets/fdrd.py`` turns the records built here into Dassl ``Datum`` objects.

FDRD (DCAR, wyf202322/DCAR) reuses the CoOp images and splits: FDRD train = CoOp train + val,
FDRD test = CoOp test, one caption per image. ``docs/fdrd.md`` gives the evidence and the rules below in prose.

Caption files
-------------
Looked up in ``<caption_dir>/<split>/<name>`` first, then ``<caption_dir>/<name>`` (the upstream
repository used both layouts), with ``<caption_dir>`` = ``DATASET.FDRD_CAPTION_DIR`` or ``$DATA/fdrd``.
The first name in each cell is the upstream name where one was ever published; the others are the
names the unpublished files are expected to have ("-" = never published upstream)::

    domain      train                                     test
    caltech101  inter_caltech-101_train.json              inter_caltech-101_test.json
    cars        inter_car_train.json                      inter_car_test.json | car_test.json (lost)
    dtd         inter_dtd_train.json                      inter_dtd_test.json
    ucf101      inter_ucf101_train.json                   inter_ucf101_test.json
    flowers     flower_train.json (lost)                  flower_test.json
    pets        pets_train.json (lost)                    pets_test.json
    aircraft    plane_train.json (lost)                   plane_test.json
    food101     inter_food_train.json (-)                 inter_food_test.json (lost)
    sun397      inter_sun397_train.json (lost)            inter_sun397_test.json (lost)
    synthetic   synthetic_train.json                      synthetic_test.json   (generated demo domain)

Formats (dicts keyed by image id; every entry needs a non-empty ``positive``)
-----------------------------------------------------------------------------
* Format A (``inter_*``, synthetic): ``{file_name, class_name, file_path: "YOUR_IMAGE_PATH",
  positive, negative: []}``; ``class_name`` is the raw CoOp class name.
* Format B (flower/pets/plane tests): ``{file_name, [class_name, number], file_path, positive,
  negative[4]}``; pets and aircraft carry the class only in the key.

Both are parsed field by field: the domain decides where the class and the image file come from.
"""
from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from trainers.bpe import count_bpe_tokens
from trainers.errors import DataError

CONTEXT_LENGTH = 77  # CLIP's text context, SOT and EOT included
SPLITS = ("train", "test")

# CoOp renames four Caltech101 folders in the class NAME only; on disk the folder keeps its name
# (Faces_image_0274.jpg is caltech-101/101_ObjectCategories/Faces/image_0274.jpg, class "face").
CALTECH_RENAMES: dict[str, str] = {
    "Faces": "face",
    "Leopards": "leopard",
    "Motorbikes": "motorbike",
    "airplanes": "airplane",
}
# FGVC-Aircraft variant names with a "/" cannot be part of a file key; upstream wrote "_" instead.
AIRCRAFT_KEY_FIXES: dict[str, str] = {"F-16A_B": "F-16A/B", "F_A-18": "F/A-18"}

DOWNLOAD_HINT = "python -m tools.download_fdrd --root <DATASET.ROOT>"
PACKAGED_META_DIR = Path(__file__).resolve().parent / "fdrd_meta"


class FDRDFormatError(DataError):
    """A caption, split or meta-category file that cannot be used; the message names the thing and the fix."""


@dataclass(frozen=True)
class CaptionRecord:
    """One image-caption pair of an FDRD split, before it becomes a Dassl Datum."""

    key: str
    image: str  # path relative to DATASET.ROOT, POSIX separators
    label: int
    classname: str  # the CoOp class name of ``label``
    caption: str
    negatives: tuple[str, ...]
    caption_id: int  # index of the entry within its caption file (ground truth is by index)


Locator = Callable[[str, Mapping[str, Any], str], "tuple[str, str]"]


@dataclass(frozen=True)
class DomainSpec:
    """Where a domain's CoOp data lives under DATASET.ROOT and how its caption entries map onto it."""

    name: str
    coop_dir: str  # CoOp dataset folder under DATASET.ROOT
    image_subdir: str  # folder the CoOp split's relative paths start from ("" = coop_dir itself)
    class_file: str  # under coop_dir: a CoOp split JSON, or FGVC's variants.txt
    coop_name: str | None  # CoOp dataset name (key of the Google-Drive split links); None: not a CoOp set
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    locate: Locator  # (key, entry, source) -> (raw class name, image path relative to image_dir)

    @property
    def image_dir(self) -> str:
        """The image folder relative to DATASET.ROOT."""
        return posixpath.normpath(posixpath.join(self.coop_dir, self.image_subdir))

    def caption_files(self, split: str) -> tuple[str, ...]:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return self.train_files if split == "train" else self.test_files


# --------------------------------------------------------------------------- per-domain locators


def _text_field(entry: Mapping[str, Any], field: str, key: str, source: str) -> str:
    value = entry.get(field)
    if not isinstance(value, str) or not value.strip():
        raise FDRDFormatError(
            f"{source}: entry {key!r} has no usable {field!r} field (got {value!r}); "
            "this domain needs it to find the image; fix or remove the entry"
        )
    return value.strip()


def _file_name(entry: Mapping[str, Any], key: str) -> str:
    """``file_name`` where present, else the key (they are equal in every published file)."""
    value = entry.get("file_name")
    return value.strip() if isinstance(value, str) and value.strip() else key


def _with_jpg(name: str) -> str:
    return name if posixpath.splitext(name)[1] else f"{name}.jpg"


def _locate_caltech(key: str, entry: Mapping[str, Any], source: str) -> tuple[str, str]:
    # Folder names contain "_" (car_side, water_lilly), so split at the LAST "_image_".
    file_name = _file_name(entry, key)
    folder, sep, tail = file_name.rpartition("_image_")
    if not sep or not folder:
        raise FDRDFormatError(
            f"{source}: Caltech101 entry {key!r} should be named <Folder>_image_<NNNN>.jpg; fix the key/file_name"
        )
    raw_class = entry.get("class_name") or CALTECH_RENAMES.get(folder, folder)
    return raw_class, f"{folder}/image_{tail}"


_CARS_FILE = re.compile(r"(cars_(?:train|test))_(\d+\.jpg)")


def _locate_cars(key: str, entry: Mapping[str, Any], source: str) -> tuple[str, str]:
    # cars_train_05266.jpg -> cars_train/05266.jpg; the (unpublished) test file presumably cars_test_*.
    file_name = _file_name(entry, key)
    match = _CARS_FILE.fullmatch(file_name)
    if match is None:
        raise FDRDFormatError(
            f"{source}: StanfordCars entry {key!r} should be named cars_train_<NNNNN>.jpg or "
            "cars_test_<NNNNN>.jpg; fix the key/file_name"
        )
    return _text_field(entry, "class_name", key, source), f"{match.group(1)}/{match.group(2)}"


def _locate_by_class_folder(key: str, entry: Mapping[str, Any], source: str) -> tuple[str, str]:
    # DTD, UCF101 and the synthetic domain: <class_name>/<file_name>. UCF takes the folder from
    # class_name on purpose: v_HandStandPushups_* files live in Handstand_Pushups/.
    class_name = _text_field(entry, "class_name", key, source)
    return class_name, f"{class_name}/{_file_name(entry, key)}"


_FLOWER_KEY = re.compile(r"(.+)_image_(\d+)")


def _locate_flowers(key: str, entry: Mapping[str, Any], source: str) -> tuple[str, str]:
    # number "06422" -> jpg/image_06422.jpg (all published numbers are 5-digit strings, 1..8189).
    match = _FLOWER_KEY.fullmatch(_file_name(entry, key))
    number = entry.get("number", match.group(2) if match else None)
    try:
        number_int = int(number)
    except (TypeError, ValueError):
        raise FDRDFormatError(
            f"{source}: Flowers102 entry {key!r} has no image number (field 'number' or a key like "
            "<class>_image_<NNNNN>); fix the entry"
        ) from None
    raw_class = entry.get("class_name") or (match.group(1) if match else None)
    if not raw_class:
        raise FDRDFormatError(f"{source}: Flowers102 entry {key!r} has no class_name; fix the entry")
    return raw_class, f"image_{number_int:05d}.jpg"


_PET_KEY = re.compile(r"(.+)_(\d+)")


def _locate_pets(key: str, entry: Mapping[str, Any], source: str) -> tuple[str, str]:
    # Sphynx_43 -> class "sphynx" (CoOp lower-cases the breed), image images/Sphynx_43.jpg.
    name = _file_name(entry, key)
    match = _PET_KEY.fullmatch(posixpath.splitext(name)[0])
    if match is None:
        raise FDRDFormatError(f"{source}: OxfordPets entry {key!r} should be named <Breed>_<N>; fix the key")
    return match.group(1).lower(), _with_jpg(name)


def _locate_aircraft(key: str, entry: Mapping[str, Any], source: str) -> tuple[str, str]:
    # 707-320_1514522 -> class "707-320", image images/1514522.jpg; F-16A_B / F_A-18 restore their "/".
    variant, sep, image_id = key.rpartition("_")
    if not sep or not variant:
        raise FDRDFormatError(f"{source}: FGVCAircraft entry {key!r} should be named <variant>_<image id>; fix the key")
    image_id = _file_name(entry, image_id)
    return AIRCRAFT_KEY_FIXES.get(variant, variant), _with_jpg(image_id)


def _locate_food(key: str, entry: Mapping[str, Any], source: str) -> tuple[str, str]:
    # [guess: no Food101 caption file was ever readable] images/<class>/<id>.jpg; a "<class>_" prefix
    # on the file name, as in the Caltech keys, is stripped.
    class_name = _text_field(entry, "class_name", key, source)
    file_name = posixpath.basename(_file_name(entry, key))
    prefix = f"{class_name}_"
    if file_name.startswith(prefix):
        file_name = file_name[len(prefix):]
    return class_name, f"{class_name}/{_with_jpg(file_name)}"


def sun397_folder(classname: str) -> str:
    """Invert CoOp's SUN397 naming: "outdoor apartment_building" -> "a/apartment_building/outdoor"."""
    parts = classname.split(" ")[::-1]
    return "/".join([parts[0][0], *parts])


def _locate_sun397(key: str, entry: Mapping[str, Any], source: str) -> tuple[str, str]:
    # [guess: no SUN397 caption file was ever readable] class_name is the CoOp name, the file name
    # the SUN397 basename (sun_*.jpg).
    class_name = _text_field(entry, "class_name", key, source)
    return class_name, f"{sun397_folder(class_name)}/{posixpath.basename(_file_name(entry, key))}"


DOMAINS: dict[str, DomainSpec] = {
    spec.name: spec
    for spec in (
        DomainSpec("caltech101", "caltech-101", "101_ObjectCategories", "split_zhou_Caltech101.json", "Caltech101",
                   ("inter_caltech-101_train.json",), ("inter_caltech-101_test.json",), _locate_caltech),
        DomainSpec("pets", "oxford_pets", "images", "split_zhou_OxfordPets.json", "OxfordPets",
                   ("pets_train.json",), ("pets_test.json",), _locate_pets),
        DomainSpec("cars", "stanford_cars", "", "split_zhou_StanfordCars.json", "StanfordCars",
                   ("inter_car_train.json",), ("inter_car_test.json", "car_test.json"), _locate_cars),
        DomainSpec("flowers", "oxford_flowers", "jpg", "split_zhou_OxfordFlowers.json", "OxfordFlowers",
                   ("flower_train.json",), ("flower_test.json",), _locate_flowers),
        DomainSpec("food101", "food-101", "images", "split_zhou_Food101.json", "Food101",
                   ("inter_food_train.json",), ("inter_food_test.json",), _locate_food),
        DomainSpec("aircraft", "fgvc_aircraft", "images", "variants.txt", "FGVCAircraft",
                   ("plane_train.json",), ("plane_test.json",), _locate_aircraft),
        DomainSpec("sun397", "sun397", "SUN397", "split_zhou_SUN397.json", "SUN397",
                   ("inter_sun397_train.json",), ("inter_sun397_test.json",), _locate_sun397),
        DomainSpec("dtd", "dtd", "images", "split_zhou_DescribableTextures.json", "DescribableTextures",
                   ("inter_dtd_train.json",), ("inter_dtd_test.json",), _locate_by_class_folder),
        DomainSpec("ucf101", "ucf101", "UCF-101-midframes", "split_zhou_UCF101.json", "UCF101",
                   ("inter_ucf101_train.json",), ("inter_ucf101_test.json",), _locate_by_class_folder),
        DomainSpec("synthetic", "synthetic_fine", "images", "split_synthetic_fine.json", None,
                   ("synthetic_train.json",), ("synthetic_test.json",), _locate_by_class_folder),
    )
}


def get_domain(name: str) -> DomainSpec:
    """The spec of a domain, or an error listing the valid DATASET.FDRD_DOMAIN values."""
    spec = DOMAINS.get(str(name).strip().lower())
    if spec is None:
        raise FDRDFormatError(
            f"Unknown FDRD domain {name!r}; set DATASET.FDRD_DOMAIN to one of {sorted(DOMAINS)} "
            "(e.g. via configs/datasets/fdrd_<domain>.yaml)"
        )
    return spec


# --------------------------------------------------------------------------- files


def is_placeholder(path: str | Path) -> bool:
    """True for a whitespace-only file (the upstream HEAD train/inter_caltech-101_train.json is 2 bytes)."""
    path = Path(path)
    return path.stat().st_size < 16 and not path.read_bytes().strip()


def load_json(path: str | Path, what: str) -> Any:
    """Read JSON, turning syntax errors, non-UTF-8 bytes and repeated keys into one message naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FDRDFormatError(
            f"{path} ({what}) is not UTF-8 text (byte {exc.start}: {exc.object[exc.start:exc.start + 4]!r}); "
            "re-save it as UTF-8 or fetch it again"
        ) from None
    if not text.strip():
        raise FDRDFormatError(
            f"{path} ({what}) is empty: an upstream placeholder rather than the data; "
            f"fetch the real file with `{DOWNLOAD_HINT}`"
        )
    try:
        return json.loads(text, object_pairs_hook=lambda pairs: _unique_keys(pairs, path, what))
    except json.JSONDecodeError as exc:
        raise FDRDFormatError(
            f"{path} ({what}) is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}; "
            f"repair the file or fetch it again with `{DOWNLOAD_HINT}`"
        ) from None


def _unique_keys(pairs: list[tuple[str, Any]], path: Path, what: str) -> dict[str, Any]:
    """A JSON object as a dict; a repeated key (whose later entry would silently replace the earlier) is an error."""
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise FDRDFormatError(f"{path} ({what}) has the key {key!r} twice, so one entry would silently replace "
                                  "the other; remove or rename one of them")
        data[key] = value
    return data


def caption_file_candidates(caption_dir: str | Path, spec: DomainSpec, split: str) -> list[Path]:
    """Every path accepted for a split, in lookup order: <split>/ subfolder first, then flat."""
    caption_dir = Path(caption_dir)
    return [folder / name for name in spec.caption_files(split) for folder in (caption_dir / split, caption_dir)]


def find_caption_file(caption_dir: str | Path, spec: DomainSpec, split: str) -> Path | None:
    """The first existing candidate that is not an empty placeholder; a placeholder only when nothing
    else exists (parsing it then explains the problem); None when no candidate exists."""
    existing = [path for path in caption_file_candidates(caption_dir, spec, split) if path.is_file()]
    real = [path for path in existing if not is_placeholder(path)]
    return (real or existing or [None])[0]


def read_class_list(path: str | Path) -> list[str]:
    """CoOp class names in label order, from a ``split_zhou_*.json`` (union of its lists) or variants.txt."""
    path = Path(path)
    if path.suffix == ".txt":
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not names:
            raise FDRDFormatError(f"{path} lists no classes; restore the file from the dataset archive")
        return names
    split = load_json(path, "CoOp split file")
    if not isinstance(split, dict) or not all(isinstance(split.get(k), list) for k in ("train", "val", "test")):
        raise FDRDFormatError(f"{path} is not a CoOp split file ({{train, val, test}} lists); fetch it again")
    names: dict[int, str] = {}
    for split_name in ("train", "val", "test"):
        for row in split[split_name]:
            if not (isinstance(row, list) and len(row) == 3):
                raise FDRDFormatError(f"{path}: {split_name} row {row!r} is not [path, label, classname]")
            label, classname = int(row[1]), str(row[2])
            if names.setdefault(label, classname) != classname:
                raise FDRDFormatError(f"{path}: label {label} is both {names[label]!r} and {classname!r}")
    if not names or sorted(names) != list(range(len(names))):
        raise FDRDFormatError(f"{path}: labels must be 0..N-1 with no gap; fetch the split file again")
    return [names[label] for label in range(len(names))]


# --------------------------------------------------------------------------- classes


def normalize_classname(name: str) -> str:
    """Case, "_" and spacing-insensitive key: flower keys say "morning_glory", CoOp says "morning glory"."""
    return " ".join(name.replace("_", " ").split()).casefold()


class ClassIndex:
    """Maps a raw class string to its CoOp label: exact name first, then the normalised name."""

    def __init__(self, classnames: Sequence[str]):
        self.classnames = list(classnames)
        if len(set(self.classnames)) != len(self.classnames):
            raise FDRDFormatError(f"The class list has duplicate names: {self.classnames}")
        self._exact = {name: label for label, name in enumerate(self.classnames)}
        keys = [normalize_classname(name) for name in self.classnames]
        # Two names with one normalised form would make the fallback ambiguous: keep them exact-only.
        self._normalized = {key: label for label, key in enumerate(keys) if keys.count(key) == 1}

    def resolve(self, raw: str) -> int | None:
        label = self._exact.get(raw)
        return label if label is not None else self._normalized.get(normalize_classname(raw))


# --------------------------------------------------------------------------- caption files


def _negatives(entry: Mapping[str, Any], key: str, source: str) -> tuple[str, ...]:
    value = entry.get("negative")
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(text, str) for text in value):
        raise FDRDFormatError(f"{source}: entry {key!r} has a 'negative' field that is not a list of strings")
    return tuple(value)


def parse_caption_entries(
    data: Any, spec: DomainSpec, classnames: Sequence[str], source: str
) -> list[CaptionRecord]:
    """Turn a loaded caption JSON into records, in file order (``caption_id`` = position in the file).

    Duplicate captions stay separate records: ground truth is the entry index, not the text.
    """
    if not isinstance(data, dict):
        raise FDRDFormatError(f"{source}: expected a JSON object keyed by image id, got {type(data).__name__}")
    if not data:
        raise FDRDFormatError(f"{source} has no entries; fetch or regenerate the file")
    index = ClassIndex(classnames)
    records: list[CaptionRecord] = []
    for caption_id, (key, entry) in enumerate(data.items()):
        if not isinstance(entry, dict):
            raise FDRDFormatError(f"{source}: entry {key!r} is a {type(entry).__name__}, not an object")
        caption = entry.get("positive")
        if caption is not None and not isinstance(caption, str):
            raise FDRDFormatError(
                f"{source}: entry {key!r} has a caption ('positive') that is a {type(caption).__name__} "
                f"({caption!r}), not text; write the caption as a JSON string or remove the entry"
            )
        if caption is None or not caption.strip():
            raise FDRDFormatError(
                f"{source}: entry {key!r} has no caption (field 'positive' is missing or empty); "
                "add the caption or remove the entry"
            )
        raw_class, image = spec.locate(key, entry, source)
        label = index.resolve(raw_class)
        if label is None:
            raise FDRDFormatError(
                f"{source}: entry {key!r} has class {raw_class!r}, which is not one of the "
                f"{len(index.classnames)} {spec.name} classes (e.g. {index.classnames[:3]}); "
                "check DATASET.FDRD_DOMAIN and that the CoOp class list belongs to this domain"
            )
        records.append(CaptionRecord(
            key=key,
            image=posixpath.join(spec.image_dir, image),
            label=label,
            classname=index.classnames[label],
            caption=caption,
            negatives=_negatives(entry, key, source),
            caption_id=caption_id,
        ))
    return records


def parse_caption_file(path: str | Path, spec: DomainSpec, classnames: Sequence[str]) -> list[CaptionRecord]:
    """Load and parse one caption file (see parse_caption_entries)."""
    return parse_caption_entries(load_json(path, f"FDRD {spec.name} caption file"), spec, classnames, str(path))


def check_class_coverage(records: Sequence[CaptionRecord], classnames: Sequence[str], source: str) -> None:
    """Every class must have at least one pair: a class without any would shift Dassl's labels
    (num_classes comes from the largest train label) and break per-class few-shot sampling."""
    present = {record.label for record in records}
    empty = [name for label, name in enumerate(classnames) if label not in present]
    if empty:
        raise FDRDFormatError(
            f"{source}: {len(empty)} of {len(classnames)} classes have no caption after parsing "
            f"(first: {empty[:5]}); the file is incomplete or belongs to another domain"
        )


# --------------------------------------------------------------------------- caption length


def caption_token_length(caption: str) -> int:
    """BPE tokens of a caption including SOT and EOT, as CLIP's tokenize counts them."""
    return count_bpe_tokens(caption) + 2


def count_overlong(captions: Iterable[str], context_length: int = CONTEXT_LENGTH) -> int:
    """How many captions the text encoder will truncate (they are kept; the count is only reported)."""
    return sum(caption_token_length(caption) > context_length for caption in captions)


# --------------------------------------------------------------------------- meta-categories


def _parse_meta_file(path: Path, classnames: Sequence[str]) -> dict[str, list[str]]:
    data = load_json(path, "FDRD meta-category file")
    groups = data.get("meta_categories") if isinstance(data, dict) else None
    if not isinstance(groups, dict) or not all(
        isinstance(names, list) and all(isinstance(name, str) for name in names) for names in groups.values()
    ):
        raise FDRDFormatError(
            f'{path}: expected {{"source": "...", "meta_categories": {{"group": ["classname", ...]}}}}'
        )
    index = ClassIndex(classnames)
    result: dict[str, list[str]] = {}
    owner: dict[int, str] = {}
    matched_any = False
    for group, names in groups.items():
        members = []
        for name in names:
            label = index.resolve(name)
            if label is None:
                continue  # a class outside the current (e.g. base/new) subset
            matched_any = True
            if label in owner:
                raise FDRDFormatError(
                    f"{path}: class {classnames[label]!r} is in both {owner[label]!r} and {group!r}; "
                    "every class must be in exactly one group"
                )
            owner[label] = group
            members.append(classnames[label])
        if members:
            result[group] = members
    if not matched_any:
        raise FDRDFormatError(
            f"{path}: none of its class names matches the dataset's classes (e.g. {list(classnames)[:3]}); "
            "use the CoOp class names"
        )
    missing = [name for label, name in enumerate(classnames) if label not in owner]
    if missing:
        raise FDRDFormatError(
            f"{path}: {len(missing)} classes are in no group (first: {missing[:5]}); "
            "every class must be in exactly one group"
        )
    return result


def load_meta_categories(
    domain: str, classnames: Sequence[str], data_dir: str | Path
) -> dict[str, list[str]] | None:
    """Meta-category groups {group: [classname, ...]} for DCAR's category-aware negatives, or None.

    Looks for ``<data_dir>/fdrd/<domain>_meta.json`` (a user override, or the generated synthetic
    domain's), then the packaged ``datasets/fdrd_meta/<domain>.json``; None means "no trusted
    hierarchy": the trainer falls back to nearest classes by CLIP text embedding. Names are matched
    to ``classnames`` case/underscore-insensitively and returned as spelled in ``classnames``;
    file names outside ``classnames`` (a base/new subset) are dropped, but every given class must
    be in exactly one group.
    """
    for path in (Path(data_dir) / "fdrd" / f"{domain}_meta.json", PACKAGED_META_DIR / f"{domain}.json"):
        if path.is_file():
            return _parse_meta_file(path, classnames)
    return None
