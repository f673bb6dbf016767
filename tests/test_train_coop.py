"""CoOp and zero-shot CLIP through train.py and the real Dassl: train, --eval-only, --resume, bad input."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from conftest import HAS_DASSL, TINY_OVERRIDES, build_trainer, count_correct, run_train
from fake_coop_data import make_split_dataset

pytestmark = [pytest.mark.dassl, pytest.mark.skipif(not HAS_DASSL, reason="Dassl is not installed")]

CLASSES = ["abyssinian", "beagle", "sphynx"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_split_dataset(root, "oxford_pets", "images", "split_zhou_OxfordPets.json", CLASSES, counts=(6, 3, 4))
    return root


def coop_args(data_root, ckpt, out, *extra):
    return ("--root", str(data_root), "--seed", "1", "--trainer", "CoOp",
            "--dataset-config-file", "configs/datasets/oxford_pets.yaml",
            "--config-file", "configs/trainers/CoOp/vit_b32.yaml", "--output-dir", str(out), *extra,
            "MODEL.BACKBONE.NAME", str(ckpt), *TINY_OVERRIDES, "OPTIM.MAX_EPOCH", "4", "OPTIM.LR", "0.05",
            "TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.PREC", "fp32", "DATASET.NUM_SHOTS", "4",
            "TRAIN.CHECKPOINT_FREQ", "1")


def accuracy_by_hand(*args, model_dir=None, epoch: int | None = None) -> float:
    """Test accuracy (%) of the model train.py would build from ARGS, counted here: argmax of its logits against
    the labels of every test image (not through Dassl's evaluator nor results.json)."""
    trainer = build_trainer(*args)
    if model_dir is not None:
        trainer.load_model(str(model_dir), epoch)
    correct, total = count_correct(trainer)
    return 100.0 * correct / total


@pytest.fixture(scope="module")
def trained_run(data_root, tiny_clip_state_dict_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "coop"
    proc = run_train(*coop_args(data_root, tiny_clip_state_dict_path, out), subprocess=True)  # the real CLI
    return out, proc


def test_train_writes_checkpoints_results_and_logs(trained_run, data_root, tiny_clip_state_dict_path):
    out, proc = trained_run
    assert (out / "prompt_learner" / "model.pth.tar-4").is_file()
    commit = json.loads((out / "last_checkpoint.json").read_text())
    assert commit["epoch"] == 4 and commit["trainer"] == "CoOp"
    assert {name: entry["path"] for name, entry in commit["files"].items()} == {
        "prompt_learner": "prompt_learner/model.pth.tar-4", "trainer_state": "trainer_state/model.pth.tar-4"}
    assert list((out / "tensorboard").iterdir())
    results = json.loads((out / "results.json").read_text())
    assert results["task"] == "classification" and results["trainer"] == "CoOp" and results["num_shots"] == 4
    assert results["epochs"] == 4
    assert results["accuracy"] == pytest.approx(
        accuracy_by_hand(*coop_args(data_root, tiny_clip_state_dict_path, out), model_dir=out, epoch=4), abs=1e-9)
    ckpt = torch.load(out / "prompt_learner" / "model.pth.tar-4", weights_only=True)
    assert set(ckpt["state_dict"]) == {"ctx"} and ckpt["state_dict"]["ctx"].shape == (4, 64)


def test_eval_only_reproduces_final_accuracy(trained_run, data_root, tiny_clip_state_dict_path, tmp_path):
    out, proc = trained_run
    run_train(*coop_args(data_root, tiny_clip_state_dict_path, tmp_path / "eval", "--eval-only",
                         "--model-dir", str(out), "--load-epoch", "4"))
    trained = json.loads((out / "results.json").read_text())
    reloaded = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert reloaded["accuracy"] == trained["accuracy"] and reloaded["macro_f1"] == trained["macro_f1"]


def test_resume_after_interruption_matches_uninterrupted_run(trained_run, data_root, tiny_clip_state_dict_path,
                                                             tmp_path):
    from trainers.engine.checkpoint import write_commit

    out, _ = trained_run
    interrupted = tmp_path / "interrupted"
    for folder in ("prompt_learner", "trainer_state"):
        shutil.copytree(out / folder, interrupted / folder)
        for epoch in (3, 4):  # the run "died" after epoch 2: later checkpoints never got written
            (interrupted / folder / f"model.pth.tar-{epoch}").unlink()
    write_commit(interrupted, 2, "CoOp", {name: interrupted / name / "model.pth.tar-2"
                                          for name in ("prompt_learner", "trainer_state")})
    committed = {path: path.stat().st_mtime_ns for path in interrupted.glob("*/model.pth.tar-[12]")}
    run_train(*coop_args(data_root, tiny_clip_state_dict_path, interrupted))
    # resumed, not restarted: epochs 1 and 2 (saved every epoch) were not trained and written again, 3 and 4 were
    assert {path: path.stat().st_mtime_ns for path in interrupted.glob("*/model.pth.tar-[12]")} == committed
    assert json.loads((interrupted / "last_checkpoint.json").read_text())["epoch"] == 4
    resumed = torch.load(interrupted / "prompt_learner" / "model.pth.tar-4", weights_only=True)["state_dict"]["ctx"]
    reference = torch.load(out / "prompt_learner" / "model.pth.tar-4", weights_only=True)["state_dict"]["ctx"]
    assert torch.equal(resumed, reference)


def test_zero_shot_eval_only_and_feature_cache(data_root, tiny_clip_jit_path, tmp_path):
    def zero_shot_args(out, *extra):
        return ("--root", str(data_root), "--trainer", "ZeroshotCLIP",
                "--dataset-config-file", "configs/datasets/oxford_pets.yaml",
                "--config-file", "configs/trainers/ZeroshotCLIP/vit_b32.yaml", "--output-dir", str(out),
                "--eval-only", "MODEL.BACKBONE.NAME", str(tiny_clip_jit_path), *TINY_OVERRIDES,
                "TEST.FEATURE_CACHE_DIR", str(tmp_path / "cache"), "MODEL.ALLOW_UNSAFE_LOAD", "True", *extra)

    def evaluate(out, *extra):
        return run_train(*zero_shot_args(out, *extra))

    def cache_files() -> dict:
        return {path: path.stat().st_mtime_ns for path in (tmp_path / "cache").rglob("*") if path.is_file()}

    evaluate(tmp_path / "a")
    accuracy = json.loads((tmp_path / "a" / "results.json").read_text())["accuracy"]
    by_hand = accuracy_by_hand(*zero_shot_args(tmp_path / "hand", "TEST.FEATURE_CACHE", "False"))
    assert accuracy == pytest.approx(by_hand, abs=1e-9)
    written = cache_files()
    assert written and not (tmp_path / "a" / "last_checkpoint.json").exists()  # nothing to train, nothing saved
    second = evaluate(tmp_path / "b")
    assert cache_files() == written and "loaded from the feature cache" in second.stdout  # a hit, not a rewrite
    evaluate(tmp_path / "c", "TEST.FEATURE_CACHE", "False")
    assert cache_files() == written
    for run in ("b", "c"):
        assert json.loads((tmp_path / run / "results.json").read_text())["accuracy"] == accuracy


@pytest.mark.parametrize("extra, message", [
    (("--trainer", "NoSuchTrainer"), "Unknown trainer 'NoSuchTrainer'. Available:"),
    (("TRAINER.COOP.NOT_A_KEY", "1"), "NOT_A_KEY"),
    (("MODEL.BACKBONE.NAME", "ViT-Q/7"), "neither an existing file nor a CLIP model name"),
])
def test_bad_input_gives_one_clear_message(data_root, tiny_clip_state_dict_path, tmp_path, extra, message):
    args = list(coop_args(data_root, tiny_clip_state_dict_path, tmp_path))
    if extra[0].startswith("--"):
        args[args.index(extra[0]) + 1] = extra[1]
    else:
        args += list(extra)
    proc = run_train(*args, check=False)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
