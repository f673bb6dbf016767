"""MaPLe's coupled prompts and CLIP-Adapter against hand-written forward passes on a tiny CLIP."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import HAS_DASSL, tiny_clip_model

pytestmark = pytest.mark.skipif(not HAS_DASSL, reason="Dassl is not installed (trainer modules register in it)")

CLASSES = ["tabby cat", "beagle"]


@pytest.fixture
def maple():
    from trainers.maple import CoupledPromptCLIP

    torch.manual_seed(0)
    model = CoupledPromptCLIP(tiny_clip_model(), CLASSES, n_ctx=2, ctx_init="a photo of a", depth=2)
    with torch.no_grad():  # non-zero biases so the test sees every term
        for proj in model.learnable.to_visual:
            proj.bias.normal_()
    return model


def test_maple_context_init_and_class_prompts(maple):
    from trainers.backbone.text_encoder import tokenize

    assert maple.class_prompt_texts() == ["of a tabby cat.", "of a beagle."]
    words = maple.text_encoder.token_embedding(tokenize(["a photo"]).tokens)[0, 1:3]
    torch.testing.assert_close(maple.learnable.ctx.data, words)
    assert maple.tokenize(["x"]).tokens.shape[1] == 77 - 2


def test_maple_image_encoding_matches_manual_pass(maple):
    clip = maple.clip
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ours = maple.encode_image(images)
        enc = maple.vision_encoder
        x = enc.stem(images)
        p0 = clip.visual.ln_pre(maple.learnable.to_visual[0](maple.learnable.ctx)).unsqueeze(1).expand(-1, 2, -1)
        h = clip.visual.transformer.resblocks[0](torch.cat([x, p0]))
        p1 = maple.learnable.to_visual[1](maple.learnable.deep_text[0]).unsqueeze(1).expand(-1, 2, -1)
        h = clip.visual.transformer.resblocks[1](torch.cat([h[:17], p1]))  # block-1 prompts replace the carried ones
        reference = F.normalize(enc.head(h[:17]), dim=-1)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)


def test_maple_text_encoding_replaces_deep_prompts(maple):
    clip = maple.clip
    tokens = maple.tokenize(maple.class_prompt_texts()).tokens
    with torch.no_grad():
        ours = maple.encode_text(tokens)
        x, eot = maple.text_encoder.embed(tokens, maple.learnable.ctx)
        h = (x + clip.positional_embedding).permute(1, 0, 2)
        h = clip.transformer.resblocks[0](h)
        deep = maple.learnable.deep_text[0].unsqueeze(1).expand(-1, 2, -1)
        h = torch.cat([h[:1], deep, h[3:]])
        h = clip.ln_final(clip.transformer.resblocks[1](h).permute(1, 0, 2))
        reference = F.normalize(h[torch.arange(2), eot] @ clip.text_projection, dim=-1)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)


def test_maple_deep_projections_are_clones_of_one_layer():
    """Official MaPLe: ``proj`` has its own init, ``compound_prompt_projections = _get_clones(single_layer)``."""
    from trainers.maple import CoupledPromptCLIP

    torch.manual_seed(1)
    model = CoupledPromptCLIP(tiny_clip_model(layers=4), CLASSES, n_ctx=2, depth=4)
    first, *deep = model.learnable.to_visual
    assert len(deep) == 3 and not torch.equal(first.weight, deep[0].weight)
    for layer in deep[1:]:
        assert torch.equal(layer.weight, deep[0].weight) and torch.equal(layer.bias, deep[0].bias)
        assert layer.weight is not deep[0].weight  # copies, each trained on its own
    params = list(model.learnable.parameters())
    assert len({id(p) for p in params}) == len(params) == 1 + 3 + 2 * 4


@pytest.mark.parametrize("n_ctx, init_words", [(2, True), (4, True), (5, False), (8, False)])
def test_maple_init_words_only_up_to_four_tokens(n_ctx, init_words):
    """The official code initialises from CTX_INIT only when N_CTX <= 4; beyond, random context, no fixed words."""
    from trainers.backbone.text_encoder import tokenize
    from trainers.maple import CoupledPromptCLIP

    phrase = "a photo of a nice big"
    model = CoupledPromptCLIP(tiny_clip_model(), CLASSES, n_ctx=n_ctx, ctx_init=phrase, depth=1)
    words = model.text_encoder.token_embedding(tokenize([phrase]).tokens)[0, 1:1 + n_ctx]
    if init_words:
        torch.testing.assert_close(model.learnable.ctx.data, words)
        rest = " ".join(phrase.split()[n_ctx:])
        assert model.class_prompt_texts() == [f"{rest} tabby cat.", f"{rest} beagle."]
    else:
        assert 0.01 < model.learnable.ctx.std().item() < 0.03  # N(0, 0.02^2)
        assert model.class_prompt_texts() == ["tabby cat.", "beagle."]


def test_maple_shallow_and_invalid_depth():
    from trainers.errors import ConfigError
    from trainers.maple import CoupledPromptCLIP

    shallow = CoupledPromptCLIP(tiny_clip_model(), CLASSES, depth=1)
    assert len(shallow.learnable.deep_text) == 0 and len(shallow.learnable.to_visual) == 1
    assert shallow.encode_image(torch.randn(1, 3, 32, 32)).shape == (1, 32)
    with pytest.raises(ConfigError, match="PROMPT_DEPTH"):
        CoupledPromptCLIP(tiny_clip_model(), CLASSES, depth=3)


def test_clip_adapter_mixes_adapted_and_frozen_image_features():
    from trainers.clip_adapter import AdaptedCLIP

    model = AdaptedCLIP(tiny_clip_model(), CLASSES, "a photo of a {}.", ratio=0.2, reduction=4)
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        raw = model.clip.encode_image(images)
        fc = model.learnable.adapter.fc
        expected = F.normalize(0.8 * raw + 0.2 * fc(raw), dim=-1)
        torch.testing.assert_close(model.encode_image(images), expected, rtol=1e-5, atol=1e-6)
        logits = model(images)
        text = model.frozen_class_features(images.device)
    torch.testing.assert_close(logits, model.logit_scale * expected @ text.t(), rtol=1e-5, atol=1e-4)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["learnable.adapter.fc.0.weight", "learnable.adapter.fc.2.weight"]


@pytest.mark.parametrize("method", ["coop", "maple", "adapter"])
def test_low_precision_forward_and_backward_on_cpu(method):
    """bf16 frozen weights (as fp16 on GPU): features come out fp32 and gradients reach the fp32 parameters."""
    from trainers.backbone.precision import cast_clip_weights, resolve_precision
    from trainers.clip_adapter import AdaptedCLIP
    from trainers.coop import CoOpCLIP
    from trainers.maple import CoupledPromptCLIP

    clip = cast_clip_weights(tiny_clip_model(), resolve_precision("bf16", torch.device("cpu")))
    assert clip.token_embedding.weight.dtype == torch.float32  # as OpenAI's convert_weights leaves it
    model = {"coop": lambda: CoOpCLIP(clip, CLASSES, n_ctx=4),
             "maple": lambda: CoupledPromptCLIP(clip, CLASSES, depth=2),
             "adapter": lambda: AdaptedCLIP(clip, CLASSES, "a photo of a {}.", 0.2, 4)}[method]()
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
    logits.sum().backward()
    grads = [p.grad for p in model.learnable.parameters()]
    assert all(g is not None and g.dtype == torch.float32 and g.abs().sum() > 0 for g in grads)
