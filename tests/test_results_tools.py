"""Result discovery, aggregation, paper tables and plots on synthetic output trees (no training involved)."""
from __future__ import annotations

import csv
import io
import json
import re
import statistics
from pathlib import Path, PurePosixPath

import pytest

from tools import paper_tables, parse_results, plots
from tools.paper_tables import (
    AmbiguousResultsError,
    Selection,
    build_dcar_table,
    build_dpt_table,
    load_published_table,
    render_csv,
    render_latex,
    render_markdown,
)
from tools.paper_tables.names import FDRD_DATASETS, dataset_name, method_name
from tools.results import (
    aggregate,
    check_seeds,
    collect,
    discover_runs,
    metric_stats,
    parse_dassl_result_block,
    parse_run_path,
)

# ------------------------------------------------------------------------------------ tree builders

COOP_VARIANT = "nctx16_cscFalse_ctpend"
FDRD_DOMAIN_DIRS = {  # display name -> FDRD domain key
    "Caltech101": "caltech101", "OxfordPets": "pets", "StanfordCars": "cars", "Flowers102": "flowers",
    "Food101": "food101", "FGVCAircraft": "aircraft", "SUN397": "sun397", "DTD": "dtd", "UCF101": "ucf101",
}


def write_results(run_dir: Path, record: dict) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "results.json").write_text(json.dumps(record))
    return run_dir


def classification_run(root: Path, trainer: str, dataset: str, shots: int, seed: int, accuracy: float,
                       macro_f1: float | None = None, variant: str | None = COOP_VARIANT, cfg: str = "vit_b16") -> Path:
    folder = root / dataset / trainer / f"{cfg}_{shots}shots"
    folder = (folder / variant if variant else folder) / f"seed{seed}"
    record = {"task": "classification", "trainer": trainer, "dataset": dataset, "backbone": "ViT-B/16",
              "num_shots": shots, "seed": seed, "accuracy": accuracy,
              "macro_f1": macro_f1 if macro_f1 is not None else accuracy - 1}
    return write_results(folder, record)


def dassl_log(accuracy: float, macro_f1: float, total: int = 3669) -> str:
    correct = round(total * accuracy / 100)
    validation = "=> result\n* total: 736\n* correct: 500\n* accuracy: 67.9%\n* error: 32.1%\n* macro_f1: 60.0%\n"
    final = (f"=> result\n* total: {total:,}\n* correct: {correct:,}\n* accuracy: {accuracy:.1f}%\n"
             f"* error: {100 - accuracy:.1f}%\n* macro_f1: {macro_f1:.1f}%\n")
    training = "Loading trainer: CoOp\nepoch [1/50] batch [1/1] loss 1.2\n"
    return training + validation + "Evaluate on the *test* set\n" + final + "Elapsed: 0:01:02\n"


def log_only_run(root: Path, dataset: str, shots: int, seed: int, accuracy: float, macro_f1: float) -> Path:
    folder = root / dataset / "CoOp" / f"vit_b16_{shots}shots" / COOP_VARIANT / f"seed{seed}"
    folder.mkdir(parents=True)
    (folder / "log.txt").write_text(dassl_log(accuracy, macro_f1))
    return folder


def crashed_run(root: Path, relative: str) -> Path:
    folder = root / relative
    folder.mkdir(parents=True)
    (folder / "log.txt").write_text("Loading trainer: CoOp\nepoch [1/50] batch [1/1] loss 1.2\n")
    return folder


def retrieval_run(root: Path, trainer: str, dataset: str, seed: int, i2t: tuple[float, float, float],
                  t2i: tuple[float, float, float], shots: int = 16, hard_negative: float | None = None) -> Path:
    folder = root / f"fdrd_{FDRD_DOMAIN_DIRS[dataset]}" / trainer / f"vit_b32_{shots}shots" / f"seed{seed}"
    record = {"task": "retrieval", "trainer": trainer, "dataset": "FDRD", "domain": FDRD_DOMAIN_DIRS[dataset],
              "backbone": "ViT-B/32", "num_shots": shots, "seed": seed,
              "i2t": dict(zip(("R@1", "R@5", "R@10"), i2t)), "t2i": dict(zip(("R@1", "R@5", "R@10"), t2i)),
              "mean_recall": statistics.fmean(i2t + t2i), "num_images": 100, "num_captions": 100}
    if hard_negative is not None:
        record["hard_negative_i2t"] = {"R@1": hard_negative}
    return write_results(folder, record)


@pytest.fixture()
def classification_tree(tmp_path: Path) -> Path:
    """OxfordPets CoOp 16 shots: seeds 1-2 from results.json, seed 3 from log.txt only.
    DTD CoOp 16 shots: seeds 1-2 only (seed 3 crashed)."""
    root = tmp_path / "output"
    classification_run(root, "CoOp", "oxford_pets", 16, 1, 90.0, 89.0)
    classification_run(root, "CoOp", "oxford_pets", 16, 2, 92.0, 91.0)
    log_only_run(root, "oxford_pets", 16, 3, 91.0, 90.0)
    classification_run(root, "CoOp", "dtd", 16, 1, 60.0)
    classification_run(root, "CoOp", "dtd", 16, 2, 64.0)
    crashed_run(root, f"dtd/CoOp/vit_b16_16shots/{COOP_VARIANT}/seed3")
    return root


# ----------------------------------------------------------------------------------------- parsing


def test_parse_run_path_reads_coop_fdrd_and_evaluation_layouts():
    coop = parse_run_path(PurePosixPath(f"oxford_pets/CoOp/vit_b16_16shots/{COOP_VARIANT}/seed1"))
    assert (coop.group, coop.seed, coop.dataset, coop.trainer, coop.cfg, coop.num_shots, coop.variant) == (
        f"oxford_pets/CoOp/vit_b16_16shots/{COOP_VARIANT}", 1, "oxford_pets", "CoOp", "vit_b16", 16, COOP_VARIANT)
    fdrd = parse_run_path(PurePosixPath("fdrd_pets/DCAR/vit_b32_16shots/seed2"))
    assert (fdrd.dataset, fdrd.trainer, fdrd.num_shots, fdrd.variant, fdrd.seed) == ("fdrd_pets", "DCAR", 16, None, 2)
    evaluation = parse_run_path(PurePosixPath("evaluation/CoOp/vit_b16_16shots/imagenet_sketch/seed3"))
    assert (evaluation.dataset, evaluation.trainer, evaluation.group) == (
        "imagenet_sketch", "CoOp", "evaluation/CoOp/vit_b16_16shots/imagenet_sketch")
    full_data = parse_run_path(PurePosixPath("fdrd_dtd/DCAR/vit_b32_-1shots/seed1"))
    assert full_data.num_shots == -1
    unknown = parse_run_path(PurePosixPath("ZeroshotCLIP/vit_b16/oxford_pets"))
    assert (unknown.group, unknown.seed, unknown.trainer) == ("ZeroshotCLIP/vit_b16/oxford_pets", None, None)


def test_dassl_log_parser_reads_the_last_result_block():
    values = parse_dassl_result_block(dassl_log(91.2, 90.9))
    assert values == {"total": 3669.0, "correct": 3346.0, "accuracy": 91.2, "error": 8.8, "macro_f1": 90.9}
    assert parse_dassl_result_block("epoch [1/2]\nTraceback (most recent call last):\n") is None


def test_population_std_and_t_confidence_interval():
    stats = metric_stats([90.0, 92.0, 91.0])
    assert stats.mean == pytest.approx(91.0)
    assert stats.std == pytest.approx((2 / 3) ** 0.5)  # ddof=0, like numpy.std and CoOp
    assert stats.ci95 == pytest.approx(4.303 * 1.0 / 3 ** 0.5, rel=1e-3)  # t(0.975, 2) * sample std / sqrt(n)
    assert metric_stats([5.0]).ci95 is None


# ------------------------------------------------------------------------------------- aggregation


def test_classification_from_results_json_and_log_fallback(classification_tree: Path):
    discovery = discover_runs(classification_tree)
    sources = sorted(run.source for run in discovery.runs)
    assert sources.count("log.txt") == 1 and sources.count("results.json") == 4
    pets = next(s for s in aggregate(discovery.runs) if s.dataset == "oxford_pets")
    assert pets.seeds == (1, 2, 3)
    assert pets.metrics["accuracy"].mean == pytest.approx(91.0)
    assert pets.metrics["accuracy"].std == pytest.approx(statistics.pstdev([90.0, 92.0, 91.0]))
    assert pets.metrics["macro_f1"].mean == pytest.approx(90.0)
    assert set(pets.metrics) == {"accuracy", "macro_f1"}  # total/correct/error are not metrics
    assert (pets.trainer, pets.num_shots, pets.cfg, pets.variant) == ("CoOp", 16, "vit_b16", COOP_VARIANT)


def test_newest_dassl_log_wins_and_stray_logs_do_not_hide_runs(tmp_path: Path):
    root = tmp_path / "output"
    run = crashed_run(root, f"dtd/CoOp/vit_b16_16shots/{COOP_VARIANT}/seed1")  # first attempt: log.txt, no result
    (run / "log.txt-2025-01-02-03-04-05").write_text(dassl_log(61.0, 60.0))  # Dassl's name for a re-run's log
    (root / "log.txt").write_text("a log that belongs to no run\n")
    discovery = discover_runs(root)
    assert not discovery.failed
    (found,) = discovery.runs
    assert found.source == "log.txt-2025-01-02-03-04-05" and found.metrics["accuracy"] == 61.0


def test_crashed_run_is_listed_as_failed_and_left_out(classification_tree: Path):
    summaries, failed = collect(classification_tree)
    assert len(failed) == 1
    assert failed[0].seed == 3 and failed[0].log_paths[0].name == "log.txt"
    assert "no result block" in failed[0].reason
    dtd = next(s for s in summaries if s.dataset == "dtd")
    assert dtd.seeds == (1, 2) and dtd.metrics["accuracy"].mean == pytest.approx(62.0)


def test_missing_seed_warnings(classification_tree: Path):
    summaries, _ = collect(classification_tree)
    implicit = check_seeds(summaries)
    assert [(w.group.split("/")[0], w.found, w.missing, w.expected) for w in implicit] == [("dtd", (1, 2), (3,), 3)]
    explicit = check_seeds(summaries, expected=[1, 2, 3, 4])
    assert {w.group.split("/")[0]: w.missing for w in explicit} == {"dtd": (3, 4), "oxford_pets": (4,)}
    # A zero-shot baseline run once is compared with its own trainer's groups, not flagged next to CoOp.
    classification_run(classification_tree, "ZeroshotCLIP", "dtd", 0, 1, 44.0, variant=None)
    assert [w.group.split("/")[0] for w in check_seeds(collect(classification_tree)[0])] == ["dtd"]


def test_retrieval_results_are_flattened_per_direction(tmp_path: Path):
    root = tmp_path / "output"
    retrieval_run(root, "DCAR", "OxfordPets", 1, (50.0, 80.0, 90.0), (40.0, 70.0, 80.0), hard_negative=30.0)
    retrieval_run(root, "DCAR", "OxfordPets", 2, (52.0, 82.0, 92.0), (42.0, 72.0, 82.0), hard_negative=32.0)
    (summary,) = collect(root)[0]
    assert summary.task == "retrieval" and summary.domain == "pets"
    assert summary.metrics["i2t/R@1"].mean == pytest.approx(51.0)
    assert summary.metrics["t2i/R@10"].mean == pytest.approx(81.0)
    assert summary.metrics["hard_negative_i2t/R@1"].std == pytest.approx(1.0)
    assert summary.metrics["mean_recall"].mean == pytest.approx(statistics.fmean([51, 81, 91, 41, 71, 81]))
    assert not any(name.startswith("num_") for name in summary.metrics)


def test_parse_results_cli_prints_tables_warnings_failures_and_csv(classification_tree: Path, tmp_path: Path, capsys):
    retrieval_run(classification_tree, "DCAR", "DTD", 1, (50.0, 80.0, 90.0), (40.0, 70.0, 80.0))
    out_csv = tmp_path / "summary.csv"
    assert parse_results.main([str(classification_tree), "--csv", str(out_csv), "--ci95"]) == 0
    printed = capsys.readouterr().out
    assert "91.00 ± 0.82" in printed  # pets accuracy, population std of 90/92/91
    assert "I2T R@1" in printed and "T2I R@10" in printed and "mean R" in printed
    assert "population std" in printed
    assert "WARNING" in printed and "missing seed(s) 3" in printed
    assert "FAILED" in printed and "seed3" in printed and "log.txt" in printed
    rows = list(csv.DictReader(out_csv.open()))
    pets = next(row for row in rows if row["dataset"] == "oxford_pets")
    assert pets["n_seeds"] == "3" and pets["seeds"] == "1 2 3"
    assert float(pets["accuracy mean"]) == pytest.approx(91.0) and pets["accuracy ci95"] != ""
    assert any(row["task"] == "retrieval" and row["i2t/R@1 mean"] == "50.0000" for row in rows)


# -------------------------------------------------------------------------------------------- names


def test_method_and_dataset_names():
    assert [method_name(t) for t in ("ZeroshotCLIP", "CLIPAdapter", "MaPLe", "coop", "DPT", "VLP", "MyNew")] == [
        "CLIP", "CLIP-Adapter", "MaPLe", "CoOp", "DPT", "VLP", "MyNew"]
    aliases = ("fdrd_pets", "pets", "oxford_pets", "OxfordFlowers", "aircraft", "imagenet_sketch")
    assert [dataset_name(d) for d in aliases] == [
        "OxfordPets", "OxfordPets", "OxfordPets", "Flowers102", "FGVCAircraft", "ImageNet-Sketch"]


# -------------------------------------------------------------------------------------- DCAR table


@pytest.fixture()
def dcar_tree(tmp_path: Path) -> Path:
    """DCAR and CoOp on DTD and OxfordPets (2 seeds each), zero-shot CLIP on OxfordPets only."""
    root = tmp_path / "dcar_output"
    for seed, delta in ((1, -1.0), (2, 1.0)):
        retrieval_run(root, "DCAR", "OxfordPets", seed, (50 + delta, 80 + delta, 90 + delta), (40 + delta, 70, 80))
        retrieval_run(root, "DCAR", "DTD", seed, (44 + delta, 74, 84), (30, 60, 70))
        retrieval_run(root, "CoOp", "OxfordPets", seed, (45.0, 75.0, 85.0), (35.0, 65.0, 75.0))
        retrieval_run(root, "CoOp", "DTD", seed, (46.0, 70.0, 80.0), (25.0, 55.0, 65.0))
    retrieval_run(root, "ZeroshotCLIP", "OxfordPets", 1, (40.0, 70.0, 80.0), (30.0, 55.0, 68.0), shots=0)
    return root


def test_dcar_table_layout_and_average_row(dcar_tree: Path):
    table = build_dcar_table(collect(dcar_tree)[0])
    assert [c.label for c in table.columns] == ["CLIP", "CoOp", "DCAR"] * 2
    assert [c.group for c in table.columns] == ["I2T"] * 3 + ["T2I"] * 3
    assert [row.keys for row in table.rows] == [
        ("OxfordPets", "1"), ("OxfordPets", "5"), ("OxfordPets", "10"),  # paper order, not alphabetical
        ("DTD", "1"), ("DTD", "5"), ("DTD", "10"),
        ("AVG", "1"), ("AVG", "5"), ("AVG", "10"),
    ]
    dcar_i2t = table.column_values("DCAR", "I2T")
    assert dcar_i2t[("OxfordPets", "1")] == pytest.approx(50.0)
    assert dcar_i2t[("AVG", "1")] == pytest.approx((50.0 + 44.0) / 2)
    assert table.column_values("CoOp", "T2I")[("AVG", "10")] == pytest.approx((75.0 + 65.0) / 2)
    # CLIP has OxfordPets only: its average is that one value, and the notes say so.
    assert table.column_values("CLIP", "I2T")[("AVG", "5")] == pytest.approx(70.0)
    notes = " ".join(table.notes)
    assert "OxfordPets, DTD (2 of 9; missing: Caltech101" in notes
    assert "for I2T CLIP, T2I CLIP" in notes and "OxfordPets (1 of 9" in notes


def test_dcar_table_renders_markdown_csv_and_latex_with_bold_best(dcar_tree: Path):
    table = build_dcar_table(collect(dcar_tree)[0], methods=["ZeroshotCLIP", "CoOp", "DCAR"])
    markdown = render_markdown(table)
    header = [cell.strip() for cell in markdown.splitlines()[2].strip("|").split("|")]
    assert header == ["Dataset", "K", "I2T CLIP", "I2T CoOp", "I2T DCAR", "T2I CLIP", "T2I CoOp", "T2I DCAR"]
    pets_r1 = next(line for line in markdown.splitlines() if line.startswith("| OxfordPets | 1 "))
    assert "**50.00**" in pets_r1 and "**40.00**" in pets_r1 and "45.00" in pets_r1 and "**45.00**" not in pets_r1
    rows = list(csv.reader(io.StringIO(render_csv(table))))
    assert rows[0] == ["Dataset", "K", "I2T CLIP", "I2T CoOp", "I2T DCAR", "T2I CLIP", "T2I CoOp", "T2I DCAR"]
    assert rows[-3] == ["AVG", "1", "40.00", "45.50", "47.00", "30.00", "30.00", "35.00"]
    latex = render_latex(table, show_std=True)
    assert r"\toprule" in latex and r"\bottomrule" in latex and r"\midrule" in latex
    assert r"\multicolumn{3}{c}{I2T} & \multicolumn{3}{c}{T2I}" in latex
    assert r"\cmidrule(lr){3-5} \cmidrule(lr){6-8}" in latex
    # one seed (CLIP): no std; two seeds: population std
    assert r"OxfordPets & 1 & 40.00 & 45.00$_{\pm 0.00}$ & \textbf{50.00}$_{\pm 1.00}$" in latex
    assert "\n & 5 & " in latex  # the dataset name heads its block once


def test_dcar_side_by_side_with_the_paper(dcar_tree: Path):
    paper = load_published_table()
    table = build_dcar_table(collect(dcar_tree)[0], methods=["DCAR"], paper=paper)
    assert [c.label for c in table.columns] == ["DCAR", "DCAR (paper)", "Δ DCAR"] * 2
    assert table.column_values("DCAR (paper)", "I2T")[("OxfordPets", "1")] == pytest.approx(52.88)
    assert table.column_values("Δ DCAR", "I2T")[("OxfordPets", "1")] == pytest.approx(50.0 - 52.88)
    # With 2 of 9 domains, the paper average is recomputed over the same two domains.
    paper_avg = (52.88 + 47.10) / 2
    assert table.column_values("DCAR (paper)", "I2T")[("AVG", "1")] == pytest.approx(paper_avg)
    assert table.column_values("Δ DCAR", "I2T")[("AVG", "1")] == pytest.approx(47.0 - paper_avg)
    markdown = render_markdown(table)
    assert "-2.88" in markdown and "Δ = ours − paper" in markdown
    assert r"$\Delta$ DCAR" in render_latex(table)


def test_dcar_all_nine_domains_reproduce_the_published_average(tmp_path: Path):
    """Feeding the paper's own per-domain numbers back in must give its AVG row (checked to ±0.005)."""
    paper = load_published_table()
    root = tmp_path / "output"
    for dataset in FDRD_DATASETS:
        values = {d: tuple(paper.get(dataset, k, d, "DCAR") for k in (1, 5, 10)) for d in ("i2t", "t2i")}
        retrieval_run(root, "DCAR", dataset, 1, values["i2t"], values["t2i"])
    table = build_dcar_table(collect(root)[0], paper=paper)
    for direction in ("I2T", "T2I"):
        ours, published = table.column_values("DCAR", direction), table.column_values("DCAR (paper)", direction)
        for k in ("1", "5", "10"):
            assert published[("AVG", k)] == paper.get("AVG", int(k), direction.lower(), "DCAR")
            assert ours[("AVG", k)] == pytest.approx(published[("AVG", k)], abs=0.0051)
    assert "plain mean over all 9 datasets" in " ".join(table.notes)


def test_ambiguous_groups_are_refused_until_filtered(tmp_path: Path):
    root = tmp_path / "output"
    classification_run(root, "CoOp", "dtd", 16, 1, 60.0, variant="nctx16_cscFalse_ctpend")
    classification_run(root, "CoOp", "dtd", 16, 1, 63.0, variant="nctx4_cscFalse_ctpend")
    summaries = collect(root)[0]
    with pytest.raises(AmbiguousResultsError, match="--variant"):
        build_dpt_table(summaries)
    table = build_dpt_table(summaries, selection=Selection(variant="nctx4_cscFalse_ctpend"))
    assert table.column_values("CoOp", "16 shots")[("DTD",)] == pytest.approx(63.0)


# --------------------------------------------------------------------------------------- DPT table


@pytest.fixture()
def fewshot_tree(tmp_path: Path) -> Path:
    root = tmp_path / "fewshot_output"
    for seed, delta in ((1, -0.5), (2, 0.5)):
        for dataset, base in (("oxford_pets", 80.0), ("dtd", 50.0)):
            for shots, gain in ((1, 0.0), (4, 5.0), (16, 10.0)):
                classification_run(root, "CoOp", dataset, shots, seed, base + gain + delta)
                classification_run(root, "DPT", dataset, shots, seed, base + gain + 2 + delta,
                                   variant=None, cfg="vit_b32_deep")
    for dataset, value in (("oxford_pets", 85.0), ("dtd", 44.0)):
        classification_run(root, "ZeroshotCLIP", dataset, 0, 1, value, variant=None)
    return root


def test_dpt_table_layout_average_and_bold(fewshot_tree: Path):
    table = build_dpt_table(collect(fewshot_tree)[0], shots=[1, 16])
    assert [(c.group, c.label) for c in table.columns] == [
        ("1 shots", "CLIP"), ("1 shots", "CoOp"), ("1 shots", "DPT"),
        ("16 shots", "CLIP"), ("16 shots", "CoOp"), ("16 shots", "DPT"),
    ]
    assert [row.keys for row in table.rows] == [("OxfordPets",), ("DTD",), ("Average",)]
    assert table.column_values("DPT", "16 shots") == pytest.approx(
        {("OxfordPets",): 92.0, ("DTD",): 62.0, ("Average",): 77.0})
    assert table.column_values("CLIP", "1 shots") == table.column_values("CLIP", "16 shots")  # zero-shot repeated
    best = {(table.rows[r].keys[0], table.columns[c].group, table.columns[c].label) for r, c in table.best_cells()}
    assert ("OxfordPets", "1 shots", "CLIP") in best and ("DTD", "1 shots", "DPT") in best
    assert ("Average", "16 shots", "DPT") in best
    rows = list(csv.reader(io.StringIO(render_csv(table, show_std=True))))
    assert rows[0][:4] == ["Dataset", "1 shots CLIP", "1 shots CLIP std", "1 shots CoOp"]
    assert rows[1][rows[0].index("16 shots DPT std")] == "0.50"
    latex = render_latex(table)
    assert r"\multicolumn{3}{c}{1 shots}" in latex and r"\textbf{92.00}" in latex
    assert "Average = plain mean over OxfordPets, DTD (2 of 11" in " ".join(table.notes)


def test_paper_tables_cli_writes_each_format(fewshot_tree: Path, dcar_tree: Path, tmp_path: Path):
    for fmt, marker in (("md", "| Dataset"), ("csv", "Dataset,"), ("latex", r"\begin{tabular}")):
        out = tmp_path / f"dpt.{fmt}"
        assert paper_tables.main(["dpt", str(fewshot_tree), "--format", fmt, "--out", str(out)]) == 0
        assert out.read_text().startswith(marker) or marker in out.read_text()
    out = tmp_path / "dcar.tex"
    assert paper_tables.main(["dcar", str(dcar_tree), "--format", "latex", "--paper", "--methods", "CoOp", "DCAR",
                              "--out", str(out)]) == 0
    text = out.read_text()
    assert "CoOp (paper)" in text and "49.88" in text  # CoOp's published OxfordPets I2T R@1
    assert paper_tables.main(["dcar", str(fewshot_tree)]) == 1  # no retrieval results there


# ------------------------------------------------------------------------------------ paper guard


def retag(run_dir: Path, **fields) -> None:
    """Change what a synthetic run says it was (backbone, architecture, ...)."""
    record = json.loads((run_dir / "results.json").read_text())
    (run_dir / "results.json").write_text(json.dumps({**record, **fields}))


@pytest.fixture()
def tiny_tree(tmp_path: Path) -> Path:
    """DCAR and CoOp on DTD with a tiny custom backbone and 2 shots: nothing the paper measured."""
    root = tmp_path / "tiny_output"
    for seed in (1, 2):
        for trainer in ("DCAR", "CoOp"):
            run = retrieval_run(root, trainer, "DTD", seed, (44.0 + seed, 74.0, 84.0), (30.0, 60.0, 70.0), shots=2)
            retag(run, backbone="/weights/tiny_clip.pt", architecture="custom ViT (width 64, 2 layers, patch 8)")
    return root


def test_paper_numbers_are_refused_beside_runs_of_another_setting(tiny_tree: Path, capsys):
    assert paper_tables.main(["dcar", str(tiny_tree), "--paper"]) == 2
    error = capsys.readouterr().err
    assert "measured with CLIP ViT-B/32, 16 shots or the full training split" in error
    assert "DCAR on DTD (fdrd_dtd/DCAR/vit_b32_2shots): backbone custom ViT" in error and "2 shots" in error
    assert "--paper-any-setting" in error
    assert paper_tables.main(["dcar", str(tiny_tree)]) == 0  # our numbers alone are fine
    assert "(paper)" not in capsys.readouterr().out
    # the explicit override shows them, and the caption says the setting differs
    assert paper_tables.main(["dcar", str(tiny_tree), "--paper", "--paper-any-setting"]) == 0
    markdown = capsys.readouterr().out
    title = markdown.splitlines()[0]
    assert "NOT the paper's setting" in title and "DCAR (paper)" in markdown
    assert "Shown beside the published numbers although the setting differs" in markdown
    # LaTeX: a visible row under the table (its % comments never reach the PDF); CSV: the concerned headers
    assert paper_tables.main(["dcar", str(tiny_tree), "--paper", "--paper-any-setting", "--format", "latex"]) == 0
    latex = capsys.readouterr().out
    visible = [line for line in latex.splitlines() if not line.startswith("%")]
    assert visible[-3:] == [r"\bottomrule", r"\multicolumn{14}{l}{\footnotesize NOT the paper's setting (CLIP "
                            r"ViT-B/32, 16 shots or the full training split): published numbers not comparable} \\",
                            r"\end{tabular}"]
    assert paper_tables.main(["dcar", str(tiny_tree), "--paper", "--paper-any-setting", "--format", "csv"]) == 0
    header = next(csv.reader(io.StringIO(capsys.readouterr().out)))
    marked = [name for name in header if "[NOT the paper's setting" in name]
    assert [name.split(" [")[0] for name in marked] == [f"{d} {m}" for d in ("I2T", "T2I") for m in (
        "CoOp (paper)", "Δ CoOp", "DCAR (paper)", "Δ DCAR")]
    assert "I2T DCAR" in header  # our own columns as they are


def test_paper_setting_is_the_architecture_that_ran_and_the_shots(dcar_tree: Path, tmp_path: Path):
    paper = load_published_table()
    assert (paper.setting.backbone, paper.setting.shots) == ("ViT-B/32", (16, -1))
    summaries = collect(dcar_tree)[0]
    build_dcar_table(summaries, paper=paper)  # ViT-B/32, 16 shots (zero-shot CLIP: 0 shots, exempt)
    # a checkpoint file given by path counts by what it loaded; the full training split is the paper's too
    root = tmp_path / "by_path"
    run = retrieval_run(root, "DCAR", "DTD", 1, (50.0, 80.0, 90.0), (40.0, 70.0, 80.0), shots=-1)
    retag(run, backbone="/weights/ViT-B-32.pt", architecture="ViT-B/32")
    build_dcar_table(collect(root)[0], paper=paper)
    retag(run, architecture="ViT-B/16")
    with pytest.raises(paper_tables.SettingMismatchError, match="backbone ViT-B/16"):
        build_dcar_table(collect(root)[0], paper=paper)
    # seeds of one group that ran differently are never called comparable
    other = retrieval_run(root, "DCAR", "DTD", 2, (50.0, 80.0, 90.0), (40.0, 70.0, 80.0), shots=-1)
    retag(run, architecture="ViT-B/32")
    retag(other, backbone="/weights/ViT-B-32.pt", architecture="ViT-B/32", epochs=5)
    retag(run, epochs=20)
    with pytest.raises(paper_tables.SettingMismatchError, match="its seeds differ in epochs\n"):
        build_dcar_table(collect(root)[0], paper=paper)


def test_provenance_notes_say_what_ran(tmp_path: Path):
    root = tmp_path / "output"
    run = retrieval_run(root, "DCAR", "DTD", 1, (50.0, 80.0, 90.0), (40.0, 70.0, 80.0))
    retag(run, architecture="ViT-B/32", epochs=20, shots_per_class={"min": 9, "max": 16},
          config_file="configs/trainers/DCAR/vit_b32.yaml")
    notes = " ".join(build_dcar_table(collect(root)[0]).notes)
    assert ("DCAR: vit_b32_16shots (ViT-B/32, 16 shots (9–16 per class), 20 epochs, "
            "configs/trainers/DCAR/vit_b32.yaml)") in notes


# ------------------------------------------------------------------------------------------- plots


def _assert_figure_files(paths: list[Path]) -> None:
    """PNG, PDF and SVG of one figure side by side, each a real file of its format."""
    assert [path.suffix for path in paths] == [".png", ".pdf", ".svg"] and len({p.stem for p in paths}) == 1
    png, pdf, svg = (path.read_bytes() for path in paths)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1024
    assert pdf[:5] == b"%PDF-" and pdf.rstrip().endswith(b"%%EOF") and len(re.findall(rb"/Type /Page\b(?!s)", pdf)) == 1
    assert b"<svg" in svg[:1000] and svg.rstrip().endswith(b"</svg>")


def _panel_titles(figure) -> list[str]:
    return [ax.get_title() for ax in figure.axes if ax.get_visible() and ax.get_title()]


def test_fewshot_and_recall_plots_are_written_in_every_format(fewshot_tree: Path, dcar_tree: Path, tmp_path: Path):
    _assert_figure_files(plots.plot_fewshot(collect(fewshot_tree)[0], tmp_path / "plots" / "fewshot.png"))
    _assert_figure_files(plots.plot_recall(collect(dcar_tree)[0], tmp_path / "plots" / "recall.png",
                                           paper=load_published_table()))
    assert plots.main(["recall", str(dcar_tree), "--out", str(tmp_path / "cli")]) == 0
    _assert_figure_files([tmp_path / "cli" / f"recall_at_k.{fmt}" for fmt in ("png", "pdf", "svg")])
    assert plots.main(["fewshot", str(fewshot_tree), "--out", str(tmp_path / "png"), "--formats", "png"]) == 0
    assert [p.name for p in (tmp_path / "png").iterdir()] == ["fewshot_accuracy.png"]


def test_plot_titles_carry_backbone_and_shots(fewshot_tree: Path, dcar_tree: Path):
    fewshot = plots.fewshot_figure(collect(fewshot_tree)[0])
    assert fewshot.get_suptitle() == "Few-shot classification: accuracy vs shots — CLIP ViT-B/16 · 1, 4, 16 shots"
    assert _panel_titles(fewshot) == ["OxfordPets", "DTD", "Average over 2 datasets"]
    recall = plots.recall_figure(collect(dcar_tree)[0], paper=load_published_table())
    assert recall.get_suptitle() == "FDRD Recall@K — CLIP ViT-B/32 · 16 shots (dashed: published)"


def test_recall_vs_shots_on_fdrd(tmp_path: Path):
    root = tmp_path / "output"
    for seed in (1, 2):
        for shots, gain in ((1, 0.0), (4, 4.0), (16, 8.0)):
            for dataset in ("OxfordPets", "DTD"):
                retrieval_run(root, "DCAR", dataset, seed, (40 + gain, 70.0, 80.0), (30.0, 60.0, 70.0), shots=shots)
        retrieval_run(root, "ZeroshotCLIP", "DTD", seed, (35.0, 65.0, 75.0), (25.0, 55.0, 65.0), shots=0)
    figure = plots.fewshot_figure(collect(root)[0], metric="i2t/R@1")
    assert figure.get_suptitle() == "FDRD retrieval: I2T R@1 vs shots — CLIP ViT-B/32 · 1, 4, 16 shots"
    assert _panel_titles(figure) == ["OxfordPets", "DTD", "Average over 2 datasets"]
    dtd = next(ax for ax in figure.axes if ax.get_title() == "DTD")
    (curve,) = [container.lines[0] for container in dtd.containers if container.get_label() == "DCAR"]
    assert list(curve.get_xdata()) == [1, 4, 16] and list(curve.get_ydata()) == [40.0, 44.0, 48.0]
    zero_shot = next(line for line in dtd.get_lines() if line.get_label() == "CLIP")
    assert list(zero_shot.get_ydata()) == [35.0, 35.0]  # the dashed zero-shot level
    assert plots.main(["fewshot", str(root), "--out", str(tmp_path / "plots"), "--metric", "mean_recall"]) == 0
    assert (tmp_path / "plots" / "fewshot_mean_recall.pdf").is_file()


def test_one_domain_gets_no_duplicated_average_panels(tmp_path: Path):
    root = tmp_path / "output"
    for seed in (1, 2):
        retrieval_run(root, "DCAR", "DTD", seed, (44.0 + seed, 74.0, 84.0), (30.0, 60.0, 70.0))
    recall = plots.recall_figure(collect(root)[0])
    assert _panel_titles(recall) == ["DTD I2T", "DTD T2I"]
    fewshot = plots.fewshot_figure(collect(root)[0], metric="mean_recall")
    assert _panel_titles(fewshot) == ["DTD"]


def test_zero_shot_levels_alone_get_no_shot_axis(tmp_path: Path):
    root = tmp_path / "output"
    retrieval_run(root, "ZeroshotCLIP", "DTD", 1, (35.0, 65.0, 75.0), (25.0, 55.0, 65.0), shots=0)
    (ax,) = [ax for ax in plots.fewshot_figure(collect(root)[0], metric="mean_recall").axes if ax.get_visible()]
    assert list(ax.get_xticks()) == [] and ax.get_xlabel() == ""
    assert [line.get_label() for line in ax.get_lines()] == ["CLIP"]


def test_plots_refuse_the_paper_overlay_beside_another_setting(tiny_tree: Path, tmp_path: Path, capsys):
    assert plots.main(["recall", str(tiny_tree), "--out", str(tmp_path / "p"), "--paper"]) == 2
    assert "--paper-any-setting" in capsys.readouterr().err and not (tmp_path / "p").exists()
    figure = plots.recall_figure(collect(tiny_tree)[0], paper=load_published_table(), any_setting=True)
    title = " ".join(figure.get_suptitle().split())  # wrapped to the figure's width
    assert "NOT this setting, not comparable" in title and "custom ViT (width 64, 2 layers, patch 8) · 2 shots" in title


def test_runs_written_before_subsample_classes_existed_count_as_all_classes(tmp_path):
    """results.json files older than the field used every class: beside a new seed they are not a mixed group."""
    from tools.results import collect

    for seed, extra in ((1, {}), (2, {"subsample_classes": "all"})):
        folder = tmp_path / "fdrd_dtd" / "CoOp" / "demo_16shots" / f"seed{seed}"
        folder.mkdir(parents=True)
        record = {"task": "retrieval", "trainer": "CoOp", "dataset": "FDRD", "domain": "dtd", "backbone": "tiny",
                  "num_shots": 16, "seed": seed, "split": "test", "mean_recall": 40.0 + seed,
                  "i2t": {"R@1": 1.0}, "t2i": {"R@1": 1.0}, **extra}
        (folder / "results.json").write_text(json.dumps(record))
    (summary,) = collect(tmp_path)[0]
    assert summary.mixed == () and summary.setting.subsample_classes == "all" and summary.n_seeds == 2
