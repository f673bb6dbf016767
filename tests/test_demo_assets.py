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
    contrastive_loss,
    ensure_tiny_clip,
    is_cached,
    load_tiny_clip,
    new_tiny_clip,
)
from trainers.backbone.text_encoder import PromptedTextEncoder

SMALL_SPEC = DomainSpec(colours=("red", "blue"), hue_offsets=(-24.0, 24.0), shade_values=(1.0,), n_train=3, n_val=1,
                        n_test=2)
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
        assert entry["class_name"] in class_names
        prefix = f"This is a photo of {entry['class_name']}."  # the raw class name, as in the real Format A files
        assert entry["positive"].startswith(prefix)
        body = entry["positive"][len(prefix) :]
        assert body and not body[0].isspace()  # no space after the period, like the real FDRD files
        assert entry["class_name"].replace("_", " ") in body  # the body names the class in words
        assert entry["negative"] == [] if kind == "train" else len(entry["negative"]) == 3  # 1 sibling + 2 swaps


def test_test_negatives_are_sibling_swaps_and_one_attribute_swaps(small_domain: DomainPaths) -> None:
    from collections import Counter

    from tools.demo.scenes import POSITION_PHRASES
    from trainers.dcar_components import CategoryAwareNegatives

    entries = json.loads(small_domain.test_captions.read_text(encoding="utf-8"))
    classes = build_taxonomy(SMALL_SPEC)
    by_name = {c.name: c for c in classes}
    # the training-time generator of the library renames the class the same way the domain writes its negatives
    swaps = CategoryAwareNegatives([c.name for c in classes], {}, {})
    nuisance = {"small", "large", "pale", "dark"} | {w for phrase in POSITION_PHRASES for w in phrase.split()}
    for entry in entries.values():
        own = by_name[entry["class_name"]]
        category, *attribute = entry["negative"]
        sibling = next(c for c in classes if c.meta == own.meta and c.name != own.name)
        assert category == swaps.category_swap(entry["positive"], own.label, sibling.label)
        assert len(attribute) == 2 and len(set(attribute)) == 2
        for swap in attribute:  # the same caption with one stated nuisance attribute changed
            before, after = Counter(entry["positive"].lower().split()), Counter(swap.lower().split())
            changed = {w.strip(".,") for w in (before - after) + (after - before)}
            assert swap != entry["positive"] and changed <= nuisance, (entry["positive"], swap)


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
    assert list(meta["meta_categories"]) == list(SMALL_SPEC.colours)
    listed = [name for names in meta["meta_categories"].values() for name in names]
    assert sorted(listed) == sorted(c.name for c in build_taxonomy(SMALL_SPEC))


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_pattern_mention_rate_controls_pattern_words(tmp_path: Path, rate: float) -> None:
    paths = generate_synthetic_domain(tmp_path, seed=0, spec=replace(SMALL_SPEC, pattern_mention_rate=rate)).paths
    captions = [e["positive"] for e in json.loads(paths.train_captions.read_text()).values()]
    patterned = [bool(re.search(r"plain|stripe|dot|checkered|border", caption)) for caption in captions]
    assert all(patterned) if rate == 1.0 else not any(patterned)


def test_default_taxonomy_is_36_shades_in_6_colour_families() -> None:
    spec = DomainSpec()
    classes = build_taxonomy(spec)
    assert len(classes) == spec.n_classes == 36
    assert len({c.meta for c in classes}) == 6 and all(c.name.startswith(c.meta + "_") for c in classes)
    assert len({c.name for c in classes}) == 36
    assert len({c.rgb for c in classes}) == 36  # every class is its own shade
    for meta in {c.meta for c in classes}:  # siblings differ by more than the per-image colour noise
        shades = [np.array(c.rgb) for c in classes if c.meta == meta]
        gaps = [np.abs(a - b).max() for i, a in enumerate(shades) for b in shades[i + 1:]]
        assert min(gaps) > 4 * spec.colour_jitter
    assert spec.n_train >= 16 and spec.n_test * 36 == 360


def test_subcategory_names_never_appear_in_pretraining() -> None:
    import clip.simple_tokenizer

    names = {c.name.split("_", 1)[1] for c in build_taxonomy(DomainSpec())}  # the invented modifiers
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


def test_pretraining_loss_is_clips_own() -> None:
    import clip
    import torch.nn.functional as F

    model = new_tiny_clip(seed=0).eval()
    tokens = clip.tokenize(["a red star", "This is a photo of ring.Two small blue rings on a pale teal background.",
                            "three large dotted squares"])
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits, _ = model(images, tokens)  # CLIP.forward: scaled cosine, image -> text
        targets = torch.arange(3)
        expected = 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets))
        loss = contrastive_loss(model, PromptedTextEncoder(model), images, tokens)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)


def test_build_cli_is_idempotent(tmp_path: Path, capsys) -> None:
    arguments = ["--data", str(tmp_path), "--steps", "3", "--pool-size", "64", "--batch-size", "32"]
    assert build.main(arguments) == 0
    weights = tmp_path / "weights" / "tiny_clip_synthetic.pt"
    stamps = {path: path.stat().st_mtime_ns for path in (weights, tmp_path / "fdrd" / "synthetic_test.json")}
    assert build.main(arguments) == 0
    assert {path: path.stat().st_mtime_ns for path in stamps} == stamps
    assert capsys.readouterr().out.count("reused") >= 2


def test_demo_paired_differences_by_hand():
    """DCAR − CoOp seed by seed (differences 2, 1, 3: mean 2, population std sqrt(2/3)); the paired t-test on
    them is t = mean / (sample std / sqrt(n)) = 2 / (1 / sqrt(3)), two-sided with 2 degrees of freedom."""
    from scipy import stats

    from tools.demo.run import paired_differences

    def result(seed, mean, hard):
        return {"seed": seed, "mean_recall": mean, "hard_negative_i2t": {"R@1": hard},
                **{d: {f"R@{k}": 0.0 for k in (1, 5, 10)} for d in ("i2t", "t2i")}}

    runs = {"ZeroshotCLIP": [result(1, 20.0, 10.0)],
            "CoOp": [result(1, 30.0, 40.0), result(2, 31.0, 40.0), result(3, 29.0, 40.0)],
            "DCAR": [result(1, 32.0, 41.0), result(2, 32.0, 41.0), result(3, 32.0, 41.0), result(4, 99.0, 99.0)]}
    headers, rows = paired_differences(runs, "DCAR")
    assert headers[0] == "method" and len(rows) == 1  # zero-shot (one seed) and DCAR itself are not rows
    method, seeds, delta, p_value, hard_delta, hard_p = rows[0]
    assert (method, seeds) == ("CoOp", "1 2 3")  # seed 4 has no pair
    assert delta == f"+2.00 ± {(2 / 3) ** 0.5:.2f}"
    t = 2 / (1 / 3 ** 0.5)
    assert p_value == f"{2 * stats.t.sf(t, df=2):.3f}"
    assert hard_delta == "+1.00 ± 0.00" and hard_p == "nan"  # identical differences: no t-test
