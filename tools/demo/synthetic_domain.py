"""A CPU-scale fine-grained retrieval domain, ``synthetic``, written in FDRD Format A and the CoOp layout.

Why it exists: the real FDRD domains need gigabytes of images and a ViT-B/32; this domain lets the
whole DCAR/DPT pipeline (dataset reader, prompt learning, hard negatives, Recall@K) run end to end on
two CPU cores in seconds, with the same file formats as the real data.

Structure, built so that what DCAR targets dominates the errors (docs/dcar.md, "The embedded benchmark"):

* meta-category = colour family (``red``, ``teal``...); its 6 subcategories differ in **one** attribute, the
  shade (hue rotated by -24/0/+24 degrees x full or 55% brightness), and are named "<colour> <modifier>"
  ("red vexlar", "red quorin"): the colour word is one the tiny CLIP learnt in pretraining (as CLIP knows
  "terrier"), the modifier an invented word it never saw (as a rare breed). Every caption names the class, so
  the meta-category is always told, and telling siblings apart is what is left: a category swap ("red quorin"
  for "red vexlar") is the hard negative, and only the image's exact shade decides it;
* shape and pattern are random nuisance (the pattern stated in words for ``pattern_mention_rate`` of the
  captions), so the class must come from the colour, as a breed comes from the coat and not from the pose;
* per-image nuisance: count, size, background tone, position (single objects), plus unstated tint, tilt and
  pixel noise. Few enough stated combinations that sibling captions in a test gallery often share their
  whole description and differ only in the name, and same-class captions in one attribute (an attribute
  swap: "large" -> "small");
* the test file carries, per image, 2 category swaps (sibling names) and 2 attribute swaps (one stated
  nuisance attribute changed), so the trainers' hard-negative report measures both.

Layout under ``DATA``::

    synthetic_fine/images/<class_name>/<class_name>_NNNN.png
    synthetic_fine/split_synthetic_fine.json      {"train"|"val"|"test": [[relpath, label, classname]]}
    synthetic_fine/annotations.json               per-image attributes (for checking negatives)
    synthetic_fine/manifest.json                  generator version, seed, spec, file hashes (last)
    fdrd/synthetic_train.json, synthetic_test.json  Format A (train = CoOp train + val, like FDRD)
    fdrd/synthetic_meta.json                      {"source", "meta_categories": {colour: [classnames]}}

The taxonomy (class names, their attributes) is fixed by ``TAXONOMY_SEED`` and does not depend on
``seed``: a different seed redraws the images and captions of the same classes, like a resampled
dataset, so configs and reports keep their class lists.
"""
from __future__ import annotations

import colorsys
import functools
import hashlib
import io
import json
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from tools.demo.files import json_bytes, read_json, sha256_of
from trainers.atomic_io import atomic_write_bytes
from trainers.bpe import clip_bpe
from tools.demo.drawing import PATTERN_NAMES, render
from tools.demo.scenes import (
    COLOURS,
    POSITION_PHRASES,
    Mentions,
    SceneAttributes,
    caption_vocabulary,
    describe,
    photo_prefix,
    plural_of,
    sample_scene,
)

DOMAIN_KEY = "synthetic"
DATASET_DIR = "synthetic_fine"
GENERATOR_VERSION = 2
TAXONOMY_SEED = 20250811
FILE_PATH_PLACEHOLDER = "YOUR_IMAGE_PATH"
META_SOURCE = "synthetic generator"

_ONSETS: tuple[str, ...] = (
    "b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
    "br", "dr", "gr", "kr", "tr", "pl", "sk", "qu", "th", "zh",
)  # fmt: skip
_VOWELS: tuple[str, ...] = ("a", "e", "i", "o", "u", "ae", "ou")
_CODAS: tuple[str, ...] = ("", "n", "r", "l", "x", "s", "m", "th")


@dataclass(frozen=True)
class DomainSpec:
    """Size of the domain. Classes = len(colours) x len(hue_offsets) x len(shade_values)."""

    colours: tuple[str, ...] = ("red", "yellow", "green", "teal", "blue", "purple")  # the meta-categories
    # A meta-category's subcategories differ in shade only: hue offsets (degrees) x brightness (HSV value).
    hue_offsets: tuple[float, ...] = (-24.0, 0.0, 24.0)
    shade_values: tuple[float, ...] = (1.0, 0.55)
    colour_jitter: int = 4  # per-channel RGB noise per image; the shades sit ~40 RGB units apart
    n_train: int = 20  # >= 16 so that 16-shot few-shot sampling works
    n_val: int = 5
    n_test: int = 10
    image_size: int = 32  # the tiny CLIP's input resolution
    # Chance that a caption states the object's pattern (a nuisance, like shape) in words.
    pattern_mention_rate: float = 0.3
    category_negatives: int = 2  # per test image: sibling-name swaps ...
    attribute_negatives: int = 2  # ... and one-attribute swaps

    @property
    def n_classes(self) -> int:
        return len(self.colours) * len(self.hue_offsets) * len(self.shade_values)


@dataclass(frozen=True)
class SubCategory:
    name: str  # "<colour>_<modifier>", CoOp's raw form; captions write it with a space

    @property
    def display_name(self) -> str:
        return self.name.replace("_", " ")
    label: int
    meta: str  # the colour family
    colour: str  # the family's colour word
    rgb: tuple[int, int, int]  # the subcategory's own shade


@dataclass(frozen=True)
class DomainPaths:
    """Where every file of the domain lives under a data root (one place, so readers agree)."""

    root: Path

    @property
    def dataset_dir(self) -> Path:
        return self.root / DATASET_DIR

    @property
    def image_dir(self) -> Path:
        return self.dataset_dir / "images"

    @property
    def split_file(self) -> Path:
        return self.dataset_dir / f"split_{DATASET_DIR}.json"

    @property
    def annotations(self) -> Path:
        return self.dataset_dir / "annotations.json"

    @property
    def manifest(self) -> Path:
        return self.dataset_dir / "manifest.json"

    @property
    def train_captions(self) -> Path:
        return self.root / "fdrd" / f"{DOMAIN_KEY}_train.json"

    @property
    def test_captions(self) -> Path:
        return self.root / "fdrd" / f"{DOMAIN_KEY}_test.json"

    @property
    def meta_file(self) -> Path:
        return self.root / "fdrd" / f"{DOMAIN_KEY}_meta.json"

    def caption_files(self) -> dict[str, Path]:
        return {"train": self.train_captions, "test": self.test_captions, "meta": self.meta_file}


@dataclass(frozen=True)
class DomainSummary:
    paths: DomainPaths
    seed: int
    class_names: tuple[str, ...]
    counts: dict[str, int]  # images per CoOp split
    built: bool  # False when an existing, matching build was reused
    seconds: float


@functools.lru_cache(maxsize=1)
def _pretraining_tokens() -> frozenset[int]:
    """BPE ids of every word pretraining captions can use: an invented name must share none of them."""
    return frozenset(token for word in caption_vocabulary() for token in clip_bpe().encode(word))


def _syllable(rng: np.random.Generator, open_ending: bool) -> str:
    """Onset + vowel + coda; only a word's first syllable may end on the vowel ("ve" + "xlar")."""
    codas = _CODAS if open_ending else _CODAS[1:]
    return _pick(rng, _ONSETS) + _pick(rng, _VOWELS) + _pick(rng, codas)


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def invent_names(count: int, rng: np.random.Generator) -> list[str]:
    """Pronounceable nonsense words, unknown to the tiny CLIP.

    A name is rejected when it is a pretraining word or shares any BPE token with one (so the text
    encoder has no trained embedding for any piece of it), or when it is a plural of another name.
    """
    vocabulary = caption_vocabulary()
    forbidden_tokens = _pretraining_tokens()
    names: list[str] = []
    while len(names) < count:
        name = _syllable(rng, open_ending=True) + _syllable(rng, open_ending=False)
        if not 5 <= len(name) <= 8 or name in vocabulary or name in names:
            continue
        if any(plural_of(other) == name or plural_of(name) == other for other in names):
            continue
        if forbidden_tokens.intersection(clip_bpe().encode(name)):
            continue
        names.append(name)
    return names


def shade(colour: str, hue_offset: float, value: float) -> tuple[int, int, int]:
    """``colour``'s RGB rotated by ``hue_offset`` degrees, at HSV brightness ``value``."""
    hue, saturation, _ = colorsys.rgb_to_hsv(*(c / 255 for c in COLOURS[colour]))
    rgb = colorsys.hsv_to_rgb((hue + hue_offset / 360) % 1.0, saturation, value)
    return tuple(int(round(c * 255)) for c in rgb)  # type: ignore[return-value]


def build_taxonomy(spec: DomainSpec) -> list[SubCategory]:
    """Classes grouped by colour (the meta-category); within a colour one class per shade, named
    "<colour>_<modifier>" ("red_vexlar"): the colour word is known to the tiny CLIP, the modifier is not."""
    unknown = set(spec.colours) - set(COLOURS)
    if unknown:
        raise ValueError(f"unknown colours {sorted(unknown)}; choose from {sorted(COLOURS)}")
    rng = np.random.default_rng(TAXONOMY_SEED)
    modifiers = invent_names(spec.n_classes, rng)
    classes: list[SubCategory] = []
    for colour in spec.colours:
        shades = [shade(colour, h, v) for h in spec.hue_offsets for v in spec.shade_values]
        for index in rng.permutation(len(shades)):
            label = len(classes)
            classes.append(SubCategory(f"{colour}_{modifiers[label]}", label, colour, colour, shades[index]))
    return classes


def _png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass(frozen=True)
class DrawnItem:
    file_name: str
    png: bytes
    caption: str  # the full Format A positive, prefix included
    attributes: SceneAttributes
    negatives: tuple[str, ...]  # category swaps, then attribute swaps (written to the test file only)


# Stated nuisance attributes an attribute swap may change, and how.
_FLIPS = {"size": ("small", "large"), "background": ("pale", "dark")}


def _caption(attributes: SceneAttributes, category: SubCategory, mentions: Mentions, template: int) -> str:
    """Format A: the prefix names the class as the file's class_name does (raw, "red_zindex"), the body in words."""
    name = category.display_name
    return photo_prefix(category.name) + describe(attributes, name, plural_of(name), mentions, template)


def _attribute_swaps(attributes: SceneAttributes, rng: np.random.Generator) -> list[SceneAttributes]:
    """The scene with one stated nuisance attribute changed, one variant per attribute, in random order."""
    variants = [replace(attributes, **{key: b if getattr(attributes, key) == a else a})
                for key, (a, b) in _FLIPS.items()]
    if attributes.position is not None:
        others = [p for p in POSITION_PHRASES if p != attributes.position]
        variants.append(replace(attributes, position=others[int(rng.integers(len(others)))]))
    order = rng.permutation(len(variants))
    return [variants[i] for i in order]


def draw_item(category: SubCategory, index: int, seed: int, spec: DomainSpec,
              siblings: tuple[SubCategory, ...] = ()) -> DrawnItem:
    """Image ``index`` of ``category``: its own RNG stream, so any item can be redrawn in isolation.

    Negatives come from a second stream, so asking for them never changes the image or the caption."""
    rng = np.random.default_rng([seed, category.label, index])
    attributes, scene = sample_scene(rng, colour=category.colour, rgb=category.rgb,
                                     colour_jitter=spec.colour_jitter)  # any shape, any pattern
    # the name says the colour family; the shape is not described (the tiny CLIP hardly sees it, docs/dcar.md)
    mentions = Mentions(shape=False, colour=False, pattern=bool(rng.random() < spec.pattern_mention_rate),
                        background_tint=False, tilt=False)
    template = int(rng.integers(3))
    negatives: list[str] = []
    if siblings:
        negative_rng = np.random.default_rng([seed, category.label, index, 1])
        picked = negative_rng.choice(len(siblings), size=min(spec.category_negatives, len(siblings)), replace=False)
        negatives += [_caption(attributes, siblings[i], mentions, template) for i in picked]
        swaps = _attribute_swaps(attributes, negative_rng)[: spec.attribute_negatives]
        negatives += [_caption(swapped, category, mentions, template) for swapped in swaps]
    return DrawnItem(
        file_name=f"{category.name}_{index:04d}.png",
        png=_png_bytes(render(scene, spec.image_size)),
        caption=_caption(attributes, category, mentions, template),
        attributes=attributes,
        negatives=tuple(negatives),
    )


def generator_fingerprint(spec: DomainSpec) -> str:
    """Hash of the first item of every class: changes whenever taxonomy, drawing or caption code changes,
    so an edit to the generator invalidates existing builds even if GENERATOR_VERSION was not bumped."""
    digest = hashlib.sha256()
    for category in build_taxonomy(spec):
        item = draw_item(category, 0, seed=0, spec=spec)
        digest.update(category.name.encode() + item.png + item.caption.encode())
    return digest.hexdigest()


def _manifest_payload(seed: int, spec: DomainSpec, file_hashes: dict[str, str] | None) -> dict:
    payload: dict = {
        "generator_version": GENERATOR_VERSION,
        "generator_fingerprint": generator_fingerprint(spec),
        "seed": seed,
        "spec": asdict(spec),
    }
    if file_hashes is not None:
        payload["caption_file_sha256"] = file_hashes
    return payload


def is_built(data_root: Path, seed: int = 0, spec: DomainSpec = DomainSpec()) -> bool:
    """True when a finished build with this seed and spec is present and its caption files are intact."""
    paths = DomainPaths(Path(data_root))
    manifest = read_json(paths.manifest)
    if not manifest or not paths.split_file.is_file():
        return False
    expected = _manifest_payload(seed, spec, None)
    if any(manifest.get(key) != value for key, value in _json_form(expected).items()):
        return False
    hashes = manifest.get("caption_file_sha256", {})
    for kind, path in paths.caption_files().items():
        if not path.is_file() or sha256_of(path.read_bytes()) != hashes.get(kind):
            return False
    return True


def _json_form(payload: dict) -> dict:
    """Tuples become lists in JSON: compare manifests in their JSON form."""
    return json.loads(json_bytes(payload))


def _check_replaceable(target: Path) -> None:
    """Refuse, before writing anything, to replace a directory this generator did not write."""
    if target.exists() and not (target / "manifest.json").is_file():
        raise FileExistsError(
            f"{target} exists but was not written by this generator (no manifest.json); "
            "move it away or pick another data root"
        )


def _swap_in(staging: Path, target: Path) -> None:
    """Move the freshly built directory into place; the previous build is retired, then deleted."""
    if not target.exists():
        staging.rename(target)
        return
    retired = target.with_name(f".{target.name}.old-{time.time_ns()}")
    target.rename(retired)
    staging.rename(target)
    shutil.rmtree(retired)


def _write_tree(staging: Path, seed: int, spec: DomainSpec, classes: list[SubCategory]) -> tuple[dict, dict]:
    """Images, split, annotations and manifest into ``staging``; returns (split, caption file bytes)."""
    split_sizes = {"train": spec.n_train, "val": spec.n_val, "test": spec.n_test}
    split: dict[str, list[list]] = {name: [] for name in split_sizes}
    annotations: dict[str, dict] = {}
    captions: dict[str, dict[str, dict]] = {"train": {}, "test": {}}
    for category in classes:
        class_dir = staging / "images" / category.name
        class_dir.mkdir(parents=True)
        siblings = tuple(c for c in classes if c.meta == category.meta and c.label != category.label)
        index = 0
        for split_name, size in split_sizes.items():
            for _ in range(size):
                item = draw_item(category, index, seed, spec, siblings if split_name == "test" else ())
                (class_dir / item.file_name).write_bytes(item.png)
                split[split_name].append([f"{category.name}/{item.file_name}", category.label, category.name])
                captions["test" if split_name == "test" else "train"][item.file_name] = {
                    "file_name": item.file_name,
                    "class_name": category.name,
                    "file_path": FILE_PATH_PLACEHOLDER,
                    "positive": item.caption,
                    "negative": list(item.negatives),
                }
                annotations[item.file_name] = {
                    "split": split_name,
                    "meta_category": category.meta,
                    **asdict(item.attributes),
                }
                index += 1
    meta_categories = {colour: [c.name for c in classes if c.meta == colour] for colour in spec.colours}
    caption_bytes = {
        "train": json_bytes(captions["train"]),
        "test": json_bytes(captions["test"]),
        "meta": json_bytes({"source": META_SOURCE, "meta_categories": meta_categories}),
    }
    hashes = {kind: sha256_of(data) for kind, data in caption_bytes.items()}
    (staging / f"split_{DATASET_DIR}.json").write_bytes(json_bytes(split))
    (staging / "annotations.json").write_bytes(json_bytes(annotations))
    (staging / "manifest.json").write_bytes(json_bytes(_manifest_payload(seed, spec, hashes)))
    return split, caption_bytes


def generate_synthetic_domain(data_root: Path | str, seed: int = 0, spec: DomainSpec = DomainSpec()) -> DomainSummary:
    """(Re)write the whole domain under ``data_root``; deterministic in (seed, spec).

    Built in a staging directory and swapped in at the end, so readers never see half a domain.
    """
    start = time.perf_counter()
    paths = DomainPaths(Path(data_root))
    _check_replaceable(paths.dataset_dir)
    paths.root.mkdir(parents=True, exist_ok=True)
    staging = paths.root / f".{DATASET_DIR}.staging-{time.time_ns()}"
    classes = build_taxonomy(spec)
    try:
        split, caption_bytes = _write_tree(staging, seed, spec, classes)
        for kind, target in paths.caption_files().items():
            atomic_write_bytes(target, caption_bytes[kind])
        _swap_in(staging, paths.dataset_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return DomainSummary(
        paths=paths,
        seed=seed,
        class_names=tuple(c.name for c in classes),
        counts={name: len(items) for name, items in split.items()},
        built=True,
        seconds=time.perf_counter() - start,
    )


def ensure_synthetic_domain(data_root: Path | str, seed: int = 0, spec: DomainSpec = DomainSpec()) -> DomainSummary:
    """Build the domain unless an identical build (same version, seed, spec, intact files) is present."""
    start = time.perf_counter()
    if not is_built(Path(data_root), seed, spec):
        return generate_synthetic_domain(data_root, seed, spec)
    paths = DomainPaths(Path(data_root))
    split = read_json(paths.split_file)
    return DomainSummary(
        paths=paths,
        seed=seed,
        class_names=tuple(c.name for c in build_taxonomy(spec)),
        counts={name: len(items) for name, items in split.items()},
        built=False,
        seconds=time.perf_counter() - start,
    )
