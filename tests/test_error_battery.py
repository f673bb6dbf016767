"""The error battery: bad inputs and faults a real user meets, each through train.py (or the tool's CLI).

Every case asserts the exit code, that no traceback is printed, and that the message names the culprit (the
file, key, tensor or folder) and what to do. Runs are in-process and tiny; only what needs data gets data.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal

import pytest
import torch
from conftest import HAS_DASSL, TINY_OVERRIDES, run_train
from fake_coop_data import make_split_dataset
from fake_fdrd import make_fake_fdrd

pytestmark = [pytest.mark.dassl, pytest.mark.skipif(not HAS_DASSL, reason="Dassl is not installed")]

CLASSES = ["abyssinian", "beagle", "sphynx"]
SPLIT = "split_zhou_OxfordPets.json"


def fails(proc, *needles: str, code: int = 2) -> str:
    """The run ended with ``code``, no traceback, and one message (on stderr) containing every needle."""
    assert proc.returncode == code, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr[-3000:]
    for needle in needles:
        assert needle in proc.stderr, f"{needle!r} not in: {proc.stderr}"
    return proc.stderr


@pytest.fixture(scope="module")
def pets(tmp_path_factory):
    root = tmp_path_factory.mktemp("pets")
    make_split_dataset(root, "oxford_pets", "images", SPLIT, CLASSES, counts=(4, 2, 2))
    return root


@pytest.fixture(scope="module")
def ckpt(tiny_clip_state_dict_path):
    return tiny_clip_state_dict_path


def coop(root, ckpt, out, *extra, trainer="CoOp", config="CoOp/vit_b32", flags=()):
    """train.py's arguments: ``flags`` (--eval-only, ...) before the KEY VALUE overrides, which end the line."""
    return ("--root", str(root), "--seed", "1", "--trainer", trainer,
            "--dataset-config-file", "configs/datasets/oxford_pets.yaml",
            "--config-file", f"configs/trainers/{config}.yaml", "--output-dir", str(out), *flags,
            "MODEL.BACKBONE.NAME", str(ckpt), *TINY_OVERRIDES, "OPTIM.MAX_EPOCH", "1", "TRAINER.COOP.N_CTX", "2",
            "TRAINER.COOP.PREC", "fp32", "TRAIN.CHECKPOINT_FREQ", "1", *extra)


def copy_data(src, dst):
    shutil.copytree(src, dst)
    return dst


# ---- configs ---------------------------------------------------------------------------------------
def test_config_file_errors(pets, ckpt, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("OPTIM:\n  LR: [0.1\n")
    fails(run_train("--config-file", str(bad), check=False), str(bad), "not valid YAML", "line 3")
    bad.write_text("OPTIM:\n  MAX_EPOCH: ten\n")
    fails(run_train("--config-file", str(bad), check=False), str(bad), "OPTIM.MAX_EPOCH must be a int", "'ten'")
    bad.write_text("OPTIM:\n  MAX_EPOHC: 3\n")
    fails(run_train("--config-file", str(bad), check=False), "unknown config key OPTIM.MAX_EPOHC",
          "Did you mean OPTIM.MAX_EPOCH")
    fails(run_train("--config-file", "configs/trainers/CoOp", check=False), "configs/trainers/CoOp is a folder")
    fails(run_train("--config-file", str(tmp_path / "none.yaml"), check=False), "none.yaml does not exist")


@pytest.mark.parametrize("extra, needles", [
    (("TRAINER.COOP.N_CTXX", "4"), ("unknown config key TRAINER.COOP.N_CTXX", "Did you mean TRAINER.COOP.N_CTX")),
    (("OPTIM.LR",), ("KEY VALUE pairs", "'OPTIM.LR' has no value")),
    (("OPTIM.LR", "0.1", "--eval-only"), ("--eval-only comes after the KEY VALUE overrides",)),
    (("OPTIM.MAX_EPOCH", "many"), ("OPTIM.MAX_EPOCH must be a int", "'many'")),
    (("DATASET.NAME", "OxfordPetz"), ("Unknown dataset DATASET.NAME='OxfordPetz'", "OxfordPets")),
    (("OPTIM.NAME", "adamz"), ("OPTIM.NAME must be one of", "'adamz'")),
    (("DATALOADER.TRAIN_X.BATCH_SIZE", "0"), ("DATALOADER.TRAIN_X.BATCH_SIZE must be a positive integer",)),
    (("OPTIM.LR_SCHEDULER", "cosin"), ("OPTIM.LR_SCHEDULER must be one of", "'cosin'")),
    (("TRAINER.COOP.PREC", "fp8"), ("PREC must be one of", "'fp8'")),
    (("--trainer", "MaPLe", "TRAINER.MAPLE.PROMPT_DEPTH", "9"), ("MaPLe on backbone", "PROMPT_DEPTH must be between 1 "
                                                                 "and 2", "TRAINER.MAPLE")),
    (("--trainer", "CLIPAdapter", "TRAINER.CLIP_ADAPTER.REDUCTION", "0"), ("REDUCTION (0) must be a positive divisor",
                                                                           "TRAINER.CLIP_ADAPTER")),
    (("INPUT.SIZE", "(48, 48)"), ("INPUT.SIZE (48, 48) does not fit the backbone", "takes 32x32 images")),
    (("TEST.SPLIT", "vall"), ("TEST.SPLIT must be one of ('val', 'test'), got 'vall'",)),
])
def test_config_values_fail_before_the_dataset_is_built(pets, ckpt, tmp_path, extra, needles):
    args = list(coop(pets, ckpt, tmp_path / "out"))
    if extra[0] == "--trainer":
        trainer, extra = extra[1], extra[2:]
        args[args.index("--trainer") + 1] = trainer
        args[args.index("--config-file") + 1] = {"MaPLe": "configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml",
                                                 "CLIPAdapter": "configs/trainers/CLIPAdapter/vit_b32.yaml"}[trainer]
    proc = run_train(*args, *extra, check=False)
    fails(proc, *needles)
    assert "Reading split" not in proc.stdout  # found before any data was read


def test_dcar_coupling_name_fails_fast(tmp_path, ckpt):
    proc = run_train("--root", str(tmp_path), "--trainer", "DCAR", "--dataset-config-file",
                     "configs/datasets/fdrd_dtd.yaml", "--config-file", "configs/trainers/DCAR/vit_b32.yaml",
                     "--output-dir", str(tmp_path / "out"), "MODEL.BACKBONE.NAME", str(ckpt), *TINY_OVERRIDES,
                     "TRAINER.DCAR.PROMPT_DEPTH", "2", "TRAINER.DCAR.COUPLING", "linaer", check=False)
    fails(proc, "TRAINER.DCAR.COUPLING must be one of", "'linaer'")  # the data folder is empty: not reached


@pytest.mark.parametrize("key, value, needle", [
    ("DTR_FLOOR", "3.0", "need 0 < DTR_FLOOR <= DTR_CEIL, got 3.0 and 2.0"),
    ("DTR_NORM", "meen", "TRAINER.DCAR.DTR_NORM must be mean or none, got 'meen'"),
    ("NUM_CATEGORY_NEG", "-1", "TRAINER.DCAR.NUM_CATEGORY_NEG must be >= 0, got -1"),
])
def test_dcar_component_values_fail_fast(tmp_path, ckpt, key, value, needle):
    """Values the DCAR components would reject with a ValueError after the dataset is built."""
    proc = run_train("--root", str(tmp_path), "--trainer", "DCAR", "--dataset-config-file",
                     "configs/datasets/fdrd_dtd.yaml", "--config-file", "configs/trainers/DCAR/vit_b32.yaml",
                     "--output-dir", str(tmp_path / "out"), "MODEL.BACKBONE.NAME", str(ckpt), *TINY_OVERRIDES,
                     "TRAINER.DCAR.PROMPT_DEPTH", "2", f"TRAINER.DCAR.{key}", value, check=False)
    fails(proc, needle)  # the data folder is empty: not reached


@pytest.mark.parametrize("trainer, config, key, value", [
    ("CoOp", "CoOp/vit_b32", "TRAINER.COOP.N_CTX", "-1"),  # a torch error on a negative shape
    ("CoOp", "CoOp/vit_b32", "TRAINER.COOP.N_CTX", "0"),   # trained nothing, silently
    ("MaPLe", "MaPLe/vit_b16_c2_ep5_batch4_2ctx", "TRAINER.MAPLE.N_CTX", "0"),
    ("VPT", "VPT/vit_b32", "TRAINER.VPT.N_CTX", "0"),
    ("VLP", "VLP/vit_b32", "TRAINER.VPT.N_CTX", "-1"),  # 0 disables VPT in VLP/DPT; -1 did too, silently
])
def test_prompt_lengths_out_of_range(pets, ckpt, tmp_path, trainer, config, key, value):
    args = list(coop(pets, ckpt, tmp_path / "out", "TRAINER.MAPLE.PROMPT_DEPTH", "2", key, value))
    args[args.index("--trainer") + 1] = trainer
    args[args.index("--config-file") + 1] = f"configs/trainers/{config}.yaml"
    proc = run_train(*args, check=False)
    fails(proc, f"{key} must be at least {0 if value == '-1' and 'VPT' in key else 1}, got {value}")
    assert "Reading split" not in proc.stdout


@pytest.mark.parametrize("trainer, extra", [("VLP", ()), ("DPT", ("TRAINER.TOPDOWN_SECOVPT.BOTTOMLIMIT", "2"))])
def test_vlp_dpt_refuse_a_class_token_position_they_do_not_implement(pets, ckpt, tmp_path, trainer, extra):
    args = list(coop(pets, ckpt, tmp_path / "out", *extra, "TRAINER.COOP.CLASS_TOKEN_POSITION", "middle"))
    args[args.index("--trainer") + 1] = trainer
    args[args.index("--config-file") + 1] = f"configs/trainers/{trainer}/vit_b32.yaml"
    proc = run_train(*args, check=False)
    fails(proc, f"{trainer} puts the class name at the end", "TRAINER.COOP.CLASS_TOKEN_POSITION 'middle'")
    assert "Reading split" not in proc.stdout


# ---- split files and images --------------------------------------------------------------------------
@pytest.mark.parametrize("content, needles", [
    ('{"train": [["class_000/train_0.jpg", 0, "abyssinian"]', ("is not valid JSON", "truncated")),
    ('{"train": [["class_000/train_0.jpg", 0]], "val": [], "test": []}', ("train row 0", "[relative path, integer")),
    ('{"train": [["class_000/train_0.jpg", "cat", "abyssinian"]], "val": [], "test": []}', ("label 'cat'",)),
])
def test_split_file_errors(pets, ckpt, tmp_path, content, needles):
    root = copy_data(pets, tmp_path / "data")
    (root / "oxford_pets" / SPLIT).write_text(content)
    fails(run_train(*coop(root, ckpt, tmp_path / "out"), check=False), str(root / "oxford_pets" / SPLIT), *needles)


def test_corrupt_image_mid_training_names_file_and_split(pets, ckpt, tmp_path):
    root = copy_data(pets, tmp_path / "data")
    broken = root / "oxford_pets" / "images" / "class_001" / "train_2.jpg"
    broken.write_bytes(b"")
    fails(run_train(*coop(root, ckpt, tmp_path / "out", "DATASET.NUM_SHOTS", "-1"), check=False),
          f"The train image {broken} cannot be read", "DATASET.VERIFY_IMAGES")
    proc = run_train(*coop(root, ckpt, tmp_path / "out2", "DATASET.NUM_SHOTS", "-1", "DATASET.VERIFY_IMAGES", "True"),
                     check=False)
    fails(proc, f"1 of 24 images cannot be read: {broken} (train split")
    assert "Building CoOp" not in proc.stdout  # found at dataset build, before the model


def test_truncated_image_at_test_time_names_file_and_split(pets, ckpt, tmp_path):
    root = copy_data(pets, tmp_path / "data")
    broken = root / "oxford_pets" / "images" / "class_002" / "test_1.jpg"
    good = broken.read_bytes()
    broken.write_bytes(good[: len(good) // 2])
    proc = run_train(*coop(root, ckpt, tmp_path / "out", "TEST.FEATURE_CACHE", "False", trainer="ZeroshotCLIP",
                           config="ZeroshotCLIP/vit_b32", flags=("--eval-only",)), check=False)
    fails(proc, f"The test image {broken} cannot be read")


def test_error_raised_in_a_dataloader_worker_keeps_only_its_message():
    """PyTorch re-raises a worker's exception with the worker's traceback as its text; the boundary strips it."""
    from trainers.errors import ImageReadError, user_message

    class Broken(torch.utils.data.Dataset):
        def __len__(self):
            return 1

        def __getitem__(self, index):
            raise ImageReadError("The train image /data/x.jpg cannot be read (OSError: truncated)")

    with pytest.raises(ImageReadError) as error:
        next(iter(torch.utils.data.DataLoader(Broken(), num_workers=1)))
    assert "Traceback" in str(error.value)
    assert user_message(error.value) == "The train image /data/x.jpg cannot be read (OSError: truncated)"


def test_fdrd_caption_file_not_utf8_and_number_caption(tmp_path, ckpt):
    made = make_fake_fdrd(tmp_path / "fdrd_data", domain="dtd", classes=2, train_per_class=2, test_per_class=1)

    def run():
        return run_train("--root", str(made["root"]), "--trainer", "CoOp", "--dataset-config-file",
                         "configs/datasets/fdrd_dtd.yaml", "--config-file", "configs/trainers/CoOp/fdrd_vit_b32.yaml",
                         "--output-dir", str(tmp_path / "out"), "MODEL.BACKBONE.NAME", str(ckpt), *TINY_OVERRIDES,
                         "TRAINER.COOP.N_CTX", "2", check=False)

    text = made["train_json"].read_text()
    made["train_json"].write_bytes(text.replace("This is", "Voil\u00e0", 1).encode("latin-1"))
    fails(run(), str(made["train_json"]), "is not UTF-8 text")
    entries = json.loads(text)
    next(iter(entries.values()))["positive"] = 42
    made["train_json"].write_text(json.dumps(entries))
    fails(run(), str(made["train_json"]), "that is a int (42), not text")


# ---- checkpoints ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(pets, ckpt, tmp_path_factory):
    """A finished 1-epoch CoOp run with class-specific context (its shape depends on the class count)."""
    out = tmp_path_factory.mktemp("trained") / "coop"
    run_train(*coop(pets, ckpt, out, "TRAINER.COOP.CSC", "True", "TEST.NO_TEST", "True"))
    return out


def evaluate(root, ckpt, out, model_dir, *extra, trainer="CoOp", config="CoOp/vit_b32"):
    flags = ("--eval-only", "--model-dir", str(model_dir), "--load-epoch", "1") if model_dir else ("--eval-only",)
    return run_train(*coop(root, ckpt, out, "TRAINER.COOP.CSC", "True", *extra, trainer=trainer, config=config,
                           flags=flags), check=False)


def test_eval_only_model_dir_and_epoch(pets, ckpt, trained, tmp_path):
    fails(evaluate(pets, ckpt, tmp_path / "a", tmp_path / "nowhere"), f"--model-dir {tmp_path / 'nowhere'} does not exist")
    proc = evaluate(pets, ckpt, tmp_path / "b", None)
    fails(proc, "CoOp has learnable parameters; pass --model-dir")
    assert "Reading split" not in proc.stdout  # found before any data was read
    proc = run_train(*coop(pets, ckpt, tmp_path / "c", "TRAINER.COOP.CSC", "True",
                           flags=("--eval-only", "--model-dir", str(trained), "--load-epoch", "7")), check=False)
    fails(proc, str(trained / "prompt_learner" / "model.pth.tar-7"), "available epochs: [1]")
    assert evaluate(pets, ckpt, tmp_path / "d", trained).returncode == 0


@pytest.mark.parametrize("damage, needles", [
    (lambda b: b[: len(b) // 2], ("is a truncated zip archive", "an interrupted copy")),
    (lambda b: os.urandom(len(b)), ("is not a PyTorch file",)),
])
def test_unreadable_checkpoint_is_not_called_pickled_objects(pets, ckpt, trained, tmp_path, damage, needles):
    model_dir = copy_data(trained, tmp_path / "model")
    path = model_dir / "prompt_learner" / "model.pth.tar-1"
    path.write_bytes(damage(path.read_bytes()))
    message = fails(evaluate(pets, ckpt, tmp_path / "out", model_dir), str(path), *needles)
    assert "Python objects" not in message


def test_checkpoint_of_another_trainer_or_class_count(pets, ckpt, trained, tmp_path):
    fails(evaluate(pets, ckpt, tmp_path / "vpt", trained, trainer="VPT", config="VPT/vit_b32"),
          f"{trained} holds checkpoints of trainer CoOp, not VPT")
    four = tmp_path / "four"
    make_split_dataset(four, "oxford_pets", "images", SPLIT, CLASSES + ["pug"], counts=(4, 2, 2))
    fails(evaluate(four, ckpt, tmp_path / "out", trained), "tensor 'ctx' has shape (3, 2, 64) in the checkpoint but "
                                                          "(4, 2, 64) in this model")


def test_pickled_objects_need_the_opt_in(pets, ckpt, trained, tmp_path):
    import numpy as np

    model_dir = copy_data(trained, tmp_path / "model")
    path = model_dir / "prompt_learner" / "model.pth.tar-1"
    state = torch.load(path, weights_only=True)
    torch.save({**state, "val_result": np.float64(0.5)}, path)  # what upstream Dassl stores
    fails(evaluate(pets, ckpt, tmp_path / "a", model_dir), str(path), "stores Python objects",
          "MODEL.ALLOW_UNSAFE_LOAD True")
    proc = evaluate(pets, ckpt, tmp_path / "b", model_dir, "MODEL.ALLOW_UNSAFE_LOAD", "True")
    assert proc.returncode == 0 and "weights_only=False) because MODEL.ALLOW_UNSAFE_LOAD is True" in proc.stdout


def test_resume_marker_naming_a_missing_or_foreign_file(pets, ckpt, trained, tmp_path):
    missing = copy_data(trained, tmp_path / "missing")
    (missing / "trainer_state" / "model.pth.tar-1").unlink()
    fails(run_train(*coop(pets, ckpt, missing), "TRAINER.COOP.CSC", "True", check=False),
          f"names {missing / 'trainer_state' / 'model.pth.tar-1'} (epoch 1), which is missing")
    foreign = copy_data(trained, tmp_path / "foreign")
    shutil.copy(foreign / "prompt_learner" / "model.pth.tar-1", foreign / "trainer_state" / "model.pth.tar-1")
    fails(run_train(*coop(pets, ckpt, foreign), "TRAINER.COOP.CSC", "True", check=False),
          f"{foreign / 'trainer_state' / 'model.pth.tar-1'} is not the file the resume marker")
    other = copy_data(trained, tmp_path / "other")
    fails(run_train(*coop(pets, ckpt, other, trainer="VPT", config="VPT/vit_b32"), check=False),
          f"{other} holds a checkpoint of trainer CoOp (epoch 1); this run is VPT")


def test_resume_from_a_folder_without_checkpoint_is_refused(pets, ckpt, tmp_path):
    """--resume names a folder to resume from: finding nothing there is not a fresh start."""
    (tmp_path / "empty").mkdir()
    for folder in (tmp_path / "empty", tmp_path / "nowhere"):
        proc = run_train(*coop(pets, ckpt, tmp_path / "out", flags=("--resume", str(folder))), check=False)
        fails(proc, f"--resume {folder} holds no checkpoint")


def test_mixed_legacy_checkpoint_is_refused(tmp_path):
    """Output folders of older versions (one marker per module) resume only if all modules agree."""
    from trainers.engine.checkpoint import legacy_commit
    from trainers.errors import CheckpointError

    for name, epoch in (("prompt_learner", 3), ("ctx_learner", 2)):
        (tmp_path / name).mkdir()
        (tmp_path / name / f"model.pth.tar-{epoch}").write_bytes(b"x")
        (tmp_path / name / "checkpoint").write_text(f"model.pth.tar-{epoch}\n")
    with pytest.raises(CheckpointError, match="mixed checkpoint.*prompt_learner: epoch 3, ctx_learner: epoch 2"):
        legacy_commit(tmp_path, ["prompt_learner", "ctx_learner"])
    (tmp_path / "ctx_learner" / "model.pth.tar-3").write_bytes(b"x")
    (tmp_path / "ctx_learner" / "checkpoint").write_text("model.pth.tar-3\n")
    assert legacy_commit(tmp_path, ["prompt_learner", "ctx_learner"]).epoch == 3


def test_backbone_file_that_is_not_a_checkpoint(pets, tmp_path):
    weights = tmp_path / "ViT-B-32.pt"
    weights.write_text("<html>Quota exceeded</html>")
    fails(run_train(*coop(pets, weights, tmp_path / "out"), check=False), str(weights), "is not a PyTorch file")


def test_torchscript_backbone_needs_the_opt_in_through_train_py(pets, tiny_clip_jit_path, tmp_path):
    """OpenAI's original .pt files are TorchScript archives: torch.jit.load runs code stored in them."""
    def evaluate_with(*extra):
        return run_train(*coop(pets, tiny_clip_jit_path, tmp_path / "out", *extra, trainer="ZeroshotCLIP",
                               config="ZeroshotCLIP/vit_b32", flags=("--eval-only",)), check=False)

    fails(evaluate_with(), str(tiny_clip_jit_path), "is a TorchScript archive", "MODEL.ALLOW_UNSAFE_LOAD True")
    proc = evaluate_with("MODEL.ALLOW_UNSAFE_LOAD", "True")
    assert proc.returncode == 0 and "with torch.jit.load because MODEL.ALLOW_UNSAFE_LOAD is True" in proc.stdout


# ---- the output folder ------------------------------------------------------------------------------
def test_output_dir_is_a_file_or_read_only(pets, ckpt, tmp_path, monkeypatch):
    file = tmp_path / "out.txt"
    file.write_text("")
    fails(run_train(*coop(pets, ckpt, file), check=False), f"--output-dir {file} is a file")
    import trainers.engine.output_lock as output_lock

    def read_only(*args, **kwargs):
        raise PermissionError(errno.EROFS, "Read-only file system", args[0])

    monkeypatch.setattr(output_lock.os, "open", read_only)
    fails(run_train(*coop(pets, ckpt, tmp_path / "ro"), check=False), f"Cannot write into --output-dir "
                                                                       f"{tmp_path / 'ro'} (Read-only file system)")


def test_disk_full_says_what_was_saved_and_the_rerun_resumes(pets, ckpt, tmp_path, monkeypatch):
    import trainers.engine.trainer as engine

    save = engine.atomic_torch_save

    def full_at_epoch_2(obj, path):
        if str(path).endswith("-2"):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        save(obj, path)

    monkeypatch.setattr(engine, "atomic_torch_save", full_at_epoch_2)
    out = tmp_path / "out"
    args = coop(pets, ckpt, out, "OPTIM.MAX_EPOCH", "2", "TEST.NO_TEST", "True")
    fails(run_train(*args, check=False), "No space left on the device while writing",
          f"Saved: the checkpoint of epoch 1 in {out}", "re-run the same command to resume from epoch 2")
    monkeypatch.setattr(engine, "atomic_torch_save", save)
    assert "Resumed prompt_learner from epoch 1" in run_train(*args).stdout


def test_second_run_into_the_same_output_dir_is_refused_until_the_first_ends(pets, ckpt, tmp_path):
    from trainers.engine.output_lock import OutputDirLock

    out = tmp_path / "out"
    args = coop(pets, ckpt, out, trainer="ZeroshotCLIP", config="ZeroshotCLIP/vit_b32", flags=("--eval-only",))
    with OutputDirLock(out):
        fails(run_train(*args, check=False), f"Another run is writing into {out}", f"pid {os.getpid()}")
    pid = os.fork()  # a run that takes the lock and is killed: the lock must not stay
    if pid == 0:
        try:
            OutputDirLock(out).acquire()
            os.kill(os.getpid(), signal.SIGKILL)
        finally:
            os._exit(1)
    assert os.WTERMSIG(os.waitpid(pid, 0)[1]) == signal.SIGKILL
    assert run_train(*args, check=False).returncode == 0


def test_ctrl_c_is_one_line_and_exit_130(pets, ckpt, tmp_path, monkeypatch):
    import trainers.engine.trainer as engine

    original = engine.CLIPTrainer.forward_backward

    def interrupt_in_epoch_2(self, batch):
        if self.epoch == 1:
            raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(engine.CLIPTrainer, "forward_backward", interrupt_in_epoch_2)
    proc = run_train(*coop(pets, ckpt, tmp_path / "out", "OPTIM.MAX_EPOCH", "2"), check=False)
    fails(proc, code=130)
    assert proc.stderr.strip().splitlines()[-1] == ("interrupted at epoch 2; re-run the same command to resume (from "
                                                    "the checkpoint of epoch 1)")


def test_sigterm_is_one_line_exit_143_and_the_rerun_resumes(pets, ckpt, tmp_path, monkeypatch):
    """A cluster's time limit (SLURM sends SIGTERM before SIGKILL) or `kill PID`: a real signal to this process."""
    import trainers.engine.trainer as engine

    original = engine.CLIPTrainer.forward_backward

    def terminated_in_epoch_2(self, batch):
        if self.epoch == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, batch)

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(engine.CLIPTrainer, "forward_backward", terminated_in_epoch_2)
    args = coop(pets, ckpt, tmp_path / "out", "OPTIM.MAX_EPOCH", "2", "TEST.NO_TEST", "True")
    proc = run_train(*args, check=False)
    fails(proc, code=143)
    assert proc.stderr.strip().splitlines()[-1] == ("terminated (SIGTERM) at epoch 2; re-run the same command to "
                                                    "resume (from the checkpoint of epoch 1)")
    assert signal.getsignal(signal.SIGTERM) == before  # the handler is the run's only
    monkeypatch.setattr(engine.CLIPTrainer, "forward_backward", original)
    assert "Resumed prompt_learner from epoch 1" in run_train(*args).stdout  # the lock was released


def test_download_split_offline_one_message_no_folder_left(tmp_path, monkeypatch, capsys):
    import gdown
    import requests

    from datasets.__main__ import main

    def offline(**kwargs):
        raise requests.exceptions.ConnectionError("Failed to resolve 'drive.google.com'")

    monkeypatch.setattr(gdown, "download", offline)
    target = tmp_path / "data" / "eurosat"
    assert main(["EuroSAT", str(target / "split_zhou_EuroSAT.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Could not download split_zhou_EuroSAT.json") and "Traceback" not in err
    assert "ConnectionError" in err and str(target / "split_zhou_EuroSAT.json") in err
    assert not (tmp_path / "data").exists()


# ---- what happens is said, not hidden ---------------------------------------------------------------
def test_zero_epochs_and_more_shots_than_images_say_what_happens(pets, ckpt, tmp_path):
    proc = run_train(*coop(pets, ckpt, tmp_path / "a", "OPTIM.MAX_EPOCH", "0"))
    assert "OPTIM.MAX_EPOCH is 0: nothing is trained" in proc.stdout
    assert not (tmp_path / "a" / "last_checkpoint.json").exists()
    record = json.loads((tmp_path / "a" / "results.json").read_text())
    assert record["epochs"] == 0 and record["max_epoch"] == 0  # was "epoch": 1 for an untrained model
    proc = run_train(*coop(pets, ckpt, tmp_path / "b", "DATASET.NUM_SHOTS", "100"))
    assert "DATASET.NUM_SHOTS is 100, but 3 of 3 classes have fewer training images" in proc.stdout
    assert "4 to 4 per class, 12 in all" in proc.stdout
    record = json.loads((tmp_path / "b" / "results.json").read_text())
    assert record["num_shots"] == 100 and record["shots_per_class"] == {"min": 4, "max": 4}
