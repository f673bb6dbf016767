"""CoOp datasets on tiny fake folders: splits, few-shot caches, base/new classes, and error messages."""
from __future__ import annotations

import json
import os
import pickle
import random
import socket
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("dassl", reason="Dassl is not installed (make install DASSL_SRC=...)")

from dassl.config import get_cfg_default  # noqa: E402
from dassl.data.datasets import DATASET_REGISTRY, Datum, DatasetBase  # noqa: E402

import datasets  # noqa: E402
from datasets import coop_split  # noqa: E402
from datasets.coop_split import (  # noqa: E402
    DatasetNotFoundError,
    EmptyClassError,
    fewshot_per_class,
    load_or_build_fewshot,
    read_split,
    require_path,
    save_split,
    subsample_classes,
)
from fake_coop_data import (  # noqa: E402
    make_fgvc_aircraft,
    make_imagenet,
    make_imagenet_variant,
    make_split_dataset,
    write_image,
)

CLASSNAMES = ["abyssinian", "beagle", "boxer", "chihuahua", "pug"]
# (registry name, dataset_dir, image subfolder, split file) exactly as CoOp lays them out.
SPLIT_DATASETS = [
    ("OxfordPets", "oxford_pets", "images", "split_zhou_OxfordPets.json"),
    ("Caltech101", "caltech-101", "101_ObjectCategories", "split_zhou_Caltech101.json"),
    ("DescribableTextures", "dtd", "images", "split_zhou_DescribableTextures.json"),
    ("EuroSAT", "eurosat", "2750", "split_zhou_EuroSAT.json"),
    ("StanfordCars", "stanford_cars", "", "split_zhou_StanfordCars.json"),
    ("OxfordFlowers", "oxford_flowers", "jpg", "split_zhou_OxfordFlowers.json"),
    ("Food101", "food-101", "images", "split_zhou_Food101.json"),
    ("SUN397", "sun397", "SUN397", "split_zhou_SUN397.json"),
    ("UCF101", "ucf101", "UCF-101-midframes", "split_zhou_UCF101.json"),
]
IMAGENET_CLASSES = {
    "n01440764": "tench",
    "n01443537": "goldfish",
    "n01484850": "great white shark",
    "n01491361": "tiger shark",
}


def make_cfg(root: Path, name: str, num_shots: int = -1, seed: int = 1, subsample: str = "all"):
    """Dassl's default config plus the SUBSAMPLE_CLASSES key the project's train.py adds."""
    cfg = get_cfg_default()
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.NAME = name
    cfg.DATASET.NUM_SHOTS = num_shots
    cfg.DATASET.SUBSAMPLE_CLASSES = subsample
    cfg.SEED = seed
    return cfg


def build(root: Path, name: str, **kwargs) -> DatasetBase:
    return DATASET_REGISTRY.get(name)(make_cfg(root, name, **kwargs))


def per_class(items: list[Datum]) -> Counter:
    return Counter(item.label for item in items)


def paths(items: list[Datum]) -> list[str]:
    return [item.impath for item in items]


@pytest.fixture
def pets_root(tmp_path: Path) -> Path:
    make_split_dataset(tmp_path, "oxford_pets", "images", "split_zhou_OxfordPets.json", CLASSNAMES, counts=(6, 5, 2))
    return tmp_path


#: CoOp's datasets and their zero-shot templates (CUSTOM_TEMPLATES of CoOp's trainers/zsclip.py), the reference
COOP_TEMPLATES = {
    "OxfordPets": "a photo of a {}, a type of pet.",
    "OxfordFlowers": "a photo of a {}, a type of flower.",
    "FGVCAircraft": "a photo of a {}, a type of aircraft.",
    "DescribableTextures": "{} texture.",
    "EuroSAT": "a centered satellite photo of {}.",
    "StanfordCars": "a photo of a {}.",
    "Food101": "a photo of {}, a type of food.",
    "SUN397": "a photo of a {}.",
    "Caltech101": "a photo of a {}.",
    "UCF101": "a photo of a person doing {}.",
    "ImageNet": "a photo of a {}.",
    "ImageNetSketch": "a photo of a {}.",
    "ImageNetV2": "a photo of a {}.",
    "ImageNetA": "a photo of a {}.",
    "ImageNetR": "a photo of a {}.",
}


def test_every_dataset_is_registered_and_has_a_config():
    config_dir = Path(__file__).resolve().parents[1] / "configs" / "datasets"
    names_in_configs = {
        line.split(":", 1)[1].strip().strip('"')
        for path in config_dir.glob("*.yaml")
        for line in path.read_text().splitlines()
        if line.strip().startswith("NAME:")
    }
    registered = set(datasets.registered_datasets())
    assert set(COOP_TEMPLATES) | {"FDRD"} <= registered
    assert registered == names_in_configs


def test_each_dataset_states_coops_zero_shot_template():
    from trainers.engine.templates import DEFAULT_TEMPLATE, template_for

    assert {name: template_for(name) for name in COOP_TEMPLATES} == COOP_TEMPLATES
    assert template_for("FDRD") == template_for("NotADataset") == DEFAULT_TEMPLATE == "a photo of a {}."


def test_the_split_files_on_google_drive_are_those_the_datasets_read():
    """CoOp's DATASETS.md links one file per dataset (ImageNet: its class list; FGVCAircraft has none)."""
    files = coop_split.gdrive_files()
    assert set(files) == {name for name, *_ in SPLIT_DATASETS} | {"ImageNet"}
    assert files["ImageNet"] == ("classnames.txt", "1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF")
    assert all(files[name][0] == split_file for name, _, _, split_file in SPLIT_DATASETS)


def test_the_split_layouts_cover_every_split_file_dataset():
    split_datasets = {name for name, cls in datasets.registered_datasets().items()
                      if issubclass(cls, coop_split.CoOpSplitDataset)}
    assert split_datasets == {name for name, *_ in SPLIT_DATASETS}


@pytest.mark.parametrize("name,dataset_dir,image_subdir,split_file", SPLIT_DATASETS)
def test_split_dataset_reads_full_split(tmp_path, name, dataset_dir, image_subdir, split_file):
    image_dir = make_split_dataset(tmp_path, dataset_dir, image_subdir, split_file, CLASSNAMES[:3])
    dataset = build(tmp_path, name)
    assert (len(dataset.train_x), len(dataset.val), len(dataset.test)) == (18, 9, 6)
    assert dataset.num_classes == 3
    assert dataset.classnames == CLASSNAMES[:3]
    assert per_class(dataset.test) == {0: 2, 1: 2, 2: 2}
    first = dataset.train_x[0]
    assert first.impath == os.path.join(str(image_dir), "class_000", "train_0.jpg")
    assert (first.label, first.classname) == (0, "abyssinian")


@pytest.mark.parametrize("num_shots,val_shots", [(2, 2), (5, 4)])
def test_fewshot_counts_and_cache_reuse(pets_root, capsys, num_shots, val_shots):
    dataset = build(pets_root, "OxfordPets", num_shots=num_shots, seed=3)
    assert per_class(dataset.train_x) == {label: num_shots for label in range(5)}
    assert per_class(dataset.val) == {label: val_shots for label in range(5)}
    assert len(dataset.test) == 10  # the test split is never few-shot
    cache = pets_root / "oxford_pets" / "split_fewshot" / f"shot_{num_shots}-seed_3.json"
    assert cache.is_file()
    mtime = cache.stat().st_mtime_ns
    capsys.readouterr()

    again = build(pets_root, "OxfordPets", num_shots=num_shots, seed=3)
    assert f"Loading few-shot data from {cache}" in capsys.readouterr().out
    assert cache.stat().st_mtime_ns == mtime
    assert paths(again.train_x) == paths(dataset.train_x)
    assert paths(again.val) == paths(dataset.val)


def test_fewshot_depends_on_seed_not_on_global_random_state(pets_root):
    random.seed(0)
    first = build(pets_root, "OxfordPets", num_shots=2, seed=7)
    (pets_root / "oxford_pets" / "split_fewshot" / "shot_2-seed_7.json").unlink()
    random.seed(12345)
    rebuilt = build(pets_root, "OxfordPets", num_shots=2, seed=7)
    other_seed = build(pets_root, "OxfordPets", num_shots=2, seed=8)
    assert paths(rebuilt.train_x) == paths(first.train_x)
    assert paths(other_seed.train_x) != paths(first.train_x)


def test_fewshot_sampling_matches_dassl_generate_fewshot_dataset(pets_root):
    """Same draws as CoOp's path (Dassl's method after random.seed), so CoOp's shots are reproduced."""
    folder = pets_root / "oxford_pets"
    train, val, _ = read_split(str(folder / "split_zhou_OxfordPets.json"), str(folder / "images"))
    dassl_dataset = DatasetBase.__new__(DatasetBase)
    random.seed(5)
    expected_train = dassl_dataset.generate_fewshot_dataset(train, num_shots=3)
    expected_val = dassl_dataset.generate_fewshot_dataset(val, num_shots=3)
    rng = random.Random(5)
    assert paths(fewshot_per_class(train, 3, rng)) == paths(expected_train)
    assert paths(fewshot_per_class(val, 3, rng)) == paths(expected_val)


def test_nonpositive_shots_mean_full_split_and_no_cache(pets_root):
    for num_shots in (0, -1):
        dataset = build(pets_root, "OxfordPets", num_shots=num_shots)
        assert (len(dataset.train_x), len(dataset.val)) == (30, 25)
    assert not list((pets_root / "oxford_pets").glob("split_fewshot/*"))


def test_truncated_cache_is_reported_once_and_rebuilt(pets_root, capsys):
    first = build(pets_root, "OxfordPets", num_shots=2, seed=1)
    cache = pets_root / "oxford_pets" / "split_fewshot" / "shot_2-seed_1.json"
    cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])
    capsys.readouterr()

    rebuilt = build(pets_root, "OxfordPets", num_shots=2, seed=1)
    complaints = [line for line in capsys.readouterr().out.splitlines() if "rebuilding" in line]
    assert len(complaints) == 1 and str(cache) in complaints[0]
    assert paths(rebuilt.train_x) == paths(first.train_x)
    selection = json.loads(cache.read_text())["selection"]
    assert [os.path.basename(rel) for _, _, rel in selection["train"]] == [os.path.basename(p)
                                                                           for p in paths(first.train_x)]


def test_editing_the_split_file_invalidates_the_fewshot_cache(pets_root, capsys):
    """The cache is keyed by the split file's content: renamed classes and removed images never train stale."""
    build(pets_root, "OxfordPets", num_shots=2, seed=1)
    split_path = pets_root / "oxford_pets" / "split_zhou_OxfordPets.json"
    split = json.loads(split_path.read_text())
    for key in split:
        split[key] = [[rel, label, "persian" if name == "abyssinian" else name] for rel, label, name in split[key]]
    split["train"] = [row for row in split["train"] if row[0] != "class_001/train_0.jpg"]
    split_path.write_text(json.dumps(split))
    capsys.readouterr()
    edited = build(pets_root, "OxfordPets", num_shots=2, seed=1)
    assert "made from other source files" in capsys.readouterr().out
    assert {item.classname for item in edited.train_x if item.label == 0} == {"persian"}
    assert not any(p.endswith(os.path.join("class_001", "train_0.jpg")) for p in paths(edited.train_x))


def _items(tmp_path, n=3):
    return [Datum(impath=str(write_image(tmp_path / f"img{i}.jpg", shade=i)), label=0, classname="a") for i in range(n)]


def test_cache_with_wrong_content_or_other_key_is_rebuilt(tmp_path, capsys):
    pool = _items(tmp_path)
    cache_dir = tmp_path / "split_fewshot"
    cache_dir.mkdir()
    cache = cache_dir / "shot_1-seed_0.json"

    def load(key="k"):
        return load_or_build_fewshot(str(cache_dir), 1, 0, lambda: ([pool[2]], []), source_key=key,
                                     pools={"train": pool})

    load()
    good = json.loads(cache.read_text())
    moved = {**good, "selection": {"train": [["train", 1, "img2.jpg"]], "val": []}}  # position and path disagree
    for bad in (["not", "a", "dict"], {"format": 99}, moved):
        cache.write_text(json.dumps(bad))
        train, _ = load()
        assert paths(train) == [pool[2].impath] and "rebuilding" in capsys.readouterr().out
    train, _ = load(key="another source")
    assert "made from other source files" in capsys.readouterr().out


def test_planted_pickle_cache_is_never_loaded(tmp_path, capsys):
    """Caches are JSON: a .pkl in the cache folder (CoOp's format, or an attacker's) is never unpickled."""
    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (tmp_path / "shot_1-seed_0.pkl").write_bytes(pickle.dumps(Payload()))
    pool = _items(tmp_path, 1)
    train, val = load_or_build_fewshot(str(tmp_path), 1, 0, lambda: (pool, []), source_key="k", pools={"train": pool})
    assert paths(train) == paths(pool) and val == [] and not marker.exists()
    assert "pickled caches are never loaded" in capsys.readouterr().out


def test_cache_write_is_atomic(tmp_path, monkeypatch):
    """A crash before the rename leaves neither a cache file nor a temp file."""
    pool = _items(tmp_path, 1)

    def crash(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        load_or_build_fewshot(str(tmp_path / "cache"), 1, 0, lambda: (pool, []), source_key="k", pools={"train": pool})
    assert list((tmp_path / "cache").iterdir()) == []


def test_orphan_temp_files_of_killed_writes_are_removed(pets_root):
    """A SIGKILL before the rename leaves a hidden temp file; the next run removes it, unless its writer lives."""
    folder = pets_root / "oxford_pets" / "split_fewshot"
    folder.mkdir()
    host = "".join(c if c.isalnum() or c == "_" else "_" for c in socket.gethostname())
    dead = folder / f".shot_2-seed_1.json.{host}-{2 ** 22 + 12345}.a1b2c3.tmp"  # above Linux's pid_max default
    alive = folder / f".shot_2-seed_1.json.{host}-{os.getppid()}.d4e5f6.tmp"
    dead.write_text("half")
    alive.write_text("being written")
    build(pets_root, "OxfordPets", num_shots=2, seed=1)
    assert not dead.exists() and alive.exists()
    assert (folder / "shot_2-seed_1.json").is_file()


@pytest.mark.parametrize(
    "subsample,labels,names", [("base", [0, 1, 2], CLASSNAMES[:3]), ("new", [0, 1], CLASSNAMES[3:])]
)
def test_base_new_subsampling_relabels_from_zero(pets_root, subsample, labels, names):
    dataset = build(pets_root, "OxfordPets", num_shots=2, subsample=subsample)
    for split in (dataset.train_x, dataset.val, dataset.test):
        assert sorted(set(item.label for item in split)) == labels
    assert dataset.classnames == names
    assert dataset.num_classes == len(names)
    for item in dataset.test:  # each image keeps its own class name, only the label moves
        assert item.impath.split(os.sep)[-2] == f"class_{CLASSNAMES.index(item.classname):03d}"


def test_subsample_classes_keeps_datum_subclasses(tmp_path):
    class CaptionedDatum(Datum):
        caption = ""

    image = str(write_image(tmp_path / "a.jpg"))
    items = [CaptionedDatum(impath=image, label=label, classname=f"c{label}") for label in range(3)]
    items[2].caption = "a photo"
    (new,) = subsample_classes(items, subsample="new")
    assert len(new) == 1 and isinstance(new[0], CaptionedDatum)
    assert (new[0].label, new[0].classname, new[0].caption) == (0, "c2", "a photo")
    assert items[2].label == 2  # the input is not modified


def test_subsample_classes_rejects_unknown_mode():
    with pytest.raises(ValueError, match="SUBSAMPLE_CLASSES"):
        subsample_classes([], subsample="half")


def test_missing_folder_and_split_file_name_the_expected_path(tmp_path):
    with pytest.raises(DatasetNotFoundError) as missing_folder:
        build(tmp_path, "Caltech101")
    assert str(tmp_path / "caltech-101") in str(missing_folder.value)
    assert isinstance(missing_folder.value, FileNotFoundError)

    (tmp_path / "caltech-101" / "101_ObjectCategories").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError) as missing_split:
        build(tmp_path, "Caltech101")
    message = str(missing_split.value)
    assert str(tmp_path / "caltech-101" / "split_zhou_Caltech101.json") in message
    assert "1hyarUivQE36mY6jSomru6Fjd-JzwcCzN" in message  # the Drive file CoOp's DATASETS.md links


def test_require_path_returns_existing_path(tmp_path):
    assert require_path(str(tmp_path), "a folder", "make it") == str(tmp_path)


def test_missing_image_listed_in_split_is_named(pets_root):
    missing = pets_root / "oxford_pets" / "images" / "class_001" / "val_0.jpg"
    missing.unlink()
    with pytest.raises(DatasetNotFoundError, match="val images listed in") as error:
        build(pets_root, "OxfordPets")
    assert str(missing) in str(error.value)


def test_empty_train_class_names_class_and_file(pets_root):
    split_path = pets_root / "oxford_pets" / "split_zhou_OxfordPets.json"
    split = json.loads(split_path.read_text())
    split["train"] = [row for row in split["train"] if row[2] != "boxer"]
    split_path.write_text(json.dumps(split))
    with pytest.raises(EmptyClassError) as error:
        build(pets_root, "OxfordPets")
    assert "'boxer'" in str(error.value) and str(split_path) in str(error.value) and "train" in str(error.value)


def test_class_without_val_images_warns_and_builds(pets_root, capsys):
    """Dassl accepts it and CoOp's protocol does not use val: a warning, not an error."""
    split_path = pets_root / "oxford_pets" / "split_zhou_OxfordPets.json"
    split = json.loads(split_path.read_text())
    split["val"] = [row for row in split["val"] if row[2] != "boxer"]
    split_path.write_text(json.dumps(split))
    dataset = build(pets_root, "OxfordPets", num_shots=2)
    assert "boxer" not in {item.classname for item in dataset.val} and dataset.num_classes == 5
    out = capsys.readouterr().out
    assert "Warning" in out and "'boxer'" in out and "val split" in out


@pytest.mark.parametrize("content, message", [
    ('{"train": [["class_000/train_0.jpg", 0, "abyssinian"]', "is not valid JSON"),
    ('{"train": [["class_000/train_0.jpg", 0]], "val": [], "test": []}', "train row 0"),
    ('{"train": [["class_000/train_0.jpg", "zero", "abyssinian"]], "val": [], "test": []}', "label 'zero'"),
    ('[1, 2, 3]', "not a list"),
])
def test_malformed_split_file_names_file_and_row(pets_root, content, message):
    split_path = pets_root / "oxford_pets" / "split_zhou_OxfordPets.json"
    split_path.write_text(content)
    with pytest.raises(coop_split.DataError, match=message) as error:
        build(pets_root, "OxfordPets")
    assert str(split_path) in str(error.value)


def test_fewshot_larger_than_a_class_logs_the_real_counts(pets_root, capsys):
    dataset = build(pets_root, "OxfordPets", num_shots=100)
    assert per_class(dataset.train_x) == {label: 6 for label in range(5)}
    out = capsys.readouterr().out
    assert "Created a 100-shot dataset" in out and "30 (6 to 6 per class: 5 of 5 classes have fewer than 100" in out


def test_save_split_round_trips_and_writes_relative_paths(pets_root, tmp_path):
    image_dir = str(pets_root / "oxford_pets" / "images")
    train, val, test = read_split(str(pets_root / "oxford_pets" / "split_zhou_OxfordPets.json"), image_dir)
    out = tmp_path / "copy" / "split.json"
    save_split(train, val, test, str(out), image_dir)
    assert json.loads(out.read_text())["train"][0] == ["class_000/train_0.jpg", 0, "abyssinian"]
    again = read_split(str(out), image_dir)
    assert [paths(items) for items in again] == [paths(train), paths(val), paths(test)]
    assert [p.name for p in out.parent.iterdir()] == ["split.json"]


def test_fgvc_aircraft_reads_variant_txt_files(tmp_path):
    variants = ["707-320", "A300B4", "Cessna 172", "DHC-8-100"]
    make_fgvc_aircraft(tmp_path, variants, counts=(6, 3, 2))
    dataset = build(tmp_path, "FGVCAircraft")
    assert (len(dataset.train_x), len(dataset.val), len(dataset.test)) == (24, 12, 8)
    assert dataset.classnames == variants
    assert {item.classname for item in dataset.test if item.label == 2} == {"Cessna 172"}

    fewshot = build(tmp_path, "FGVCAircraft", num_shots=5, seed=2)
    assert per_class(fewshot.train_x) == {label: 5 for label in range(4)}
    assert per_class(fewshot.val) == {label: 3 for label in range(4)}  # only 3 val images per class exist
    assert (tmp_path / "fgvc_aircraft" / "split_fewshot" / "shot_5-seed_2.json").is_file()


def test_fgvc_aircraft_unknown_variant_is_named(tmp_path):
    folder = make_fgvc_aircraft(tmp_path, ["707-320", "A300B4"])
    with open(folder / "images_variant_test.txt", "a") as f:
        f.write("1000001 Concorde\n")
    with pytest.raises(ValueError, match="Concorde"):
        build(tmp_path, "FGVCAircraft")


def test_imagenet_reads_classnames_and_caches_preprocessed(tmp_path):
    folder = make_imagenet(tmp_path, IMAGENET_CLASSES, n_train=6, n_val=3)
    dataset = build(tmp_path, "ImageNet", num_shots=2, seed=1)
    assert dataset.classnames == list(IMAGENET_CLASSES.values())
    assert per_class(dataset.train_x) == {label: 2 for label in range(4)}
    assert len(dataset.test) == 12 and dataset.val is dataset.test  # CoOp: val set doubles as test set
    assert (folder / "preprocessed.json").is_file()
    assert (folder / "split_fewshot" / "shot_2-seed_1.json").is_file()

    cached = build(tmp_path, "ImageNet", subsample="new")
    assert cached.classnames == ["great white shark", "tiger shark"]
    assert len(cached.train_x) == 12 and len(cached.test) == 6

    # a new image changes its folder's mtime, which keys the cached lists
    extra = folder / "images" / "train" / "n01440764" / "n01440764_new.JPEG"
    write_image(extra)
    os.utime(extra.parent, ns=(extra.parent.stat().st_atime_ns, extra.parent.stat().st_mtime_ns + 10 ** 9))
    grown = build(tmp_path, "ImageNet")
    assert str(extra) in paths(grown.train_x) and len(grown.train_x) == 25


def test_imagenet_needs_val_in_wnid_folders(tmp_path):
    folder = make_imagenet(tmp_path, IMAGENET_CLASSES)
    (folder / "images" / "val" / "n01491361" / "n01491361_0.JPEG").rename(folder / "images" / "val" / "flat.JPEG")
    for image in (folder / "images" / "val" / "n01491361").iterdir():
        image.unlink()
    (folder / "images" / "val" / "n01491361").rmdir()
    with pytest.raises(ValueError, match="wnid folders"):
        build(tmp_path, "ImageNet")


def test_imagenet_a_maps_wnid_subset_onto_imagenet_classes(tmp_path):
    subset = ["n01443537", "n01491361"]  # 2 of the 4 "ImageNet" classes, like A/R's 200 of 1000
    make_imagenet_variant(tmp_path, "imagenet-adversarial", "imagenet-a", subset, IMAGENET_CLASSES, n=3)
    dataset = build(tmp_path, "ImageNetA")
    assert dataset.classnames == ["goldfish", "tiger shark"]
    assert dataset.num_classes == 2
    assert dataset.imagenet_labels == [1, 3]
    assert len(dataset.test) == 6 and dataset.train_x is dataset.test
    assert {item.label for item in dataset.test if "n01491361" in item.impath} == {1}


def test_imagenet_variant_falls_back_to_imagenets_classnames(tmp_path, capsys):
    make_imagenet(tmp_path, IMAGENET_CLASSES, n_train=1, n_val=1)
    folder = make_imagenet_variant(tmp_path, "imagenet-rendition", "imagenet-r", ["n01440764"], IMAGENET_CLASSES)
    (folder / "classnames.txt").unlink()
    dataset = build(tmp_path, "ImageNetR")
    assert dataset.classnames == ["tench"]
    assert "using" in capsys.readouterr().out


def test_imagenetv2_uses_numbered_folders(tmp_path):
    make_imagenet_variant(
        tmp_path, "imagenetv2", "imagenetv2-matched-frequency-format-val", ["0", "1", "2", "3"], IMAGENET_CLASSES
    )
    dataset = build(tmp_path, "ImageNetV2")
    assert dataset.classnames == list(IMAGENET_CLASSES.values())
    assert dataset.imagenet_labels == [0, 1, 2, 3]
    assert {item.label for item in dataset.test if os.sep + "3" + os.sep in item.impath} == {3}


def test_imagenet_variant_missing_folder_names_path(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="imagenet-sketch"):
        build(tmp_path, "ImageNetSketch")


def test_download_split_unknown_dataset_points_to_datasets_md(tmp_path):
    with pytest.raises(ValueError, match="DATASETS.md"):
        coop_split.download_split("FGVCAircraft", str(tmp_path))


def test_download_split_never_leaves_a_partial_file(tmp_path, monkeypatch):
    import gdown

    def cut_off(**kwargs):
        Path(kwargs["output"]).write_text('{"train": [')
        return kwargs["output"]

    def fails(**kwargs):
        Path(kwargs["output"]).write_text("partial")
        raise TimeoutError("no response")

    def html_page(**kwargs):
        Path(kwargs["output"]).write_text("<html>Google Drive - quota exceeded</html>")
        return kwargs["output"]

    for key, fake in (("EuroSAT", cut_off), ("EuroSAT", fails), ("ImageNet", html_page)):
        monkeypatch.setattr(gdown, "download", fake)
        with pytest.raises((ValueError, TimeoutError)):
            coop_split.download_split(key, str(tmp_path))
        assert list(tmp_path.iterdir()) == []


def test_download_split_puts_complete_file_in_place(tmp_path, monkeypatch):
    import gdown

    seen = {}

    def complete(**kwargs):
        seen.update(kwargs)
        Path(kwargs["output"]).write_text(json.dumps({"train": [], "val": [], "test": []}))
        return kwargs["output"]

    monkeypatch.setattr(gdown, "download", complete)
    target = coop_split.download_split("EuroSAT", str(tmp_path), timeout_s=5)
    assert target == str(tmp_path / "split_zhou_EuroSAT.json")
    assert seen["id"] == "1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o" and seen["timeout"] == 5
    assert [p.name for p in tmp_path.iterdir()] == ["split_zhou_EuroSAT.json"]
