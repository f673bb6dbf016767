"""The shell entry points. Every script forwards trailing KEY VALUE overrides to train.py, last (so they win),
through the shared seed loop and its folder layout; a fake ``$PYTHON`` records each train.py call, so all
scripts are checked in seconds. One real run: DCAR over several FDRD domains skips a domain without captions,
goes on, lists what it skipped, and a second call skips finished runs."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest
from conftest import HAS_DASSL, ROOT
from fake_fdrd import make_fake_fdrd

from tools.results import parse_run_path

# A stand-in for python: train.py calls are recorded (and write a results.json with the epochs the run would
# train), everything else (the scripts' `python -c` helpers) runs on the real interpreter.
FAKE_PYTHON = f"""#!{sys.executable}
import json, os, sys
args = sys.argv[1:]
if not args or args[0] != "train.py":
    os.execv({sys.executable!r}, [{sys.executable!r}, *args])
with open(os.environ["FAKE_TRAIN_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
out = args[args.index("--output-dir") + 1]
opts = args[args.index("DATASET.NUM_SHOTS"):]
epochs = int(opts[opts.index("OPTIM.MAX_EPOCH") + 1]) if "OPTIM.MAX_EPOCH" in opts[::2] else 7
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "results.json"), "w") as handle:
    json.dump({{"epochs": 0 if "--eval-only" in args else epochs}}, handle)
"""

OVERRIDES = ["OPTIM.MAX_EPOCH", "3", "TRAIN.PRINT_FREQ", "7"]

# script -> (positional arguments, extra environment, (dataset, trainer, folder) of its first train.py call)
SCRIPTS = {
    "clip_adapter/main.sh": (["fdrd_dtd", "16"], {}, ("fdrd_dtd", "CLIPAdapter", "fdrd_vit_b32_16shots")),
    "coop/main.sh": (["oxford_pets", "vit_b16", "end", "16", "16", "False"], {},
                     ("oxford_pets", "CoOp", "vit_b16_16shots/nctx16_cscFalse_ctpend")),
    "coop_retrieval/main.sh": (["fdrd_dtd", "16"], {}, ("fdrd_dtd", "CoOp", "fdrd_vit_b32_16shots")),
    "dcar/main.sh": (["fdrd_dtd", "16"], {}, ("fdrd_dtd", "DCAR", "vit_b32_16shots")),
    "dcar/ablation.sh": (["fdrd_dtd", "16"], {}, ("fdrd_dtd", "DCAR", "vit_b32_16shots/full")),
    "dpt/main.sh": (["oxford_pets", "16"], {}, ("oxford_pets", "DPT", "vit_b32_16shots")),
    "dpt/fewshot_all.sh": ([], {"DATASETS": "dtd", "SHOT_COUNTS": "1 2"}, ("dtd", "DPT", "vit_b32_1shots")),
    "dpt/dg.sh": ([], {}, ("imagenet", "DPT", "vit_b32_16shots")),
    "maple/main.sh": (["fdrd_dtd", "16"], {}, ("fdrd_dtd", "MaPLe", "fdrd_vit_b32_16shots")),
    "vlp/main.sh": (["oxford_pets", "16"], {}, ("oxford_pets", "VLP", "vit_b32_16shots")),
    "vpt/main.sh": (["oxford_pets", "16"], {}, ("oxford_pets", "VPT", "vit_b32_16shots")),
    "zsclip/zeroshot.sh": (["oxford_pets", "vit_b16"], {}, ("oxford_pets", "ZeroshotCLIP", "vit_b16_0shots")),
    "zsclip_retrieval/main.sh": (["fdrd_dtd"], {}, ("fdrd_dtd", "ZeroshotCLIP", "vit_b32_0shots")),
    # the protocols (tests/test_protocols.py checks what each of their calls is); a dataset may carry the
    # protocol's folders before it
    "coop/base2new.sh": (["oxford_pets"], {}, ("base2new/train_base/oxford_pets", "CoOp", "vit_b16_16shots")),
    "maple/base2new.sh": (["oxford_pets"], {}, ("base2new/train_base/oxford_pets", "MaPLe",
                                                "vit_b16_c2_ep5_batch4_2ctx_16shots")),
    "clip_adapter/base2new.sh": (["fdrd_dtd"], {}, ("base2new/train_base/fdrd_dtd", "CLIPAdapter",
                                                    "fdrd_vit_b32_16shots")),
    "vpt/base2new.sh": (["oxford_pets"], {}, ("base2new/train_base/oxford_pets", "VPT", "vit_b32_16shots")),
    "vlp/base2new.sh": (["oxford_pets"], {}, ("base2new/train_base/oxford_pets", "VLP", "vit_b32_16shots")),
    "dpt/base2new.sh": (["oxford_pets"], {}, ("base2new/train_base/oxford_pets", "DPT", "vit_b32_16shots")),
    "dcar/base2new.sh": (["fdrd_dtd"], {}, ("base2new/train_base/fdrd_dtd", "DCAR", "vit_b32_16shots")),
    "zsclip/base2new.sh": (["oxford_pets"], {}, ("base2new/test_base/oxford_pets", "ZeroshotCLIP", "vit_b16_0shots")),
    "transfer/cross_dataset.sh": (["CoOp"], {"TARGETS": "dtd"}, ("imagenet", "CoOp", "vit_b16_16shots")),
    "transfer/cross_domain.sh": (["DCAR", "fdrd_dtd"], {"FDRD_DOMAINS": "fdrd_dtd fdrd_ucf101"},
                                 ("fdrd_dtd", "DCAR", "vit_b32_16shots")),
}
#: scripts whose runs add their own keys after the user's: an ablation row is the recipe with the user's overrides,
#: then the row's change (its TRAINER.DCAR keys must win, or the row would not be that row)
ROW_KEYS_LAST = {"dcar/ablation.sh": "TRAINER.DCAR."}


@pytest.fixture()
def work(tmp_path: Path) -> Path:
    """A copy of the repository's entry points whose output/ lands in a temporary folder."""
    work = tmp_path / "work"
    work.mkdir()
    for name in ("train.py", "trainers", "datasets", "configs", "scripts", "tools"):
        os.symlink(ROOT / name, work / name)
    fake = tmp_path / "fake_python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    return work


def run_script(work: Path, script: str, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, list[list]]:
    log = work.parent / "train_calls.jsonl"
    log.unlink(missing_ok=True)
    environment = {**os.environ, "PYTHON": str(work.parent / "fake_python"), "FAKE_TRAIN_LOG": str(log),
                   "SEEDS": "1", **env}
    proc = subprocess.run(["bash", f"scripts/{script}", *args], cwd=work, env=environment, capture_output=True,
                          text=True, timeout=120)
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return proc, calls


def option(call: list[str], name: str) -> str:
    return call[call.index(name) + 1]


def test_every_script_is_covered():
    found = {str(path.relative_to(ROOT / "scripts")) for path in (ROOT / "scripts").glob("*/*.sh")}
    assert found - {"lib/run_seeds.sh", "lib/base2new.sh"} == set(SCRIPTS)  # the libraries: through their callers


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_script_forwards_overrides_last_to_every_run(work: Path, script: str):
    args, env, (dataset, trainer, folder) = SCRIPTS[script]
    proc, calls = run_script(work, script, *args, *OVERRIDES, **env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert calls, f"{script} started no train.py"
    for call in calls:
        tail = call
        if script in ROW_KEYS_LAST:  # strip the row's own keys, which follow the user's
            while len(tail) > 2 and tail[-2].startswith(ROW_KEYS_LAST[script]):
                tail = tail[:-2]
        assert tail[-len(OVERRIDES):] == OVERRIDES  # after the script's own settings: the user's win
    first = calls[0]
    assert option(first, "--output-dir") == f"output/{dataset}/{trainer}/{folder}/seed1"
    assert option(first, "--trainer") == trainer and option(first, "--seed") == "1"
    info = parse_run_path(PurePosixPath(option(first, "--output-dir")).relative_to("output"))
    assert (info.seed, info.dataset, info.trainer) == (1, dataset.rsplit("/", 1)[-1], trainer)  # parse_results' view


def test_zero_shot_script_uses_the_seed_layout_and_evaluates_only(work: Path):
    proc, (call,) = run_script(work, "zsclip/zeroshot.sh", "oxford_pets", "vit_b16")
    assert proc.returncode == 0 and "--eval-only" in call and option(call, "DATASET.NUM_SHOTS") == "0"
    assert option(call, "--config-file") == "configs/trainers/ZeroshotCLIP/vit_b16.yaml"


def test_folder_names_say_which_backbone_and_shots_ran(work: Path):
    def folder(*overrides: str) -> str:
        shutil.rmtree(work / "output", ignore_errors=True)  # else the fake's results.json skips the next run
        proc, calls = run_script(work, "dcar/main.sh", "fdrd_dtd", "16", *overrides)
        assert proc.returncode == 0, proc.stderr
        return option(calls[0], "--output-dir")

    assert folder() == "output/fdrd_dtd/DCAR/vit_b32_16shots/seed1"
    assert folder("MODEL.BACKBONE.NAME", "ViT-B/32") == "output/fdrd_dtd/DCAR/vit_b32_16shots/seed1"  # the recipe's
    assert folder("MODEL.BACKBONE.NAME", "ViT-B/16") == "output/fdrd_dtd/DCAR/vit_b32@vit_b16_16shots/seed1"
    assert folder("MODEL.BACKBONE.NAME", "/weights/tiny_clip.pt") == \
        "output/fdrd_dtd/DCAR/vit_b32@tiny_clip_16shots/seed1"
    assert folder("DATASET.NUM_SHOTS", "4") == "output/fdrd_dtd/DCAR/vit_b32_4shots/seed1"
    shutil.rmtree(work / "output")
    proc, (call,) = run_script(work, "dcar/main.sh", "fdrd_dtd", "all")
    assert option(call, "--output-dir").endswith("vit_b32_allshots/seed1") and option(call, "DATASET.NUM_SHOTS") == "-1"
    assert parse_run_path(PurePosixPath("fdrd_dtd/DCAR/vit_b32_allshots/seed1")).num_shots == -1


def test_domain_generalisation_evaluates_at_the_trained_epoch(work: Path):
    proc, calls = run_script(work, "dpt/dg.sh", *OVERRIDES)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    train, *evaluations = calls
    # ImageNet's shorter warm-up is the DPT trainer's rule (TRAINER.DPT.IMAGENET_WARMUP_EPOCH), not the script's
    assert "--eval-only" not in train and "OPTIM.WARMUP_EPOCH" not in train
    assert [option(c, "--output-dir") for c in evaluations] == [
        f"output/evaluation/DPT/vit_b32_16shots/{target}/seed1"
        for target in ("imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r")]
    for call in evaluations:
        assert "--eval-only" in call and option(call, "--model-dir") == "output/imagenet/DPT/vit_b32_16shots/seed1"
        assert option(call, "--load-epoch") == "3"  # OPTIM.MAX_EPOCH 3, read back from the trained run


def test_bad_overrides_and_arguments_stop_before_any_run(work: Path):
    proc, calls = run_script(work, "dcar/main.sh", "fdrd_dtd", "16", "OPTIM.MAX_EPOCH")
    assert proc.returncode == 2 and "KEY VALUE pairs" in proc.stderr and not calls
    proc, calls = run_script(work, "dcar/main.sh", "fdrd_dtd")
    assert proc.returncode == 2 and "needs TRAINER CFG DATASET SHOTS" in proc.stderr and not calls
    proc, calls = run_script(work, "dcar/main.sh", "fdrd_dtd", "16", CFG="no_such_recipe")
    assert proc.returncode == 2 and "no recipe configs/trainers/DCAR/no_such_recipe.yaml" in proc.stderr
    assert "vit_b32" in proc.stderr and not calls
    proc, calls = run_script(work, "dcar/main.sh", "fdrd_dtd", "sixteen")
    assert proc.returncode == 2 and "SHOTS must be" in proc.stderr and not calls


@pytest.mark.dassl
@pytest.mark.skipif(not HAS_DASSL, reason="Dassl is not installed")
def test_dcar_main_skips_missing_domains_and_reports_them(tmp_path, work, tiny_clip_state_dict_path):
    make_fake_fdrd(tmp_path / "data", domain="dtd", classes=3, train_per_class=3, test_per_class=2)
    env = {**os.environ, "DATA": str(tmp_path / "data"), "SEEDS": "1", "FDRD_DOMAINS": "fdrd_sun397 fdrd_dtd",
           "PYTHONWARNINGS": "ignore", "PYTHON": sys.executable}
    overrides = ["MODEL.BACKBONE.NAME", str(tiny_clip_state_dict_path), "INPUT.SIZE", "(32, 32)",
                 "DATALOADER.NUM_WORKERS", "0", "OPTIM.MAX_EPOCH", "1", "TRAINER.DCAR.PROMPT_DEPTH", "2",
                 "USE_CUDA", "False"]
    proc = subprocess.run(["bash", "scripts/dcar/main.sh", "fdrd", "1", *overrides], cwd=work, env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 1
    assert "Skipped or failed (1):" in proc.stdout and "fdrd_sun397 (seed 1): error:" in proc.stdout
    run = work / "output/fdrd_dtd/DCAR/vit_b32@tiny_clip_state_dict_1shots/seed1"
    assert json.loads((run / "results.json").read_text())["architecture"].startswith("custom ViT")
    again = subprocess.run(["bash", "scripts/dcar/main.sh", "fdrd_dtd", "1", *overrides], cwd=work, env=env,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "so skip this job" in again.stdout
