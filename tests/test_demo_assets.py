"""Tests of the CPU demo assets (tools/demo): the synthetic FDRD-style domain and the tiny pretrained CLIP.

Everything runs on a reduced domain and a 20-step pretraining so the file stays well under a minute;
the full-size build is exercised by ``python -m tools.demo.build``.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tools.demo import build
from tools.demo.generic_pool import generate_generic_pool, pretraining_vocabulary
from tools.demo.synthetic_domain import (
    DomainPaths,
    DomainSpec,
    build_taxonomy,
    ensure_synthetic_domain,
    generate_synthetic_domain,
)
from tools.demo.tiny_clip import (
    TINY_CLIP_ARCHITECTURE,
    PretrainRecipe,
    encode_text_trimmed,
    ensure_tiny_clip,
    is_cached,
    load_tiny_clip,
    new_tiny_clip,
)
from tools.demo.zero_shot import recall_at_k, zero_shot_recall

SMALL_SPEC = DomainSpec(shapes=("star", "ring"), colours_per_meta=2, patterns_per_meta=2, n_train=3, n_val=1, n_test=2)
FAST_RECIPE = PretrainRecipe(steps=20, batch_size=64, pool_size=512)
FORMAT_A_FIELDS = {"file_name", "class_name", "file_path", "positive", "negative"}


def _tree_bytes(data_root: Path) -> dict[str, bytes]:
    """Every file the generator writes, by path relative to the data root."""
    return {
        str(path.relative_to(data_root)): path.read_bytes()
        for path in sorted(data_root.rglob("*"))
        if path.is_file() and "weights" not in path.parts
    }


@pytest.fixture(scope="module")
def small_domain(tmp_path_factory) -> DomainPaths:
    root = tmp_path_factory.mktemp("domain_seed0")
    generate_synthetic_domain(root, seed=0, spec=SMALL_SPEC)
    return DomainPaths(root)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "tiny_clip_synthetic.pt"
    ensure_tiny_clip(path, FAST_RECIPE, progress=False)
    return path


# --- synthetic domain -------------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes(small_domain: DomainPaths, tmp_path: Path) -> None:
    generate_synthetic_domain(tmp_path, seed=0, spec=SMALL_SPEC)
    assert _tree_bytes(tmp_path) == _tree_bytes(small_domain.root)


def test_other_seed_gives_other_images_and_captions(small_domain: DomainPaths, tmp_path: Path) -> None:
    generate_synthetic_domain(tmp_path, seed=1, spec=SMALL_SPEC)
    first, second = _tree_bytes(small_domain.root), _tree_bytes(tmp_path)
    assert first.keys() == second.keys()  # same classes and file names: the taxonomy does not depend on the seed
    changed_images = [name for name in first if name.endswith(".png") and first[name] != second[name]]
    assert len(changed_images) == sum(name.endswith(".png") for name in first)
    assert first["fdrd/synthetic_test.json"] != second["fdrd/synthetic_test.json"]


@pytest.mark.parametrize("kind", ["train", "test"])
def test_captions_are_exact_format_a(small_domain: DomainPaths, kind: str) -> None:
    entries = json.loads(small_domain.caption_files()[kind].read_text(encoding="utf-8"))
    class_names = {c.name for c in build_taxonomy(SMALL_SPEC)}
    assert entries
    for key, entry in entries.items():
        assert set(entry) == FORMAT_A_FIELDS
        assert key == entry["file_name"]
        assert entry["file_path"] == "YOUR_IMAGE_PATH"
        assert entry["negative"] == []
        assert entry["class_name"] in class_names
        prefix = f"This is a photo of {entry['class_name']}."
        assert entry["positive"].startswith(prefix)
        body = entry["positive"][len(prefix) :]
        assert body and not body[0].isspace()  # no space after the period, like the real FDRD files


def test_split_file_matches_images_and_captions(small_domain: DomainPaths) -> None:
    split = json.loads(small_domain.split_file.read_text())
    assert set(split) == {"train", "val", "test"}
    classes = build_taxonomy(SMALL_SPEC)
    label_of = {c.name: c.label for c in classes}
    files: dict[str, set[str]] = {}
    for split_name, items in split.items():
        files[split_name] = set()
        per_class = {c.name: 0 for c in classes}
        for relpath, label, classname in items:
            assert label == label_of[classname]
            assert relpath.split("/")[0] == classname
            image_path = small_domain.image_dir / relpath
            with Image.open(image_path) as image:
                assert (image.format, image.mode, image.size) == ("PNG", "RGB", (SMALL_SPEC.image_size,) * 2)
            per_class[classname] += 1
            files[split_name].add(Path(relpath).name)
        expected = {"train": SMALL_SPEC.n_train, "val": SMALL_SPEC.n_val, "test": SMALL_SPEC.n_test}[split_name]
        assert set(per_class.values()) == {expected}
    assert not files["train"] & files["test"] and not files["val"] & files["test"] and not files["train"] & files["val"]
    train_captions = json.loads(small_domain.train_captions.read_text())
    test_captions = json.loads(small_domain.test_captions.read_text())
    assert set(train_captions) == files["train"] | files["val"]  # FDRD train = CoOp train + val
    assert set(test_captions) == files["test"]


def test_written_files_follow_the_umask(small_domain: DomainPaths) -> None:
    umask = os.umask(0)
    os.umask(umask)
    for path in small_domain.caption_files().values():
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # atomic writes must not leave 0600 files


def test_meta_file_covers_every_class_once(small_domain: DomainPaths) -> None:
    meta = json.loads(small_domain.meta_file.read_text())
    assert meta["source"] == "synthetic generator"
    assert list(meta["meta_categories"]) == list(SMALL_SPEC.shapes)
    listed = [name for names in meta["meta_categories"].values() for name in names]
    assert sorted(listed) == sorted(c.name for c in build_taxonomy(SMALL_SPEC))


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_identity_mention_rate_controls_attribute_words(tmp_path: Path, rate: float) -> None:
    paths = generate_synthetic_domain(tmp_path, seed=0, spec=replace(SMALL_SPEC, identity_mention_rate=rate)).paths
    captions = [e["positive"] for e in json.loads(paths.train_captions.read_text()).values()]
    shaped = ["-shaped " in caption for caption in captions]
    assert all(shaped) if rate == 1.0 else not any(shaped)


def test_default_taxonomy_is_36_classes_in_6_meta_categories() -> None:
    spec = DomainSpec()
    classes = build_taxonomy(spec)
    assert len(classes) == spec.n_classes == 36
    assert len({c.meta for c in classes}) == 6
    assert len({c.name for c in classes}) == 36
    assert len({(c.meta, c.colour, c.pattern) for c in classes}) == 36  # every class is visually distinct
    assert spec.n_train >= 16 and spec.n_test * 36 == 360


def test_subcategory_names_never_appear_in_pretraining() -> None:
    import clip.simple_tokenizer

    names = {c.name for c in build_taxonomy(DomainSpec())}
    vocabulary = pretraining_vocabulary()
    assert not names & vocabulary
    pool = generate_generic_pool(2000, seed=0)
    caption_words = {word for caption in pool.captions for word in re.findall(r"[a-z]+", caption.lower())}
    assert caption_words <= vocabulary  # the vocabulary really lists everything pretraining can say
    assert not caption_words & {n for name in names for n in (name, name + "s", name + "es")}
    tokenizer = clip.simple_tokenizer.SimpleTokenizer()
    known_tokens = {token for word in vocabulary for token in tokenizer.encode(word)}
    for name in names:
        assert not known_tokens & set(tokenizer.encode(name)), name


def test_generic_pool_is_deterministic() -> None:
    first, again, other = (generate_generic_pool(64, seed=s) for s in (0, 0, 1))
    assert np.array_equal(first.images, again.images) and first.captions == again.captions
    assert not np.array_equal(first.images, other.images)


def test_ensure_domain_reuses_matching_build_and_rebuilds_otherwise(tmp_path: Path) -> None:
    first = ensure_synthetic_domain(tmp_path, seed=0, spec=SMALL_SPEC)
    paths = first.paths
    stamp = paths.test_captions.stat().st_mtime_ns
    assert first.built
    assert not ensure_synthetic_domain(tmp_path, seed=0, spec=SMALL_SPEC).built
    assert paths.test_captions.stat().st_mtime_ns == stamp
    paths.test_captions.write_text("{}")  # a damaged caption file must trigger a rebuild
    assert ensure_synthetic_domain(tmp_path, seed=0, spec=SMALL_SPEC).built
    assert ensure_synthetic_domain(tmp_path, seed=3, spec=SMALL_SPEC).built
    assert json.loads(paths.manifest.read_text())["seed"] == 3
    assert not list(tmp_path.glob(".synthetic_fine*"))  # no staging or retired directories left behind


def test_generator_refuses_to_replace_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "synthetic_fine").mkdir()
    (tmp_path / "synthetic_fine" / "precious.txt").write_text("not ours")
    with pytest.raises(FileExistsError):
        generate_synthetic_domain(tmp_path, seed=0, spec=SMALL_SPEC)
    assert (tmp_path / "synthetic_fine" / "precious.txt").exists()
    assert not (tmp_path / "fdrd").exists()  # refused before writing anything


# --- tiny CLIP --------------------------------------------------------------------------------------


def test_checkpoint_is_plain_state_dict_loadable_by_build_model(tiny_weights: Path) -> None:
    import clip.model

    state_dict = torch.load(tiny_weights, map_location="cpu", weights_only=True)
    assert isinstance(state_dict, dict)
    assert set(state_dict) == set(clip.model.CLIP(**TINY_CLIP_ARCHITECTURE).state_dict())
    assert all(tensor.dtype == torch.float32 for tensor in state_dict.values())
    model = clip.model.build_model(dict(state_dict))
    assert model.visual.input_resolution == 32
    assert model.visual.conv1.weight.shape == (64, 3, 8, 8)
    assert model.text_projection.shape == (64, 64)  # transformer_width x embed_dim
    assert model.context_length == 77 and model.vocab_size == 49408
    assert len(model.visual.transformer.resblocks) == 2 and len(model.transformer.resblocks) == 2
    assert model.transformer.resblocks[0].attn.num_heads == 1


def test_cached_checkpoint_is_reused(tiny_weights: Path) -> None:
    stamp = tiny_weights.stat().st_mtime_ns
    again = ensure_tiny_clip(tiny_weights, FAST_RECIPE, progress=False)
    assert not again.built
    assert tiny_weights.stat().st_mtime_ns == stamp
    assert not is_cached(tiny_weights, replace(FAST_RECIPE, steps=21))
    assert not is_cached(tiny_weights, replace(FAST_RECIPE, seed=1))


def test_sidecar_records_recipe_and_per_step_loss(tiny_weights: Path) -> None:
    record = json.loads(tiny_weights.with_suffix(".json").read_text())
    assert record["recipe"]["steps"] == FAST_RECIPE.steps
    assert record["recipe"]["architecture"] == TINY_CLIP_ARCHITECTURE
    losses = record["loss_per_step"]
    assert len(losses) == FAST_RECIPE.steps and all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < np.mean(losses[:5])  # contrastive pretraining makes progress


def test_trimmed_text_encoding_equals_clip_encode_text() -> None:
    import clip

    model = new_tiny_clip(seed=0).eval()
    tokens = clip.tokenize(["a red star", "This is a photo of ring.Two small blue rings on a pale teal background."])
    with torch.no_grad():
        assert torch.allclose(encode_text_trimmed(model, tokens), model.encode_text(tokens), atol=1e-5)


def test_recall_at_k_conventions() -> None:
    assert set(recall_at_k(torch.eye(12)).values()) == {100.0}
    reversed_ranking = torch.eye(12).flip(0)  # every true match ranked last but the anti-diagonal pair
    assert recall_at_k(reversed_ranking)["i2t_R@1"] < 100.0


def test_zero_shot_recall_on_synthetic_test_split(small_domain: DomainPaths, tiny_weights: Path) -> None:
    metrics = zero_shot_recall(load_tiny_clip(tiny_weights), small_domain.root)
    n_test = SMALL_SPEC.n_classes * SMALL_SPEC.n_test
    assert metrics["n_pairs"] == n_test
    for direction in ("i2t", "t2i"):
        recalls = [metrics[f"{direction}_R@{k}"] for k in (1, 5, 10)]
        assert all(0.0 <= r <= 100.0 for r in recalls) and recalls == sorted(recalls)


def test_build_cli_is_idempotent(tmp_path: Path, capsys) -> None:
    arguments = ["--data", str(tmp_path), "--steps", "3", "--pool-size", "64", "--batch-size", "32", "--no-eval"]
    assert build.main(arguments) == 0
    weights = tmp_path / "weights" / "tiny_clip_synthetic.pt"
    stamps = {path: path.stat().st_mtime_ns for path in (weights, tmp_path / "fdrd" / "synthetic_test.json")}
    assert build.main(arguments) == 0
    assert {path: path.stat().st_mtime_ns for path in stamps} == stamps
    assert capsys.readouterr().out.count("reused") >= 2
