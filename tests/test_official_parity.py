"""Every method against the official code's equations, on a tiny CLIP with ViT-B's 12 blocks in each tower.

Each reference below is written from the official implementation (KaiyangZhou/CoOp, muzairkhattak/
multimodal-prompt-learning, gaopengcuhk/CLIP-Adapter, fanrena/DPT with its VPT and VLP): the prompt assembly with
``token_prefix``/``token_suffix`` cut from ``clip.tokenize`` of the official prompt strings, the plain CLIP
modules (77-token text sequences with CLIP's own causal mask, unmodified residual blocks), and the official losses.
None of it goes through the project's encoders, so the tests pin the project to the official numbers, not to
itself. No training: a few forward passes each.
"""
from __future__ import annotations

import copy
from functools import lru_cache

import pytest
import torch
import torch.nn.functional as F
from conftest import HAS_DASSL, tiny_clip_model

pytestmark = pytest.mark.skipif(not HAS_DASSL, reason="Dassl is not installed (trainer modules register in it)")

#: class names whose last characters BPE merges with the final "." (")." and ".."), a digit, non-ASCII letters
TRICKY_CLASSES = ["crane (bird)", "st. bernard jr.", "boeing 747", "crème brûlée", "tabby_cat"]
TEMPLATE = "a photo of a {}, a type of pet."


@pytest.fixture(scope="module")
def clip12():
    return tiny_clip_model(seed=3, layers=12)


@pytest.fixture(scope="module")
def images():
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(11))


# ---- the official building blocks, written out -----------------------------------------------------------------

@lru_cache(maxsize=1)
def simple_tokenizer():
    from clip.simple_tokenizer import SimpleTokenizer

    return SimpleTokenizer()


def bpe_len(text: str) -> int:
    return len(simple_tokenizer().encode(text))


def clip_tokenize(texts: list[str]) -> torch.Tensor:
    import clip

    return torch.cat([clip.tokenize(t) for t in texts])


def official_text_encoder(clip_model, prompts: torch.Tensor, tokenized: torch.Tensor) -> torch.Tensor:
    """CoOp's TextEncoder: all 77 positions, CLIP's transformer, ln_final, the EOT row, text_projection."""
    x = (prompts + clip_model.positional_embedding).permute(1, 0, 2)
    x = clip_model.transformer(x).permute(1, 0, 2)
    x = clip_model.ln_final(x)
    return x[torch.arange(x.shape[0]), tokenized.argmax(dim=-1)] @ clip_model.text_projection


def zero_shot_text(clip_model, classnames, template=TEMPLATE) -> torch.Tensor:
    text = clip_model.encode_text(clip_tokenize([template.format(c.replace("_", " ")) for c in classnames]))
    return text / text.norm(dim=-1, keepdim=True)


def cosine_logits(clip_model, image_features, text_features) -> torch.Tensor:
    image_features = image_features / image_features.norm(dim=-1, keepdim=True)
    text_features = text_features / text_features.norm(dim=-1, keepdim=True)
    return clip_model.logit_scale.exp() * image_features @ text_features.t()


def coop_prompt_embeddings(clip_model, classnames, ctx: torch.Tensor, position: str, prompt_prefix: str = ""):
    """CoOp's PromptLearner.__init__ + forward: prefix/suffix from ``"X X .. X {name}."``, name_lens from the
    name alone, ctx placed at the end, middle or front. Returns (prompts, tokenized_prompts)."""
    n_ctx = ctx.shape[-2]
    names = [name.replace("_", " ") for name in classnames]
    name_lens = [bpe_len(name) for name in names]
    prompt_prefix = prompt_prefix or " ".join(["X"] * n_ctx)
    tokenized = clip_tokenize([prompt_prefix + " " + name + "." for name in names])
    embedding = clip_model.token_embedding(tokenized)
    prefix, suffix = embedding[:, :1], embedding[:, 1 + n_ctx:]
    if ctx.dim() == 2:
        ctx = ctx.unsqueeze(0).expand(len(names), -1, -1)
    if position == "end":
        return torch.cat([prefix, ctx, suffix], dim=1), tokenized
    half = n_ctx // 2
    rows = []
    for i, name_len in enumerate(name_lens):
        class_i, suffix_i = suffix[i:i + 1, :name_len], suffix[i:i + 1, name_len:]
        if position == "middle":
            rows.append(torch.cat([prefix[i:i + 1], ctx[i:i + 1, :half], class_i, ctx[i:i + 1, half:], suffix_i], 1))
        else:
            rows.append(torch.cat([prefix[i:i + 1], class_i, ctx[i:i + 1], suffix_i], 1))
    return torch.cat(rows), tokenized


# ---- CoOp and zero-shot CLIP --------------------------------------------------------------------------------------

@pytest.mark.parametrize("csc", [False, True])
@pytest.mark.parametrize("position", ["end", "middle", "front"])
def test_coop_logits_match_official(clip12, images, position, csc):
    from trainers.coop import CoOpCLIP

    torch.manual_seed(0)
    model = CoOpCLIP(clip12, TRICKY_CLASSES, n_ctx=4, csc=csc, position=position)
    with torch.no_grad():
        prompts, tokenized = coop_prompt_embeddings(clip12, TRICKY_CLASSES, model.learnable.ctx, position)
        text = official_text_encoder(clip12, prompts, tokenized)
        expected = cosine_logits(clip12, clip12.encode_image(images), text)
        torch.testing.assert_close(model(images), expected, rtol=1e-5, atol=1e-4)


def test_coop_class_token_inside_keeps_merged_punctuation_in_the_name():
    """")." of "crane (bird)." is one BPE token: the official name_lens count it inside the class name."""
    assert bpe_len("crane (bird)") == bpe_len("crane (bird).") == 4
    assert bpe_len("st. bernard jr.") == bpe_len("st. bernard jr..") == 5
    assert bpe_len("boeing 747") + 1 == bpe_len("boeing 747.")


def test_coop_ctx_init_logits_match_official(clip12, images):
    from trainers.coop import CoOpCLIP

    model = CoOpCLIP(clip12, TRICKY_CLASSES, n_ctx=16, ctx_init="a photo of a")
    with torch.no_grad():
        init = clip12.token_embedding(clip_tokenize(["a photo of a"]))[0, 1:5]
        torch.testing.assert_close(model.learnable.ctx.data, init)
        model.learnable.ctx.add_(0.1 * torch.randn_like(model.learnable.ctx))  # as after training
        prompts, tokenized = coop_prompt_embeddings(clip12, TRICKY_CLASSES, model.learnable.ctx, "end",
                                                    prompt_prefix="a photo of a")
        expected = cosine_logits(clip12, clip12.encode_image(images), official_text_encoder(clip12, prompts, tokenized))
        torch.testing.assert_close(model(images), expected, rtol=1e-5, atol=1e-4)


def test_zero_shot_logits_match_clip(clip12, images):
    from trainers.backbone.prompted_clip import PromptedCLIP

    model = PromptedCLIP(clip12, TRICKY_CLASSES, TEMPLATE)
    with torch.no_grad():
        logits_per_image, _ = clip12(images, clip_tokenize([TEMPLATE.format(c.replace("_", " "))
                                                            for c in TRICKY_CLASSES]))
        torch.testing.assert_close(model(images), logits_per_image, rtol=1e-5, atol=1e-4)


# ---- MaPLe --------------------------------------------------------------------------------------------------------

def official_maple_logits(clip_model, classnames, images, ctx, proj, deep_text, deep_proj, prompt_prefix):
    """MaPLe's MultiModalPromptLearner + TextEncoder + VisionTransformer_MaPLe + ResidualAttentionBlock_MaPLe:
    V_1 after SOT and ``proj(V_1)`` after the patch tokens (before ln_pre); in blocks 1..J-1 (0-based) the text
    positions 1..n and the last n image tokens are replaced by the next compound prompts."""
    n_ctx = ctx.shape[0]
    names = [name.replace("_", " ") for name in classnames]
    tokenized = clip_tokenize([prompt_prefix + " " + name + "." for name in names])
    embedding = clip_model.token_embedding(tokenized)
    prompts = torch.cat([embedding[:, :1], ctx.expand(len(names), -1, -1), embedding[:, 1 + n_ctx:]], dim=1)
    x = (prompts + clip_model.positional_embedding).permute(1, 0, 2)
    for i, block in enumerate(clip_model.transformer.resblocks):
        if 1 <= i <= len(deep_text):
            deep = deep_text[i - 1].expand(x.shape[1], -1, -1).permute(1, 0, 2)
            x = torch.cat([x[:1], deep, x[1 + n_ctx:]], dim=0)
        x = block(x)
    x = clip_model.ln_final(x.permute(1, 0, 2))
    text = x[torch.arange(len(names)), tokenized.argmax(dim=-1)] @ clip_model.text_projection

    visual = clip_model.visual
    x = visual.conv1(images)
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    x = torch.cat([visual.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1]), x], dim=1)
    x = x + visual.positional_embedding
    x = torch.cat([x, proj(ctx).expand(x.shape[0], -1, -1)], dim=1)
    x = visual.ln_pre(x).permute(1, 0, 2)
    deep_visual = [layer(prompt) for layer, prompt in zip(deep_proj, deep_text)]
    for i, block in enumerate(visual.transformer.resblocks):
        if 1 <= i <= len(deep_visual):
            x = torch.cat([x[:x.shape[0] - n_ctx], deep_visual[i - 1].expand(x.shape[1], -1, -1).permute(1, 0, 2)])
        x = block(x)
    image = visual.ln_post(x.permute(1, 0, 2)[:, 0, :]) @ visual.proj
    return cosine_logits(clip_model, image, text)


@pytest.mark.parametrize("n_ctx, depth", [(2, 9), (2, 1), (6, 12)])
def test_maple_logits_match_official(clip12, images, n_ctx, depth):
    from trainers.maple import CoupledPromptCLIP

    torch.manual_seed(0)
    model = CoupledPromptCLIP(clip12, TRICKY_CLASSES, n_ctx=n_ctx, ctx_init="a photo of a", depth=depth)
    learnable = model.learnable
    with torch.no_grad():
        for p in learnable.parameters():  # as after training: the clones differ, biases are not small
            p.add_(0.05 * torch.randn_like(p))
        prefix = "a photo of a" if n_ctx <= 4 else " ".join(["X"] * n_ctx)  # the official N_CTX > 4 fallback
        expected = official_maple_logits(clip12, TRICKY_CLASSES, images, learnable.ctx, learnable.to_visual[0],
                                         list(learnable.deep_text), list(learnable.to_visual[1:]), prefix)
        torch.testing.assert_close(model(images), expected, rtol=1e-5, atol=1e-4)
