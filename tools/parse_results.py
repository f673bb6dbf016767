"""Print every configuration under an output root as mean ± std over seeds (CoOp's parse_test_res.py, for all runs).

Usage:
    python -m tools.parse_results output/ [--csv results.csv] [--expect-seeds 1 2 3] [--ci95]

One table per task (classification: accuracy, macro F1; retrieval: I2T/T2I Recall@K and mean recall), then
warnings for groups missing seeds and the list of failed runs with their logs, so that a half-finished sweep
is never mistaken for a finished one.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Sequence


if not __package__:  # started as a file: the imports below need the repository root, as `python -m` gives
    print("error: run this tool from the repository root as a module: python -m tools.parse_results ...", file=sys.stderr)
    sys.exit(2)

from tabulate import tabulate

from tools.results import (
    LOG_FILE,
    RESULTS_FILE,
    STD_NOTE,
    FailedRun,
    GroupSummary,
    SeedWarning,
    check_seeds,
    collect,
    format_mean_std,
    metric_label,
    sort_metric_names,
)

_DESCRIPTIVE_COLUMNS = ("group", "task", "trainer", "dataset", "domain", "backbone", "architecture", "cfg", "num_shots",
                        "variant")


def metric_names(summaries: Sequence[GroupSummary]) -> list[str]:
    """Every metric present in any of the groups, in display order."""
    return sort_metric_names(name for summary in summaries for name in summary.metrics)


def render_summary_table(summaries: Sequence[GroupSummary], decimals: int = 2, ci95: bool = False) -> str:
    """A plain-text table: group path, number of seeds, then ``mean ± std`` per metric."""
    names = metric_names(summaries)
    headers = ["group", "seeds"] + [metric_label(name) for name in names]
    rows = []
    for summary in summaries:
        cells = [
            format_mean_std(summary.metrics[name], decimals, ci95) if name in summary.metrics else "–"
            for name in names
        ]
        rows.append([summary.group, str(summary.n_seeds)] + cells)
    return tabulate(rows, headers=headers, disable_numparse=True)


def render_seed_warnings(warnings: Sequence[SeedWarning]) -> list[str]:
    lines = []
    for warning in warnings:
        found = ", ".join(str(seed) for seed in warning.found) or "none"
        missing = f"; missing seed(s) {', '.join(map(str, warning.missing))}" if warning.missing else ""
        counts = f"{len(warning.found)}/{warning.expected} seeds"
        lines.append(f"WARNING: {warning.group}: {counts} (found {found}{missing})")
    return lines


def render_failed(failed: Sequence[FailedRun]) -> list[str]:
    lines = []
    for run in failed:
        logs = ", ".join(str(path) for path in run.log_paths) or "(no log)"
        lines.append(f"FAILED: {run.run_dir}: {run.reason}; log: {logs}")
    return lines


def write_csv(summaries: Sequence[GroupSummary], path: Path, ci95: bool = False) -> None:
    """One row per group: the descriptive fields, the seeds, then ``<metric> mean/std[/ci95]`` columns."""
    names = metric_names(summaries)
    stat_fields = ("mean", "std", "ci95") if ci95 else ("mean", "std")
    header = list(_DESCRIPTIVE_COLUMNS) + ["n_seeds", "seeds"]
    header += [f"{name} {stat}" for name in names for stat in stat_fields]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for summary in summaries:
            row: list[object] = [getattr(summary, column) for column in _DESCRIPTIVE_COLUMNS]
            row += [summary.n_seeds, " ".join(str(seed) for seed in summary.seeds)]
            for name in names:
                stats = summary.metrics.get(name)
                for stat in stat_fields:
                    value = getattr(stats, stat) if stats is not None else None
                    row.append("" if value is None else f"{value:.4f}")
            writer.writerow(["" if cell is None else cell for cell in row])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="output root to scan (e.g. output/)")
    parser.add_argument("--csv", type=Path, help="also write one row per group to this CSV file")
    parser.add_argument("--expect-seeds", type=int, nargs="+", metavar="SEED",
                        help="warn about groups missing any of these")
    parser.add_argument("--ci95", action="store_true", help="also print the Student-t 95%% CI half-width [±x]")
    parser.add_argument("--decimals", type=int, default=2)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.root.is_dir():
        print(f"error: {args.root} is not a directory", file=sys.stderr)
        return 2
    summaries, failed = collect(args.root)
    if not summaries and not failed:
        print(f"No runs found under {args.root} (looked for {RESULTS_FILE} and Dassl {LOG_FILE}).")
        return 1
    for task in sorted({summary.task for summary in summaries}):
        of_task = [summary for summary in summaries if summary.task == task]
        print(f"\n== {task} ({len(of_task)} groups; {STD_NOTE}" + ("; [±x] = 95% CI" if args.ci95 else "") + ")")
        print(render_summary_table(of_task, args.decimals, args.ci95))
    messages = render_seed_warnings(check_seeds(summaries, args.expect_seeds)) + render_failed(failed)
    if messages:
        print()
        print("\n".join(messages))
    if args.csv:
        write_csv(summaries, args.csv, args.ci95)
        print(f"\nWrote {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
