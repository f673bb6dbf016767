"""VPT / VLP / DPT: layer split, per-block shapes, frozen selector, loss schedule, auxiliary mask, optimiser
groups, and training + evaluation through train.py and the real Dassl."""
from __future__ import annotations

import json
import re

import pytest
import torch
import torch.nn.functional as F
from conftest import HAS_DASSL, ROOT, TINY_OVERRIDES, run_train, tiny_clip_model
from fake_coop_data import make_imagenet, make_split_dataset

pytestmark = [pytest.mark.dassl, pytest.mark.skipif(not HAS_DASSL, reason="Dassl is not installed")]

CLASSES = ["abyssinian", "beagle", "sphynx", "pug"]


def tiny_vit12():
    """OpenAI-architecture CLIP with a 12-block (width 64) ViT, to test BOTTOMLIMIT on the real block count."""
    import clip.model

    torch.manual_seed(0)
    return clip.model.CLIP(embed_dim=32, image_resolution=32, vision_layers=12, vision_width=64, vision_patch_size=8,
                           context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=1,
                           transformer_layers=2).eval()


@pytest.mark.parametrize("bottom, vpt, cavpt", [(1, [], list(range(12))), (8, list(range(7)), list(range(7, 12))),
                                                (12, list(range(11)), [11])])
def test_layer_split_for_bottomlimit(bottom, vpt, cavpt):
    from trainers.dpt import layer_split

    assert layer_split(12, bottom) == (vpt, cavpt)


def test_layer_split_rejects_out_of_range():
    from trainers.dpt import layer_split
    from trainers.errors import ConfigError

    for bad in (0, 13):
        with pytest.raises(ConfigError, match="BOTTOMLIMIT"):
            layer_split(12, bad)


@pytest.mark.parametrize("bottom", [1, 8, 12])
def test_sequence_length_entering_each_block(bottom):
    from trainers.dpt import ClassAwareCLIP

    model = ClassAwareCLIP(tiny_vit12(), CLASSES, "a photo of a {}.", n_ctx=4, ctx_init="", vpt_length=3,
                           bottom_limit=bottom, num_selected=2)
    lengths = []
    hooks = [block.register_forward_pre_hook(lambda _m, args: lengths.append(args[0].shape[0]))
             for block in model.clip.visual.transformer.resblocks]
    with torch.no_grad():
        out = model.encode_image_with_aux(torch.randn(2, 3, 32, 32))
    for hook in hooks:
        hook.remove()
    lengths = lengths[-12:]  # the prompted pass (the selector's frozen pass ran first)
    tokens = 1 + 16  # CLS + 4x4 patches
    assert lengths == [tokens + 3] * (bottom - 1) + [tokens + 2] * (13 - bottom)
    assert out.aux_logits.shape == (2, 13 - bottom, 2, 4) and out.selection.shape == (2, 2)
    assert model.vpt is None if bottom == 1 else model.vpt.prompts.shape == (bottom - 1, 3, 64)


def test_selector_uses_only_frozen_features():
    from trainers.dpt import ClassAwareCLIP

    model = ClassAwareCLIP(tiny_clip_model(), CLASSES, "a photo of a {}.", 4, "", 3, bottom_limit=2, num_selected=3)
    images = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        frozen = F.normalize(model.clip.encode_image(images), dim=-1)
        import clip

        text = F.normalize(model.clip.encode_text(clip.tokenize([f"a photo of a {c}." for c in CLASSES])), dim=-1)
        expected = (frozen @ text.t()).topk(3, dim=-1).indices
        before = model.encode_image_with_aux(images).selection
        for p in list(model.learnable.parameters()) + list(model.vpt.parameters()) + list(model.cavpt.parameters()):
            p.add_(torch.randn_like(p))  # changing every learnable part must not change the selection
        after = model.encode_image_with_aux(images).selection
    assert torch.equal(before, expected) and torch.equal(after, expected)


def test_generator_keys_values_are_detached_and_prompts_carry_query_gradient():
    from trainers.dpt import ClassAwarePromptGenerator

    gen = ClassAwarePromptGenerator(text_dim=32, width=64, num_classes=4, num_kv_tokens=10, attn_dim=32)
    hidden = torch.randn(17, 2, 64, requires_grad=True)
    queries = torch.randn(2, 3, 32, requires_grad=True)
    prompts, logits = gen(hidden, queries)
    assert prompts.shape == (3, 2, 64) and logits.shape == (2, 3, 4)
    (prompts.sum() + logits.sum()).backward()
    assert hidden.grad is None and queries.grad.abs().sum() > 0 and gen.kv_tokens.grad.abs().sum() > 0


# ---- through a built trainer --------------------------------------------------------------------

@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("dpt_data")
    make_split_dataset(root, "oxford_pets", "images", "split_zhou_OxfordPets.json", CLASSES, counts=(6, 3, 3))
    make_split_dataset(root, "dtd", "images", "split_zhou_DescribableTextures.json", ["banded", "braided"],
                       counts=(4, 2, 3))
    return root


def dpt_args(root, ckpt, out, trainer="DPT", dataset="oxford_pets", *extra):
    return ("--root", str(root), "--seed", "1", "--trainer", trainer,
            "--dataset-config-file", f"configs/datasets/{dataset}.yaml",
            "--config-file", f"configs/trainers/{trainer}/vit_b32.yaml", "--output-dir", str(out), *extra,
            "MODEL.BACKBONE.NAME", str(ckpt), *TINY_OVERRIDES, "DATASET.NUM_SHOTS", "4",
            f"TRAINER.{trainer}.PREC", "fp32", "TRAINER.COOP.N_CTX", "4", "TRAINER.VPT.N_CTX", "3")


DPT_SMALL = ("TRAINER.TOPDOWN_SECOVPT.BOTTOMLIMIT", "2", "TRAINER.SELECTED_COVPT.CPN", "2")


def build(root, ckpt, out, *overrides, trainer="DPT", dataset="oxford_pets"):
    import sys

    sys.path.insert(0, str(ROOT))
    from dassl.engine import build_trainer

    import datasets  # noqa: F401
    import trainers  # noqa: F401
    from train import build_parser, setup_cfg

    args = build_parser().parse_args(list(dpt_args(root, ckpt, out, trainer, dataset)) + list(overrides))
    torch.manual_seed(0)
    return build_trainer(setup_cfg(args))


def test_optimiser_groups_learning_rates_and_warmups(data_root, tiny_clip_state_dict_path, tmp_path):
    trainer = build(data_root, tiny_clip_state_dict_path, tmp_path, *DPT_SMALL)
    assert trainer.get_model_names() == ["prompt_learner", "ctx_learner", "extractor"]
    scheds = trainer._scheds
    assert scheds["prompt_learner"].base_lrs == [0.002] and scheds["prompt_learner"].warmup_epoch == 1
    for name in ("ctx_learner", "extractor"):
        assert scheds[name].base_lrs == [0.01] and scheds[name].warmup_epoch == 10
    assert all(trainer._optims[n].param_groups[0]["lr"] == pytest.approx(1e-5) for n in scheds)  # warm-up
    text_params = {id(p) for p in trainer.model.learnable.parameters()}
    assert not text_params & {id(p) for p in trainer.model.cavpt.parameters()}


@pytest.mark.parametrize("trainer, visual_warmup", [("DPT", 1), ("VLP", 1), ("VPT", 10)])
def test_imagenet_warms_up_the_visual_side_for_one_epoch_in_dpt_and_vlp_only(tmp_path, tiny_clip_state_dict_path,
                                                                            trainer, visual_warmup):
    """The official DPT and VLP trainers set WARMUP_EPOCH 1 for their visual optimisers on ImageNet; VPT does not."""
    make_imagenet(tmp_path / "data", {"n01440764": "tench", "n01443537": "goldfish"}, n_train=4, n_val=1)
    built = build(tmp_path / "data", tiny_clip_state_dict_path, tmp_path / "out", *DPT_SMALL, trainer=trainer,
                  dataset="imagenet")
    scheds = built._scheds
    visual = [name for name in scheds if name != "prompt_learner"]
    assert visual and all(scheds[name].warmup_epoch == visual_warmup for name in visual)
    if trainer != "VPT":
        assert scheds["prompt_learner"].warmup_epoch == 1 and scheds["prompt_learner"].base_lrs == [0.002]
    if trainer == "DPT":
        again = build(tmp_path / "data", tiny_clip_state_dict_path, tmp_path / "out2", *DPT_SMALL,
                      "TRAINER.DPT.IMAGENET_WARMUP_EPOCH", "-1", trainer=trainer, dataset="imagenet")
        assert all(again._scheds[name].warmup_epoch == 10 for name in visual)


def recipe_cfg(trainer: str, *opts: str):
    """The config a user gets: Dassl's defaults, every module's keys, the recipe, then command-line overrides."""
    from dassl.config import get_cfg_default

    from trainers.engine.config import extend_cfg

    cfg = extend_cfg(get_cfg_default())
    cfg.merge_from_file(str(ROOT / "configs" / "trainers" / trainer / "vit_b32.yaml"))
    cfg.merge_from_list(list(opts))
    return cfg


@pytest.mark.parametrize("trainer", ["VPT", "VLP", "DPT"])
def test_official_precision_key_is_honoured_and_the_method_key_wins(trainer):
    from dassl.engine import TRAINER_REGISTRY

    import trainers  # noqa: F401
    from trainers.errors import ConfigError

    cls = TRAINER_REGISTRY.get(trainer)
    own = f"TRAINER.{trainer}.PREC"
    assert cls.precision_setting(recipe_cfg(trainer)) == ("fp16", "TRAINER.COOP.PREC")  # the official default
    assert cls.precision_setting(recipe_cfg(trainer, "TRAINER.COOP.PREC", "fp32")) == ("fp32", "TRAINER.COOP.PREC")
    assert cls.precision_setting(recipe_cfg(trainer, own, "bf16")) == ("bf16", own)
    assert cls.precision_setting(recipe_cfg(trainer, "TRAINER.COOP.PREC", "fp32", own, "amp")) == ("amp", own)
    with pytest.raises(ConfigError, match=r"TRAINER\.COOP\.PREC: PREC must be one of"):
        cls.precision_setting(recipe_cfg(trainer, "TRAINER.COOP.PREC", "half"))


def test_other_methods_read_their_own_precision_key():
    from dassl.engine import TRAINER_REGISTRY

    import trainers  # noqa: F401

    cfg = recipe_cfg("DPT", "TRAINER.COOP.PREC", "fp32", "TRAINER.MAPLE.PREC", "amp")
    assert TRAINER_REGISTRY.get("MaPLe").precision_setting(cfg) == ("amp", "TRAINER.MAPLE.PREC")  # as officially
    assert TRAINER_REGISTRY.get("CoOp").precision_setting(cfg) == ("fp32", "TRAINER.COOP.PREC")


def test_official_precision_key_reaches_the_model(data_root, tiny_clip_state_dict_path, tmp_path):
    trainer = build(data_root, tiny_clip_state_dict_path, tmp_path, "TRAINER.VPT.PREC", "", "TRAINER.COOP.PREC",
                    "bf16", trainer="VPT")
    assert trainer.precision.name == "bf16" and trainer.model.clip.visual.conv1.weight.dtype == torch.bfloat16


def test_loss_schedule_switches_at_epoch_c(data_root, tiny_clip_state_dict_path, tmp_path):
    from trainers.losses import class_aware_loss

    trainer = build(data_root, tiny_clip_state_dict_path, tmp_path, *DPT_SMALL, "PRETRAIN.C", "3")
    batch = next(iter(trainer.train_loader_x))
    images, labels = trainer.parse_batch_train(batch)
    model, s = trainer.model, trainer.model.logit_scale
    with torch.no_grad():
        class_raw = model.class_features_raw(trainer.device)
        text = F.normalize(class_raw, dim=-1)
        out = model.encode_image_with_aux(images, class_raw)
        image = F.normalize(out.raw, dim=-1)
        joint = F.cross_entropy(s * image @ text.t(), labels)
        l1 = F.cross_entropy(s * out.frozen @ text.t(), labels)
        l2 = F.cross_entropy(s * image @ model.frozen_class_features(trainer.device).t(), labels)
        aux = 0.3 * class_aware_loss(out.aux_logits, out.selection, labels)
        for epoch, main in ((2, l1 + l2 + 0.1 * joint), (3, joint)):
            trainer.epoch = epoch
            loss, summary = trainer.compute_loss(batch)
            assert summary["loss_main"] == pytest.approx(main.item(), rel=1e-5)
            assert summary["loss_aux"] == pytest.approx(aux.item(), rel=1e-5)
            assert loss.item() == pytest.approx((main + aux).item(), rel=1e-5)


def test_no_class_aware_term_when_no_selected_class_is_the_label(data_root, tiny_clip_state_dict_path, tmp_path):
    """As officially, such a batch has no L_cav term: the auxiliary classifiers and their LayerNorms get no
    gradient, so SGD applies neither weight decay nor momentum to them on that step (a ``0 * sum`` would)."""
    trainer = build(data_root, tiny_clip_state_dict_path, tmp_path, "TRAINER.TOPDOWN_SECOVPT.BOTTOMLIMIT", "2",
                    "TRAINER.SELECTED_COVPT.CPN", "1", "OPTIM.WARMUP_EPOCH", "0", "TRAINER.DPT.TEXT_WARMUP_EPOCH", "0")
    images = next(iter(trainer.train_loader_x))["img"]
    with torch.no_grad():
        selection = trainer.model.encode_image_with_aux(images).selection
    wrong = (selection[:, 0] + 1) % len(CLASSES)  # labels that the selector never chose
    generator = trainer.model.cavpt[0]
    untouched = [generator.classifier.weight, generator.norm_aux.weight, generator.norm_aux.bias]
    before = [p.detach().clone() for p in untouched]
    query_before = generator.query.weight.detach().clone()
    trainer.batch_idx, trainer.num_batches = 0, 10
    summary = trainer.forward_backward({"img": images, "label": wrong})
    assert "loss_aux" not in summary and summary["loss"] == summary["loss_main"]
    optim = trainer._optims["extractor"]
    for p, old in zip(untouched, before):
        assert p.grad is None and torch.equal(p, old) and p not in optim.state  # no decay, no momentum buffer
    assert not torch.equal(generator.query.weight, query_before)  # the prompts' path did train


@pytest.mark.parametrize("trainer, extra", [("DPT", DPT_SMALL + ("PRETRAIN.C", "2")), ("VLP", ("PRETRAIN.C", "2")),
                                            ("VPT", ())])
def test_training_decreases_loss_and_round_trips(data_root, tiny_clip_state_dict_path, tmp_path, trainer, extra):
    common = ("OPTIM.MAX_EPOCH", "6", "OPTIM.WARMUP_EPOCH", "0", "OPTIM.LR", "0.05")
    text = ((f"TRAINER.{trainer}.TEXT_LR", "0.05", f"TRAINER.{trainer}.TEXT_WARMUP_EPOCH", "0")
            if trainer != "VPT" else ())
    proc = run_train(*dpt_args(data_root, tiny_clip_state_dict_path, tmp_path / "run", trainer), *common, *text, *extra)
    per_epoch = {}
    for epoch, avg in re.findall(r"epoch \[(\d+)/6\].* loss [\d.]+ \(([\d.]+)\)", proc.stdout):
        per_epoch[int(epoch)] = float(avg)
    # the schedule changes the objective at epoch C, so compare within the final phase and overall
    assert per_epoch[6] < per_epoch[3] and per_epoch[6] < per_epoch[1]
    run_train(*dpt_args(data_root, tiny_clip_state_dict_path, tmp_path / "eval", trainer, "oxford_pets",
                        "--eval-only", "--model-dir", str(tmp_path / "run"), "--load-epoch", "6"), *extra)
    trained = json.loads((tmp_path / "run" / "results.json").read_text())
    reloaded = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert reloaded["accuracy"] == trained["accuracy"] and trained["trainer"] == trainer


def test_domain_generalisation_loads_into_other_class_count(data_root, tiny_clip_state_dict_path, tmp_path):
    run_train(*dpt_args(data_root, tiny_clip_state_dict_path, tmp_path / "src"), *DPT_SMALL, "OPTIM.MAX_EPOCH", "1")
    run_train(*dpt_args(data_root, tiny_clip_state_dict_path, tmp_path / "dg", "DPT", "dtd", "--eval-only",
                        "--model-dir", str(tmp_path / "src"), "--load-epoch", "1"), *DPT_SMALL)
    results = json.loads((tmp_path / "dg" / "results.json").read_text())
    assert results["dataset"] == "DescribableTextures" and results["epochs"] == 1  # the source's weights, loaded


def test_bf16_training_step_on_cpu(data_root, tiny_clip_state_dict_path, tmp_path):
    trainer = build(data_root, tiny_clip_state_dict_path, tmp_path, *DPT_SMALL, "TRAINER.DPT.PREC", "bf16")
    assert trainer.model.clip.visual.conv1.weight.dtype == torch.bfloat16
    trainer.batch_idx, trainer.num_batches = 0, 10
    summary = trainer.forward_backward(next(iter(trainer.train_loader_x)))
    assert all(torch.isfinite(torch.tensor(v)) for v in summary.values())
    assert all(p.dtype == torch.float32 for p in trainer.model.cavpt.parameters())
