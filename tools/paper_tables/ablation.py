"""DCAR's ablation table: one row per variant of ``scripts/dcar/ablation.sh``, mean ± std over seeds, and each
row's paired difference to the full model with a paired t-test over the seeds both ran.

    python -m tools.paper_tables ablation output/fdrd_synthetic/DCAR/demo_16shots --format md --std
"""
from __future__ import annotations

import argparse
from typing import Sequence

from tools.dcar_ablation import ROW_NAMES
from tools.results import GroupSummary, paired_difference

from .kind import TableKind
from .model import COUNT, DIFF, STAT, Cell, Column, PaperTable, Row, cell_from, provenance_notes
from .names import summary_dataset
from .selection import AmbiguousResultsError, Selection

FULL = "full"
METRICS = (("mean_recall", "mean recall"), ("i2t/R@1", "I2T R@1"), ("t2i/R@1", "T2I R@1"),
           ("hard_negative_i2t/R@1", "hard-neg R@1"))
#: the metrics compared seed by seed with the full model: overall recall, and the fine-grained part DCAR targets
PAIRED = (("mean_recall", "mean recall"), ("hard_negative_i2t/R@1", "hard-neg R@1"))


def paired(full: GroupSummary, row: GroupSummary, metric: str) -> tuple[Cell | None, Cell | None]:
    """(row − full as mean ± std over the shared seeds, two-sided paired t-test p-value) of ``metric``."""
    a, b = full.metrics.get(metric), row.metrics.get(metric)
    if a is None or b is None:
        return None, None
    by_seed = dict(zip(a.seeds, a.values))
    pairs = [(value, by_seed[seed]) for seed, value in zip(b.seeds, b.values) if seed in by_seed]
    if not pairs:
        return None, None
    mean, std, p_value = paired_difference([x for x, _ in pairs], [y for _, y in pairs])
    delta = Cell(mean, std, len(pairs))
    return delta, None if p_value is None else Cell(p_value, None, len(pairs))


def build_ablation_table(summaries: Sequence[GroupSummary], selection: Selection = Selection(),
                         trainer: str = "DCAR") -> PaperTable:
    groups: dict[str, GroupSummary] = {}
    for summary in summaries:
        if summary.trainer != trainer or summary.task != "retrieval" or not selection.accepts(summary, trainer):
            continue
        name = summary.variant or FULL
        if name in groups:
            raise AmbiguousResultsError(
                f"two {trainer} runs for ablation row {name!r}: {groups[name].group} and {summary.group}; point the "
                "table at one dataset/recipe folder or use --cfg/--shots/--backbone")
        groups[name] = summary
    order = [n for n in ROW_NAMES if n in groups] + sorted(n for n in groups if n not in ROW_NAMES)
    columns = [Column("", label) for _, label in METRICS]
    for metric, label in PAIRED:
        columns += [Column("vs full", label, DIFF), Column("vs full", f"p {label}", STAT)]
    columns.append(Column("", "seeds", COUNT))
    datasets = sorted({summary_dataset(g) or "?" for g in groups.values()})
    table = PaperTable(f"{trainer} ablation on {', '.join(datasets)}: mean recall and R@1 (%), mean ± std over seeds",
                       ("row",), columns)
    full = groups.get(FULL)
    for name in order:
        group = groups[name]
        cells = [cell_from(group, metric) for metric, _ in METRICS]
        for metric, _ in PAIRED:
            cells += list(paired(full, group, metric)) if full is not None and name != FULL else [None, None]
        cells.append(Cell(float(len(group.seeds))))
        table.rows.append(Row((name,), cells))
    if full is None:
        table.notes.append("No 'full' row: differences and p-values need the full model's runs.")
    else:
        table.notes.append("vs full: the row's value minus the full model's, seed by seed over the seeds both ran "
                           "(mean ± std of the differences); p: two-sided paired t-test over those seeds.")
    table.notes += provenance_notes(groups.values())
    return table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trainer", default="DCAR", help="the trainer whose variants are the rows")


def build_from_args(summaries: Sequence[GroupSummary], args: argparse.Namespace) -> PaperTable:
    return build_ablation_table(summaries, Selection.from_args(args), args.trainer)


KIND = TableKind("ablation", "DCAR's ablation: a row per variant, paired differences to the full model",
                 add_arguments, build_from_args)
