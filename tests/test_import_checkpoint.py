"""tools/import_checkpoint.py: checkpoints in the official code bases' layouts become ours and evaluate the same.

Each test trains nothing: it gives a model of ours random learned values, writes them by hand in the layout the
official trainer's ``save_model`` produces (the official registered folder names, module names, key order, shapes
and dtypes, the frozen ``token_prefix``/``token_suffix`` buffers, MaPLe's whole CustomCLIP, an SGD state and a
pickled LR-scheduler object as upstream Dassl stores them), converts with the tool, loads the result into a
freshly built trainer and checks that its logits equal those of the model whose weights went in.
"""
from __future__ import annotations

import json
import os
from collections import OrderedDict

import pytest
import torch
from conftest import HAS_DASSL, TINY_OVERRIDES, build_trainer, run_train
from fake_coop_data import make_split_dataset
from torch import nn

pytestmark = [pytest.mark.dassl, pytest.mark.skipif(not HAS_DASSL, reason="Dassl is not installed")]

CLASSES = ["abyssinian", "crane (bird)", "sphynx", "pug"]
EPOCH = 7


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("import_data")
    make_split_dataset(root, "oxford_pets", "images", "split_zhou_OxfordPets.json", CLASSES, counts=(4, 2, 3))
    return root


#: trainer, recipe, overrides for each case (a 2-block tiny CLIP: depths are pinned in test_official_parity.py)
METHODS = {
    "coop": ("CoOp", "vit_b32", ("TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.PREC", "fp32")),
    "coop_csc": ("CoOp", "vit_b32", ("TRAINER.COOP.N_CTX", "3", "TRAINER.COOP.CSC", "True",
                                     "TRAINER.COOP.CLASS_TOKEN_POSITION", "middle", "TRAINER.COOP.PREC", "fp32")),
    "maple": ("MaPLe", "vit_b16_c2_ep5_batch4_2ctx", ("TRAINER.MAPLE.PROMPT_DEPTH", "2", "TRAINER.MAPLE.PREC", "fp32")),
    "clip_adapter": ("CLIPAdapter", "vit_b32", ("TRAINER.CLIP_ADAPTER.PREC", "fp32")),
    "vpt": ("VPT", "vit_b32", ("TRAINER.VPT.N_CTX", "3", "TRAINER.COOP.PREC", "fp32")),
    "vlp": ("VLP", "vit_b32", ("TRAINER.VPT.N_CTX", "3", "TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.PREC", "fp32")),
    "dpt": ("DPT", "vit_b32", ("TRAINER.VPT.N_CTX", "3", "TRAINER.COOP.N_CTX", "4", "TRAINER.SELECTED_COVPT.CPN", "2",
                               "TRAINER.TOPDOWN_SECOVPT.BOTTOMLIMIT", "2", "TRAINER.COOP.PREC", "fp32")),
    "dpt_bottom1": ("DPT", "vit_b32", ("TRAINER.VPT.N_CTX", "3", "TRAINER.COOP.N_CTX", "4",
                                       "TRAINER.SELECTED_COVPT.CPN", "2", "TRAINER.TOPDOWN_SECOVPT.BOTTOMLIMIT", "1",
                                       "TRAINER.COOP.PREC", "fp32")),
}


def train_args(root, ckpt, out, trainer, recipe, *extra):
    return ["--root", str(root), "--seed", "1", "--trainer", trainer,
            "--dataset-config-file", "configs/datasets/oxford_pets.yaml",
            "--config-file", f"configs/trainers/{trainer}/{recipe}.yaml", "--output-dir", str(out), *extra,
            "MODEL.BACKBONE.NAME", str(ckpt), *TINY_OVERRIDES, "DATASET.NUM_SHOTS", "2"]


def build(root, ckpt, out, trainer, recipe, overrides, seed):
    return build_trainer(*train_args(root, ckpt, out, trainer, recipe), *overrides, seed=seed)


def trained_values(trainer) -> None:
    """Random learned values, rounded to fp16 (the official code saves most of them in fp16: then lossless)."""
    generator = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for module in trainer._models.values():
            for p in module.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=generator)).copy_(p.half().float())


# ---- the official modules' state dicts, written out ---------------------------------------------------------------

def official_prompt_buffers(clip_model, n_ctx: int, prompt_prefix: str = "") -> OrderedDict:
    """``token_prefix`` (C, 1, D) and ``token_suffix`` (C, 77-1-n, D) of CoOp's PromptLearner, in fp16."""
    import clip

    prompt_prefix = prompt_prefix or " ".join(["X"] * n_ctx)
    tokenized = torch.cat([clip.tokenize(f"{prompt_prefix} {name}.") for name in CLASSES])
    with torch.no_grad():
        embedding = clip_model.token_embedding(tokenized).half()
    return OrderedDict([("token_prefix", embedding[:, :1]), ("token_suffix", embedding[:, 1 + n_ctx:])])


def official_coop_prompt_learner(model) -> OrderedDict:
    ctx = model.learnable.ctx.detach()
    return OrderedDict([("ctx", ctx.half()), *official_prompt_buffers(model.clip, ctx.shape[-2]).items()])


class OfficialCAVPT(nn.Module):
    """fanrena/DPT's CAVPT, its parameters only (names, shapes, registration order)."""

    def __init__(self, n_layers, kv_tokens, width, text_dim, attn_dim, num_classes):
        super().__init__()
        self.meta_nets = nn.ModuleList([nn.Linear(text_dim, width) for _ in range(n_layers)])
        self.attns = nn.ModuleList([nn.Module() for _ in range(n_layers)])
        for attn in self.attns:
            attn.kmlp = nn.Linear(width, attn_dim, bias=False)
            attn.qmlp = nn.Linear(width, attn_dim, bias=False)
            attn.vmlp = nn.Linear(width, width, bias=False)
        self.lns = nn.ModuleList([nn.LayerNorm(width) for _ in range(n_layers)])
        self.classfiers = nn.ModuleList([nn.Linear(width, num_classes, bias=False) for _ in range(n_layers)])
        self.lns2 = nn.ModuleList([nn.LayerNorm(width) for _ in range(n_layers)])
        self.ctx = nn.Parameter(torch.empty(n_layers, kv_tokens, width))


def official_cavpt(model) -> OrderedDict:
    gens = model.cavpt
    g0 = gens[0]
    official = OfficialCAVPT(len(gens), g0.kv_tokens.shape[0], g0.kv_tokens.shape[1], g0.query.in_features,
                             g0.w_q.out_features, g0.classifier.out_features)
    with torch.no_grad():
        for j, gen in enumerate(gens):
            official.meta_nets[j].load_state_dict(gen.query.state_dict())
            official.attns[j].qmlp.load_state_dict(gen.w_q.state_dict())
            official.attns[j].kmlp.load_state_dict(gen.w_k.state_dict())
            official.attns[j].vmlp.load_state_dict(gen.w_v.state_dict())
            official.lns[j].load_state_dict(gen.norm_aux.state_dict())
            official.lns2[j].load_state_dict(gen.norm_prompt.state_dict())
            official.classfiers[j].load_state_dict(gen.classifier.state_dict())
            official.ctx[j].copy_(gen.kv_tokens)
    return official.half().state_dict()  # the official Transformer_VPTD casts the whole CAVPT to fp16


def official_maple_custom_clip(model) -> OrderedDict:
    """MaPLe saves the whole CustomCLIP: prompt_learner.* (ctx and proj in fp16, the compound prompts and their
    projections in fp32, the buffers) and the frozen image_encoder, text_encoder and logit_scale."""
    learnable, clip_model = model.learnable, model.clip
    state = OrderedDict([("prompt_learner.ctx", learnable.ctx.detach().half()),
                         ("prompt_learner.proj.weight", learnable.to_visual[0].weight.detach().half()),
                         ("prompt_learner.proj.bias", learnable.to_visual[0].bias.detach().half())])
    for i, prompt in enumerate(learnable.deep_text):
        state[f"prompt_learner.compound_prompts_text.{i}"] = prompt.detach().clone()
    for i, layer in enumerate(learnable.to_visual[1:]):
        state[f"prompt_learner.compound_prompt_projections.{i}.weight"] = layer.weight.detach().clone()
        state[f"prompt_learner.compound_prompt_projections.{i}.bias"] = layer.bias.detach().clone()
    buffers = official_prompt_buffers(clip_model, model.num_text_ctx, "a photo of a")
    state.update((f"prompt_learner.{k}", v) for k, v in buffers.items())
    state.update((f"image_encoder.{k}", v.half()) for k, v in clip_model.visual.state_dict().items())
    for name in ("transformer", "ln_final"):
        state.update((f"text_encoder.{name}.{k}", v.half()) for k, v in getattr(clip_model, name).state_dict().items())
    state["text_encoder.positional_embedding"] = clip_model.positional_embedding.detach().half()
    state["text_encoder.text_projection"] = clip_model.text_projection.detach().half()
    state["logit_scale"] = clip_model.logit_scale.detach().half()
    return state


def official_folders(method: str, trainer) -> dict[str, OrderedDict]:
    model = trainer.model
    vpt_folder = "image_encoder.transformer.ctx_learner"
    if method.startswith("coop"):
        return {"prompt_learner": official_coop_prompt_learner(model)}
    if method == "maple":
        return {"MultiModalPromptLearner": official_maple_custom_clip(model)}
    if method == "clip_adapter":
        return {"clip_adapter": OrderedDict((k.removeprefix("adapter."), v.detach().clone())
                                            for k, v in model.learnable.state_dict().items())}
    if method == "vpt":
        return {vpt_folder: OrderedDict(ctx=model.learnable.prompts.detach().half())}
    width = model.vision_encoder.width
    vpt_tokens = model.vpt.prompts.detach().half() if model.vpt is not None else torch.empty(0, 3, width).half()
    folders = {vpt_folder: OrderedDict(ctx=vpt_tokens), "prompt_learner": official_coop_prompt_learner(model)}
    if method.startswith("dpt"):
        folders["image_encoder.transformer.extractor"] = official_cavpt(model)
    return folders


def write_official_run(folders: dict[str, OrderedDict], src) -> None:
    """What upstream Dassl's save_model writes: per registered model, model.pth.tar-<epoch> and 'checkpoint'."""
    for name, state in folders.items():
        params = [nn.Parameter(v.float().clone()) for v in state.values()]
        optim = torch.optim.SGD(params, lr=0.002, momentum=0.9, weight_decay=5e-4)
        sum(p.sum() for p in params).backward()
        optim.step()
        successor = torch.optim.lr_scheduler.CosineAnnealingLR(optim, T_max=50)
        # Dassl's ConstantWarmupScheduler.state_dict(): its __dict__ without the optimizer, successor object included
        scheduler = {"successor": successor, "warmup_epoch": 1, "cons_lr": 1e-5, "base_lrs": [0.002],
                     "last_epoch": EPOCH, "_step_count": EPOCH + 1, "verbose": False, "_last_lr": [0.002]}
        folder = src / name
        folder.mkdir(parents=True)
        torch.save({"state_dict": state, "epoch": EPOCH, "optimizer": optim.state_dict(), "scheduler": scheduler,
                    "val_result": None}, folder / f"model.pth.tar-{EPOCH}")
        (folder / "checkpoint").write_text(f"model.pth.tar-{EPOCH}\n")


def import_tool(*argv) -> tuple[int, str, str]:
    import contextlib
    import io

    from tools import import_checkpoint

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = import_checkpoint.main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def overrides_from_record(dst) -> list[str]:
    record = json.loads((dst / "imported_from.json").read_text())
    return [str(x) for key, value in record["overrides"].items() for x in (key, value)]


# ---- tests ---------------------------------------------------------------------------------------------------------

def test_every_trainer_with_an_official_layout_is_covered():
    from trainers import registered_trainers

    assert {trainer for trainer, _, _ in METHODS.values()} == {
        name for name, cls in registered_trainers().items() if cls.OFFICIAL_CHECKPOINT is not None}


@pytest.mark.parametrize("case", list(METHODS))
def test_official_checkpoint_evaluates_like_the_model_it_came_from(case, data_root, tiny_clip_state_dict_path,
                                                                   tmp_path):
    trainer_name, recipe, overrides = METHODS[case]
    clip_path = tiny_clip_state_dict_path
    source = build(data_root, clip_path, tmp_path / "a", trainer_name, recipe, overrides, seed=0)
    trained_values(source)
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    expected = source.model_inference(images)
    write_official_run(official_folders(case, source), tmp_path / "official")

    method = case.split("_bottom")[0].removesuffix("_csc")
    code, out, err = import_tool("--from", method, tmp_path / "official", tmp_path / "ours")
    assert code == 0, err
    assert f"--model-dir {tmp_path / 'ours'} --load-epoch {EPOCH}" in out
    implied = overrides_from_record(tmp_path / "ours")
    target = build(data_root, clip_path, tmp_path / "b", trainer_name, recipe, list(overrides) + implied, seed=1)
    assert not torch.allclose(target.model_inference(images), expected)  # another init before loading
    target.load_model(str(tmp_path / "ours"), EPOCH)
    torch.testing.assert_close(target.model_inference(images), expected, rtol=0, atol=1e-5)


def test_imported_coop_checkpoint_through_train_py(data_root, tiny_clip_state_dict_path, tmp_path):
    """The printed command works: train.py --eval-only on the converted folder gives the source's accuracy."""
    trainer_name, recipe, overrides = METHODS["coop"]
    source = build(data_root, tiny_clip_state_dict_path, tmp_path / "a", trainer_name, recipe, overrides, seed=0)
    trained_values(source)
    source.test()
    write_official_run(official_folders("coop", source), tmp_path / "official")
    assert import_tool("--from", "coop", tmp_path / "official", tmp_path / "ours")[0] == 0
    run_train(*train_args(data_root, tiny_clip_state_dict_path, tmp_path / "eval", trainer_name, recipe, "--eval-only",
                          "--model-dir", tmp_path / "ours", "--load-epoch", EPOCH), *overrides,
              *overrides_from_record(tmp_path / "ours"))
    results = [json.loads((tmp_path / out / "results.json").read_text()) for out in ("eval", "a")]
    assert results[0]["accuracy"] == results[1]["accuracy"]


def test_wrong_source_layout_is_one_message(tmp_path):
    src = tmp_path / "official"
    write_official_run({"prompt_learner": OrderedDict(ctx=torch.zeros(4, 64).half())}, src)
    code, _, err = import_tool("--from", "dpt", src, tmp_path / "ours")
    assert code == 2 and "lacks 'image_encoder.transformer.ctx_learner'" in err
    code, _, err = import_tool("--from", "coop", src, tmp_path / "ours")  # no token_prefix: not CoOp's PromptLearner
    assert code == 2 and "no 'token_prefix'" in err
    code, _, err = import_tool("--from", "coop", src, tmp_path / "ours", "--epoch", "3")
    assert code == 2 and "model.pth.tar-3" in err
    assert not (tmp_path / "ours").exists()


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def test_reading_runs_no_pickled_code(tmp_path):
    from trainers.engine.official_checkpoints import read_official_checkpoint

    path = tmp_path / "model.pth.tar-1"
    torch.save({"state_dict": OrderedDict(ctx=torch.ones(2, 3)), "epoch": 1, "scheduler": _RunsCode(tmp_path / "x")},
               path)
    ckpt = read_official_checkpoint(path)
    assert not (tmp_path / "x").exists()
    assert ckpt["epoch"] == 1 and torch.equal(ckpt["state_dict"]["ctx"], torch.ones(2, 3))


def test_from_choices_come_from_the_registry():
    from tools.import_checkpoint import official_layouts

    assert sorted(official_layouts()) == ["clip_adapter", "coop", "dpt", "maple", "vlp", "vpt"]
