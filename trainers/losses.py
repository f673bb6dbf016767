"""Losses shared by the retrieval and classification trainers.

All losses are computed in float32, whatever the feature dtype: CLIP often runs in fp16, and a softmax over
logits scaled by 100 loses most of its precision in fp16. Gradients still flow back to fp16 inputs through the
cast.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "symmetric_info_nce",
    "category_weighted_logits",
    "category_weighted_contrastive",
    "class_aware_loss",
]

Direction = Literal["both", "i2t", "t2i"]


def symmetric_info_nce(
    image_features: Tensor,
    text_features: Tensor,
    logit_scale: Tensor | float,
    directions: Direction = "both",
) -> Tensor:
    """CLIP's in-batch contrastive loss, DCAR's L_con: ½[CE(s·I·Tᵀ, diag) + CE(s·T·Iᵀ, diag)].

    Args:
        image_features: [B, D] L2-normalised image features. The loss does not renormalise, so the gradient is
            exactly that of the caller's graph.
        text_features: [B, D] L2-normalised features of the paired captions (row b matches image b).
        logit_scale: the *already exponentiated* scale s (CLIP's is 100), a float or a 0-d tensor.
        directions: ``"both"`` (the standard), or ``"i2t"`` / ``"t2i"`` for the one-directional ablation
            (the DCAR authors' prompt baselines may have used an I2T-only loss: docs/dcar.md).

    Targets are the plain in-batch diagonal: two pairs sharing an image in one batch are treated as negatives of
    each other, as in CLIP.
    """
    if image_features.shape != text_features.shape or image_features.dim() != 2:
        raise ValueError(
            f"expected two [B, D] tensors of equal shape, got {tuple(image_features.shape)} and "
            f"{tuple(text_features.shape)}"
        )
    logits_per_image = logit_scale * (image_features.float() @ text_features.float().T)
    targets = torch.arange(logits_per_image.shape[0], device=logits_per_image.device)
    if directions == "i2t":
        return F.cross_entropy(logits_per_image, targets)
    if directions == "t2i":
        return F.cross_entropy(logits_per_image.T, targets)
    if directions == "both":
        return 0.5 * (F.cross_entropy(logits_per_image, targets) + F.cross_entropy(logits_per_image.T, targets))
    raise ValueError(f"directions must be 'both', 'i2t' or 't2i', got {directions!r}")


CategoryWeighting = Literal["negatives", "figure"]


def category_weighted_logits(
    image_features: Tensor,
    candidate_features: Tensor,
    same_category: Tensor,
    alpha: float,
    logit_scale: Tensor | float,
    valid: Tensor | None = None,
    weighting: CategoryWeighting = "negatives",
) -> Tensor:
    """Logits of DCAR's L_cate for each image's candidates (candidate 0 = the positive, 1..K its negatives).

    ``weighting="negatives"`` (default): ``s·cos(I_b, c_bk) + log(1 + alpha)·[k >= 1 and same_bk]``. The softmax
    denominator then counts a same-category negative (1 + alpha) times, so those negatives weigh more, and the
    positive gets no margin.
    ``weighting="figure"``: ``(1 + alpha·same_bk)·s·cos(I_b, c_bk)``, the rule of DCAR's Fig. 2 read literally.
    The positive is always same-category, so its logit is always scaled up: a free margin that leaves the
    negatives with a small share of the softmax (measured: 1.6% for category swaps at alpha = 0.5, docs/dcar.md).

    The cosine is taken here (both sides are L2-normalised), so candidates may come from a non-unit-norm head.
    Invalid candidates (padding, dropped negatives) get ``-inf``.

    Shapes: image_features [B, D], candidate_features [B, K+1, D], same_category and valid [B, K+1] bool.
    Returns float32 logits [B, K+1].
    """
    if candidate_features.dim() != 3 or image_features.dim() != 2:
        raise ValueError("expected image_features [B, D] and candidate_features [B, K+1, D]")
    if same_category.shape != candidate_features.shape[:2]:
        raise ValueError(
            f"same_category must be {tuple(candidate_features.shape[:2])}, got {tuple(same_category.shape)}"
        )
    images = F.normalize(image_features.float(), dim=-1)
    candidates = F.normalize(candidate_features.float(), dim=-1)
    logits = logit_scale * torch.einsum("bd,bkd->bk", images, candidates)
    same = same_category.to(logits.dtype)
    if weighting == "negatives":
        same = torch.cat([torch.zeros_like(same[:, :1]), same[:, 1:]], dim=1)
        logits = logits + math.log1p(alpha) * same
    elif weighting == "figure":
        logits = (1.0 + alpha * same) * logits
    else:
        raise ValueError(f"weighting must be 'negatives' or 'figure', got {weighting!r}")
    if valid is not None:
        if valid.shape != logits.shape:
            raise ValueError(f"valid must be {tuple(logits.shape)}, got {tuple(valid.shape)}")
        logits = logits.masked_fill(~valid.bool(), float("-inf"))
    return logits


def category_weighted_contrastive(
    image_features: Tensor,
    candidate_features: Tensor,
    same_category: Tensor,
    alpha: float,
    logit_scale: Tensor | float,
    valid: Tensor | None = None,
    weighting: CategoryWeighting = "negatives",
) -> Tensor:
    """DCAR's category-aware loss L_cate: per image, softmax cross-entropy with target 0 (the positive) over
    :func:`category_weighted_logits`, averaged over the batch."""
    logits = category_weighted_logits(image_features, candidate_features, same_category, alpha, logit_scale,
                                      valid, weighting)
    if valid is not None and not bool(valid[:, 0].all()):
        raise ValueError("candidate 0 (the positive) must be valid for every image")
    targets = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, targets)


def class_aware_loss(logits: Tensor, selected: Tensor, labels: Tensor) -> Tensor | None:
    """DPT's auxiliary CAVPT loss L_cav (docs/dpt.md, "L_cav").

    Args:
        logits: [B, n_layers, K, C] class logits of every class-aware token in every CAVPT layer.
        selected: [B, K] long, the class each token was generated for (the zero-shot top-K).
        labels: [B] long ground truth.

    Returns the mean, over ``{(b, layer, k) : selected[b, k] == labels[b]}``, of ``CE(logits[b, layer, k], labels[b])``:
    only the token built for the true class is supervised. When no sample has its label among the selected
    classes the set is empty and the result is ``None``: the caller adds no term at all, as the official code does
    (its 2-D mask flattens the masked logits, so its ``shape != torch.Size([0])`` guard skips the term). A zero
    tensor would not do: it gives the classifiers zero gradients instead of none, and SGD would still apply
    weight decay and momentum to them.
    """
    if logits.dim() != 4:
        raise ValueError(f"logits must be [B, n_layers, K, C], got shape {tuple(logits.shape)}")
    batch, num_layers, num_tokens, num_classes = logits.shape
    if selected.shape != (batch, num_tokens) or labels.shape != (batch,):
        raise ValueError(
            f"selected must be [{batch}, {num_tokens}] and labels [{batch}], "
            f"got {tuple(selected.shape)} and {tuple(labels.shape)}"
        )
    is_true_class = (selected == labels.unsqueeze(1)).unsqueeze(1).expand(batch, num_layers, num_tokens)
    if not bool(is_true_class.any()):
        return None
    rows = logits[is_true_class].float()  # [n, C]
    targets = labels.unsqueeze(1).unsqueeze(2).expand(batch, num_layers, num_tokens)[is_true_class]
    return F.cross_entropy(rows, targets)
