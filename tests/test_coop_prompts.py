"""CoOp's prompt construction (end/middle/front, shared/class-specific, CTX_INIT) and logits by hand."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import HAS_DASSL, tiny_clip_model

pytestmark = pytest.mark.skipif(not HAS_DASSL, reason="Dassl is not installed (trainer modules register in it)")

CLASSES = ["tabby cat", "beagle", "sphynx"]


def manual_text_features(model, sequences: torch.Tensor, eot: torch.Tensor) -> torch.Tensor:
    clip = model.clip
    h = clip.transformer((sequences + clip.positional_embedding).permute(1, 0, 2)).permute(1, 0, 2)
    return F.normalize(clip.ln_final(h)[torch.arange(len(eot)), eot] @ clip.text_projection, dim=-1)


def name_tokens(model, name: str) -> torch.Tensor:
    from trainers.backbone.text_encoder import tokenize

    tokens = tokenize([f"{name}."]).tokens[0]
    return tokens[1:int(tokens.argmax()) - 1]  # without SOT, ".", EOT


@pytest.mark.parametrize("position", ["end", "middle", "front"])
def test_prompt_layout_and_logits(position):
    from trainers.coop import CoOpCLIP

    torch.manual_seed(0)
    model = CoOpCLIP(tiny_clip_model(), CLASSES, n_ctx=4, position=position)
    emb = model.text_encoder.token_embedding
    ctx = model.learnable.ctx.data
    rows, eots = [], []
    for name in CLASSES:
        sot, name_ids = torch.tensor([49406]), name_tokens(model, name)
        tail = torch.tensor([269, 49407])  # "." EOT
        parts = {"end": [emb(sot), ctx, emb(name_ids), emb(tail)],
                 "front": [emb(sot), emb(name_ids), ctx, emb(tail)],
                 "middle": [emb(sot), ctx[:2], emb(name_ids), ctx[2:], emb(tail)]}[position]
        seq = torch.cat(parts)
        eots.append(len(seq) - 1)
        rows.append(torch.cat([seq, emb(torch.zeros(77 - len(seq), dtype=torch.long))]))
    with torch.no_grad():
        expected = manual_text_features(model, torch.stack(rows), torch.tensor(eots))
        ours = model.class_text_features(torch.device("cpu"))
        torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
        images = torch.randn(2, 3, 32, 32)
        logits = model(images)
        reference = model.logit_scale * F.normalize(model.clip.encode_image(images), dim=-1) @ expected.t()
    torch.testing.assert_close(logits, reference, rtol=1e-4, atol=1e-4)


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
