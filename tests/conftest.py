"""Shared fixtures: tiny CLIP checkpoints built at test time (never downloaded)."""
from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The published FDRD caption files (not redistributed here): FDRD_CAPTIONS=<folder> points at them; the tests
# that read them skip without it.
SHARED_FDRD = Path(os.environ["FDRD_CAPTIONS"]) if os.environ.get("FDRD_CAPTIONS") else None

# The demo assets (the pretrained tiny CLIP takes ~90 s on 2 cores) are built once per machine, like a
# model hub cache; every other cache of the runs started by the tests stays in a temporary folder.
DEMO_ASSETS_DIR = Path(os.environ.get("DEMO_ASSETS_DIR") or Path(
    os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser() / "prompt-clip" / "demo-assets")
# Everything a test session writes to a temp folder (pytest's tmp_path, the runs' caches, temp folders made
# by the code under test or by the subprocesses it starts) lands in one folder, removed when the session ends,
# so the suite leaves nothing in /tmp. KEEP_TEST_TMP=1 keeps it for debugging.
SESSION_TMP = tempfile.mkdtemp(prefix="prompt-clip-tests-")
os.environ["TMPDIR"] = tempfile.tempdir = SESSION_TMP
os.environ["XDG_CACHE_HOME"] = os.path.join(SESSION_TMP, "cache")
HAS_DASSL = importlib.util.find_spec("dassl") is not None

requires_dassl = pytest.mark.skipif(not HAS_DASSL, reason="Dassl is not installed (make install DASSL_SRC=...)")


def _remove_session_tmp() -> None:
    if os.environ.get("KEEP_TEST_TMP") != "1":
        shutil.rmtree(SESSION_TMP, ignore_errors=True)


def pytest_unconfigure(config):
    _remove_session_tmp()


atexit.register(_remove_session_tmp)  # also when a script imports this module outside pytest


def tiny_clip_model(seed: int = 0, image_resolution: int = 32, embed_dim: int = 32, layers: int = 2):
    """A CLIP with OpenAI's architecture but tiny widths: ``layers`` ViT blocks of width 64, patch 8, and as many
    text blocks (``layers=12``: the block count of ViT-B, for the recipes' real depth settings)."""
    import clip.model

    torch.manual_seed(seed)
    model = clip.model.CLIP(
        embed_dim=embed_dim,
        image_resolution=image_resolution,
        vision_layers=layers,
        vision_width=64,
        vision_patch_size=8,
        context_length=77,
        vocab_size=49408,
        transformer_width=64,
        transformer_heads=1,
        transformer_layers=layers,
    )
    return model.eval()


@pytest.fixture(scope="session")
def tiny_clip_state_dict_path(tmp_path_factory) -> Path:
    """A plain state dict file (the OpenCLIP/HF form of OpenAI weights)."""
    path = tmp_path_factory.mktemp("ckpt") / "tiny_clip_state_dict.pt"
    torch.save(tiny_clip_model().state_dict(), path)
    return path


@pytest.fixture(scope="session")
def tiny_clip_jit_path(tmp_path_factory) -> Path:
    """A TorchScript archive (the form of OpenAI's original .pt files)."""
    model = tiny_clip_model()
    path = tmp_path_factory.mktemp("ckpt") / "tiny_clip_jit.pt"
    images = torch.zeros(1, 3, 32, 32)
    texts = torch.zeros(1, 77, dtype=torch.long)
    texts[0, 0], texts[0, 1] = 49406, 49407
    traced = torch.jit.trace(model, (images, texts), check_trace=False)
    traced.save(str(path))
    return path


@pytest.fixture(autouse=True)
def _offline_hub(monkeypatch):
    # Tests never reach the network.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    yield


def run_train(*args: str, check: bool = True, timeout: int = 240, subprocess: bool = False):
    """Run train.py with ARGS, as a user would; returns a CompletedProcess (returncode, stdout, stderr).

    By default in this process through ``train.run`` (the same code path minus one interpreter start,
    ~5 s each); ``subprocess=True`` runs ``python train.py`` for real."""
    import contextlib
    import io
    import subprocess as sp
    import traceback

    argv = [str(a) for a in args]
    if subprocess:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "2"}
        proc = sp.run([sys.executable, str(ROOT / "train.py"), *argv], cwd=ROOT, env=env,
                      capture_output=True, text=True, timeout=timeout)
    else:
        import train

        out, err = io.StringIO(), io.StringIO()
        cwd = os.getcwd()
        os.chdir(ROOT)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    code = train.run(argv)
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else 1
                except Exception:
                    traceback.print_exc()
                    code = 1
        finally:
            os.chdir(cwd)
        proc = sp.CompletedProcess(argv, code, out.getvalue(), err.getvalue())
    if check and proc.returncode != 0:
        raise AssertionError(f"train.py failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def build_trainer(*args, seed: int = 0):
    """The Dassl trainer train.py would build from ARGS (its command line), in this process and without training."""
    from dassl.engine import build_trainer as dassl_build_trainer

    import datasets  # noqa: F401  (registers the datasets)
    import trainers  # noqa: F401  (registers the trainers)
    from train import build_parser, setup_cfg

    cfg = setup_cfg(build_parser().parse_args([str(a) for a in args]))
    torch.manual_seed(seed)
    return dassl_build_trainer(cfg)


def count_correct(trainer) -> tuple[int, int]:
    """(correct, total) over the trainer's test loader, counted here: argmax of the model's logits against the
    labels (not through Dassl's evaluator nor results.json)."""
    trainer.set_model_mode("eval")
    correct = total = 0
    with torch.no_grad():
        for batch in trainer.test_loader:
            images, labels = trainer.parse_batch_test(batch)
            correct += (trainer.model_inference(images).argmax(dim=1) == labels).sum().item()
            total += len(labels)
    return correct, total


#: Overrides that make any recipe run on the tiny CLIP and tiny images in seconds.
TINY_OVERRIDES = (
    "INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "4",
    "DATALOADER.TEST.BATCH_SIZE", "8", "TRAIN.PRINT_FREQ", "1", "USE_CUDA", "False",
)
