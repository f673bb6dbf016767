"""DCAR's ablation: the rows derived from a recipe, and the table with paired differences and t-tests."""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest
from conftest import HAS_DASSL

from tools.dcar_ablation import ROW_NAMES, ablation_rows
from tools.paper_tables.ablation import build_ablation_table
from tools.paper_tables.cli import main as paper_tables
from tools.results import collect

RECIPE = {"PROMPT_DEPTH": 9, "VISUAL_PROMPTS": True, "USE_DTR": False, "USE_CAA": True,
          "CATE_ENCODER": "prompted", "CATE_WEIGHTING": "negatives", "NUM_CATEGORY_NEG": 1, "NUM_ATTRIBUTE_NEG": 0}


def test_rows_follow_the_recipe_and_are_never_listed_twice():
    rows = dict(ablation_rows(RECIPE))
    assert list(rows)[0] == "full" and rows["full"] == {}
    assert rows["no_cate"] == {"USE_CAA": False} and rows["plus_dtr"] == {"USE_DTR": True}
    assert rows["no_visual_prompts"] == {"VISUAL_PROMPTS": False} and rows["shallow"] == {"PROMPT_DEPTH": 1}
    assert rows["text_only"] == {"USE_CAA": False, "VISUAL_PROMPTS": False}
    assert rows["prompts_plus_dtr"] == {"USE_DTR": True, "USE_CAA": False}
    assert rows["cate_frozen_encoder"] == {"CATE_ENCODER": "frozen"}
    assert rows["cate_figure_weighting"] == {"CATE_WEIGHTING": "figure"}
    assert rows["cate_2cat_2attr"] == {"NUM_CATEGORY_NEG": 2, "NUM_ATTRIBUTE_NEG": 2}
    assert "cate_2cat_2attr" not in dict(ablation_rows({**RECIPE, "NUM_CATEGORY_NEG": 2, "NUM_ATTRIBUTE_NEG": 2}))
    # with DTR off, "prompts only" is "no L_cate", "dual prompts" too (visual prompts on), "+ L_cate" is "full"
    assert {"prompts_only", "dual_prompts", "prompts_plus_cate"}.isdisjoint(rows)
    signatures = [tuple(sorted(change.items())) for change in rows.values()]
    assert len(signatures) == len(set(signatures)) and set(rows) <= set(ROW_NAMES)

    text_only_recipe = {**RECIPE, "VISUAL_PROMPTS": False, "PROMPT_DEPTH": 1, "USE_CAA": False}
    rows = dict(ablation_rows(text_only_recipe))
    assert rows["plus_visual_prompts"] == {"VISUAL_PROMPTS": True} and rows["plus_cate"] == {"USE_CAA": True}
    assert "shallow" not in rows and "cate_frozen_encoder" not in rows
    assert "dual_prompts" not in rows  # = plus_visual_prompts when DTR and L_cate are off


@pytest.mark.skipif(not HAS_DASSL, reason="Dassl is not installed")
def test_rows_of_a_real_recipe_with_overrides(capsys):
    from tools.dcar_ablation import main

    assert main(["--config-file", "configs/trainers/DCAR/vit_b32.yaml", "TRAINER.DCAR.USE_DTR", "True"]) == 0
    lines = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert lines[0] == ["full", ""]
    assert ["no_dtr", "TRAINER.DCAR.USE_DTR False"] in lines  # the override is part of the recipe the rows modify
    assert main(["--config-file", "configs/trainers/DCAR/vit_b32.yaml", "TRAINER.DCAR.NO_SUCH_KEY", "1"]) == 2


def _run(root: Path, row: str, seed: int, mean: float) -> None:
    folder = root / "fdrd_synthetic" / "DCAR" / "demo_16shots" / row / f"seed{seed}"
    folder.mkdir(parents=True)
    record = {"task": "retrieval", "trainer": "DCAR", "dataset": "FDRD", "domain": "synthetic", "backbone": "tiny",
              "num_shots": 16, "seed": seed, "split": "test", "i2t": {"R@1": mean - 10, "R@5": mean, "R@10": mean + 5},
              "t2i": {"R@1": mean - 12, "R@5": mean, "R@10": mean + 7}, "mean_recall": mean,
              "hard_negative_i2t": {"R@1": 40.0 + seed}, "num_images": 10, "num_captions": 10}
    (folder / "results.json").write_text(json.dumps(record))


def test_ablation_table_pairs_seeds_and_tests_against_full(tmp_path):
    full = {1: 50.0, 2: 52.0, 3: 51.0, 4: 53.0, 5: 49.0}
    no_cate = {1: 48.0, 2: 51.5, 3: 49.0, 4: 52.0, 5: 47.5}
    plus_dtr = {1: 50.5, 2: 51.0, 3: 51.0}  # three seeds only: paired over those
    for seed, value in full.items():
        _run(tmp_path, "full", seed, value)
    for seed, value in no_cate.items():
        _run(tmp_path, "no_cate", seed, value)
    for seed, value in plus_dtr.items():
        _run(tmp_path, "plus_dtr", seed, value)
    table = build_ablation_table(collect(tmp_path)[0])
    assert [row.keys[0] for row in table.rows] == ["full", "plus_dtr", "no_cate"]  # table order of ROW_NAMES
    labels = [f"{c.group} {c.label}".strip() for c in table.columns]
    rows = {row.keys[0]: dict(zip(labels, row.cells)) for row in table.rows}
    assert rows["full"]["mean recall"].value == pytest.approx(statistics.fmean(full.values()))
    # std over seeds as CoOp's parse_test_res reports it (numpy's, ddof=0), like every table of tools.results
    assert rows["full"]["mean recall"].std == pytest.approx(statistics.pstdev(full.values()))
    assert rows["full"]["vs full Δ mean recall"] is None and rows["full"]["seeds"].value == 5
    # the paired t-test by hand: t = mean(d) / (sd(d) / sqrt(n)), two-sided p from Student's t with n-1 dof
    d = [no_cate[s] - full[s] for s in full]
    delta = rows["no_cate"]["vs full Δ mean recall"]
    assert delta.value == pytest.approx(statistics.fmean(d)) and delta.std == pytest.approx(statistics.pstdev(d))
    t = statistics.fmean(d) / (statistics.stdev(d) / math.sqrt(len(d)))  # d = -2, -0.5, -2, -1, -1.5: t = -4.80
    from scipy.stats import t as student_t

    assert rows["no_cate"]["vs full p mean recall"].value == pytest.approx(2 * student_t.sf(abs(t), len(d) - 1))
    assert 0.008 < rows["no_cate"]["vs full p mean recall"].value < 0.009
    paired = [plus_dtr[s] - full[s] for s in plus_dtr]
    assert rows["plus_dtr"]["vs full Δ mean recall"].value == pytest.approx(statistics.fmean(paired))
    assert rows["plus_dtr"]["vs full Δ mean recall"].n == 3

    out = tmp_path / "table.md"
    assert paper_tables(["ablation", str(tmp_path), "--std", "--out", str(out)]) == 0
    text = out.read_text()
    assert "| no_cate" in text and "-1.40 ± 0.58" in text and "paired t-test" in text
    assert rows["no_cate"]["vs full Δ hard-neg R@1"].value == 0.0  # the same hard-negative recall, seed by seed
    assert rows["no_cate"]["vs full p hard-neg R@1"] is None  # no spread, no test


def test_ablation_table_from_the_recipe_folder_itself(tmp_path):
    """`make ablation` points the table at output/<dataset>/DCAR/<cfg>_<shots>shots: the rows are its sub-folders
    (before, every row read as a variant-less "full" and the table refused them as duplicates)."""
    for seed, (full, no_cate) in enumerate([(50.0, 48.0), (52.0, 51.0)], 1):
        _run(tmp_path, "full", seed, full)
        _run(tmp_path, "no_cate", seed, no_cate)
    recipe_folder = tmp_path / "fdrd_synthetic" / "DCAR" / "demo_16shots"
    summaries = collect(recipe_folder)[0]
    assert sorted((s.variant, s.cfg, s.trainer) for s in summaries) == [("full", "demo", "DCAR"), ("no_cate", "demo", "DCAR")]
    out = tmp_path / "table.md"
    assert paper_tables(["ablation", str(recipe_folder), "--std", "--out", str(out)]) == 0
    assert "| no_cate" in out.read_text() and "-1.50 ± 0.50" in out.read_text()
    no_cate_line = next(line for line in out.read_text().splitlines() if line.startswith("| no_cate"))
    assert no_cate_line.rstrip(" |").endswith("| 2")  # the seed count, a whole number
