"""Losses against hand computations (explicit small numbers, expected values worked out with ``math``)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from trainers.losses import (
    category_weighted_contrastive,
    category_weighted_logits,
    class_aware_loss,
    symmetric_info_nce,
)


def _ce(logits: list[float], target: int) -> float:
    """-log softmax(logits)[target] with a plain loop; -inf logits contribute exp(-inf) = 0."""
    return -logits[target] + math.log(sum(math.exp(z) for z in logits))


# -------------------------------------------------------------------------------------------- InfoNCE
def test_symmetric_info_nce_hand():
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    texts = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    scale = 2.0
    # s * I T^T = [[2, 1.2], [0, 1.6]]; s * T I^T = [[2, 0], [1.2, 1.6]]
    i2t = (_ce([2.0, 1.2], 0) + _ce([0.0, 1.6], 1)) / 2
    t2i = (_ce([2.0, 0.0], 0) + _ce([1.2, 1.6], 1)) / 2
    assert i2t == pytest.approx((math.log(1 + math.exp(-0.8)) + math.log(1 + math.exp(-1.6))) / 2)
    assert symmetric_info_nce(images, texts, scale).item() == pytest.approx((i2t + t2i) / 2, rel=1e-6)
    assert symmetric_info_nce(images, texts, scale, directions="i2t").item() == pytest.approx(i2t, rel=1e-6)
    assert symmetric_info_nce(images, texts, torch.tensor(scale), directions="t2i").item() == pytest.approx(
        t2i, rel=1e-6
    )


def test_symmetric_info_nce_matches_loop_and_keeps_diagonal_targets():
    generator = torch.Generator().manual_seed(0)
    images = F.normalize(torch.randn(5, 6, generator=generator), dim=-1)
    texts = F.normalize(torch.randn(5, 6, generator=generator), dim=-1)
    texts[3] = texts[1]  # a duplicate pair stays a negative of the other (plain in-batch targets)
    scale = 100.0
    sims = (images.double() @ texts.double().T).tolist()
    i2t = sum(_ce([scale * s for s in sims[b]], b) for b in range(5)) / 5
    t2i = sum(_ce([scale * sims[i][b] for i in range(5)], b) for b in range(5)) / 5
    assert symmetric_info_nce(images, texts, scale).item() == pytest.approx((i2t + t2i) / 2, rel=1e-5)


def test_symmetric_info_nce_gradients_and_fp16():
    generator = torch.Generator().manual_seed(1)
    images = F.normalize(torch.randn(4, 8, generator=generator), dim=-1).half().requires_grad_()
    texts = F.normalize(torch.randn(4, 8, generator=generator), dim=-1).half().requires_grad_()
    loss = symmetric_info_nce(images, texts, 100.0)
    assert loss.dtype == torch.float32
    expected = symmetric_info_nce(images.detach().float(), texts.detach().float(), 100.0)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert texts.grad is not None and texts.grad.abs().sum() > 0


def test_symmetric_info_nce_rejects_bad_input():
    with pytest.raises(ValueError, match="directions"):
        symmetric_info_nce(torch.eye(2), torch.eye(2), 1.0, directions="both_ways")
    with pytest.raises(ValueError, match="equal shape"):
        symmetric_info_nce(torch.eye(2), torch.eye(3), 1.0)


# -------------------------------------------------------------------------------------------- L_cate
def test_category_weighted_contrastive_hand():
    image = torch.tensor([[1.0, 0.0]])
    candidates = torch.tensor([[[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]])  # cos = 1, 0.6, 0
    same = torch.tensor([[True, True, False]])  # positive, attribute negative, category negative
    # "negatives": logits = 10 * cos = [10, 6, 0], the attribute negative counted 1.5 times in the denominator
    expected = -10.0 + math.log(math.exp(10.0) + 1.5 * math.exp(6.0) + math.exp(0.0))
    loss = category_weighted_contrastive(image, candidates, same, alpha=0.5, logit_scale=10.0)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # Masking the category negative removes its exp(0) term.
    valid = torch.tensor([[True, True, False]])
    masked = category_weighted_contrastive(image, candidates, same, alpha=0.5, logit_scale=10.0, valid=valid)
    assert masked.item() == pytest.approx(-10.0 + math.log(math.exp(10.0) + 1.5 * math.exp(6.0)), rel=1e-5)
    # "figure" (Fig. 2 literally): w = [1.5, 1.5, 1] multiplies the logits, the positive's included: [15, 9, 0]
    figure = category_weighted_contrastive(image, candidates, same, alpha=0.5, logit_scale=10.0, weighting="figure")
    assert figure.item() == pytest.approx(-15.0 + math.log(math.exp(15.0) + math.exp(9.0) + 1.0), abs=1e-6)
    assert figure.item() < loss.item()  # the positive's free margin
    with pytest.raises(ValueError, match="weighting"):
        category_weighted_contrastive(image, candidates, same, alpha=0.5, logit_scale=10.0, weighting="both")


@pytest.mark.parametrize("weighting", ["negatives", "figure"])
def test_category_weighted_contrastive_matches_loop(weighting):
    generator = torch.Generator().manual_seed(2)
    batch, candidates_per_image, dim = 3, 4, 5
    images = torch.randn(batch, dim, generator=generator)
    candidates = torch.randn(batch, candidates_per_image, dim, generator=generator) * 3  # head outputs: not unit
    same = torch.rand(batch, candidates_per_image, generator=generator) > 0.5
    same[:, 0] = True
    valid = torch.ones(batch, candidates_per_image, dtype=torch.bool)
    valid[1, 3] = False
    valid[2, 1:] = False
    alpha, scale = 0.7, 20.0
    expected = 0.0
    for b in range(batch):
        img = images[b].double()
        numerator, denominator = 0.0, 0.0
        for k in range(candidates_per_image):
            if not valid[b, k]:
                continue
            cand = candidates[b, k].double()
            cosine = float(img @ cand / (img.norm() * cand.norm()))
            if weighting == "figure":
                term = math.exp((1 + alpha if same[b, k] else 1.0) * scale * cosine)
            else:
                term = (1 + alpha if same[b, k] and k > 0 else 1.0) * math.exp(scale * cosine)
            numerator = term if k == 0 else numerator
            denominator += term
        expected += -math.log(numerator / denominator) / batch
    loss = category_weighted_contrastive(images, candidates, same, alpha, scale, valid, weighting=weighting)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_alpha_changes_exactly_the_same_category_logits():
    generator = torch.Generator().manual_seed(3)
    images = torch.randn(2, 4, generator=generator)
    candidates = torch.randn(2, 5, 4, generator=generator)
    same = torch.tensor([[True, False, True, False, False], [True, True, False, True, False]])
    negatives = same.clone()
    negatives[:, 0] = False
    base = category_weighted_logits(images, candidates, same, alpha=0.0, logit_scale=100.0)
    weighted = category_weighted_logits(images, candidates, same, alpha=0.5, logit_scale=100.0)
    assert torch.equal(weighted[~negatives], base[~negatives])  # the positive and other-category ones unchanged
    assert torch.allclose(weighted[negatives], base[negatives] + math.log(1.5))
    figure = category_weighted_logits(images, candidates, same, alpha=0.5, logit_scale=100.0, weighting="figure")
    assert torch.equal(figure[~same], base[~same])
    assert torch.allclose(figure[same], 1.5 * base[same])


def test_category_weighted_contrastive_gradients_and_masked_candidates():
    generator = torch.Generator().manual_seed(4)
    images = torch.randn(2, 4, generator=generator).requires_grad_()
    candidates = torch.randn(2, 3, 4, generator=generator).requires_grad_()
    same = torch.tensor([[True, True, False], [True, False, False]])
    valid = torch.tensor([[True, True, True], [True, True, False]])
    loss = category_weighted_contrastive(images, candidates, same, 0.5, 100.0, valid)
    assert torch.isfinite(loss)
    loss.backward()
    assert images.grad.abs().sum() > 0
    assert candidates.grad[0].abs().sum() > 0
    assert torch.count_nonzero(candidates.grad[1, 2]) == 0  # the padded candidate receives nothing


def test_category_weighted_contrastive_requires_a_valid_positive():
    valid = torch.tensor([[False, True]])
    with pytest.raises(ValueError, match="positive"):
        category_weighted_contrastive(torch.ones(1, 2), torch.ones(1, 2, 2), torch.ones(1, 2, dtype=torch.bool),
                                      0.5, 10.0, valid)


# -------------------------------------------------------------------------------------------- L_cav
def test_class_aware_loss_hand():
    # B=2, 2 layers, K=2 tokens, C=3 classes.
    logits = torch.tensor(
        [
            [[[0.0, 1.0, 2.0], [1.0, 0.0, 0.0]], [[0.0, 0.0, 0.0], [3.0, 1.0, 2.0]]],
            [[[5.0, 5.0, 5.0], [1.0, 2.0, 3.0]], [[2.0, 2.0, 2.0], [0.0, 0.0, 9.0]]],
        ]
    )
    selected = torch.tensor([[2, 0], [1, 2]])
    labels = torch.tensor([0, 0])
    # Only (b=0, k=1) selects the true class 0, once per layer: rows [1, 0, 0] and [3, 1, 2], target 0.
    expected = (_ce([1.0, 0.0, 0.0], 0) + _ce([3.0, 1.0, 2.0], 0)) / 2
    assert class_aware_loss(logits, selected, labels).item() == pytest.approx(expected, rel=1e-6)

    labels = torch.tensor([0, 2])  # now (b=1, k=1) counts as well: rows [1, 2, 3] and [0, 0, 9], target 2
    expected = (_ce([1.0, 0.0, 0.0], 0) + _ce([3.0, 1.0, 2.0], 0) + _ce([1.0, 2.0, 3.0], 2) + _ce([0, 0, 9.0], 2)) / 4
    assert class_aware_loss(logits, selected, labels).item() == pytest.approx(expected, rel=1e-6)


def test_class_aware_loss_matches_loop_and_only_supervised_rows_get_grad():
    generator = torch.Generator().manual_seed(5)
    batch, layers, tokens, classes = 4, 3, 3, 6
    logits = torch.randn(batch, layers, tokens, classes, generator=generator).requires_grad_()
    selected = torch.stack([torch.randperm(classes, generator=generator)[:tokens] for _ in range(batch)])
    not_selected = next(c for c in range(classes) if c not in selected[2].tolist())  # sample 2 contributes nothing
    labels = torch.tensor([int(selected[0, 1]), int(selected[1, 0]), not_selected, int(selected[3, 2])])
    terms = [
        _ce(logits[b, layer, k].tolist(), int(labels[b]))
        for b in range(batch)
        for layer in range(layers)
        for k in range(tokens)
        if selected[b, k] == labels[b]
    ]
    loss = class_aware_loss(logits, selected, labels)
    assert loss.item() == pytest.approx(sum(terms) / len(terms), rel=1e-5)
    loss.backward()
    supervised = (selected == labels[:, None])[:, None, :].expand(batch, layers, tokens)
    assert (logits.grad[supervised].abs().sum(-1) > 0).all()
    assert torch.count_nonzero(logits.grad[~supervised]) == 0


def test_class_aware_loss_empty_selection_is_no_term():
    """No selected class is the label: no term at all (None), as the official code skips it."""
    logits = torch.randn(2, 2, 3, 5, dtype=torch.float16).requires_grad_()
    selected = torch.tensor([[0, 1, 2], [0, 1, 2]])
    labels = torch.tensor([4, 3])  # never among the selected classes
    assert class_aware_loss(logits, selected, labels) is None
    assert class_aware_loss(logits, selected, torch.tensor([4, 2])) is not None  # one match is enough
