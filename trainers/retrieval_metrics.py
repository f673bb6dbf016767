"""Recall@K for image-text retrieval, computed block by block.

Protocol (docs/retrieval.md):

* ground truth is by *index*: caption ``j`` belongs to image ``caption_to_image[j]`` only, so two captions with the
  same text (or two images with the same pixels) never count as each other's match;
* ties are broken deterministically: the rank of gallery item ``g`` for a query is
  ``#{items with a strictly greater score} + #{items with an equal score and a lower index}``, i.e. its position
  after a *stable* descending sort. Without this rule, identical features (duplicate captions are common in FDRD)
  would make the score depend on the sort implementation;
* I2T ranks, for each image, its *best-ranked* ground-truth caption among all M captions; T2I ranks each caption's
  own image among all N images.

The N x M similarity matrix is scored in blocks of images x captions, every block of one shape, and each block's
single matmul serves both directions: its rows count against the images' ground-truth scores (I2T), its columns
against the captions' (T2I). The ground-truth scores are taken from the blocks that hold them, computed first, so
a duplicate of the ground truth ties with it bit for bit. In the 1:1 gallery those are the diagonal blocks, scored
once like every other block; a general ``caption_to_image`` computes the blocks holding ground-truth pairs a
second time (all of them for a random assignment, a band when captions are grouped by image). The block side
follows a byte budget (``max_block_bytes``, default 64 MiB): one float32 block plus a one-byte comparison mask per
score, square so that a 1:1 gallery's ground truth stays on the diagonal blocks. Measured (``make bench``, random
1:1 galleries of dim 512, CPU, 2 threads, peak RSS beyond the features, which also holds the allocator's and the
BLAS library's buffers): 114 MB at N = 5,000 (naive full matrix 452 MB), 236 MB at N = 30,000 (naive 12 GB),
192 MB at N = 100,000 (335 MB with 128 MiB blocks, the first default); time 0.67x [0.66, 0.69] and 0.46x
[0.45, 0.48] of the naive full matrix at N = 5,000 and 30,000 (median [IQR] of 3 alternated rounds). Features
are normalised one chunk at a time, never copied whole.
Similarities are computed in float32 whatever the feature dtype, because fp16 scores create spurious ties.
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
    "DEFAULT_BLOCK_BYTES",
]

DEFAULT_KS: tuple[int, ...] = (1, 5, 10)
DEFAULT_BLOCK_BYTES = 64 * 2**20
#: bytes per score of a block: the float32 score, its comparison mask and the tie-resolution slices
_BYTES_PER_SCORE = 6


def _check_features(features: Tensor, name: str, rows_per_check: int = 4096) -> Tensor:
    """2-D and finite, checked a chunk at a time (a whole-matrix mask would cost N x dim bytes)."""
    if features.dim() != 2:
        raise ValueError(f"{name} must be 2-D [n, dim], got shape {tuple(features.shape)}")
    features = features.detach()
    for start in range(0, features.shape[0], rows_per_check):
        if not torch.isfinite(features[start:start + rows_per_check]).all():
            raise ValueError(f"{name} contains NaN or inf")
    return features


def _prepare(features: Tensor, name: str, normalize: bool) -> Tensor:
    """Checked, float32, optionally L2-normalised (ranking by cosine needs unit caption/image norms)."""
    features = _check_features(features, name).float()
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


class _Blocks:
    """``count`` chunks of one length covering ``[0, total)``; the last starts early so every chunk has the same
    length (one matmul shape for every block), and each chunk *owns* only the rows no earlier chunk holds."""

    def __init__(self, total: int, max_length: int):
        self.count = max(1, math.ceil(total / max(1, max_length)))
        self.length = math.ceil(total / self.count) if total else 0
        self.total = total

    def span(self, block: int) -> tuple[int, int, int]:
        """(start, first owned, stop)."""
        owned = block * self.length
        start = min(owned, max(0, self.total - self.length))
        return start, owned, min(start + self.length, self.total)

    def of(self, index: Tensor) -> Tensor:
        return torch.div(index, max(1, self.length), rounding_mode="floor").clamp_max(self.count - 1)


def _block_lengths(num_images: int, num_captions: int, chunk_size: int | None, max_block_bytes: int) -> tuple[int, int]:
    if chunk_size is not None:
        if chunk_size < 1:
            raise ValueError("chunk_size must be >= 1")
        return chunk_size, chunk_size
    if max_block_bytes < _BYTES_PER_SCORE:
        raise ValueError(f"max_block_bytes must be >= {_BYTES_PER_SCORE}")
    # Square blocks: with as many blocks per side, a 1:1 gallery's ground truth stays on the diagonal blocks.
    side = max(1, math.isqrt(max_block_bytes // _BYTES_PER_SCORE))
    return min(num_images, side), min(num_captions, side)


def _count_above(scores: Tensor, threshold: Tensor, dim: int) -> Tensor:
    """#(scores > threshold) along ``dim``; ``threshold`` is per row (dim=1) or per column (dim=0)."""
    return (scores > threshold.unsqueeze(dim)).sum(dim=dim)


def _tie_thresholds(target: Tensor, target_index: Tensor, start: int, stop: int) -> tuple[Tensor, Tensor]:
    """Per-query thresholds that apply the tie rule to a block of gallery indices ``[start, stop)``: ties count when
    the gallery item's index is lower than the target's. A target past the block counts every tie
    (``score > previous float`` is ``score >= target``), one before it none; the rest (``mixed``, the queries whose
    target lies in the block) need the index comparison."""
    include_ties = target_index >= stop
    threshold = torch.where(include_ties, torch.nextafter(target, torch.full_like(target, -math.inf)), target)
    mixed = (target_index >= start) & ~include_ties
    return threshold, mixed


def _tied_before(scores: Tensor, queries: Tensor, target: Tensor, target_index: Tensor, gallery_start: int,
                 dim: int, slice_length: int) -> Tensor:
    """#(score == target and gallery index < target index) for the ``queries`` (rows when ``dim=1``, columns when
    ``dim=0``) of ``scores``, whose gallery indices are ``gallery_start + arange``; a slice of queries at a time,
    so the masks stay a fraction of the block. Only the queries whose target lies in the block need it."""
    out = torch.empty(len(queries), dtype=torch.long, device=scores.device)
    gallery = torch.arange(gallery_start, gallery_start + scores.shape[dim], device=scores.device)
    contiguous = len(queries) > 0 and int(queries[-1] - queries[0]) + 1 == len(queries)
    for start in range(0, len(queries), slice_length):
        stop = min(start + slice_length, len(queries))
        if contiguous:  # a view, not a copy (the diagonal block of a 1:1 gallery)
            first = int(queries[0])
            part = scores.narrow(1 - dim, first + start, stop - start)
        else:
            part = scores.index_select(1 - dim, queries[start:stop])
        part = part if dim == 1 else part.T
        tied = (part == target[start:stop].unsqueeze(1)) & (gallery.unsqueeze(0) < target_index[start:stop, None])
        out[start:stop] = tied.sum(dim=1)
    return out


class _BlockScorer:
    """Scores one block (image chunk x caption chunk) and adds its counts to both rank vectors."""

    def __init__(self, images: Tensor, texts: Tensor, normalize: bool, image_blocks: _Blocks, text_blocks: _Blocks):
        self.images, self.texts, self.normalize = images, texts, normalize
        self.image_blocks, self.text_blocks = image_blocks, text_blocks
        self.device = images.device

    def _chunk(self, features: Tensor, start: int, stop: int) -> Tensor:
        chunk = features[start:stop].to(self.device, torch.float32)
        return F.normalize(chunk, dim=-1) if self.normalize else chunk

    def scores(self, image_block: int, text_block: int) -> tuple[Tensor, tuple[int, int, int], tuple[int, int, int]]:
        rows, cols = self.image_blocks.span(image_block), self.text_blocks.span(text_block)
        block = self._chunk(self.images, rows[0], rows[2]) @ self._chunk(self.texts, cols[0], cols[2]).T
        return block, rows, cols

    @staticmethod
    def count(block: Tensor, rows, cols, best: Tensor, best_index: Tensor, own: Tensor, own_image: Tensor,
              i2t: Tensor, t2i: Tensor) -> None:
        """Adds the block's contribution to ``i2t`` (against ``best``) and ``t2i`` (against ``own``)."""
        (r0, r_owned, r1), (c0, c_owned, c1) = rows, cols
        owned = block[r_owned - r0:, c_owned - c0:]  # a view: the rows and columns no earlier block counted
        row_target, row_index = best[r_owned:r1], best_index[r_owned:r1]
        col_target, col_index = own[c_owned:c1], own_image[c_owned:c1]
        slice_length = max(1, min(owned.shape) // 4)
        threshold, mixed = _tie_thresholds(row_target, row_index, c_owned, c1)
        i2t[r_owned:r1] += _count_above(owned, threshold, dim=1)
        if mixed.any():  # strict threshold there: add the ties with a lower index
            index = torch.nonzero(mixed).flatten()
            i2t[r_owned + index] += _tied_before(owned, index, row_target[index], row_index[index], c_owned, 1,
                                                 slice_length)
        threshold, mixed = _tie_thresholds(col_target, col_index, r_owned, r1)
        t2i[c_owned:c1] += _count_above(owned, threshold, dim=0)
        if mixed.any():
            index = torch.nonzero(mixed).flatten()
            t2i[c_owned + index] += _tied_before(owned, index, col_target[index], col_index[index], r_owned, 0,
                                                 slice_length)


def _best_captions(own: Tensor, caption_to_image: Tensor, num_images: int) -> tuple[Tensor, Tensor]:
    """Each image's best ground-truth score and the lowest caption index among the captions that reach it: the
    stable order is lexicographic in (-score, index), so that caption's rank is the minimum over the image's set."""
    best = torch.full((num_images,), -math.inf, device=own.device)
    best.scatter_reduce_(0, caption_to_image, own, reduce="amax")
    caption_index = torch.arange(own.numel(), device=own.device)
    candidates = torch.where(own == best[caption_to_image], caption_index, own.numel())
    best_index = torch.full((num_images,), own.numel(), dtype=torch.long, device=own.device)
    best_index.scatter_reduce_(0, caption_to_image, candidates, reduce="amin")
    return best, best_index


@torch.no_grad()
def retrieval_ranks(
    image_features: Tensor,
    text_features: Tensor,
    caption_to_image: Tensor | None = None,
    chunk_size: int | None = None,
    normalize: bool = True,
    max_block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> tuple[Tensor, Tensor]:
    """0-based ranks of the ground truth: ``(i2t_ranks [N], t2i_ranks [M])``, on the image features' device.

    ``i2t_ranks[i]`` is the rank of image i's best-ranked ground-truth caption among all M captions;
    ``t2i_ranks[j]`` is the rank of caption j's own image among all N images. See the module docstring for the
    tie rule and the blocks. ``chunk_size`` fixes the block side (else it follows ``max_block_bytes``).
    ``normalize=True`` L2-normalises both sides first; it is a no-op (up to rounding, which keeps duplicated rows
    identical) for features that are already normalised, and it makes the ranking cosine-based for features that
    are not.
    """
    images = _check_features(image_features, "image_features")
    texts = _check_features(text_features, "text_features")
    if images.shape[1] != texts.shape[1]:
        raise ValueError(f"feature dims differ: images {images.shape[1]} vs texts {texts.shape[1]}")
    device = images.device
    num_images, num_captions = images.shape[0], texts.shape[0]
    caption_to_image = _check_caption_to_image(caption_to_image, num_images, num_captions, device)
    i2t = torch.zeros(num_images, dtype=torch.long, device=device)
    t2i = torch.zeros(num_captions, dtype=torch.long, device=device)
    if num_images == 0 or num_captions == 0:
        return i2t, t2i
    row_length, col_length = _block_lengths(num_images, num_captions, chunk_size, max_block_bytes)
    image_blocks, text_blocks = _Blocks(num_images, row_length), _Blocks(num_captions, col_length)
    scorer = _BlockScorer(images, texts, normalize, image_blocks, text_blocks)

    # Blocks that hold ground-truth pairs, as (image block, caption block); a block is self-contained when its
    # pairs are all the ground truth of its rows and of its columns (the diagonal of a 1:1 gallery): it is scored
    # once, in the first pass.
    caption_index = torch.arange(num_captions, device=device)
    owner_block, caption_block = image_blocks.of(caption_to_image), text_blocks.of(caption_index)
    pair = owner_block * text_blocks.count + caption_block
    gt_blocks, pairs_per_block = torch.unique(pair, return_counts=True)
    captions_of_image_block = torch.bincount(owner_block, minlength=image_blocks.count)
    captions_in_text_block = torch.bincount(caption_block, minlength=text_blocks.count)

    own = torch.empty(num_captions, device=device)  # each caption's score with its own image
    best = torch.empty(num_images, device=device)  # each image's best ground-truth score ...
    best_index = torch.empty(num_images, dtype=torch.long, device=device)  # ... and that caption's index
    counted = set()
    for key, pairs in zip(gt_blocks.tolist(), pairs_per_block.tolist()):
        a, b = divmod(key, text_blocks.count)
        block, rows, cols = scorer.scores(a, b)
        members = torch.nonzero(pair == key).flatten()
        own[members] = block[caption_to_image[members] - rows[0], members - cols[0]]
        if pairs == captions_of_image_block[a].item() == captions_in_text_block[b].item():
            # Count now, while the block is at hand: every target of its rows and columns is inside it.
            local_best, local_index = _best_captions(own[members], caption_to_image[members] - rows[1],
                                                     rows[2] - rows[1])
            best[rows[1]:rows[2]], best_index[rows[1]:rows[2]] = local_best, members[local_index]
            scorer.count(block, rows, cols, best, best_index, own, caption_to_image, i2t, t2i)
            counted.add(key)
        del block
    best, best_index = _best_captions(own, caption_to_image, num_images)
    for a in range(image_blocks.count):
        for b in range(text_blocks.count):
            if a * text_blocks.count + b not in counted:
                block, rows, cols = scorer.scores(a, b)
                scorer.count(block, rows, cols, best, best_index, own, caption_to_image, i2t, t2i)
                del block
    return i2t, t2i


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
    chunk_size: int | None = None,
    normalize: bool = True,
    max_block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> dict:
    """Image-to-text and text-to-image Recall@K in percent.

    Args:
        image_features: [N, D] image embeddings (L2-normalised by the caller; renormalised when ``normalize``).
        text_features: [M, D] caption embeddings.
        caption_to_image: [M] index of each caption's image; ``None`` means the 1:1 gallery ``arange(M)``.
            Every image must own at least one caption.
        ks: cut-offs; a k larger than the gallery gives 100.
        chunk_size: side of the score blocks; ``None`` sizes them by ``max_block_bytes``.
        max_block_bytes: memory of one block and its comparison masks (the peak beyond the features).

    Returns:
        ``{"i2t": {k: pct}, "t2i": {k: pct}, "mean_recall": mean of all 2 * len(ks) values}``.
    """
    i2t_ranks, t2i_ranks = retrieval_ranks(image_features, text_features, caption_to_image, chunk_size, normalize,
                                           max_block_bytes)
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
