"""CoOp's context parameters (shared/class-specific, CTX_INIT); the prompt layouts and logits are pinned to the
official code in test_official_parity.py."""
from __future__ import annotations

import pytest
import torch
from conftest import HAS_DASSL, tiny_clip_model

pytestmark = pytest.mark.skipif(not HAS_DASSL, reason="Dassl is not installed (trainer modules register in it)")

CLASSES = ["tabby cat", "beagle", "sphynx"]


def test_class_specific_context_and_init_phrase():
    from trainers.backbone.text_encoder import tokenize
    from trainers.coop import CoOpCLIP

    csc = CoOpCLIP(tiny_clip_model(), CLASSES, n_ctx=5, csc=True)
    assert csc.learnable.ctx.shape == (3, 5, 64) and csc.num_text_ctx == 5
    assert 0.01 < csc.learnable.ctx.std().item() < 0.03  # N(0, 0.02^2)
    init = CoOpCLIP(tiny_clip_model(), CLASSES, n_ctx=16, ctx_init="a photo of a")
    assert init.num_text_ctx == 4  # CTX_INIT's word count overrides N_CTX, as in CoOp
    words = init.text_encoder.token_embedding(tokenize(["a photo of a"]).tokens)[0, 1:5]
    torch.testing.assert_close(init.learnable.ctx.data, words)
    assert init.class_prompt_texts() == ["tabby cat.", "beagle.", "sphynx."]


def test_only_context_is_trainable():
    from trainers.coop import CoOpCLIP

    model = CoOpCLIP(tiny_clip_model(), CLASSES, n_ctx=4)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["learnable.ctx"]
