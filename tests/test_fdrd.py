"""FDRD: every published caption file parses and maps to CoOp paths; the Dassl dataset on tiny generated
data in both formats; few-shot caching; clear errors for bad input."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import HAS_DASSL, SHARED_FDRD

from datasets.fdrd_formats import (DOMAINS, FDRDFormatError, count_overlong, load_json, load_meta_categories,
                                   normalize_classname, parse_caption_entries, parse_caption_file)

needs_shared = pytest.mark.skipif(SHARED_FDRD is None or not SHARED_FDRD.is_dir(),
                                  reason="the published FDRD caption files are absent (set FDRD_CAPTIONS=<folder>)")
needs_dassl = pytest.mark.skipif(not HAS_DASSL, reason="Dassl is not installed")

# file -> (domain, entries, classes) of every published caption file (docs/fdrd.md, "What was published")
REAL_FILES = {
    "inter_caltech-101_train.json": ("caltech101", 5777, 100),
    "inter_caltech-101_test.json": ("caltech101", 2465, 100),
    "inter_car_train.json": ("cars", 8144, 196),
    "inter_dtd_train.json": ("dtd", 3948, 47),
    "inter_dtd_test.json": ("dtd", 1692, 47),
    "inter_ucf101_train.json": ("ucf101", 9537, 101),
    "inter_ucf101_test.json": ("ucf101", 3783, 101),
    "flower_test.json": ("flowers", 2463, 102),
    "pets_test.json": ("pets", 3669, 37),
    "plane_test.json": ("aircraft", 3333, 100),
}


def classes_in(data: dict, domain: str) -> list[str]:
    """The domain's classes as its locator reads them (the caption files do not ship CoOp's class list)."""
    spec = DOMAINS[domain]
    seen: dict[str, str] = {}
    for key, entry in data.items():
        raw, _ = spec.locate(key, entry, "test")
        seen.setdefault(normalize_classname(raw), raw)
    return sorted(seen.values())


@needs_shared
@pytest.mark.parametrize("filename", sorted(REAL_FILES))
def test_real_caption_file_parses_with_counts_and_classes(filename):
    domain, entries, num_classes = REAL_FILES[filename]
    data = load_json(SHARED_FDRD / filename, "caption file")
    classnames = classes_in(data, domain)
    assert len(data) == entries and len(classnames) == num_classes
    records = parse_caption_file(SHARED_FDRD / filename, DOMAINS[domain], classnames)
    assert len(records) == entries and [r.caption_id for r in records] == list(range(entries))
    assert {r.label for r in records} == set(range(num_classes))
    image_root = DOMAINS[domain].image_dir
    assert all(r.image.startswith(image_root + "/") and r.image.endswith(".jpg") for r in records)


def _record(domain: str, filename: str, key: str):
    data = load_json(SHARED_FDRD / filename, "caption file")
    records = parse_caption_entries({key: data[key]}, DOMAINS[domain], classes_in(data, domain), filename)
    return records[0]


@needs_shared
@pytest.mark.parametrize("domain, filename, key, image, classname", [
    # Caltech: split at the last "_image_"; the folder keeps its name on disk, only the CoOp class is renamed
    ("caltech101", "inter_caltech-101_test.json", None, "caltech-101/101_ObjectCategories/", None),
    ("dtd", "inter_dtd_train.json", "banded_0133.jpg", "dtd/images/banded/banded_0133.jpg", "banded"),
    ("cars", "inter_car_train.json", "cars_train_05266.jpg", "stanford_cars/cars_train/05266.jpg", None),
])
def test_real_sample_paths(domain, filename, key, image, classname):
    data = load_json(SHARED_FDRD / filename, "caption file")
    key = key or next(k for k in data if k.startswith("Faces_image_"))
    record = _record(domain, filename, key)
    if key.startswith("Faces_image_"):
        assert record.image == f"caltech-101/101_ObjectCategories/Faces/image_{key.split('_image_')[-1]}"
        assert record.classname == "face"  # CoOp renames the class; the folder on disk stays "Faces"
    else:
        assert record.image == image
    if classname:
        assert record.classname == classname


@needs_shared
def test_real_traps_ucf_folder_aircraft_slash_flower_number_pets_case():
    ucf = load_json(SHARED_FDRD / "inter_ucf101_train.json", "caption file")
    key = next(k for k in ucf if "HandStandPushups" in k)
    assert _record("ucf101", "inter_ucf101_train.json", key).image.startswith(
        "ucf101/UCF-101-midframes/Handstand_Pushups/")
    planes = load_json(SHARED_FDRD / "plane_test.json", "caption file")
    key = next(k for k in planes if k.startswith("F-16A_B_"))
    record = _record("aircraft", "plane_test.json", key)
    assert record.classname == "F-16A/B" and record.image == f"fgvc_aircraft/images/{key.rsplit('_', 1)[1]}.jpg"
    flowers = load_json(SHARED_FDRD / "flower_test.json", "caption file")
    key, entry = next(iter(flowers.items()))
    assert _record("flowers", "flower_test.json", key).image == f"oxford_flowers/jpg/image_{int(entry['number']):05d}.jpg"
    assert _record("pets", "pets_test.json", "Sphynx_43").image == "oxford_pets/images/Sphynx_43.jpg"


@needs_shared
def test_real_overlong_captions_are_rare_and_counted():
    data = load_json(SHARED_FDRD / "inter_ucf101_train.json", "caption file")
    assert count_overlong(entry["positive"] for entry in data.values()) >= 1  # one UCF caption has 84 tokens


@needs_shared
@pytest.mark.parametrize("domain, filename", [("pets", "pets_test.json"), ("aircraft", "plane_test.json"),
                                              ("cars", "inter_car_train.json")])
def test_packaged_meta_categories_cover_every_class_once(domain, filename, tmp_path):
    classnames = classes_in(load_json(SHARED_FDRD / filename, "caption file"), domain)
    meta = load_meta_categories(domain, classnames, tmp_path)
    members = [name for group in meta.values() for name in group]
    assert sorted(members) == sorted(classnames) and len(meta) >= 2


def test_bad_input_messages(tmp_path):
    spec = DOMAINS["dtd"]
    broken = tmp_path / "inter_dtd_test.json"
    broken.write_text('{"a.jpg": {"positive": "x",}}')
    with pytest.raises(FDRDFormatError, match=r"inter_dtd_test.json.*line 1"):
        parse_caption_file(broken, spec, ["banded"])
    with pytest.raises(FDRDFormatError, match="'banded_0001.jpg' has no caption"):
        parse_caption_entries({"banded_0001.jpg": {"class_name": "banded", "positive": " "}}, spec, ["banded"], "f")
    with pytest.raises(FDRDFormatError, match="class 'zigzag'.*not one of"):
        parse_caption_entries({"zigzag_0001.jpg": {"class_name": "zigzag", "positive": "p"}}, spec, ["banded"], "f")
    with pytest.raises(FDRDFormatError, match=r"'banded_0001.jpg' has a caption \('positive'\) that is a int \(42\)"):
        parse_caption_entries({"banded_0001.jpg": {"class_name": "banded", "positive": 42}}, spec, ["banded"], "f")


def test_repeated_key_and_non_utf8_file_are_reported(tmp_path):
    spec = DOMAINS["dtd"]
    repeated = tmp_path / "inter_dtd_train.json"
    repeated.write_text('{"banded_0001.jpg": {"class_name": "banded", "positive": "first"},\n'
                        ' "banded_0001.jpg": {"class_name": "banded", "positive": "second"}}')
    with pytest.raises(FDRDFormatError, match="has the key 'banded_0001.jpg' twice") as error:
        parse_caption_file(repeated, spec, ["banded"])
    assert str(repeated) in str(error.value)
    latin1 = tmp_path / "inter_dtd_test.json"
    latin1.write_bytes('{"banded_0001.jpg": {"class_name": "banded", "positive": "caf\u00e9"}}'.encode("latin-1"))
    with pytest.raises(FDRDFormatError, match="is not UTF-8 text") as error:
        parse_caption_file(latin1, spec, ["banded"])
    assert str(latin1) in str(error.value)


# ---- the Dassl dataset on generated data --------------------------------------------------------

def build(root: Path, domain: str, seed: int = 1, **overrides):
    from dassl.config import get_cfg_default

    from datasets.fdrd import FDRD, add_config

    cfg = get_cfg_default()
    add_config(cfg)
    cfg.DATASET.SUBSAMPLE_CLASSES = "all"
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.FDRD_DOMAIN = domain
    for key, value in overrides.items():
        cfg.DATASET[key] = value
    cfg.SEED = seed
    return FDRD(cfg)


@needs_dassl
@pytest.mark.parametrize("fmt, domain", [("A", "dtd"), ("B", "pets")])
def test_dataset_items_labels_captions_negatives(tmp_path, fmt, domain):
    from fake_fdrd import make_fake_fdrd

    made = make_fake_fdrd(tmp_path, domain=domain, classes=3, train_per_class=4, test_per_class=2, fmt=fmt)
    data = build(tmp_path, domain)
    assert data.is_retrieval and data.val == []
    assert [(d.impath, d.label, d.caption) for d in data.train_x] == made["train"]
    assert [(d.impath, d.label, d.caption) for d in data.test] == made["test"]
    assert [d.caption_id for d in data.test] == list(range(len(data.test)))
    assert all(len(d.negatives) == (4 if fmt == "B" else 0) for d in data.test)
    assert data.classnames == made["classnames"] or len(data.classnames) == 3


@needs_dassl
def test_fewshot_pairs_per_class_cached(tmp_path, capsys):
    from fake_fdrd import make_fake_fdrd

    make_fake_fdrd(tmp_path, domain="dtd", classes=3, train_per_class=5, test_per_class=2)
    first = build(tmp_path, "dtd", NUM_SHOTS=2)
    counts = {label: sum(d.label == label for d in first.train_x) for label in range(3)}
    assert counts == {0: 2, 1: 2, 2: 2} and len(first.test) == 6  # the test split stays complete
    cache = tmp_path / "fdrd" / "split_fewshot_dtd" / "shot_2-seed_1.json"
    assert cache.is_file()
    second = build(tmp_path, "dtd", NUM_SHOTS=2)
    assert [d.impath for d in second.train_x] == [d.impath for d in first.train_x]
    assert [d.caption for d in second.train_x] == [d.caption for d in first.train_x]

    # an edited caption file invalidates the cache: the new captions train, not the cached ones
    train_json = tmp_path / "fdrd" / "inter_dtd_train.json"
    entries = json.loads(train_json.read_text())
    for entry in entries.values():
        entry["positive"] = "edited " + entry["positive"]
    train_json.write_text(json.dumps(entries))
    capsys.readouterr()
    edited = build(tmp_path, "dtd", NUM_SHOTS=2)
    assert "made from other source files" in capsys.readouterr().out
    assert all(d.caption.startswith("edited ") for d in edited.train_x)


@needs_dassl
def test_validation_hold_out_is_fixed_disjoint_and_sampled_before_fewshot(tmp_path):
    from fake_fdrd import make_fake_fdrd

    made = make_fake_fdrd(tmp_path, domain="dtd", classes=3, train_per_class=6, test_per_class=2)
    data = build(tmp_path, "dtd", FDRD_VAL_PER_CLASS=2, NUM_SHOTS=3)
    assert sorted(sum(d.label == c for d in data.val) for c in range(3)) == [2, 2, 2]
    assert sorted(sum(d.label == c for d in data.train_x) for c in range(3)) == [3, 3, 3]
    val = {d.impath for d in data.val}
    assert not val & {d.impath for d in data.train_x} and not val & {d.impath for d in data.test}
    assert val <= {path for path, *_ in made["train"]}  # carved out of the train caption file
    assert all(d.caption for d in data.val)
    assert (tmp_path / "fdrd" / "split_fewshot_dtd_val2").is_dir()  # another pool, another few-shot cache
    # the same pairs for every seed (the run's seed draws the few-shot subset, never the validation split)
    other_seed = build(tmp_path, "dtd", FDRD_VAL_PER_CLASS=2, NUM_SHOTS=3, seed=2)
    assert {d.impath for d in other_seed.val} == val
    assert build(tmp_path, "dtd").val == []  # default: no validation split
    with pytest.raises(FDRDFormatError, match="FDRD_VAL_PER_CLASS 6 leaves no training pair"):
        build(tmp_path, "dtd", FDRD_VAL_PER_CLASS=6)


@needs_dassl
def test_missing_captions_and_images_are_reported(tmp_path):
    from fake_fdrd import make_fake_fdrd

    from datasets.coop_split import DatasetNotFoundError

    made = make_fake_fdrd(tmp_path, domain="dtd", classes=2, train_per_class=3, test_per_class=2)
    made["test_json"].unlink()
    with pytest.raises(DatasetNotFoundError, match=r"(?s)inter_dtd_test.json.*download_fdrd"):
        build(tmp_path, "dtd")
    make_fake_fdrd(tmp_path, domain="dtd", classes=2, train_per_class=3, test_per_class=2)
    for path, *_ in made["test"][:2]:
        Path(path).unlink()
    with pytest.raises(DatasetNotFoundError, match=r"2 of 10 FDRD dtd images"):
        build(tmp_path, "dtd")
    with pytest.raises(FDRDFormatError, match="FDRD_DOMAIN"):
        build(tmp_path, "mars")


@needs_dassl
def test_meta_categories_attached_for_dcar(tmp_path):
    from fake_fdrd import make_fake_fdrd

    made = make_fake_fdrd(tmp_path, domain="dtd", classes=4, train_per_class=2, test_per_class=1)
    names = made["classnames"]
    assert build(tmp_path, "dtd").meta_categories is None  # no hierarchy file: DCAR falls back to CLIP neighbours
    (tmp_path / "fdrd" / "dtd_meta.json").write_text(json.dumps(
        {"source": "test", "meta_categories": {"a": names[:2], "b": names[2:]}}))
    assert build(tmp_path, "dtd").meta_categories == {"a": names[:2], "b": names[2:]}


def test_download_tool_verifies_writes_atomically_and_reports(tmp_path):
    from tools import download_fdrd as dl

    good = {item.name: b"{}" for item in dl.CAPTION_FILES}
    files = {item.name: item for item in dl.CAPTION_FILES}
    # pretend the published blobs are tiny so the test needs no network
    patched = tuple(dl.CaptionFile(f.name, f.domain, f.commit, f.path, dl.git_blob_id(good[f.name]), 2)
                    for f in files.values())

    def fetch(url, timeout):
        if "pets_test" in url:
            raise TimeoutError("timed out")
        if "plane_test" in url:
            return b"{"  # truncated
        return good[url.rsplit("/", 1)[1]]

    original = dl.CAPTION_FILES
    dl.CAPTION_FILES = patched
    try:
        written, present, failed = dl.download_captions(tmp_path, None, 1.0, fetch)
        assert len(written) == 8 and not present
        assert any("pets_test.json: TimeoutError" in line for line in failed)
        assert any("plane_test.json: content differs" in line for line in failed)
        assert not (tmp_path / "fdrd" / "plane_test.json").exists()
        assert not [p for p in (tmp_path / "fdrd").iterdir() if p.name.endswith(".tmp")]
        written, present, failed = dl.download_captions(tmp_path, {"dtd"}, 1.0, fetch)
        assert written == [] and present == ["inter_dtd_train.json", "inter_dtd_test.json"] and failed == []
    finally:
        dl.CAPTION_FILES = original


@needs_shared
def test_download_tool_hashes_match_the_real_files():
    from tools.download_fdrd import CAPTION_FILES, git_blob_id

    for item in CAPTION_FILES:
        data = (SHARED_FDRD / item.name).read_bytes()
        assert len(data) == item.size and git_blob_id(data) == item.blob, item.name


# ---- further edge cases: placeholders, empty classes, meta errors, base/new, DataManager, configs ---------

def test_placeholder_and_empty_class_messages(tmp_path):
    from datasets.fdrd_formats import check_class_coverage, find_caption_file

    spec = DOMAINS["caltech101"]
    placeholder = tmp_path / "train" / "inter_caltech-101_train.json"
    placeholder.parent.mkdir()
    placeholder.write_bytes(b"\r\n")  # the upstream HEAD copy is this 2-byte file
    assert find_caption_file(tmp_path, spec, "train") == placeholder
    with pytest.raises(FDRDFormatError, match="placeholder.*download_fdrd"):
        parse_caption_file(placeholder, spec, ["face"])
    real = tmp_path / "inter_caltech-101_train.json"
    real.write_text(json.dumps({"Faces_image_0001.jpg": {"class_name": "face", "positive": "p"}}))
    assert find_caption_file(tmp_path, spec, "train") == real  # a real file wins over the placeholder
    records = parse_caption_file(real, spec, ["face", "leopard"])
    with pytest.raises(FDRDFormatError, match=r"1 of 2 classes have no caption.*'leopard'"):
        check_class_coverage(records, ["face", "leopard"], str(real))


@pytest.mark.parametrize("groups, message", [({"a": ["x", "y"], "b": ["y"]}, "in both"),
                                             ({"a": ["x"]}, "in no group"),
                                             ({"a": ["nothing"]}, "none of its class names")])
def test_meta_category_file_errors(tmp_path, groups, message):
    (tmp_path / "fdrd").mkdir()
    (tmp_path / "fdrd" / "dtd_meta.json").write_text(json.dumps({"source": "t", "meta_categories": groups}))
    with pytest.raises(FDRDFormatError, match=message):
        load_meta_categories("dtd", ["x", "y"], tmp_path)


@needs_dassl
def test_base_new_keeps_captions_and_hard_negatives_switch(tmp_path):
    from fake_fdrd import make_fake_fdrd

    make_fake_fdrd(tmp_path, domain="aircraft", classes=3, fmt="B")
    new = build(tmp_path, "aircraft", SUBSAMPLE_CLASSES="new")
    assert new.classnames == ["F/A-18"] and {d.label for d in new.test} == {0}  # F_A-18 keys resolve to F/A-18
    assert all("F/A-18" in d.caption and len(d.negatives) == 4 for d in new.test)
    assert all(d.negatives == () for d in build(tmp_path, "aircraft", FDRD_HARD_NEGATIVES=False).test)


@needs_dassl
def test_data_manager_builds_no_val_loader_and_reports_overlong_once(tmp_path, capsys):
    from dassl.config import get_cfg_default
    from dassl.data import DataManager
    from fake_fdrd import make_fake_fdrd

    from datasets.fdrd import add_config

    made = make_fake_fdrd(tmp_path, domain="dtd", classes=2, train_per_class=4, test_per_class=2)
    data = json.loads(made["train_json"].read_text())
    data[next(iter(data))]["positive"] += " very" * 90
    made["train_json"].write_text(json.dumps(data))
    cfg = get_cfg_default()
    add_config(cfg)
    cfg.DATASET.update(NAME="FDRD", ROOT=str(tmp_path), FDRD_DOMAIN="dtd", SUBSAMPLE_CLASSES="all")
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = cfg.DATALOADER.TEST.BATCH_SIZE = 4
    cfg.INPUT.SIZE = (16, 16)
    dm = DataManager(cfg)
    assert dm.val_loader is None and dm.num_classes == 2
    assert dm.dataset.train_x[0].caption.endswith("very")  # kept; the text encoder truncates it
    overlong = [line for line in capsys.readouterr().out.splitlines() if "77-token" in line]
    assert len(overlong) == 1 and "1 of 12 captions" in overlong[0]
    batch = next(iter(dm.test_loader))
    assert batch["index"].tolist() == [0, 1, 2, 3]  # the trainer looks captions up by this index


@needs_dassl
def test_every_domain_has_a_config_file():
    from dassl.config import get_cfg_default

    from datasets.fdrd import add_config

    files = sorted((Path(__file__).resolve().parents[1] / "configs" / "datasets").glob("fdrd_*.yaml"))
    assert {path.stem[len("fdrd_"):] for path in files} == set(DOMAINS)
    for path in files:
        cfg = get_cfg_default()
        add_config(cfg)
        cfg.merge_from_file(str(path))
        assert cfg.DATASET.NAME == "FDRD" and cfg.DATASET.FDRD_DOMAIN == path.stem[len("fdrd_"):]
