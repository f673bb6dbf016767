"""Recall@K for image-text retrieval, computed chunk by chunk.

Protocol (docs/retrieval.md):

* ground truth is by *index*: caption ``j`` belongs to image ``caption_to_image[j]`` only, so two captions with the
  same text (or two images with the same pixels) never count as each other's match;
* ties are broken deterministically: the rank of gallery item ``g`` for a query is
  ``#{items with a strictly greater score} + #{items with an equal score and a lower index}``, i.e. its position
  after a *stable* descending sort. Without this rule, identical features (duplicate captions are common in FDRD)
  would make the score depend on the sort implementation;
* I2T ranks, for each image, its *best-ranked* ground-truth caption among all M captions; T2I ranks each caption's
  own image among all N images.

The full N x M similarity matrix is never built: queries are processed ``chunk_size`` at a time, so a
30,000 x 30,000 gallery needs at most about ``chunk_size * 30,000 * 12`` bytes at once (two float32 score
buffers plus a few boolean masks), ~370 MB at the default chunk of 1024, instead of 3.6 GB for the full
matrix. Similarities are computed in float32 whatever the feature dtype, because fp16 scores create spurious ties.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "retrieval_ranks",
    "ranks_to_recall",
    "recall_at_k",
    "hard_negative_recall",
    "format_recall_table",
]

DEFAULT_KS: tuple[int, ...] = (1, 5, 10)


def _prepare(features: Tensor, name: str, normalize: bool) -> Tensor:
    """float32, finite, optionally L2-normalised (ranking by cosine needs unit caption/image norms)."""
    if features.dim() != 2:
        raise ValueError(f"{name} must be 2-D [n, dim], got shape {tuple(features.shape)}")
    features = features.detach().float()
    if not torch.isfinite(features).all():
        raise ValueError(f"{name} contains NaN or inf")
    return F.normalize(features, dim=-1) if normalize else features


def _check_caption_to_image(caption_to_image: Tensor | None, num_images: int, num_captions: int, device) -> Tensor:
    if caption_to_image is None:
        if num_images != num_captions:
            raise ValueError(
                f"caption_to_image is required when #images ({num_images}) != #captions ({num_captions})"
            )
        return torch.arange(num_captions, device=device)
    caption_to_image = torch.as_tensor(caption_to_image, device=device).long().flatten()
    if caption_to_image.numel() != num_captions:
        raise ValueError(f"caption_to_image has {caption_to_image.numel()} entries for {num_captions} captions")
    if num_captions and (caption_to_image.min() < 0 or caption_to_image.max() >= num_images):
        raise ValueError(f"caption_to_image must index images in [0, {num_images})")
    covered = torch.zeros(num_images, dtype=torch.bool, device=device)
    covered[caption_to_image] = True
    if not covered.all():
        # An image without any caption cannot be retrieved; silently dropping it would change the I2T denominator.
        missing = torch.nonzero(~covered).flatten()[:5].tolist()
        raise ValueError(f"every image needs at least one caption; images without one include {missing}")
    return caption_to_image


def _stable_rank(scores: Tensor, target_scores: Tensor, target_index: Tensor) -> Tensor:
    """Rank of one target per row of ``scores`` [Q, G] under the stable descending order.

    rank = #(score > target) + #(score == target and index < target_index). 0 is the best rank.
    """
    gallery_index = torch.arange(scores.shape[1], device=scores.device)
    target_scores = target_scores.unsqueeze(1)
    greater = (scores > target_scores).sum(dim=1)
    tied_before = ((scores == target_scores) & (gallery_index.unsqueeze(0) < target_index.unsqueeze(1))).sum(dim=1)
    return greater + tied_before


@torch.no_grad()
def retrieval_ranks(
    image_features: Tensor,
    text_features: Tensor,
    caption_to_image: Tensor | None = None,
    chunk_size: int = 1024,
    normalize: bool = True,
) -> tuple[Tensor, Tensor]:
    """0-based ranks of the ground truth: ``(i2t_ranks [N], t2i_ranks [M])``.

    ``i2t_ranks[i]`` is the rank of image i's best-ranked ground-truth caption among all M captions;
    ``t2i_ranks[j]`` is the rank of caption j's own image among all N images. See the module docstring for the
    tie rule. ``normalize=True`` L2-normalises both sides first; it is a no-op (up to rounding, which keeps
    duplicated rows identical) for features that are already normalised, and it makes the ranking cosine-based
    for features that are not.
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    images = _prepare(image_features, "image_features", normalize)
    texts = _prepare(text_features, "text_features", normalize)
    if images.shape[1] != texts.shape[1]:
        raise ValueError(f"feature dims differ: images {images.shape[1]} vs texts {texts.shape[1]}")
    texts = texts.to(images.device)
    num_images, num_captions = images.shape[0], texts.shape[0]
    caption_to_image = _check_caption_to_image(caption_to_image, num_images, num_captions, images.device)

    i2t_ranks = torch.empty(num_images, dtype=torch.long, device=images.device)
    for start in range(0, num_images, chunk_size):
        stop = min(start + chunk_size, num_images)
        scores = images[start:stop] @ texts.T  # [chunk, M]
        is_gt = caption_to_image.unsqueeze(0) == torch.arange(start, stop, device=images.device).unsqueeze(1)
        # The best-ranked ground-truth caption is the one with the highest score, lowest index among equals:
        # the stable order is lexicographic in (-score, index), so its rank is the minimum over the GT set.
        best_score = scores.masked_fill(~is_gt, -math.inf).max(dim=1).values
        best_index = (is_gt & (scores == best_score.unsqueeze(1))).to(torch.uint8).argmax(dim=1)  # first True
        i2t_ranks[start:stop] = _stable_rank(scores, best_score, best_index)
        del scores, is_gt

    t2i_ranks = torch.empty(num_captions, dtype=torch.long, device=images.device)
    for start in range(0, num_captions, chunk_size):
        stop = min(start + chunk_size, num_captions)
        scores = texts[start:stop] @ images.T  # [chunk, N]
        own_image = caption_to_image[start:stop]
        own_score = scores.gather(1, own_image.unsqueeze(1)).squeeze(1)
        t2i_ranks[start:stop] = _stable_rank(scores, own_score, own_image)
        del scores
    return i2t_ranks, t2i_ranks


def ranks_to_recall(ranks: Tensor, ks: Sequence[int] = DEFAULT_KS) -> dict[int, float]:
    """``{k: 100 * mean(rank < k)}``; an empty rank vector gives NaN (there is nothing to recall)."""
    if ranks.numel() == 0:
        return {int(k): math.nan for k in ks}
    return {int(k): 100.0 * (ranks < k).double().mean().item() for k in ks}


def recall_at_k(
    image_features: Tensor,
    text_features: Tensor,
    caption_to_image: Tensor | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    chunk_size: int = 1024,
    normalize: bool = True,
) -> dict:
    """Image-to-text and text-to-image Recall@K in percent.

    Args:
        image_features: [N, D] image embeddings (L2-normalised by the caller; renormalised when ``normalize``).
        text_features: [M, D] caption embeddings.
        caption_to_image: [M] index of each caption's image; ``None`` means the 1:1 gallery ``arange(M)``.
            Every image must own at least one caption.
        ks: cut-offs; a k larger than the gallery gives 100.
        chunk_size: number of queries scored at once (peak memory ~ chunk_size x gallery x 12 bytes).

    Returns:
        ``{"i2t": {k: pct}, "t2i": {k: pct}, "mean_recall": mean of all 2 * len(ks) values}``.
    """
    i2t_ranks, t2i_ranks = retrieval_ranks(image_features, text_features, caption_to_image, chunk_size, normalize)
    i2t = ranks_to_recall(i2t_ranks, ks)
    t2i = ranks_to_recall(t2i_ranks, ks)
    values = list(i2t.values()) + list(t2i.values())
    return {"i2t": i2t, "t2i": t2i, "mean_recall": sum(values) / len(values) if values else math.nan}


@torch.no_grad()
def hard_negative_recall(
    image_features: Tensor,
    positive_features: Tensor,
    negative_features: Sequence[Tensor],
    ks: Sequence[int] = (1,),
    normalize: bool = True,
) -> dict:
    """Image-to-text Recall@K of each image's positive against its *own* negative captions only.

    This is the optional hard-negative report on the FDRD test JSONs that ship ``negative`` captions (flowers,
    pets, aircraft). Candidate 0 is the positive, candidates 1..k_i the negatives, ranked with the same stable
    rule, so a negative with a score *equal* to the positive's never beats it. Negatives whose *text* equals the
    positive are therefore free hits: the caller is expected to drop them before encoding.

    Images with no negative (after that filtering) carry no information, so Recall@K is computed over the images
    with at least one negative; ``with_negatives`` reports that fraction (in percent) so coverage stays visible.
    When no image has a negative the recalls are NaN.

    Returns:
        ``{"i2t": {k: pct}, "with_negatives": pct, "num_images": N, "mean_negatives": mean k_i}``.
    """
    images = _prepare(image_features, "image_features", normalize)
    positives = _prepare(positive_features, "positive_features", normalize).to(images.device)
    if positives.shape != images.shape:
        raise ValueError(f"positive_features {tuple(positives.shape)} must match image_features {tuple(images.shape)}")
    if len(negative_features) != images.shape[0]:
        raise ValueError(f"need one negative tensor per image: got {len(negative_features)} for {images.shape[0]}")
    dim = images.shape[1]
    negatives = [
        _prepare(n.reshape(-1, dim), f"negative_features[{i}]", normalize).to(images.device)
        for i, n in enumerate(negative_features)
    ]
    counts = torch.tensor([n.shape[0] for n in negatives], dtype=torch.long, device=images.device)
    has_negative = counts > 0
    max_count = int(counts.max().item()) if counts.numel() else 0

    ranks = torch.zeros(images.shape[0], dtype=torch.long, device=images.device)
    if max_count > 0:
        padded = images.new_zeros(images.shape[0], max_count, dim)
        for i, n in enumerate(negatives):
            padded[i, : n.shape[0]] = n
        valid = torch.arange(max_count, device=images.device).unsqueeze(0) < counts.unsqueeze(1)
        negative_scores = torch.einsum("nd,nkd->nk", images, padded).masked_fill(~valid, -math.inf)
        positive_scores = (images * positives).sum(dim=1, keepdim=True)
        # The positive has index 0, so tied negatives (higher index) never count against it.
        ranks = (negative_scores > positive_scores).sum(dim=1)

    return {
        "i2t": ranks_to_recall(ranks[has_negative], ks),
        "with_negatives": 100.0 * has_negative.double().mean().item() if counts.numel() else math.nan,
        "num_images": int(images.shape[0]),
        "mean_negatives": counts.double().mean().item() if counts.numel() else math.nan,
    }


def _is_single_result(results: Mapping) -> bool:
    return "i2t" in results or "t2i" in results


def format_recall_table(results: Mapping, average_row: bool = False, floatfmt: str = ".2f") -> str:
    """Render one result of :func:`recall_at_k` (or a ``{name: result}`` mapping, e.g. per domain) as a table.

    Columns are ``I2T R@k`` for every k present, then ``T2I R@k``, then ``mean`` when present. With
    ``average_row`` an ``AVG`` row holds the unweighted mean over the rows (the README's AVG convention),
    taken column by column over the rows that have that column.
    """
    from tabulate import tabulate

    rows_by_name = {"": results} if _is_single_result(results) else dict(results)
    directions = [d for d in ("i2t", "t2i") if any(d in r for r in rows_by_name.values())]
    columns: list[tuple[str, int | None]] = []
    for direction in directions:
        ks = sorted({int(k) for r in rows_by_name.values() for k in r.get(direction, {})})
        columns += [(direction, k) for k in ks]
    if any("mean_recall" in r for r in rows_by_name.values()):
        columns.append(("mean_recall", None))

    def cell(result: Mapping, column: tuple[str, int | None]) -> float | None:
        key, k = column
        if k is None:
            return result.get(key)
        return result.get(key, {}).get(k)

    table = [[name] + [cell(r, c) for c in columns] for name, r in rows_by_name.items()]
    if average_row and len(table) > 1:
        averages: list[float | None] = []
        for position in range(1, len(columns) + 1):
            present = [row[position] for row in table if row[position] is not None]
            averages.append(sum(present) / len(present) if present else None)
        table.append(["AVG"] + averages)
    headers = [""] + [f"{d.upper()} R@{k}" if k is not None else "mean" for d, k in columns]
    return tabulate(table, headers=headers, floatfmt=floatfmt, missingval="-")
