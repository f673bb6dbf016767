"""What a run leaves for the researcher: results.json says what ran, TensorBoard has every reported metric per
direction, the newest attempt's log is at log_latest.txt and says which attempt it is, retrieval runs name
their evaluator, and training prints per-epoch progress with an ETA."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from conftest import HAS_DASSL, TINY_OVERRIDES, run_train, tiny_clip_model
from fake_coop_data import make_split_dataset
from fake_fdrd import make_fake_fdrd

from tools.results import flatten_metrics

TINY_ARCHITECTURE = "custom ViT (width 64, 2 layers, patch 8, 32 px, embedding 32, text width 64)"
requires_dassl = pytest.mark.skipif(not HAS_DASSL, reason="Dassl is not installed")


# ------------------------------------------------------------------------------------------- units


def test_architecture_is_named_by_shape_not_by_how_it_was_loaded():
    import clip.model

    from trainers.backbone.architecture import describe_architecture

    with torch.device("meta"):  # OpenAI-sized models without allocating their weights
        vit_b16 = clip.model.CLIP(512, 224, 12, 768, 16, 77, 49408, 512, 8, 12)
        rn101 = clip.model.CLIP(512, 224, (3, 4, 23, 3), 64, None, 77, 49408, 512, 8, 12)
        wider = clip.model.CLIP(512, 224, 12, 768, 32, 77, 49408, 640, 10, 12)  # ViT-B/32 vision, other text
    assert describe_architecture(vit_b16) == "ViT-B/16" and describe_architecture(rn101) == "RN101"
    assert describe_architecture(wider).startswith("custom ViT (width 768, 12 layers, patch 32, 224 px")
    assert describe_architecture(tiny_clip_model()) == TINY_ARCHITECTURE


def test_progress_lines_give_the_first_batch_cost_and_a_per_epoch_eta():
    from trainers.engine.progress import EpochProgress

    now = [0.0]
    progress = EpochProgress(clock=lambda: now[0])
    lines = []
    for epoch in range(3):
        for batch in range(4):
            progress.start_batch()
            now[0] += 10.0 if (epoch, batch) == (0, 0) else 5.0  # the first batch is the slow one
            lines.append(progress.end_batch(epoch, 4, 3, {"loss": 2.0 - epoch - batch / 4}))
        now[0] += 1.0  # validation, checkpoint
        lines.append(progress.end_epoch(epoch, 3))
    printed = [line for line in lines if line]
    assert printed[0] == ("=> first batch took 10.0 s: about 0:00:40 per epoch of 4 batches, 0:02:00 for the "
                          "3 epoch(s) ahead")
    # epoch 1: 10 + 3 x 5 + 1 s; mean loss (2 + 1.75 + 1.5 + 1.25) / 4; ETA = 2 epochs x the mean epoch so far
    assert printed[1] == ("=> epoch 1/3 done in 0:00:26 (4 batches, 6.50 s/batch); mean loss 1.6250; "
                          "ETA 0:00:52 for 2 more epoch(s)")
    assert printed[2] == ("=> epoch 2/3 done in 0:00:21 (4 batches, 5.25 s/batch); mean loss 0.6250; "
                          "ETA 0:00:24 for 1 more epoch(s)")
    assert printed[3].startswith("=> epoch 3/3 done in 0:00:21") and printed[3].endswith("; training done")
    assert len(printed) == 4


def test_attempt_logs_keep_dassl_names_and_stay_unique(tmp_path: Path):
    from trainers.engine.run_log import LATEST_LOG, attempt_logs, next_log_path, point_latest_at

    assert next_log_path(tmp_path) == tmp_path / "log.txt"
    (tmp_path / "log.txt").write_text("attempt 1\n")
    second = next_log_path(tmp_path)
    assert second.name.startswith("log.txt-20")
    second.write_text("attempt 2\n")
    third = next_log_path(tmp_path)  # the same second: Dassl would reuse (and truncate) the name
    if third.name.startswith(second.name):
        assert third.name == f"{second.name}-2"
    third.write_text("attempt 3\n")
    assert attempt_logs(tmp_path) == [tmp_path / "log.txt", second, third]
    point_latest_at(second)
    point_latest_at(third)
    assert (tmp_path / LATEST_LOG).read_text() == "attempt 3\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging link left behind


# ------------------------------------------------------------------------------------ integration


@pytest.fixture(scope="module")
def fdrd_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("fdrd")
    make_fake_fdrd(root, domain="dtd", classes=3, train_per_class=4, test_per_class=3)
    return root


def coop_retrieval_args(root, ckpt, out, *extra):
    return ("--root", str(root), "--seed", "1", "--trainer", "CoOp", "--dataset-config-file",
            "configs/datasets/fdrd_dtd.yaml", "--config-file", "configs/trainers/CoOp/fdrd_vit_b32.yaml",
            "--output-dir", str(out), *extra, "MODEL.BACKBONE.NAME", str(ckpt), *TINY_OVERRIDES,
            "OPTIM.MAX_EPOCH", "2", "TRAINER.COOP.N_CTX", "2", "DATASET.NUM_SHOTS", "16", "TRAIN.PRINT_FREQ", "50")


@pytest.fixture(scope="module")
def retrieval_run(fdrd_root, tiny_clip_state_dict_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "coop"
    proc = run_train(*coop_retrieval_args(fdrd_root, tiny_clip_state_dict_path, out))
    return out, proc


@requires_dassl
def test_results_json_records_what_ran(retrieval_run):
    out, _ = retrieval_run
    record = json.loads((out / "results.json").read_text())
    assert record["architecture"] == TINY_ARCHITECTURE and record["backbone"].endswith("tiny_clip_state_dict.pt")
    assert record["num_shots"] == 16 and record["shots_per_class"] == {"min": 4, "max": 4}  # classes hold 4
    assert record["epochs"] == 2 and record["max_epoch"] == 2
    assert record["config_file"] == "configs/trainers/CoOp/fdrd_vit_b32.yaml"
    assert record["dataset_config_file"] == "configs/datasets/fdrd_dtd.yaml"
    assert record["overrides"][-2:] == ["TRAIN.PRINT_FREQ", "50"] and "MODEL.BACKBONE.NAME" in record["overrides"]
    # the contract with tools/results.py: every other field is a metric
    assert set(flatten_metrics(record)) == {f"{d}/R@{k}" for d in ("i2t", "t2i") for k in (1, 5, 10)} | {
        "mean_recall"}


@requires_dassl
def test_tensorboard_has_every_reported_metric_per_direction(retrieval_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, _ = retrieval_run
    record = json.loads((out / "results.json").read_text())
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    test_tags = {tag for tag in events.Tags()["scalars"] if tag.startswith("test/")}
    expected = {f"test/{d}/R@{k}": record[d][f"R@{k}"] for d in ("i2t", "t2i") for k in (1, 5, 10)}
    expected["test/mean_recall"] = record["mean_recall"]
    assert test_tags == set(expected)  # and no image/caption counts
    for tag, value in expected.items():
        (event,) = events.Scalars(tag)
        assert event.value == pytest.approx(value, abs=1e-4) and event.step == 2  # after 2 epochs
    assert "train/loss" in events.Tags()["scalars"]


@requires_dassl
def test_retrieval_run_names_its_evaluator_and_prints_epoch_progress(retrieval_run):
    _, proc = retrieval_run
    assert "Loading evaluator: Retrieval" in proc.stdout and "Loading evaluator: Classification" not in proc.stdout
    assert "evaluated by Recall@K" in proc.stdout
    assert "=> first batch took" in proc.stdout
    assert "=> epoch 1/2 done in" in proc.stdout and "ETA" in proc.stdout and "=> epoch 2/2 done in" in proc.stdout


@requires_dassl
def test_newest_attempt_log_is_log_latest_and_says_which_attempt(retrieval_run, fdrd_root,
                                                                tiny_clip_state_dict_path):
    out, _ = retrieval_run
    latest = out / "log_latest.txt"
    assert latest.resolve() == (out / "log.txt").resolve()
    assert f"Log of attempt 1 in {out}: log.txt" in latest.read_text()
    # a re-test into the same folder: Dassl writes log.txt-<time>; log_latest.txt follows it
    run_train(*coop_retrieval_args(fdrd_root, tiny_clip_state_dict_path, out, "--eval-only", "--model-dir", str(out),
                                   "--load-epoch", "2"))
    logs = sorted(p.name for p in out.iterdir() if p.name.startswith("log.txt"))
    assert len(logs) == 2 and logs[0] == "log.txt"
    assert latest.resolve() == (out / logs[1]).resolve()
    text = latest.read_text()
    assert f"Log of attempt 2 in {out}: {logs[1]}" in text and "earlier: log.txt" in text
    assert "Loaded" in text and "=> result" in text
    assert json.loads((out / "results.json").read_text())["epochs"] == 2  # the loaded weights' epochs


@requires_dassl
def test_zero_shot_eval_only_writes_tensorboard_and_no_training_fields(tmp_path, tiny_clip_state_dict_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    make_split_dataset(tmp_path / "data", "oxford_pets", "images", "split_zhou_OxfordPets.json",
                       ["abyssinian", "beagle"], counts=(2, 1, 2))
    out = tmp_path / "zs"
    proc = run_train("--root", str(tmp_path / "data"), "--seed", "1", "--trainer", "ZeroshotCLIP",
                     "--dataset-config-file", "configs/datasets/oxford_pets.yaml", "--config-file",
                     "configs/trainers/ZeroshotCLIP/vit_b32.yaml", "--output-dir", str(out), "--eval-only",
                     "MODEL.BACKBONE.NAME", str(tiny_clip_state_dict_path), *TINY_OVERRIDES)
    assert "Loading evaluator: Classification" in proc.stdout
    record = json.loads((out / "results.json").read_text())
    assert record["epochs"] == 0 and "shots_per_class" not in record and record["seed"] == 1
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert {"test/accuracy", "test/macro_f1"} <= set(events.Tags()["scalars"])
    assert events.Scalars("test/accuracy")[0].value == pytest.approx(record["accuracy"], abs=1e-4)
    assert os.readlink(out / "log_latest.txt") == "log.txt"
