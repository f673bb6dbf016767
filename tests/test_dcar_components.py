"""DCAR's blocks: token re-weighting, category-aware negatives, CAA adapter; checked against hand computations."""
from __future__ import annotations

import random
import re

import clip
import clip.model
import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_clip_model

from trainers.adapters import ResidualAdapter
from trainers.dcar_components import (
    CategoryAwareAdapter,
    CategoryAwareNegatives,
    DynamicTokenReweighting,
    blank_image_features,
    boilerplate_token_ids,
    normalise_token_scores,
    siblings_from_meta,
    siblings_from_text_features,
    word_token_mask,
)
from trainers.dcar_components.token_reweighting import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

# =================================================================================== token re-weighting
CAPTIONS = [
    "a small dog with a fluffy black and tan coat sits on a bed",
    "a cat",
    "",
    "a red car parked in front of an old house at night",
]


def test_normalise_token_scores_hand_numbers():
    # Positions: SOT, three words, EOT, padding.
    word_mask = torch.tensor([[False, True, True, True, False, False]] * 4)
    raw = torch.tensor(
        [
            [0.7, 0.03, 0.04, 0.05, 0.9, 0.0],  # mean over words 0.04 -> 0.75, 1, 1.25 (no clamping)
            [0.0, 0.01, 0.10, 0.01, 0.0, 0.0],  # mean 0.04 -> 0.25, 2.5, 0.25 -> clamped 0.5, 2, 0.5
            [0.3, 0.0, 0.0, 0.0, 0.3, 0.3],  # every word leaves the similarity unchanged -> floor
            [0.0, 0.0, 0.02, 0.04, 0.0, 0.0],  # mean 0.02 -> 0 (floor), 1, 2
        ]
    )
    weights = normalise_token_scores(raw, word_mask, floor=0.5, ceil=2.0, mode="mean")
    expected = torch.tensor(
        [
            [1.0, 0.75, 1.0, 1.25, 1.0, 1.0],
            [1.0, 0.5, 2.0, 0.5, 1.0, 1.0],
            [1.0, 0.5, 0.5, 0.5, 1.0, 1.0],
            [1.0, 0.5, 1.0, 2.0, 1.0, 1.0],
        ]
    )
    assert weights.dtype == torch.float32
    assert torch.allclose(weights, expected, atol=1e-6)
    # Without clamping the words average exactly 1 (L * |dS_j| / sum |dS|).
    assert weights[0, 1:4].mean().item() == pytest.approx(1.0)


def test_normalise_token_scores_none_mode_and_empty_caption():
    word_mask = torch.tensor([[False, True, True, True, False], [False, False, False, False, False]])
    raw = torch.tensor([[5.0, 0.3, 1.5, 3.0, 5.0], [0.0, 0.4, 0.0, 0.0, 0.0]])
    weights = normalise_token_scores(raw, word_mask, floor=0.5, ceil=2.0, mode="none")
    assert torch.allclose(weights, torch.tensor([[1.0, 0.5, 1.5, 2.0, 1.0], [1.0, 1.0, 1.0, 1.0, 1.0]]))
    # A caption without words is all ones in "mean" mode too (no 0/0).
    assert torch.equal(normalise_token_scores(raw, word_mask)[1], torch.ones(5))
    with pytest.raises(ValueError):
        normalise_token_scores(raw, word_mask, mode="softmax")


def test_word_token_mask_uses_the_eot_position_and_neutral_ids():
    tokens = clip.tokenize(["a dog", ""])
    mask = word_token_mask(tokens)
    assert mask[0, :5].tolist() == [False, True, True, False, False]  # SOT a dog EOT pad
    assert not mask[1].any()
    a = int(tokens[0, 1])
    assert word_token_mask(tokens, torch.tensor([a]))[0, :5].tolist() == [False, False, True, False, False]


def test_boilerplate_token_ids_by_document_frequency():
    sot, eot = 49406, 49407
    tokens = torch.tensor([
        [sot, 10, 11, 12, eot, 0],
        [sot, 10, 11, 13, 13, eot],  # 13 twice: counted once
        [sot, 10, 14, eot, 0, 0],
        [sot, 15, eot, 0, 0, 0],
    ])
    assert boilerplate_token_ids(tokens, 0.75).tolist() == [10]  # in 3 of 4 captions
    assert boilerplate_token_ids(tokens, 0.5).tolist() == [10, 11]
    assert boilerplate_token_ids(tokens, 0.25).tolist() == [10, 11, 12, 13, 14, 15]  # never SOT, EOT, padding
    assert boilerplate_token_ids(tokens, 1.01).numel() == 0


@pytest.fixture(scope="module")
def tiny_clip():
    return tiny_clip_model(seed=0)


def _image_features(model, seed: int, count: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        images = torch.randn(count, 3, 32, 32, generator=generator)
        return F.normalize(model.encode_image(images).float(), dim=-1)


def _frozen_text(model):
    """The frozen-feature callable DTR gets from the model: here CLIP's own 77-token encode_text."""
    def encode(rows: torch.Tensor) -> torch.Tensor:
        padded = torch.zeros(rows.shape[0], 77, dtype=torch.long)
        padded[:, : rows.shape[1]] = rows
        with torch.no_grad():
            return F.normalize(model.encode_text(padded).float(), dim=-1)
    return encode


def _reference_weights(model, tokens, image_features, blank, neutral=(), floor=0.5, ceil=2.0):
    """Each scored token encoded alone by clip.tokenize + CLIP's encode_text, then the DTR formula in loops."""
    features: dict[int, torch.Tensor] = {}

    def feature_of(token: int) -> torch.Tensor:
        if token not in features:
            single = torch.zeros(1, 77, dtype=torch.long)
            single[0, :3] = torch.tensor([49406, token, 49407])
            with torch.no_grad():
                features[token] = F.normalize(model.encode_text(single).double(), dim=-1)[0]
        return features[token]

    image_features = F.normalize(image_features.double(), dim=-1)
    blank = F.normalize(blank.double(), dim=-1)
    weights = torch.ones(tokens.shape, dtype=torch.float64)
    for b in range(tokens.shape[0]):
        eot = int(tokens[b].argmax())
        positions = [j for j in range(1, eot) if int(tokens[b, j]) not in neutral]
        raw = []
        for j in positions:
            feature = feature_of(int(tokens[b, j]))
            raw.append(abs(float(feature @ image_features[b]) - float(feature @ blank)))
        if not raw:
            continue
        mean = sum(raw) / len(raw)
        for j, value in zip(positions, raw):
            weights[b, j] = min(max(value / mean if mean > 0 else 0.0, floor), ceil)
    return weights.float()


def test_dtr_matches_the_per_token_reference(tiny_clip):
    tokens = clip.tokenize(CAPTIONS)
    images = _image_features(tiny_clip, 0, len(CAPTIONS))
    blank = blank_image_features(tiny_clip, 32)
    neutral = {int(tokens[0, 1])}  # "a": in three of the four captions
    dtr = DynamicTokenReweighting(_frozen_text(tiny_clip), blank, sorted(neutral))
    weights = dtr(tokens, images)
    assert weights.shape == tokens.shape and weights.dtype == torch.float32
    assert torch.allclose(weights, _reference_weights(tiny_clip, tokens, images, blank, neutral), atol=1e-4)
    # Not a trivial output: some words move away from 1 in both directions; the neutral word stays at 1.
    words = word_token_mask(tokens, torch.tensor(sorted(neutral)))
    assert (weights[words] < 0.99).any() and (weights[words] > 1.01).any()
    assert torch.equal(weights[tokens == int(tokens[0, 1])], torch.ones(int((tokens == int(tokens[0, 1])).sum())))


def test_dtr_weights_depend_on_the_token_not_its_prefix(tiny_clip):
    # The same word gets the same weight-defining score after any prefix: no causal prefix summary.
    tokens = clip.tokenize(["a red car", "an old red car"])
    images = _image_features(tiny_clip, 5, 1).expand(2, -1)
    dtr = DynamicTokenReweighting(_frozen_text(tiny_clip), blank_image_features(tiny_clip, 32))
    raw = dtr.raw_scores(tokens, images)
    red = int(tokens[0, 2])
    assert raw[0, 2].item() == pytest.approx(raw[1, 3].item(), abs=1e-6) and int(tokens[1, 3]) == red


def test_dtr_encodes_each_token_once():
    model = tiny_clip_model(seed=0)
    calls = []
    encode = _frozen_text(model)
    dtr = DynamicTokenReweighting(lambda rows: calls.append(rows.shape[0]) or encode(rows),
                                  blank_image_features(model, 32))
    tokens = clip.tokenize(CAPTIONS)
    images = _image_features(model, 1, len(CAPTIONS))
    first = dtr(tokens, images)
    assert calls == [len(set(tokens[word_token_mask(tokens)].tolist()))]
    assert torch.equal(dtr(tokens, images), first) and len(calls) == 1  # all cached now
    dtr(clip.tokenize(["a zebra"]), images[:1])
    assert len(calls) == 2 and calls[1] == 1  # only "zebra" is new


def test_dtr_handles_captions_cut_at_77_tokens(tiny_clip):
    tokens = clip.tokenize(["word " * 100, "a cat"], truncate=True)
    images = _image_features(tiny_clip, 1, 2)
    blank = blank_image_features(tiny_clip, 32)
    weights = DynamicTokenReweighting(_frozen_text(tiny_clip), blank)(tokens, images)
    assert weights[0, 76].item() == 1.0  # EOT in the last slot
    assert torch.allclose(weights, _reference_weights(tiny_clip, tokens, images, blank), atol=1e-4)


def test_dtr_special_and_padding_tokens_get_exactly_one(tiny_clip):
    tokens = clip.tokenize(CAPTIONS)
    images = _image_features(tiny_clip, 2, len(CAPTIONS))
    weights = DynamicTokenReweighting(_frozen_text(tiny_clip), blank_image_features(tiny_clip))(tokens, images)
    words = word_token_mask(tokens)
    assert torch.equal(weights[~words], torch.ones(int((~words).sum())))
    assert ((weights[words] >= 0.5) & (weights[words] <= 2.0)).all()


def test_dtr_image_equal_to_blank_gives_the_floor(tiny_clip):
    tokens = clip.tokenize(CAPTIONS)
    blank = blank_image_features(tiny_clip, 32)
    images = blank.unsqueeze(0).expand(len(CAPTIONS), -1)
    weights = DynamicTokenReweighting(_frozen_text(tiny_clip), blank, floor=0.25, ceil=3.0)(tokens, images)
    words = word_token_mask(tokens)
    assert torch.equal(weights[words], torch.full((int(words.sum()),), 0.25))
    assert torch.equal(weights[~words], torch.ones(int((~words).sum())))


def test_dtr_none_mode_clamps_raw_scores(tiny_clip):
    tokens = clip.tokenize(CAPTIONS[:2])
    images = _image_features(tiny_clip, 3, 2)
    dtr = DynamicTokenReweighting(_frozen_text(tiny_clip), blank_image_features(tiny_clip), normalization="none",
                                  floor=0.001, ceil=0.05)
    raw = dtr.raw_scores(tokens, images)
    expected = torch.where(word_token_mask(tokens), raw.clamp(0.001, 0.05), torch.ones_like(raw))
    assert torch.equal(dtr(tokens, images), expected)


def test_dtr_builds_no_graph():
    model = tiny_clip_model(seed=1)
    for parameter in model.parameters():
        parameter.requires_grad_(True)  # even an unfrozen CLIP must not be touched
    images = torch.randn(2, 32, requires_grad=True)
    dtr = DynamicTokenReweighting(_frozen_text(model), torch.randn(32, requires_grad=True))
    weights = dtr(clip.tokenize(CAPTIONS[:2]), images)
    assert not weights.requires_grad and weights.grad_fn is None
    assert all(parameter.grad is None for parameter in model.parameters())


def test_blank_image_features_is_the_mean_grey_image(tiny_clip):
    blank = blank_image_features(tiny_clip, 32)
    with torch.no_grad():
        expected = F.normalize(tiny_clip.encode_image(torch.zeros(1, 3, 32, 32)), dim=-1)[0]
    assert blank.shape == (32,) and blank.dtype == torch.float32
    assert torch.allclose(blank, expected, atol=1e-6)
    assert blank.norm().item() == pytest.approx(1.0, abs=1e-5)
    # The alternative constant image: black (pixel 0) normalised with CLIP's mean/std.
    black = blank_image_features(tiny_clip, 32, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, pixel_value=0.0)
    pixels = torch.stack([torch.full((32, 32), -m / s) for m, s in zip(OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)])
    with torch.no_grad():
        expected_black = F.normalize(tiny_clip.encode_image(pixels.unsqueeze(0)), dim=-1)[0]
    assert torch.allclose(black, expected_black, atol=1e-6)
    assert not torch.allclose(black, blank)


# ===================================================================================== negatives
CLASSNAMES = [
    "yorkshire_terrier",  # 0
    "wheaten_terrier",  # 1
    "staffordshire_bull_terrier",  # 2
    "cat",  # 3
    "persian",  # 4
    "sphynx",  # 5
    "rose",  # 6
    "desert-rose",  # 7
]
META = {"dog": ["Yorkshire Terrier", "wheaten_terrier", "staffordshire_bull_terrier", "beagle"],
        "cat": ["cat", "Persian", "sphynx"]}
YORKIE = [
    "This is a photo of yorkshire_terrier.A yorkshire terrier with a fluffy coat, black and tan.",
    "This is a photo of yorkshire_terrier.It stands on the bed, black and white.",
    "This is a photo of Yorkshire_Terrier. It sleeps on a sofa.",
    "This is a photo of yorkshire_terrier.A yorkshire terrier with a fluffy coat, black and tan.",
]


def _generator(**kwargs) -> CategoryAwareNegatives:
    captions = {0: YORKIE, 3: ["This is a photo of cat.A cat.", "This is a photo of Cat.A cat."], 4: ["A persian."]}
    options = dict(num_category=2, num_attribute=2, seed=0)
    options.update(kwargs)
    return CategoryAwareNegatives(CLASSNAMES, captions, siblings_from_meta(CLASSNAMES, META), **options)


def test_siblings_from_meta_hand():
    siblings = siblings_from_meta(CLASSNAMES, META)
    assert siblings == {0: [1, 2], 1: [0, 2], 2: [0, 1], 3: [4, 5], 4: [3, 5], 5: [3, 4], 6: [], 7: []}
    # A class in two meta-categories gets the union.
    assert siblings_from_meta(["a", "b", "c"], {"x": ["a", "b"], "y": ["b", "c"]}) == {0: [1], 1: [0, 2], 2: [1]}


def test_siblings_from_text_features_hand():
    features = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-2.0, 0.0]])
    # Cosines: c0: c1 .8, c2 0, c3 -1 | c1: c0 .8, c2 .6, c3 -.8 | c2: c1 .6, c0 0 = c3 0 (tie: lower index)
    # | c3: c2 0, c1 -.8, c0 -1
    assert siblings_from_text_features(features, top_k=2) == {0: [1, 2], 1: [0, 2], 2: [1, 0], 3: [2, 1]}
    assert siblings_from_text_features(features, top_k=10) == {0: [1, 2, 3], 1: [0, 2, 3], 2: [1, 0, 3], 3: [2, 1, 0]}


def test_category_swap_sibling_and_counts():
    negatives = _generator(num_attribute=0).sample(YORKIE[0], 0)
    assert [kind for _, _, kind in negatives] == ["category", "category"]
    assert {(text, label) for text, label, _ in negatives} == {
        ("This is a photo of wheaten_terrier.A wheaten terrier with a fluffy coat, black and tan.", 1),
        (
            "This is a photo of staffordshire_bull_terrier."
            "A staffordshire bull terrier with a fluffy coat, black and tan.",
            2,
        ),
    }


def test_category_swaps_never_name_the_own_class_and_use_siblings():
    generator = _generator(num_category=3, num_attribute=0)
    siblings = siblings_from_meta(CLASSNAMES, META)
    rng = random.Random(1)
    for _ in range(50):
        label = rng.choice([0, 1, 2, 3, 4, 5])
        name = CLASSNAMES[label].replace("_", " ")
        caption = f"This is a photo of {CLASSNAMES[label]}.A {name} next to a {name.upper()}."
        negatives = generator.sample(caption, label, rng)
        assert len(negatives) == 2  # only two siblings exist: never topped up with non-siblings
        for text, target, kind in negatives:
            assert kind == "category" and target in siblings[label] and target != label
            assert not re.search(re.escape(name), text, re.IGNORECASE)
            assert not re.search(re.escape(CLASSNAMES[label]), text, re.IGNORECASE)


def test_category_swap_case_styles_and_underscores():
    generator = _generator()
    swap = generator.category_swap
    assert swap("yorkshire_terrier on grass", 0, 1) == "wheaten_terrier on grass"
    assert swap("a yorkshire terrier on grass", 0, 1) == "a wheaten terrier on grass"
    assert swap("A Yorkshire Terrier on grass", 0, 1) == "A Wheaten Terrier on grass"
    assert swap("Yorkshire terrier on grass", 0, 2) == "Staffordshire bull terrier on grass"
    assert swap("A YORKSHIRE TERRIER ON GRASS", 0, 1) == "A WHEATEN TERRIER ON GRASS"
    assert swap("This is a photo of Yorkshire_Terrier. A yorkshire terrier.", 0, 2) == (
        "This is a photo of Staffordshire_Bull_Terrier. A staffordshire bull terrier."
    )
    assert swap("A Sphynx and a sphynx.", 5, 4) == "A Persian and a persian."


def test_category_swap_renames_plural_hyphenated_and_multiword_mentions():
    names = ["zindex", "yorkshire_terrier", "wheaten_terrier", "daisy", "vexlar star", "quorin star"]
    swap = CategoryAwareNegatives(names, {}, {}).category_swap
    assert swap("This is a photo of zindex.Two zindexes, a Zindex and ZINDEXES.", 0, 3) == (
        "This is a photo of daisy.Two daisies, a Daisy and DAISIES.")
    assert swap("daisies and a Daisy", 3, 0) == "zindexes and a Zindex"
    assert swap("Three Yorkshire Terriers, a yorkshire-terrier and yorkshire_terriers.", 1, 2) == (
        "Three Wheaten Terriers, a wheaten-terrier and wheaten_terriers.")
    assert swap("This is a photo of vexlar star.Two large vexlar stars.", 4, 5) == (
        "This is a photo of quorin star.Two large quorin stars.")
    assert swap("a vexlar-star and a Vexlar Star", 4, 1) == "a yorkshire-terrier and a Yorkshire Terrier"
    # not a mention: another word that merely starts with the name
    assert swap("zindexing zindexes", 0, 3) == "zindexing daisies"


def test_category_swaps_leave_no_mention_of_the_own_class():
    names = ["zindex", "funsar", "vexlar star", "quorin star", "yorkshire_terrier", "wheaten_terrier"]
    captions = ["This is a photo of zindex.Two large zindexes on a dark background. A Zindex!",
                "This is a photo of vexlar star.The image shows three vexlar stars; Vexlar-Stars everywhere.",
                "This is a photo of Yorkshire Terrier.Yorkshire terriers and a YORKSHIRE-TERRIER play."]
    generator = CategoryAwareNegatives(names, {}, {0: [1], 2: [3], 4: [5]}, num_category=1, num_attribute=0)
    for caption, label in zip(captions, (0, 2, 4)):
        (text, target, _), = generator.sample(caption, label)
        words = names[label].replace("_", " ").split()
        mention = r"[\s_-]+".join(words)
        assert not re.search(mention, text, re.IGNORECASE), text
        assert re.search(r"[\s_-]+".join(names[target].replace("_", " ").split()), text, re.IGNORECASE)


def test_category_swap_keeps_proper_names_written_canonically():
    generator = CategoryAwareNegatives(["Cessna 172", "A300B4"], {}, {})
    assert generator.category_swap("The A300B4 is parked.", 1, 0) == "The Cessna 172 is parked."
    assert generator.category_swap("the cessna 172 is parked.", 0, 1) == "the a300b4 is parked."


def test_category_swap_is_whole_word():
    generator = _generator()
    caption = "This is a photo of cat.Programs concatenate; a cat and a cat-like toy near a bobcat."
    assert generator.category_swap(caption, 3, 4) == (
        "This is a photo of persian.Programs concatenate; a persian and a cat-like toy near a bobcat."
    )
    assert generator.category_swap("a desert-rose next to a rose.", 6, 7) == "a desert-rose next to a desert-rose."


def test_category_swap_fallbacks_when_the_name_is_absent():
    generator = _generator()
    assert generator.category_swap("This is a photo of doggo.A small dog.", 0, 1) == (
        "This is a photo of wheaten terrier.A small dog."
    )
    assert generator.category_swap("This is a Kitty.A small animal.", 3, 4) == "This is a Persian.A small animal."
    assert generator.category_swap("A small dog on a bed.", 0, 1) == (
        "This is a photo of wheaten terrier. A small dog on a bed."
    )


def test_category_pool_without_siblings_is_every_other_class():
    generator = CategoryAwareNegatives(["ant", "bee", "cow", "dog"], {}, {}, num_category=3, num_attribute=0)
    negatives = generator.sample("a photo of an ant.", 0)
    assert sorted(label for _, label, _ in negatives) == [1, 2, 3]
    assert sorted(text for text, _, _ in negatives) == [f"a photo of an {name}." for name in ("bee", "cow", "dog")]


def test_attribute_swaps_keep_class_and_prefix():
    negatives = _generator(num_category=0, num_attribute=2).sample(YORKIE[0], 0)
    own_prefix = "This is a photo of yorkshire_terrier."
    assert sorted(negatives) == sorted(
        [
            (own_prefix + "It stands on the bed, black and white.", 0, "attribute"),
            (own_prefix + " It sleeps on a sofa.", 0, "attribute"),
        ]
    )


def test_attribute_swap_without_a_prefix_uses_the_other_caption():
    generator = CategoryAwareNegatives(
        ["sphynx", "persian"], {0: ["A Sphynx on a bed.", "A Sphynx with green eyes."]}, {}, 1, 1
    )
    negatives = generator.sample("A Sphynx on a bed.", 0)
    assert ("A Sphynx with green eyes.", 0, "attribute") in negatives
    assert ("A Persian on a bed.", 1, "category") in negatives


def test_single_description_classes_top_up_with_category_swaps():
    classnames = ["ant", "bee", "cow", "dog", "elk", "fox"]
    siblings = {0: [1, 2, 3, 4, 5]}
    only = "This is a photo of ant.Alone."
    generator = CategoryAwareNegatives(classnames, {0: [only, only]}, siblings, num_category=2, num_attribute=2)
    negatives = generator.sample(only, 0)
    assert [kind for _, _, kind in negatives] == ["category"] * 4
    assert len({text for text, _, _ in negatives}) == 4
    # Captions that differ only in the prefix's case have the same body: no attribute negative either.
    cats = _generator().sample("This is a photo of cat.A cat.", 3)
    assert [kind for _, _, kind in cats] == ["category", "category"]  # only two siblings to top up from


def test_never_returns_the_positive_nor_duplicates():
    generator = CategoryAwareNegatives(["dog", "dog", "cat"], {0: ["a dog.", "a dog."]}, {0: [1, 2]}, 2, 2)
    for _ in range(10):
        negatives = generator.sample("a dog.", 0)
        assert negatives == [("a cat.", 2, "category")]  # the swap to the homonym class 1 is dropped
    generator = _generator(num_category=2, num_attribute=3)
    for _ in range(20):
        negatives = generator.sample(YORKIE[0], 0)
        texts = [text for text, _, _ in negatives]
        assert YORKIE[0] not in texts and len(texts) == len(set(texts))
        assert [kind for _, _, kind in negatives].count("attribute") == 2  # two distinct other bodies exist
        assert len(negatives) == 4  # one category swap would exceed the two siblings


def test_sampling_is_seeded_and_resampled_every_call():
    classnames = [f"class_{i}" for i in range(30)]
    caption = "This is a photo of class_0.Body."

    def draws(seed: int) -> list:
        generator = CategoryAwareNegatives(classnames, {}, {}, num_category=3, num_attribute=0, seed=seed)
        return [generator.sample(caption, 0) for _ in range(5)]

    assert draws(0) == draws(0)
    assert draws(0) != draws(1)
    assert len({tuple(call) for call in draws(0)}) > 1  # a new draw at every call
    external = CategoryAwareNegatives(classnames, {}, {}, num_category=3, num_attribute=0, seed=99)
    assert external.sample(caption, 0, random.Random(5)) == external.sample(caption, 0, random.Random(5))


def test_negatives_validate_indices():
    with pytest.raises(ValueError):
        CategoryAwareNegatives(["a", "b"], {}, {0: [5]})
    with pytest.raises(ValueError):
        CategoryAwareNegatives(["a", "b"], {3: ["x"]}, {})


# ======================================================================================== adapter
def _set_weights(adapter: ResidualAdapter) -> None:
    with torch.no_grad():
        adapter.fc[0].weight.copy_(torch.tensor([[1.0, 0.0, -1.0, 0.0], [0.5, 0.5, 0.5, 0.5]]))
        adapter.fc[2].weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 1.0], [0.0, 2.0], [2.0, -1.0]]))


def test_adapter_matches_the_hand_formula():
    adapter = CategoryAwareAdapter(4, reduction=2, ratio=0.2)
    _set_weights(adapter)
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    # hidden = relu([1 - 3, 0.5 * 10]) = [0, 5]; mlp = relu([0, 5, 10, -5]) = [0, 5, 10, 0]
    # a = 0.8 * x + 0.2 * mlp = [0.8, 1.6 + 1, 2.4 + 2, 3.2]
    assert torch.allclose(adapter(x), torch.tensor([[0.8, 2.6, 4.4, 3.2]]))
    assert isinstance(adapter, ResidualAdapter)
    assert sorted(adapter.state_dict()) == ["fc.0.weight", "fc.2.weight"]  # CLIP-Adapter's names, no biases


def test_adapter_ratio_zero_is_identity_and_dtype_follows_input():
    x = torch.randn(3, 8)
    assert torch.equal(ResidualAdapter(8, reduction=4, ratio=0.0)(x), x)
    adapter = CategoryAwareAdapter(8)
    assert adapter.ratio == 0.2 and adapter.fc[0].weight.shape == (2, 8)
    half = adapter(x.half())
    assert half.dtype == torch.float16
    assert torch.allclose(half.float(), adapter(x.half().float()), atol=1e-2)
    assert adapter.half()(x).dtype == torch.float32


def test_adapter_trains():
    adapter = CategoryAwareAdapter(8)
    adapter(torch.randn(4, 8)).sum().backward()
    assert all(p.grad is not None for p in adapter.parameters())
