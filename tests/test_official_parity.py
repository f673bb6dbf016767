"""Every method against the official code's equations, on a tiny CLIP with ViT-B's 12 blocks in each tower.

Each reference below is written from the official implementation (KaiyangZhou/CoOp, muzairkhattak/
multimodal-prompt-learning, gaopengcuhk/CLIP-Adapter, fanrena/DPT with its VPT and VLP): the prompt assembly with
``token_prefix``/``token_suffix`` cut from ``clip.tokenize`` of the official prompt strings, the plain CLIP
modules (77-token text sequences with CLIP's own causal mask, unmodified residual blocks), and the official losses.
None of it goes through the project's encoders, so the tests pin the project to the official numbers, not to
itself. No training: a few forward passes each.
"""
from __future__ import annotations

import math
from functools import lru_cache

import pytest
import torch
import torch.nn.functional as F
from conftest import HAS_DASSL, TINY_OVERRIDES, build_trainer, tiny_clip_model
from fake_coop_data import make_split_dataset

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


# ---- CLIP-Adapter -------------------------------------------------------------------------------------------------

def test_clip_adapter_logits_match_official(clip12, images):
    from trainers.clip_adapter import AdaptedCLIP

    torch.manual_seed(0)
    model = AdaptedCLIP(clip12, TRICKY_CLASSES, TEMPLATE, ratio=0.2, reduction=4)
    fc = model.learnable.adapter.fc
    with torch.no_grad():
        image = clip12.encode_image(images)
        x = F.relu(F.relu(image @ fc[0].weight.t()) @ fc[2].weight.t())  # Adapter: Linear, ReLU, Linear, ReLU
        expected = cosine_logits(clip12, 0.2 * x + (1 - 0.2) * image, zero_shot_text(clip12, TRICKY_CLASSES))
        torch.testing.assert_close(model(images), expected, rtol=1e-5, atol=1e-4)


# ---- VPT, VLP, DPT (fanrena/DPT) ----------------------------------------------------------------------------------

def official_stem(clip_model, images) -> torch.Tensor:
    """conv1, CLS, positions, ln_pre, as (L, B, W): ImageEncoder_VPTD before its transformer."""
    visual = clip_model.visual
    x = visual.conv1(images)
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    x = torch.cat([visual.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1]), x], dim=1)
    return visual.ln_pre(x + visual.positional_embedding).permute(1, 0, 2)


def official_head(clip_model, x) -> torch.Tensor:
    return clip_model.visual.ln_post(x.permute(1, 0, 2)[:, 0, :]) @ clip_model.visual.proj


def official_vpt_image(clip_model, images, ctx) -> torch.Tensor:
    """VPT.py's Transformer_VPTD: every block gets its own ctx[i] appended; the previous ones are dropped."""
    x, n_ctx = official_stem(clip_model, images), ctx.shape[1]
    ctx = ctx.unsqueeze(2).expand(-1, -1, x.shape[1], -1)
    for i, block in enumerate(clip_model.visual.transformer.resblocks):
        if i != 0:
            x = x[:-n_ctx]
        x = block(torch.cat([x, ctx[i]], dim=0))
    return official_head(clip_model, x)


def official_dpt(clip_model, classnames, images, text_ctx, vpt_ctx, cavpt, num_selected, template=TEMPLATE):
    """DPT.py's CustomCLIP_Selected_CoVPTDeep.forward -> (logits, layer_logits, indices, logits1, logits2).

    ``cavpt[i]``: the official CAVPT's tensors of block i (meta_net, qmlp, kmlp, vmlp, lns, lns2, classfier, ctx)."""
    scale = clip_model.logit_scale.exp()
    zero_shot = zero_shot_text(clip_model, classnames, template)
    frozen = clip_model.encode_image(images)
    frozen = frozen / frozen.norm(dim=-1, keepdim=True)
    _, indices = torch.sort(scale * frozen @ zero_shot.t(), descending=True)
    indices = indices[:, :num_selected]
    prompts, tokenized = coop_prompt_embeddings(clip_model, classnames, text_ctx, "end")
    text = official_text_encoder(clip_model, prompts, tokenized)
    text_norm = text / text.norm(dim=-1, keepdim=True)

    x, blocks = official_stem(clip_model, images), clip_model.visual.transformer.resblocks
    bottom = vpt_ctx.shape[0]
    for i in range(bottom):  # Transformer_VPTD.forward, VPT part; [:L] for its [:-n], which empties x when n = 0
        x = blocks[i](torch.cat([x, vpt_ctx[i].unsqueeze(1).expand(-1, x.shape[1], -1)], dim=0))[:x.shape[0]]
    selected_text, layer_logits = text[indices], []
    for i, p in enumerate(cavpt):  # CAVPT.forward + Attention.forward
        class_token = x.detach()
        class_prompt = F.linear(selected_text, *p["meta_net"]).permute(1, 0, 2)
        class_token = torch.cat([class_token, p["ctx"].unsqueeze(1).expand(-1, class_token.shape[1], -1)])
        q, k, v = class_prompt.permute(1, 0, 2), class_token.permute(1, 0, 2), class_token.permute(1, 0, 2)
        q, k = F.linear(q, p["qmlp"]), F.linear(k, p["kmlp"])
        attention = F.softmax(torch.bmm(q, k.transpose(1, 2)) / math.sqrt(q.shape[-1]), dim=-1)
        out = F.linear(torch.bmm(attention, v), p["vmlp"]).permute(1, 0, 2)
        logits = F.linear(F.layer_norm(out, out.shape[-1:], *p["lns"]), p["classfier"])
        prompt = F.layer_norm(out + class_prompt, out.shape[-1:], *p["lns2"])
        layer_logits.append(logits.unsqueeze(0))
        x = blocks[bottom + i](torch.cat([x, prompt], dim=0))[:-num_selected]
    image = official_head(clip_model, x)
    image = image / image.norm(dim=-1, keepdim=True)
    return (scale * image @ text_norm.t(), layer_logits, indices, scale * frozen @ text_norm.t(),
            scale * image @ zero_shot.t())


def official_scheduled_loss(output, output1, output2, label, epoch, pretrain_c):
    """VLP.py / DPT.py forward_backward: general knowledge guidance for PRETRAIN.C epochs, then the joint head."""
    if epoch < pretrain_c:
        return F.cross_entropy(output1, label) + F.cross_entropy(output2, label) + 0.1 * F.cross_entropy(output, label)
    return F.cross_entropy(output, label)


def official_dpt_loss(outputs, label, epoch, pretrain_c, alpha, num_classes):
    """DPT.py forward_backward, its mask construction verbatim (fp32 instead of its fp16 targets)."""
    output, layer_logits, indices, output1, output2 = outputs
    loss = official_scheduled_loss(output, output1, output2, label, epoch, pretrain_c)
    class_prompt_num = indices.shape[1]
    layers = len(layer_logits)
    layer_logits = torch.cat(layer_logits, dim=0).permute(2, 0, 1, 3).reshape([-1, num_classes])
    label = label.reshape([-1, 1]).expand(-1, class_prompt_num)
    tmp = label == indices
    tmp = tmp.unsqueeze(1).expand(-1, layers, -1).reshape([-1])
    label = label.unsqueeze(1).expand(-1, layers, -1)
    one_hot_code = F.one_hot(label.reshape([-1]), num_classes)
    tmp = tmp.unsqueeze(1).expand(-1, num_classes)
    one_hot_code[tmp == False] = 0  # noqa: E712
    layer_logits = layer_logits[tmp]
    batch_target = one_hot_code[tmp].float()
    if class_prompt_num != 0 and layer_logits.shape != torch.Size([0]):
        loss = loss + alpha * F.cross_entropy(layer_logits.reshape([-1, num_classes]),
                                              batch_target.reshape([-1, num_classes]))
    return loss


def official_cavpt_tensors(model) -> list[dict]:
    """Our generators' tensors under the official CAVPT's names."""
    return [{"meta_net": (g.query.weight, g.query.bias), "qmlp": g.w_q.weight, "kmlp": g.w_k.weight,
             "vmlp": g.w_v.weight, "lns": (g.norm_aux.weight, g.norm_aux.bias),
             "lns2": (g.norm_prompt.weight, g.norm_prompt.bias), "classfier": g.classifier.weight, "ctx": g.kv_tokens}
            for g in model.cavpt]


def perturb(module, scale=0.05):
    """Learned-looking values: every learnable tensor moved off its init (LayerNorms off 1/0 too)."""
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in module.parameters():
            if p.requires_grad:
                p.add_(scale * torch.randn(p.shape, generator=generator))


def test_vpt_deep_logits_match_official(clip12, images):
    from trainers.vpt import VPTCLIP

    torch.manual_seed(0)
    model = VPTCLIP(clip12, TRICKY_CLASSES, TEMPLATE, length=3, depth=0)  # DEPTH 0: all 12 blocks, as officially
    assert model.learnable.prompts.shape == (12, 3, 64)
    with torch.no_grad():
        expected = cosine_logits(clip12, official_vpt_image(clip12, images, model.learnable.prompts),
                                 zero_shot_text(clip12, TRICKY_CLASSES))
        torch.testing.assert_close(model(images), expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("bottom", [12, 1])
def test_dpt_logits_match_official(clip12, images, bottom):
    from trainers.dpt import ClassAwareCLIP

    torch.manual_seed(0)
    model = ClassAwareCLIP(clip12, TRICKY_CLASSES, TEMPLATE, n_ctx=4, ctx_init="", vpt_length=3, bottom_limit=bottom,
                           num_selected=3)
    perturb(model)
    vpt = model.vpt.prompts if model.vpt is not None else torch.empty(0, 3, 64)
    with torch.no_grad():
        expected, layer_logits, indices, _, _ = official_dpt(clip12, TRICKY_CLASSES, images, model.learnable.ctx, vpt,
                                                             official_cavpt_tensors(model), num_selected=3)
        out = model.encode_image_with_aux(images)
        torch.testing.assert_close(model(images), expected, rtol=1e-5, atol=1e-4)
    assert torch.equal(out.selection, indices)
    torch.testing.assert_close(out.aux_logits, torch.cat(layer_logits).permute(2, 0, 1, 3), rtol=1e-5, atol=1e-5)


def test_vpt_length_zero_disables_vpt_in_vlp_and_dpt(clip12, images):
    """README, fixed relative to the official code: officially ``x[:-0]`` empties the token sequence; here
    TRAINER.VPT.N_CTX 0 means no visual prompts (VLP = CoOp on the plain image encoder; DPT keeps its CAVPT)."""
    from trainers.dpt import ClassAwareCLIP
    from trainers.vlp import DualModalityCLIP

    torch.manual_seed(0)
    vlp = DualModalityCLIP(clip12, TRICKY_CLASSES, TEMPLATE, n_ctx=4, ctx_init="", vpt_length=0,
                           vpt_blocks=list(range(12)))
    dpt = ClassAwareCLIP(clip12, TRICKY_CLASSES, TEMPLATE, n_ctx=4, ctx_init="", vpt_length=0, bottom_limit=6,
                         num_selected=3)
    perturb(dpt)
    assert vlp.vpt is None and dpt.vpt is None
    with torch.no_grad():
        prompts, tokenized = coop_prompt_embeddings(clip12, TRICKY_CLASSES, vlp.learnable.ctx, "end")
        expected = cosine_logits(clip12, clip12.encode_image(images), official_text_encoder(clip12, prompts, tokenized))
        torch.testing.assert_close(vlp(images), expected, rtol=1e-5, atol=1e-4)
        # blocks 1..5 run unprompted, the CAVPT from block 6 on
        official, *_ = official_dpt(clip12, TRICKY_CLASSES, images, dpt.learnable.ctx, torch.empty(5, 0, 64),
                                    official_cavpt_tensors(dpt), num_selected=3)
        torch.testing.assert_close(dpt(images), official, rtol=1e-5, atol=1e-4)


# ---- the trainers' losses (VLP, DPT), through a built trainer ------------------------------------------------------

LOSS_CLASSES = ["abyssinian", "crane (bird)", "sphynx", "pug", "beagle"]


@pytest.fixture(scope="module")
def trainer_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("parity_data")
    make_split_dataset(root, "oxford_pets", "images", "split_zhou_OxfordPets.json", LOSS_CLASSES, counts=(2, 1, 1))
    clip_path = root / "tiny_clip12.pt"
    torch.save(tiny_clip_model(seed=3, layers=12).state_dict(), clip_path)
    return root, clip_path


def build_recipe(trainer_inputs, out, trainer, *overrides):
    root, clip_path = trainer_inputs
    return build_trainer("--root", root, "--seed", "1", "--trainer", trainer,
                         "--dataset-config-file", "configs/datasets/oxford_pets.yaml",
                         "--config-file", f"configs/trainers/{trainer}/vit_b32.yaml", "--output-dir", out,
                         "MODEL.BACKBONE.NAME", clip_path, *TINY_OVERRIDES, "DATASET.NUM_SHOTS", "1",
                         "TRAINER.COOP.PREC", "fp32", "TRAINER.COOP.N_CTX", "4", "TRAINER.VPT.N_CTX", "3", *overrides)


def test_vlp_logits_and_loss_schedule_match_official(trainer_inputs, images, tmp_path):
    trainer = build_recipe(trainer_inputs, tmp_path, "VLP")  # the recipe: PRETRAIN.C 30, VPT in all 12 blocks
    model = trainer.model
    perturb(model)
    labels = torch.tensor([0, 3, 4])
    template = "a photo of a {}, a type of pet."  # OxfordPets
    with torch.no_grad():
        prompts, tokenized = coop_prompt_embeddings(model.clip, LOSS_CLASSES, model.learnable.ctx, "end")
        text = official_text_encoder(model.clip, prompts, tokenized)
        image = official_vpt_image(model.clip, images, model.vpt.prompts)
        output = cosine_logits(model.clip, image, text)
        output1 = cosine_logits(model.clip, model.clip.encode_image(images), text)
        output2 = cosine_logits(model.clip, image, zero_shot_text(model.clip, LOSS_CLASSES, template))
        torch.testing.assert_close(trainer.model_inference(images), output, rtol=1e-5, atol=1e-4)
        for epoch in (0, 30):
            trainer.epoch = epoch
            loss, _ = trainer.compute_loss({"img": images, "label": labels})
            expected = official_scheduled_loss(output, output1, output2, labels, epoch, pretrain_c=30)
            torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bottom", ["12", "6"])
def test_dpt_loss_matches_official(trainer_inputs, images, tmp_path, bottom):
    trainer = build_recipe(trainer_inputs, tmp_path, "DPT", "TRAINER.TOPDOWN_SECOVPT.BOTTOMLIMIT", bottom,
                           "TRAINER.SELECTED_COVPT.CPN", "2")  # the recipe's ALPHA 0.3, PRETRAIN.C 30
    model = trainer.model
    perturb(model)
    template = "a photo of a {}, a type of pet."
    with torch.no_grad():
        outputs = official_dpt(model.clip, LOSS_CLASSES, images, model.learnable.ctx, model.vpt.prompts,
                               official_cavpt_tensors(model), num_selected=2, template=template)
        selected, outside = outputs[2], [next(c for c in range(5) if c not in row) for row in outputs[2].tolist()]
        some_match = torch.tensor([int(selected[0, 1]), outside[1], int(selected[2, 0])])
        # a partial mask in both phases, and a batch in which no selected class is the label
        for labels, epoch in ((some_match, 0), (some_match, 30), (torch.tensor(outside), 30)):
            trainer.epoch = epoch
            loss, summary = trainer.compute_loss({"img": images, "label": labels})
            expected = official_dpt_loss(outputs, labels, epoch, pretrain_c=30, alpha=0.3, num_classes=5)
            torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
            assert ("loss_aux" in summary) == (labels is some_match)
