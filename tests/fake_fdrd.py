"""A tiny FDRD domain on disk, in the real layout, for tests that need the Dassl dataset end to end.

``make_fake_fdrd(tmp_path)`` writes real 8x8 JPEGs, the CoOp class list (split JSON, or
variants.txt for aircraft) and the two caption files, so ``FDRD(cfg)`` loads it exactly as it
loads real data (``cfg.DATASET.ROOT = str(tmp_path)``, ``cfg.DATASET.FDRD_DOMAIN = domain``).

Supported domains: dtd, ucf101, synthetic (Format A or B), pets, aircraft, flowers (Format B only:
their keys carry the class the way the real files do, including the traps: the UCF
``v_HandStandPushups_*`` files in ``Handstand_Pushups/``, the aircraft ``F-16A_B`` key for ``F-16A/B``,
the flower ``number`` field, capitalised cat breeds).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image

_CLASSES: dict[str, list[str]] = {
    "dtd": ["banded", "blotchy", "braided", "bubbly", "bumpy", "chequered"],
    "ucf101": ["Apply_Eye_Makeup", "Handstand_Pushups", "Yo_Yo", "Tai_Chi", "Rafting", "Punch"],
    "synthetic": ["zorbel", "quintar", "flimmet", "drovish", "plenk", "sarvo"],
    "pets": ["abyssinian", "american_bulldog", "bengal", "beagle", "sphynx", "yorkshire_terrier"],
    "aircraft": ["707-320", "F-16A/B", "F/A-18", "A380", "Cessna 172", "DC-3"],
    "flowers": ["pink primrose", "hard-leaved pocket orchid", "morning glory", "colt's foot", "rose", "lotus"],
}
_NATIVE_FORMATS = {"dtd": "AB", "ucf101": "AB", "synthetic": "AB", "pets": "B", "aircraft": "B", "flowers": "B"}
_CAPTION_FILES = {
    "dtd": ("inter_dtd_train.json", "inter_dtd_test.json"),
    "ucf101": ("inter_ucf101_train.json", "inter_ucf101_test.json"),
    "synthetic": ("synthetic_train.json", "synthetic_test.json"),
    "pets": ("pets_train.json", "pets_test.json"),
    "aircraft": ("plane_train.json", "plane_test.json"),
    "flowers": ("flower_train.json", "flower_test.json"),
}
_COOP = {  # domain -> (CoOp folder, image subfolder, class-list file)
    "dtd": ("dtd", "images", "split_zhou_DescribableTextures.json"),
    "ucf101": ("ucf101", "UCF-101-midframes", "split_zhou_UCF101.json"),
    "synthetic": ("synthetic_fine", "images", "split_synthetic_fine.json"),
    "pets": ("oxford_pets", "images", "split_zhou_OxfordPets.json"),
    "aircraft": ("fgvc_aircraft", "images", "variants.txt"),
    "flowers": ("oxford_flowers", "jpg", "split_zhou_OxfordFlowers.json"),
}
_CATS = {"abyssinian", "bengal", "sphynx"}
_COLOURS = ["red", "green", "blue", "golden", "grey", "purple", "white", "black"]


def _pet_breed(classname: str) -> str:
    """Pet file names capitalise cat breeds (Abyssinian_1.jpg) and keep dogs lower-case."""
    return "_".join(part.capitalize() for part in classname.split("_")) if classname in _CATS else classname


def _names(domain: str, classname: str, label: int, n: int) -> tuple[str, dict[str, Any], str]:
    """(JSON key, class fields of the entry, image path relative to the image folder) of image n."""
    if domain == "dtd":
        name = f"{classname}_{n:04d}.jpg"
        return name, {"file_name": name, "class_name": classname}, f"{classname}/{name}"
    if domain == "ucf101":
        action = classname.replace("_", "")
        action = "HandStandPushups" if action == "HandstandPushups" else action  # the real file-name trap
        name = f"v_{action}_g{n // 7 + 1:02d}_c{n % 7 + 1:02d}.jpg"
        return name, {"file_name": name, "class_name": classname}, f"{classname}/{name}"
    if domain == "synthetic":
        name = f"{classname}_{n:04d}.png"
        return name, {"file_name": name, "class_name": classname}, f"{classname}/{name}"
    if domain == "pets":
        name = f"{_pet_breed(classname)}_{n + 1}"
        return name, {"file_name": name}, f"{name}.jpg"
    if domain == "aircraft":
        image_id = f"{label * 1000 + n:07d}"
        return f"{classname.replace('/', '_')}_{image_id}", {"file_name": image_id}, f"{image_id}.jpg"
    number = f"{label * 100 + n + 1:05d}"  # flowers
    key = f"{classname.replace(' ', '_')}_image_{number}"
    return key, {"file_name": key, "class_name": classname.replace(" ", "_"), "number": number}, f"image_{number}.jpg"


def _caption(domain: str, fmt: str, classname: str, n: int, split: str) -> str:
    shown = _pet_breed(classname).replace("_", " ") if domain == "pets" else classname
    body = f"A {_COLOURS[n % len(_COLOURS)]} {split} example number {n} of {shown} in the centre."
    if fmt == "A":
        return f"This is a photo of {classname}.{body}"
    return body if domain in ("pets", "aircraft") else f"This is a {shown}.{body}"


def make_fake_fdrd(
    root: Path,
    domain: str = "dtd",
    classes: int = 3,
    train_per_class: int = 4,
    test_per_class: int = 2,
    fmt: str = "A",
    subfolders: bool = False,
) -> dict[str, Any]:
    """Write a tiny FDRD domain under ``root`` (= DATASET.ROOT) and return what was written.

    Train images are split 3:1 into the CoOp split's "train" and "val" lists (FDRD train = CoOp
    train + val). Format B entries get 4 negatives (the positive with the class swapped, as upstream).
    ``subfolders`` puts the caption files in fdrd/train/ and fdrd/test/ instead of flat in fdrd/.

    Returns {"root", "domain", "classnames", "caption_dir", "train_json", "test_json", "class_file",
    "image_dir", "train", "test"}; "train"/"test" list per pair (absolute image path, label, caption),
    in caption-file order.
    """
    if domain not in _CLASSES:
        raise ValueError(f"make_fake_fdrd supports {sorted(_CLASSES)}, not {domain!r}")
    if fmt not in _NATIVE_FORMATS[domain]:
        raise ValueError(f"the real {domain} files are Format {_NATIVE_FORMATS[domain]}; got fmt={fmt!r}")
    if not 1 <= classes <= len(_CLASSES[domain]):
        raise ValueError(f"classes must be in 1..{len(_CLASSES[domain])}")
    root = Path(root)
    classnames = _CLASSES[domain][:classes]
    coop_dir, image_subdir, class_file = _COOP[domain]
    image_dir = root / coop_dir / image_subdir
    split_rows: dict[str, list[list]] = {"train": [], "val": [], "test": []}
    captions: dict[str, dict[str, dict]] = {"train": {}, "test": {}}
    written: dict[str, list[tuple[str, int, str]]] = {"train": [], "test": []}

    for label, classname in enumerate(classnames):
        for n in range(train_per_class + test_per_class):
            split = "train" if n < train_per_class else "test"
            key, fields, rel = _names(domain, classname, label, n)
            path = image_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 8), ((40 * label) % 256, (30 * n) % 256, 128)).save(path)
            coop_split = "test" if split == "test" else ("val" if n % 4 == 3 else "train")
            split_rows[coop_split].append([rel, label, classname])
            caption = _caption(domain, fmt, classname, n, split)
            others = [c for c in classnames if c != classname] or [classname]
            negatives = [] if fmt == "A" else [_caption(domain, fmt, others[i % len(others)], n, split) for i in range(4)]
            file_path = "YOUR_IMAGE_PATH" if fmt == "A" else f"/root/autodl-tmp/DATA/{coop_dir}/{rel}"
            captions[split][key] = {**fields, "file_path": file_path, "positive": caption, "negative": negatives}
            written[split].append((str(path), label, caption))

    class_path = root / coop_dir / class_file
    if class_file == "variants.txt":
        class_path.write_text("".join(f"{name}\n" for name in classnames))
    else:
        class_path.write_text(json.dumps(split_rows, indent=1))
    caption_dir = root / "fdrd"
    paths = {}
    for split, name in zip(("train", "test"), _CAPTION_FILES[domain]):
        folder = caption_dir / split if subfolders else caption_dir
        folder.mkdir(parents=True, exist_ok=True)
        paths[split] = folder / name
        paths[split].write_text(json.dumps(captions[split], indent=1))
    return {
        "root": root, "domain": domain, "classnames": classnames, "caption_dir": caption_dir,
        "train_json": paths["train"], "test_json": paths["test"], "class_file": class_path,
        "image_dir": image_dir, "train": written["train"], "test": written["test"],
    }
