"""Recall@K against hand computations and a brute-force reference with naive Python loops."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from trainers.retrieval_metrics import (
    DEFAULT_BLOCK_BYTES,
    format_recall_table,
    hard_negative_recall,
    recall_at_k,
    retrieval_ranks,
)


# ----------------------------------------------------------------------------------------------- reference
def _score_lists(queries: torch.Tensor, gallery: torch.Tensor) -> list[list[float]]:
    """Cosine scores with a float64 Python loop: identical rows give exactly equal scores."""
    q = F.normalize(queries.double(), dim=-1).tolist()
    g = F.normalize(gallery.double(), dim=-1).tolist()
    return [[sum(a * b for a, b in zip(row, col)) for col in g] for row in q]


def _stable_order(scores: list[float]) -> list[int]:
    """Descending by score; equal scores keep index order (a stable sort)."""
    return sorted(range(len(scores)), key=lambda g: (-scores[g], g))


def reference_ranks(images, texts, caption_to_image):
    i2t_scores = _score_lists(images, texts)
    t2i_scores = _score_lists(texts, images)
    i2t = []
    for i, scores in enumerate(i2t_scores):
        order = _stable_order(scores)
        i2t.append(min(order.index(j) for j, owner in enumerate(caption_to_image) if owner == i))
    t2i = []
    for j, scores in enumerate(t2i_scores):
        order = _stable_order(scores)
        t2i.append(order.index(caption_to_image[j]))
    return i2t, t2i


def reference_recall(ranks: list[int], ks) -> dict[int, float]:
    return {k: 100.0 * sum(r < k for r in ranks) / len(ranks) for k in ks}


# ------------------------------------------------------------------------------------------ hand examples
def test_hand_computed_3x3():
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    texts = torch.tensor([[0.8, 0.6], [0.0, 1.0], [1.0, 0.0]])
    # I.T^T = [[0.8, 0, 1], [0.6, 1, 0], [0.96, 0.8, 0.6]]
    # I2T: image 0's caption 0 (0.8) is beaten by caption 2 (1.0) -> rank 1; image 1 -> 0; image 2 (0.6) -> 2.
    # T2I: caption 0 vs images [0.8, 0.6, 0.96] -> 1; caption 1 -> 0; caption 2 vs [1, 0, 0.6] -> 1.
    i2t, t2i = retrieval_ranks(images, texts)
    assert i2t.tolist() == [1, 0, 2]
    assert t2i.tolist() == [1, 0, 1]
    result = recall_at_k(images, texts, ks=(1, 2, 3))
    assert result["i2t"] == pytest.approx({1: 100 / 3, 2: 200 / 3, 3: 100.0})
    assert result["t2i"] == pytest.approx({1: 100 / 3, 2: 100.0, 3: 100.0})
    assert result["mean_recall"] == pytest.approx((100 / 3 + 200 / 3 + 100 + 100 / 3 + 100 + 100) / 6)


def test_hand_computed_ties_follow_index_ground_truth():
    # Images 0 and 1 are identical, and so are captions 0 and 1.
    images = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    texts = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    i2t, t2i = retrieval_ranks(images, texts)
    # Image 1's own caption 1 ties with caption 0, which has the lower index: rank 1, not 0.
    assert i2t.tolist() == [0, 1, 0]
    assert t2i.tolist() == [0, 1, 0]
    assert recall_at_k(images, texts, ks=(1, 2))["i2t"] == pytest.approx({1: 200 / 3, 2: 100.0})


def test_many_captions_per_image_hand():
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    texts = torch.tensor([[0.0, 1.0], [0.6, 0.8], [1.0, 0.0], [0.8, 0.6]])
    caption_to_image = torch.tensor([0, 0, 1, 1])
    # Image 0 scores [0, 0.6, 1, 0.8]: its captions 0, 1 rank 3 and 2 -> best rank 2.
    # Image 1 scores [1, 0.8, 0, 0.6]: its captions 2, 3 rank 3 and 2 -> best rank 2.
    # Captions 0..3 vs images: [0,1]->1, [0.6,0.8]->1, [1,0]->1, [0.8,0.6]->1.
    i2t, t2i = retrieval_ranks(images, texts, caption_to_image)
    assert i2t.tolist() == [2, 2]
    assert t2i.tolist() == [1, 1, 1, 1]


# -------------------------------------------------------------------------------- brute-force comparison
def _random_case(num_images: int, num_captions: int, dim: int, seed: int, duplicates: bool):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(num_images, dim, generator=generator)
    texts = torch.randn(num_captions, dim, generator=generator)
    if num_captions == num_images:
        caption_to_image = torch.arange(num_images)
    else:
        extra = torch.randint(num_images, (num_captions - num_images,), generator=generator)
        caption_to_image = torch.cat([torch.arange(num_images), extra])
        caption_to_image = caption_to_image[torch.randperm(num_captions, generator=generator)]
    if duplicates:
        # Exact ties: duplicate captions (across images and within one image's set) and duplicate images.
        texts[5] = texts[2]
        texts[11] = texts[3]
        texts[num_captions - 1] = texts[0]
        same_image = torch.nonzero(caption_to_image == caption_to_image[7]).flatten()
        if len(same_image) > 1:
            texts[same_image[-1]] = texts[same_image[0]]
        images[4] = images[1]
        images[num_images - 1] = images[2]
        images[9] = images[1]
    return images, texts, caption_to_image


@pytest.mark.parametrize(
    "num_images,num_captions,chunk_size,duplicates",
    [
        (50, 50, 7, False),
        (50, 50, 1, True),
        (137, 137, 64, True),
        (137, 137, 1000, True),
        (40, 130, 9, True),
        (61, 200, 17, False),
    ],
)
def test_matches_brute_force(num_images, num_captions, chunk_size, duplicates):
    images, texts, caption_to_image = _random_case(num_images, num_captions, 16, num_images + num_captions, duplicates)
    expected_i2t, expected_t2i = reference_ranks(images, texts, caption_to_image.tolist())
    i2t, t2i = retrieval_ranks(images, texts, caption_to_image, chunk_size=chunk_size)
    assert i2t.tolist() == expected_i2t
    assert t2i.tolist() == expected_t2i

    ks = (1, 5, 10)
    result = recall_at_k(images, texts, caption_to_image, ks=ks, chunk_size=chunk_size)
    assert result["i2t"] == pytest.approx(reference_recall(expected_i2t, ks))
    assert result["t2i"] == pytest.approx(reference_recall(expected_t2i, ks))
    values = list(result["i2t"].values()) + list(result["t2i"].values())
    assert result["mean_recall"] == pytest.approx(sum(values) / 6)


def test_duplicates_actually_tie_and_cost_rank():
    """Guard that the random duplicate case really exercises ties: a duplicated caption loses to its twin."""
    images, texts, caption_to_image = _random_case(50, 50, 16, 3, duplicates=True)
    texts[5] = images[5] * 10  # caption 5 is now the best possible match of image 5 ...
    texts[2] = texts[5]  # ... and so is caption 2, which has the lower index
    i2t, t2i = retrieval_ranks(images, texts, caption_to_image, chunk_size=8)
    assert i2t[5].item() == 1
    assert i2t.tolist() == reference_ranks(images, texts, caption_to_image.tolist())[0]


def test_chunking_and_normalisation_do_not_change_the_result():
    images, texts, caption_to_image = _random_case(40, 130, 8, 0, duplicates=True)
    full = recall_at_k(images, texts, caption_to_image, chunk_size=10_000)
    for chunk_size in (1, 3, 39, 41):
        assert recall_at_k(images, texts, caption_to_image, chunk_size=chunk_size) == full
    scaled = recall_at_k(images * 3.0, texts * torch.rand(130, 1) + 0.0, caption_to_image)
    assert scaled["i2t"] == pytest.approx(full["i2t"])
    assert scaled["t2i"] == pytest.approx(full["t2i"])


def test_fp16_features_are_scored_in_float32():
    images, texts, _ = _random_case(30, 30, 8, 1, duplicates=False)
    assert recall_at_k(images.half(), texts.half()) == recall_at_k(images.half().float(), texts.half().float())


def test_k_larger_than_gallery_is_100():
    images, texts, _ = _random_case(6, 6, 4, 2, duplicates=False)
    result = recall_at_k(images, texts, ks=(6, 50))
    assert result["i2t"] == {6: 100.0, 50: 100.0}
    assert result["t2i"] == {6: 100.0, 50: 100.0}


class _LargestTensor(TorchFunctionMode):
    """Records the largest tensor any torch call produces."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_never_builds_the_full_similarity_matrix():
    num, chunk = 300, 16
    images, texts, _ = _random_case(num, num, 8, 4, duplicates=False)
    with _LargestTensor() as mode:
        recall_at_k(images, texts, chunk_size=chunk)
    assert mode.largest <= chunk * num  # the full matrix would be num * num = 90,000
    assert mode.largest >= chunk * num // 2  # the spy did see the chunk scores


class _MatmulCount(TorchFunctionMode):
    """Counts the matrix products (the blocks scored)."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in (torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.mm):
            self.calls += 1
        return func(*args, **(kwargs or {}))


def test_one_matmul_per_block_in_a_1to1_gallery():
    """Each block serves both directions: 300 / 16 -> 19 x 19 blocks, the diagonal ones scored once too."""
    images, texts, _ = _random_case(300, 300, 8, 5, duplicates=True)
    with _MatmulCount() as mode:
        retrieval_ranks(images, texts, chunk_size=16)
    assert mode.calls == 19 * 19


def test_captions_grouped_by_image_rescore_only_the_band():
    """Five captions per image in image order: the ground truth lies in a band of blocks, rescored once."""
    num_images, per_image, chunk = 60, 5, 20
    images, texts, _ = _random_case(num_images, num_images * per_image, 8, 6, duplicates=False)
    caption_to_image = torch.arange(num_images).repeat_interleave(per_image)
    texts[7] = texts[3]  # a tie inside one image's caption set
    with _MatmulCount() as mode:
        i2t, t2i = retrieval_ranks(images, texts, caption_to_image, chunk_size=chunk)
    image_blocks, text_blocks = 3, 15
    assert mode.calls < 2 * image_blocks * text_blocks  # not the two full passes of a random assignment
    assert (i2t.tolist(), t2i.tolist()) == reference_ranks(images, texts, caption_to_image.tolist())


@pytest.mark.parametrize("num_images,num_captions,max_block_bytes", [(70, 70, 6 * 100), (33, 101, 6 * 250),
                                                                     (90, 90, 6 * 37)])
def test_byte_budget_bounds_the_blocks_and_keeps_the_result(num_images, num_captions, max_block_bytes):
    images, texts, caption_to_image = _random_case(num_images, num_captions, 8, num_images, duplicates=True)
    with _LargestTensor() as mode:
        i2t, t2i = retrieval_ranks(images, texts, caption_to_image, max_block_bytes=max_block_bytes)
    # one block, or a feature-shaped chunk (finite check, normalised chunk) of [n, dim=8]
    assert mode.largest <= max(max_block_bytes // 6, 8 * max(num_images, num_captions))
    assert (i2t.tolist(), t2i.tolist()) == reference_ranks(images, texts, caption_to_image.tolist())
    assert DEFAULT_BLOCK_BYTES >= 6 * 1024 * 1024  # the default is a real block, not a degenerate one


# ------------------------------------------------------------------------- CLIP_benchmark's recall_at_k
def clip_benchmark_recall(scores: torch.Tensor, positive_pairs: torch.Tensor, k: int) -> torch.Tensor:
    """LAION-AI/CLIP_benchmark metrics/zeroshot_retrieval.py ``recall_at_k``, re-implemented: for each query row
    of ``scores`` [Q, G], the fraction of its positives among the top k (through one-hot top-k indices); a query
    is a hit when the fraction is > 0."""
    topk = torch.topk(scores, k, dim=1).indices
    onehot = F.one_hot(topk, num_classes=scores.shape[1])  # [Q, k, G]
    true_positives = (onehot * positive_pairs.view(scores.shape[0], 1, -1)).sum(dim=(1, 2))
    return true_positives / positive_pairs.sum(dim=1)


@pytest.mark.parametrize("num_images,num_captions", [(80, 80), (50, 170)])
def test_matches_clip_benchmark_recall(num_images, num_captions):
    """Random galleries (no ties, where top-k order is unambiguous): the same R@K as CLIP_benchmark."""
    images, texts, caption_to_image = _random_case(num_images, num_captions, 16, 11, duplicates=False)
    images = F.normalize(images, dim=-1)
    texts = F.normalize(texts, dim=-1)
    scores = texts @ images.T  # CLIP_benchmark's [texts, images]
    positive_pairs = torch.zeros_like(scores, dtype=torch.bool)
    positive_pairs[torch.arange(num_captions), caption_to_image] = True
    ks = (1, 5, 10)
    result = recall_at_k(images, texts, caption_to_image, ks=ks, chunk_size=23)
    for k in ks:
        image_retrieval = (clip_benchmark_recall(scores, positive_pairs, k) > 0).float().mean().item()
        text_retrieval = (clip_benchmark_recall(scores.T, positive_pairs.T, k) > 0).float().mean().item()
        assert result["t2i"][k] == pytest.approx(100 * image_retrieval)
        assert result["i2t"][k] == pytest.approx(100 * text_retrieval)


def test_invalid_inputs_raise():
    images, texts, _ = _random_case(5, 6, 4, 0, duplicates=False)
    with pytest.raises(ValueError, match="caption_to_image is required"):
        recall_at_k(images, texts)
    with pytest.raises(ValueError, match="at least one caption"):
        recall_at_k(images, texts, torch.tensor([0, 0, 1, 2, 3, 3]))  # image 4 has no caption
    with pytest.raises(ValueError, match="index images"):
        recall_at_k(images, texts, torch.tensor([0, 1, 2, 3, 4, 5]))
    with pytest.raises(ValueError, match="NaN"):
        recall_at_k(images, torch.full((5, 4), math.nan), torch.arange(5))


# --------------------------------------------------------------------------------------- hard negatives
def test_hard_negative_recall_hand():
    images = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    positives = torch.tensor([[0.8, 0.6], [0.8, 0.6], [0.8, 0.6], [0.8, 0.6]])
    negatives = [
        torch.tensor([[1.0, 0.0], [0.0, 1.0]]),  # 1.0 > 0.8: miss (rank 1)
        torch.tensor([[0.0, 1.0]]),  # 0.0 < 0.8: hit
        torch.tensor([[0.8, 0.6]]),  # tie with the positive: the positive (index 0) wins, a hit
        torch.zeros(0, 2),  # no negative: excluded from the recall
    ]
    result = hard_negative_recall(images, positives, negatives, ks=(1, 2))
    assert result["i2t"] == pytest.approx({1: 200 / 3, 2: 100.0})
    assert result["with_negatives"] == pytest.approx(75.0)
    assert result["num_images"] == 4
    assert result["mean_negatives"] == pytest.approx(1.0)


def test_hard_negative_recall_matches_naive_loop():
    generator = torch.Generator().manual_seed(7)
    n, dim = 60, 8
    images = torch.randn(n, dim, generator=generator)
    positives = torch.randn(n, dim, generator=generator)
    negatives = [torch.randn(i % 5, dim, generator=generator) for i in range(n)]
    negatives[10] = torch.stack([positives[10], images[10]])  # a tie and a certain winner
    ks = (1, 2, 3)
    ranks = []
    for i in range(n):
        if len(negatives[i]) == 0:
            continue
        candidates = torch.cat([positives[i].unsqueeze(0), negatives[i]])
        scores = _score_lists(images[i].unsqueeze(0), candidates)[0]
        ranks.append(_stable_order(scores).index(0))
    result = hard_negative_recall(images, positives, negatives, ks=ks)
    assert result["i2t"] == pytest.approx(reference_recall(ranks, ks))
    assert result["with_negatives"] == pytest.approx(100.0 * len(ranks) / n)


def test_hard_negative_recall_without_any_negative_is_nan():
    result = hard_negative_recall(torch.eye(2), torch.eye(2), [torch.zeros(0, 2), torch.zeros(0, 2)])
    assert math.isnan(result["i2t"][1])
    assert result["with_negatives"] == 0.0


# -------------------------------------------------------------------------------------------------- table
def test_format_recall_table_single_and_average():
    a = {"i2t": {1: 10.0, 5: 50.0}, "t2i": {1: 20.0, 5: 60.0}, "mean_recall": 35.0}
    b = {"i2t": {1: 20.0, 5: 70.0}, "t2i": {1: 40.0, 5: 80.0}, "mean_recall": 52.5}
    table = format_recall_table({"caltech": a, "dtd": b}, average_row=True)
    lines = table.splitlines()
    assert lines[0].split() == ["I2T", "R@1", "I2T", "R@5", "T2I", "R@1", "T2I", "R@5", "mean"]
    assert lines[2].split() == ["caltech", "10.00", "50.00", "20.00", "60.00", "35.00"]
    assert lines[4].split() == ["AVG", "15.00", "60.00", "30.00", "70.00", "43.75"]
    single = format_recall_table(a).splitlines()
    assert single[2].split() == ["10.00", "50.00", "20.00", "60.00", "35.00"]


def test_format_recall_table_accepts_hard_negative_results():
    result = {"i2t": {1: 66.6667}, "with_negatives": 75.0, "num_images": 4, "mean_negatives": 1.0}
    lines = format_recall_table({"pets": result}).splitlines()
    assert lines[0].split() == ["I2T", "R@1"]
    assert lines[2].split() == ["pets", "66.67"]
