"""The shell entry points: DCAR over several FDRD domains skips a domain without captions, goes on, and
lists what it skipped; a second call skips finished runs."""
from __future__ import annotations

import os
import subprocess

import pytest
from conftest import HAS_DASSL, ROOT
from fake_fdrd import make_fake_fdrd

pytestmark = [pytest.mark.dassl, pytest.mark.skipif(not HAS_DASSL, reason="Dassl is not installed")]


def test_dcar_main_skips_missing_domains_and_reports_them(tmp_path, tiny_clip_state_dict_path):
    make_fake_fdrd(tmp_path / "data", domain="dtd", classes=3, train_per_class=3, test_per_class=2)
    env = {**os.environ, "DATA": str(tmp_path / "data"), "SEEDS": "1", "FDRD_DOMAINS": "fdrd_sun397 fdrd_dtd",
           "PYTHONWARNINGS": "ignore"}
    overrides = ["MODEL.BACKBONE.NAME", str(tiny_clip_state_dict_path), "INPUT.SIZE", "(32, 32)",
                 "DATALOADER.NUM_WORKERS", "0", "OPTIM.MAX_EPOCH", "1", "TRAINER.DCAR.PROMPT_DEPTH", "2",
                 "USE_CUDA", "False"]
    work = tmp_path / "work"
    work.mkdir()
    for name in ("train.py", "trainers", "datasets", "configs", "scripts", "tools"):
        os.symlink(ROOT / name, work / name)  # outputs land in the temporary copy's output/
    proc = subprocess.run(["bash", "scripts/dcar/main.sh", "fdrd", "1", *overrides], cwd=work, env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 1
    assert "Skipped or failed (1):" in proc.stdout and "fdrd_sun397 (seed 1): error:" in proc.stdout
    assert (work / "output/fdrd_dtd/DCAR/vit_b32_1shots/seed1/results.json").is_file()
    again = subprocess.run(["bash", "scripts/dcar/main.sh", "fdrd_dtd", "1", *overrides], cwd=work, env=env,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "so skip this job" in again.stdout
