"""The demo's claim (prompt learning beats zero-shot on the synthetic domain) and the benchmark's output."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import DEMO_ASSETS_DIR, HAS_DASSL, ROOT
from fake_fdrd import make_fake_fdrd

pytestmark = [pytest.mark.dassl, pytest.mark.skipif(not HAS_DASSL, reason="Dassl is not installed")]

#: Measured with seed 1, 16 shots, the default demo recipes (mean recall, points over zero-shot at 44.35):
#: CoOp +7.1, MaPLe +5.5, DPT +4.6, DCAR +4.4. The margin leaves room for CPU-to-CPU floating-point differences.
MARGIN = 2.0


@pytest.mark.slow
def test_demo_trained_methods_beat_zero_shot(tmp_path):
    from tools.demo import run

    out = tmp_path / "demo"
    assert run.main(["--data", str(DEMO_ASSETS_DIR), "--out", str(out),
                     "--methods", "ZeroshotCLIP", "CoOp", "MaPLe", "DPT", "DCAR"]) == 0
    results = json.loads((out / "demo_results.json").read_text())
    zero_shot = results["ZeroshotCLIP"]["mean_recall"]
    assert 30 < zero_shot < 60  # the pretrained tiny CLIP transfers, far above chance (~1.5 mean recall)
    for method in ("CoOp", "MaPLe", "DPT", "DCAR"):
        assert results[method]["mean_recall"] > zero_shot + MARGIN, (method, results[method], zero_shot)
    assert "vs zero-shot" in (out / "demo_results.md").read_text()


def test_benchmark_reports_speed_memory_and_cache(tmp_path, tiny_clip_state_dict_path):
    make_fake_fdrd(tmp_path / "data", domain="dtd", classes=4, train_per_class=4, test_per_class=3)
    proc = subprocess.run(
        [sys.executable, "-m", "tools.bench", "--data", str(tmp_path / "data"), "--trainers", "ZeroshotCLIP", "CoOp",
         "--dataset-config", "configs/datasets/fdrd_dtd.yaml", "--backbone", str(tiny_clip_state_dict_path),
         "--steps", "2", "--out", str(tmp_path / "bench")],
        cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {row["trainer"]: row for row in json.loads((tmp_path / "bench" / "bench.json").read_text())}
    coop, zero_shot = rows["CoOp"], rows["ZeroshotCLIP"]
    assert coop["train_images_per_s"] > 0 and coop["step_overhead_vs_frozen"] > 0  # a ratio; no timing bound
    assert coop["eval_items_per_s"] > 0 and coop["peak_memory_mb"] > 0
    assert "train_images_per_s" not in zero_shot and zero_shot["feature_cache_speedup"] > 0
    assert "| CoOp" in (tmp_path / "bench" / "bench.md").read_text()
