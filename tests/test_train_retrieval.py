"""Retrieval through train.py and real Dassl on tiny FDRD-format data: every baseline, and DCAR's parts."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from conftest import HAS_DASSL, ROOT, TINY_OVERRIDES, run_train
from fake_fdrd import make_fake_fdrd

pytestmark = [pytest.mark.dassl, pytest.mark.skipif(not HAS_DASSL, reason="Dassl is not installed")]


@pytest.fixture(scope="module")
def fdrd_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("fdrd_data")
    make_fake_fdrd(root, domain="dtd", classes=4, train_per_class=4, test_per_class=3, fmt="A")
    make_fake_fdrd(root, domain="pets", classes=4, train_per_class=4, test_per_class=3, fmt="B")
    return root


def retrieval_args(root, ckpt, out, trainer, cfg, domain="dtd", *extra):
    return ("--root", str(root), "--seed", "1", "--trainer", trainer,
            "--dataset-config-file", f"configs/datasets/fdrd_{domain}.yaml",
            "--config-file", f"configs/trainers/{trainer}/{cfg}.yaml", "--output-dir", str(out), *extra,
            "MODEL.BACKBONE.NAME", str(ckpt), *TINY_OVERRIDES, "OPTIM.MAX_EPOCH", "2")


def check_results(path: Path, trainer: str) -> dict:
    results = json.loads(path.read_text())
    assert results["task"] == "retrieval" and results["trainer"] == trainer
    for direction in ("i2t", "t2i"):
        values = [results[direction][f"R@{k}"] for k in (1, 5, 10)]
        assert values == sorted(values) and 0 <= values[0] and values[-1] <= 100
    assert results["num_images"] == results["num_captions"] == 12
    return results


#: trainer -> (recipe, extra flags and overrides) of the baselines' retrieval run
BASELINES = {
    "ZeroshotCLIP": ("vit_b32", ("--eval-only",)),
    "CoOp": ("fdrd_vit_b32", ("TRAINER.COOP.N_CTX", "4")),
    "CLIPAdapter": ("fdrd_vit_b32", ()),
    "MaPLe": ("fdrd_vit_b32", ("TRAINER.MAPLE.PROMPT_DEPTH", "2")),
    "VPT": ("vit_b32", ("TRAINER.VPT.N_CTX", "3")),
    "VLP": ("vit_b32", ("TRAINER.COOP.N_CTX", "4", "PRETRAIN.C", "1")),
    "DPT": ("vit_b32", ("TRAINER.COOP.N_CTX", "4", "PRETRAIN.C", "1", "TRAINER.TOPDOWN_SECOVPT.BOTTOMLIMIT", "2",
                        "TRAINER.SELECTED_COVPT.CPN", "2")),
}
#: trainers whose retrieval runs have tests of their own
TESTED_ELSEWHERE = {"DCAR"}  # test_dcar_trains_decreases_loss_and_round_trips below, and its parts


def test_every_registered_trainer_runs_retrieval():
    from trainers import registered_trainers

    assert set(BASELINES) == set(registered_trainers()) - TESTED_ELSEWHERE


@pytest.mark.parametrize("trainer, cfg, extra", [(name, *spec) for name, spec in BASELINES.items()])
def test_retrieval_baselines_train_and_report_recall(fdrd_root, tiny_clip_state_dict_path, tmp_path, trainer, cfg,
                                                       extra):
    flags = tuple(x for x in extra if x.startswith("--"))
    overrides = tuple(x for x in extra if not x.startswith("--"))
    run_train(*retrieval_args(fdrd_root, tiny_clip_state_dict_path, tmp_path, trainer, cfg, "dtd", *flags), *overrides)
    results = check_results(tmp_path / "results.json", trainer)
    assert results["epochs"] == (0 if "--eval-only" in flags else 2)  # OPTIM.MAX_EPOCH 2


def test_hard_negative_report_on_format_b(fdrd_root, tiny_clip_state_dict_path, tmp_path):
    run_train(*retrieval_args(fdrd_root, tiny_clip_state_dict_path, tmp_path, "ZeroshotCLIP", "vit_b32", "pets",
                              "--eval-only"))
    results = json.loads((tmp_path / "results.json").read_text())
    assert "hard_negative_i2t" in results and 0 <= results["hard_negative_i2t"]["R@1"] <= 100


def epoch_losses(stdout: str) -> list[float]:
    """Average training loss of each epoch (Dassl prints running averages; keep each epoch's last)."""
    last = {}
    for epoch, avg in re.findall(r"epoch \[(\d+)/\d+\].* loss [\d.]+ \(([\d.]+)\)", stdout):
        last[int(epoch)] = float(avg)
    return [last[e] for e in sorted(last)]


def test_dcar_trains_decreases_loss_and_round_trips(fdrd_root, tiny_clip_state_dict_path, tmp_path):
    args = retrieval_args(fdrd_root, tiny_clip_state_dict_path, tmp_path / "run", "DCAR", "vit_b32", "dtd")
    proc = run_train(*args, "OPTIM.MAX_EPOCH", "8", "OPTIM.LR", "0.05", "TRAINER.DCAR.PROMPT_DEPTH", "2",
                     "OPTIM.WARMUP_EPOCH", "0", "TRAINER.DCAR.LAMBDA", "0.5",
                     "TRAINER.DCAR.USE_DTR", "True",  # every component (the recipe has DTR off: docs/dcar.md)
                     "TRAINER.DCAR.NUM_CATEGORY_NEG", "2", "TRAINER.DCAR.NUM_ATTRIBUTE_NEG", "2")  # both kinds
    losses = epoch_losses(proc.stdout)
    assert len(losses) == 8 and losses[-1] < losses[0]
    assert "DTR on; CAA on, K=4" in proc.stdout and "loss_cate" in proc.stdout
    trained = check_results(tmp_path / "run" / "results.json", "DCAR")
    assert (tmp_path / "run" / "category_siblings.json").is_file()
    run_train(*retrieval_args(fdrd_root, tiny_clip_state_dict_path, tmp_path / "eval", "DCAR", "vit_b32",
                              "dtd", "--eval-only", "--model-dir", str(tmp_path / "run"), "--load-epoch", "8"),
              "TRAINER.DCAR.PROMPT_DEPTH", "2")
    reloaded = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert reloaded["epochs"] == trained["epochs"] == 8  # the evaluated weights are epoch 8's, loaded
    assert reloaded["i2t"] == trained["i2t"] and reloaded["t2i"] == trained["t2i"]


def test_missing_caption_file_fails_before_model_with_clear_message(tmp_path, tiny_clip_state_dict_path):
    proc = run_train(*retrieval_args(tmp_path, tiny_clip_state_dict_path, tmp_path / "out", "DCAR", "vit_b32", "sun397"),
                     "TRAINER.DCAR.PROMPT_DEPTH", "2", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "sun397" in proc.stderr.lower() and "Building DCAR" not in proc.stdout


# ---- DCAR's parts, in-process on a built trainer ------------------------------------------------

def build_dcar(root, ckpt, out, *overrides):
    import sys

    sys.path.insert(0, str(ROOT))
    from dassl.engine import build_trainer

    import datasets  # noqa: F401
    import trainers  # noqa: F401
    from train import build_parser, setup_cfg

    args = build_parser().parse_args(list(retrieval_args(root, ckpt, out, "DCAR", "vit_b32", "dtd"))
                                     + ["TRAINER.DCAR.PROMPT_DEPTH", "2", *overrides])
    torch.manual_seed(0)
    return build_trainer(setup_cfg(args))


def first_batch(trainer):
    return next(iter(trainer.train_loader_x))


def test_dcar_loss_is_con_plus_lambda_cate(fdrd_root, tiny_clip_state_dict_path, tmp_path):
    trainer = build_dcar(fdrd_root, tiny_clip_state_dict_path, tmp_path, "TRAINER.DCAR.LAMBDA", "0.7")
    loss, summary = trainer.compute_loss(first_batch(trainer))
    assert loss.item() == pytest.approx(summary["loss_con"] + 0.7 * summary["loss_cate"], rel=1e-6)


def test_dcar_ablation_switches_remove_their_parts(fdrd_root, tiny_clip_state_dict_path, tmp_path):
    full = build_dcar(fdrd_root, tiny_clip_state_dict_path, tmp_path / "a", "TRAINER.DCAR.USE_DTR", "True",
                      "TRAINER.DCAR.CAA_HEAD", "True")
    bare = build_dcar(fdrd_root, tiny_clip_state_dict_path, tmp_path / "b",
                      "TRAINER.DCAR.USE_DTR", "False", "TRAINER.DCAR.USE_CAA", "False")
    count = lambda t: sum(p.numel() for p in t.model.learnable.parameters())  # noqa: E731
    caa = full.model.learnable.caa
    assert count(full) - count(bare) == sum(p.numel() for p in caa.parameters()) > 0
    assert not hasattr(bare.model.learnable, "caa") and bare.negatives is None and bare.token_reweighting is None
    _, summary = bare.compute_loss(first_batch(bare))
    assert set(summary) == {"loss_con", "loss"} and summary["loss"] == summary["loss_con"]

    images, tokens, _ = full.parse_retrieval_batch(first_batch(full))
    weights = full.token_reweighting(tokens, full.model.frozen_image_features(images))
    assert weights.shape == tokens.shape
    special = (tokens == 0) | (tokens == 49406) | (tokens == 49407)
    assert torch.all(weights[special] == 1) and not torch.all(weights == 1)
    # "This is a photo of" opens every caption: boilerplate, neutral
    prefix = full.model.tokenize(["This is a photo of"]).tokens[0, 1:6]
    assert torch.all(weights[:, 1:6] == 1) and torch.equal(tokens[0, 1:6], prefix)

    text_only = build_dcar(fdrd_root, tiny_clip_state_dict_path, tmp_path / "c", "TRAINER.DCAR.VISUAL_PROMPTS", "False")
    assert not hasattr(text_only.model.learnable, "to_visual") and not text_only.model.prompts_image
    assert full.model.prompts_image


def _cate_only_trainer(root, ckpt, out, *overrides):
    """DCAR whose loss is L_cate alone on a text-only prompt, so gradients come from the negatives' path."""
    return build_dcar(root, ckpt, out, "TRAINER.DCAR.VISUAL_PROMPTS", "False", "TRAINER.DCAR.USE_DTR", "False",
                      *overrides)


def test_dcar_category_loss_trains_the_test_time_text_encoder(fdrd_root, tiny_clip_state_dict_path, tmp_path):
    import trainers.dcar as dcar

    trainer = _cate_only_trainer(fdrd_root, tiny_clip_state_dict_path, tmp_path / "p")
    batch = first_batch(trainer)
    images, tokens, labels = trainer.parse_retrieval_batch(batch)
    trainer.negatives._rng.seed(7)
    negatives = trainer.sample_negatives(batch["index"], labels)
    # Reference written here: candidates = the prompted encoder on positive and negative texts; L_cate by hand
    # (same-category negatives counted (1 + alpha) times in the denominator, the positive unweighted).
    ctx = trainer.model.learnable.ctx
    image_features = trainer.model.encode_image(images).detach()
    positive = trainer.model.encode_text(tokens)
    negative = trainer.model.encode_text(trainer.model.tokenize(negatives.texts).tokens)
    alpha, scale = trainer.method_cfg.ALPHA, float(trainer.model.logit_scale)
    terms = []
    for row in range(len(images)):
        logits = [scale * (image_features[row] @ positive[row])]
        weights = [1.0]
        for i in torch.nonzero(negatives.owners == row).flatten().tolist():
            logits.append(scale * (image_features[row] @ negative[i]))
            weights.append(1 + alpha if bool(negatives.same[row, negatives.slots[i]]) else 1.0)
        denominator = sum(w * torch.exp(l.double()) for w, l in zip(weights, logits))
        terms.append(-(logits[0].double() - torch.log(denominator)))
    reference = torch.stack(terms).mean()
    (reference_grad,) = torch.autograd.grad(reference, ctx, retain_graph=True)

    trainer.negatives._rng.seed(7)
    again = trainer.sample_negatives(batch["index"], labels)
    assert again.texts == negatives.texts
    loss = trainer.category_loss(image_features, positive, negative, again)
    assert loss.item() == pytest.approx(reference.item(), rel=1e-4)
    (grad,) = torch.autograd.grad(loss, ctx)
    assert grad.abs().sum() > 0 and torch.allclose(grad, reference_grad.float(), rtol=1e-3, atol=1e-7)

    # Fig. 2 read literally (frozen text + CAA head): no gradient reaches the test-time text context
    frozen = _cate_only_trainer(fdrd_root, tiny_clip_state_dict_path, tmp_path / "f",
                                "TRAINER.DCAR.CATE_ENCODER", "frozen")
    assert frozen.uses_caa_head
    _, summary = frozen.compute_loss(first_batch(frozen))
    negatives = frozen.sample_negatives(batch["index"], labels)
    cate = frozen.category_loss(frozen.model.encode_image(images).detach(),
                                frozen.frozen_positive_features[batch["index"]],
                                frozen.frozen_negative_features(negatives.texts), negatives)
    assert torch.autograd.grad(cate, frozen.model.learnable.ctx, allow_unused=True)[0] is None
    assert dcar.CATE_ENCODERS == ("prompted", "frozen")


def test_dcar_category_loss_marks_same_category_candidates(fdrd_root, tiny_clip_state_dict_path, tmp_path, monkeypatch):
    import trainers.dcar as dcar

    trainer = build_dcar(fdrd_root, tiny_clip_state_dict_path, tmp_path,
                         "TRAINER.DCAR.NUM_CATEGORY_NEG", "2", "TRAINER.DCAR.NUM_ATTRIBUTE_NEG", "2")
    captured = {}
    original = dcar.category_weighted_contrastive

    def spy(image_features, candidates, same, alpha, scale, valid, weighting):
        captured.update(same=same.cpu(), valid=valid.cpu(), alpha=alpha, weighting=weighting,
                        candidates=candidates.detach())
        return original(image_features, candidates, same, alpha, scale, valid, weighting)

    monkeypatch.setattr(dcar, "category_weighted_contrastive", spy)
    batch = first_batch(trainer)
    trainer.compute_loss(batch)
    same, valid = captured["same"], captured["valid"]
    assert captured["alpha"] == 0.5 and captured["weighting"] == "negatives" and same.shape == (len(batch["index"]), 5)
    assert bool(same[:, 0].all()) and bool(valid[:, 0].all())
    # K = 2 category swaps (other class) + 2 attribute swaps (same class: counted 1 + alpha times)
    assert torch.equal(same[:, 1:3], torch.zeros_like(same[:, 1:3]))
    assert torch.equal(same[:, 3:5] & valid[:, 3:5], valid[:, 3:5])
    # the candidates are unit-norm prompted text features (no CAA head by default)
    norms = captured["candidates"][valid].norm(dim=-1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)


def test_frozen_negative_feature_cache_encodes_each_text_once():
    from trainers.dcar import FrozenTextFeatureCache

    calls = []

    def encode(tokens):
        calls.append(len(tokens))
        return tokens[:, 1:3].float()  # any deterministic function of the tokens

    cache = FrozenTextFeatureCache(encode, max_entries=3)
    first = cache(["a cat", "a dog", "a cat"])
    assert calls == [2] and torch.equal(first[0], first[2])
    again = cache(["a dog", "a bird"])
    assert calls == [2, 1] and torch.equal(again[0], first[1])
    cache(["a fish", "a cow"])
    assert len(cache.features) == 3 and "a cat" not in cache.features  # least recently used went first


def test_test_captions_encoded_by_length_keep_their_order(fdrd_root, tiny_clip_state_dict_path, tmp_path):
    """encode_captions batches the captions shortest first; each row's feature is still its own caption's, as
    one caption at a time gives it."""
    trainer = build_dcar(fdrd_root, tiny_clip_state_dict_path, tmp_path, "TEST.TEXT_BATCH_SIZE", "3")
    tokens = trainer.caption_tokens["test"][:10]
    assert not torch.equal(torch.argsort(tokens.argmax(-1), stable=True), torch.arange(len(tokens)))
    with torch.no_grad():
        batched = trainer.encode_captions(tokens)
        one_by_one = torch.cat([trainer.model.encode_text(row[None]).float() for row in tokens])
    torch.testing.assert_close(batched, one_by_one, rtol=1e-5, atol=1e-5)
