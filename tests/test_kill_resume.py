"""Exact resume for every trainer with learnable parameters: SIGKILL a run, re-run it, compare every tensor.

Each trainer trains 2 epochs on a tiny FDRD domain. The killed runs are real processes killed with SIGKILL
(tests/kill_runs.py), at a point chosen per trainer: mid-epoch, or between two files of one checkpoint (for
VLP and DPT between two module saves). Re-running the same command must resume from the last committed
checkpoint and end in a final state (every module's weights, optimiser and scheduler state, the RNG states,
the trainer-owned state such as DCAR's sampler) equal bit for bit to an uninterrupted run's.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import HAS_DASSL, ROOT, TINY_OVERRIDES, run_train
from fake_fdrd import make_fake_fdrd

pytestmark = [pytest.mark.dassl, pytest.mark.skipif(not HAS_DASSL, reason="Dassl is not installed")]

# trainer -> (recipe, extra overrides, kill point): every trainer that registers a learnable module
TRAINERS = {
    "CoOp": ("fdrd_vit_b32", ("TRAINER.COOP.N_CTX", "2"), "step"),
    "CLIPAdapter": ("fdrd_vit_b32", (), "save"),
    "MaPLe": ("fdrd_vit_b32", ("TRAINER.MAPLE.PROMPT_DEPTH", "2"), "step"),
    "VPT": ("vit_b32", ("TRAINER.VPT.N_CTX", "2"), "save"),
    "VLP": ("vit_b32", ("TRAINER.COOP.N_CTX", "2", "PRETRAIN.C", "1"), "save"),
    "DPT": ("vit_b32", ("TRAINER.COOP.N_CTX", "2", "PRETRAIN.C", "1", "TRAINER.TOPDOWN_SECOVPT.BOTTOMLIMIT", "2",
                        "TRAINER.SELECTED_COVPT.CPN", "2"), "save"),
    "DCAR": ("vit_b32", ("TRAINER.DCAR.PROMPT_DEPTH", "2"), "step"),
}
KILL_EPOCH = 2
#: registered trainers with nothing to train, hence nothing to resume
NOTHING_TO_TRAIN = {"ZeroshotCLIP"}


def args(root, ckpt, out, trainer):
    recipe, extra, _ = TRAINERS[trainer]
    return ["--root", str(root), "--seed", "1", "--trainer", trainer,
            "--dataset-config-file", "configs/datasets/fdrd_dtd.yaml",
            "--config-file", f"configs/trainers/{trainer}/{recipe}.yaml", "--output-dir", str(out),
            "MODEL.BACKBONE.NAME", str(ckpt), *TINY_OVERRIDES, "OPTIM.MAX_EPOCH", "2", "TRAIN.CHECKPOINT_FREQ", "1",
            "TEST.NO_TEST", "True", "DATASET.NUM_SHOTS", "3", *extra]


def assert_same(a, b, where: str) -> int:
    """Recursively equal, tensors bit for bit; returns the number of tensors compared."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), f"{where} differs"
        return 1
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys {sorted(a)} vs {sorted(b)}"
        return sum(assert_same(a[k], b[k], f"{where}.{k}") for k in a)
    if isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        return sum(assert_same(x, y, f"{where}[{i}]") for i, (x, y) in enumerate(zip(a, b)))
    assert a == b, f"{where}: {a!r} vs {b!r}"
    return 0


def final_state(out) -> dict:
    commit = json.loads((out / "last_checkpoint.json").read_text())
    assert commit["epoch"] == 2
    return {name: torch.load(out / entry["path"], weights_only=True) for name, entry in commit["files"].items()}


@pytest.fixture(scope="module")
def killed_runs(tmp_path_factory, tiny_clip_state_dict_path):
    """Data, then every trainer's run killed once (one driver process for all of them)."""
    root = tmp_path_factory.mktemp("kill_data")
    make_fake_fdrd(root, domain="dtd", classes=3, train_per_class=4, test_per_class=2, fmt="A")
    runs = tmp_path_factory.mktemp("kill_runs")
    spec = [{"argv": args(root, tiny_clip_state_dict_path, runs / trainer, trainer), "kill": kill,
             "epoch": KILL_EPOCH, "threads": torch.get_num_threads()}
            for trainer, (_, _, kill) in TRAINERS.items()]
    (runs / "spec.json").write_text(json.dumps(spec))
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "kill_runs.py"), str(runs / "spec.json")], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    signals = json.loads(proc.stdout.strip().splitlines()[-1])
    return root, runs, dict(zip(TRAINERS, signals))


def test_every_registered_trainer_is_covered():
    from trainers import registered_trainers

    assert set(TRAINERS) == set(registered_trainers()) - NOTHING_TO_TRAIN


@pytest.mark.parametrize("trainer", list(TRAINERS))
def test_sigkilled_run_resumes_bit_identically(killed_runs, tiny_clip_state_dict_path, tmp_path, trainer):
    root, runs, signals = killed_runs
    killed = runs / trainer
    assert signals[trainer] == 9, "the run was not killed at the chosen point"
    commit = json.loads((killed / "last_checkpoint.json").read_text())
    assert commit["epoch"] == KILL_EPOCH - 1  # the interrupted epoch was never committed
    if TRAINERS[trainer][2] == "save":  # killed inside the save: part of epoch 2's files exist, uncommitted
        written = [p for p in killed.glob(f"*/model.pth.tar-{KILL_EPOCH}")]
        assert len(written) == 1 and len(commit["files"]) > 1

    committed = {path: path.stat().st_mtime_ns for path in killed.glob(f"*/model.pth.tar-{KILL_EPOCH - 1}")}
    run_train(*args(root, tiny_clip_state_dict_path, killed, trainer))
    # resumed, not restarted: the committed epoch (saved every epoch) was not trained and written again
    assert committed and {path: path.stat().st_mtime_ns for path in killed.glob(f"*/model.pth.tar-{KILL_EPOCH - 1}")} \
        == committed
    run_train(*args(root, tiny_clip_state_dict_path, tmp_path / "uninterrupted", trainer))

    reference, state = final_state(tmp_path / "uninterrupted"), final_state(killed)
    compared = assert_same(reference, state, trainer)
    assert compared >= 4  # weights, optimiser state, RNG states at least
    if trainer == "DCAR":
        assert "negatives._rng" in state["trainer_state"]["trainer_state"]
