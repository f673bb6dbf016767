"""Base-to-new generalisation (CoCoOp's protocol), laid out as MaPLe's Table 1: for each dataset the base and the
new classes' score and their harmonic mean, per method, and the average over datasets.

    python -m tools.paper_tables base2new output/base2new --format md            # scripts/<method>/base2new.sh
    python -m tools.paper_tables base2new output/base2new --task retrieval       # FDRD: mean recall

Cells come from evaluation runs of ``DATASET.SUBSAMPLE_CLASSES`` base or new (results.json's
``subsample_classes``) that loaded trained weights (``weights_from``) or train nothing (zero-shot CLIP); the
training run on the base classes is not read (its test repeats test_base's). HM = 2·base·new / (base + new)
of the means over seeds; the average row's HM is the HM of the averaged base and new, as CoCoOp and MaPLe
report it (not the mean of the per-dataset HMs).
"""
from __future__ import annotations

import argparse
import statistics
from typing import Sequence

from tools.results import GroupSummary, seedwise_std

from .kind import TableKind
from .model import Cell, Column, PaperTable, Row, average_notes, cell_from, plain_mean, provenance_notes
from .names import DCAR_METHOD_ORDER, DPT_METHOD_ORDER, FDRD_DATASETS, FEWSHOT_DATASETS, method_name, ordered, \
    summary_dataset
from .selection import AmbiguousResultsError, Selection

HALVES = ("base", "new")
COLUMN_GROUPS = ("Base", "New", "HM")
TASKS = {  # task -> (default metric, method order, dataset universe)
    "classification": ("accuracy", DPT_METHOD_ORDER, FEWSHOT_DATASETS),
    "retrieval": ("mean_recall", DCAR_METHOD_ORDER, FDRD_DATASETS),
}


def harmonic_mean(base: float, new: float) -> float:
    """The harmonic mean of the base and new scores (0 when either is 0)."""
    return statistics.harmonic_mean([base, new])


def is_evaluation(summary: GroupSummary) -> bool:
    """Weights loaded from a training run, or nothing to train (zero-shot): what the protocol's tests are."""
    return summary.setting.weights_from is not None or summary.setting.epochs == 0


def source_group(summary: GroupSummary) -> str | None:
    """The trained run folder (without seed) a group's evaluated weights came from."""
    source = summary.setting.weights_source()
    return source.group if source is not None else None


def index_halves(summaries: Sequence[GroupSummary], task: str, selection: Selection
                 ) -> dict[tuple[str, str, str], GroupSummary]:
    """(method, dataset, base|new) -> the evaluation group; two candidates for one cell are an error."""
    index: dict[tuple[str, str, str], GroupSummary] = {}
    for summary in summaries:
        half = summary.setting.subsample_classes
        dataset = summary_dataset(summary)
        if summary.task != task or half not in HALVES or summary.trainer is None or dataset is None:
            continue
        method = method_name(summary.trainer)
        if not is_evaluation(summary) or not selection.accepts(summary, method):
            continue
        key = (method, dataset, half)
        if key in index:
            raise AmbiguousResultsError(
                f"{method} on {dataset} ({half} classes) has several result groups: {index[key].group} and "
                f"{summary.group}; choose one with --cfg, --shots, --backbone or --variant")
        index[key] = summary
    return index


def build_base2new_table(
    summaries: Sequence[GroupSummary],
    methods: Sequence[str] | None = None,
    selection: Selection = Selection(),
    task: str = "classification",
    metric: str | None = None,
) -> PaperTable:
    """Rows = datasets (+ Average), columns = Base, New and HM groups of one column per method."""
    default_metric, method_order, universe = TASKS[task]
    metric = metric or default_metric
    index = index_halves(summaries, task, selection)
    for (method, dataset, _), summary in index.items():
        other = index.get((method, dataset, "new"))
        if other is not None and source_group(summary) != source_group(other):
            raise AmbiguousResultsError(
                f"{method} on {dataset}: the base classes were evaluated from {source_group(summary)} but the new "
                f"ones from {source_group(other)}; both halves must test the same trained runs")
    methods = [method_name(m) for m in methods] if methods else ordered({k[0] for k in index}, method_order)
    datasets = ordered({k[1] for k in index if k[0] in methods}, universe)
    columns = [Column(group, method) for group in COLUMN_GROUPS for method in methods]
    table = PaperTable(f"Base-to-new generalisation, {metric} (%): base classes, new classes, harmonic mean",
                       ("Dataset",), columns)

    both: dict[str, list[tuple[str, float, float]]] = {m: [] for m in methods}  # datasets with base and new
    for dataset in datasets:
        cells: dict[tuple[str, str], Cell | None] = {}
        for method in methods:
            base = cell_from(index.get((method, dataset, "base")), metric)
            new = cell_from(index.get((method, dataset, "new")), metric)
            cells[("Base", method)], cells[("New", method)] = base, new
            cells[("HM", method)] = None
            if base is not None and new is not None:
                cells[("HM", method)] = Cell(harmonic_mean(base.value, new.value))
                both[method].append((dataset, base.value, new.value))
        table.rows.append(Row((dataset,), [cells[(c.group, c.method)] for c in columns]))

    averages: dict[tuple[str, str], Cell | None] = {}
    entered: dict[str, tuple[str, ...]] = {}
    for method in methods:
        base = plain_mean([b for _, b, _ in both[method]])
        new = plain_mean([n for _, _, n in both[method]])
        entered[method] = tuple(d for d, _, _ in both[method])
        for group, half, mean in (("Base", "base", base), ("New", "new", new)):
            # the spread over seeds of the average (None unless every dataset ran the same seeds)
            members = [index[(method, d, half)] for d in entered[method]]
            averages[(group, method)] = Cell(mean, seedwise_std(members, metric)) if mean is not None else None
        averages[("HM", method)] = Cell(harmonic_mean(base, new)) if base is not None else None
    table.rows.append(Row(("Average",), [averages[(c.group, c.method)] for c in columns], is_average=True))

    table.notes.append("HM = 2 · base · new / (base + new), of the means over seeds; the Average row's HM is the "
                       "HM of the average base and new (as CoCoOp and MaPLe report it).")
    table.notes.append("A dataset enters a method's average only with both halves evaluated.")
    table.notes += average_notes("Average", entered, ordered(set(universe) | set(datasets), universe))
    table.notes += provenance_notes(index.values())
    return table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", choices=sorted(TASKS), default="classification",
                        help="classification (accuracy) or FDRD retrieval (mean recall)")
    parser.add_argument("--metric", help="the score of each half (default: accuracy, or mean_recall for retrieval; "
                                         "e.g. i2t/R@1)")


def build_from_args(summaries: Sequence[GroupSummary], args: argparse.Namespace) -> PaperTable:
    return build_base2new_table(summaries, args.methods, Selection.from_args(args), args.task, args.metric)


KIND = TableKind("base2new", "base-to-new generalisation: base, new and their harmonic mean per dataset",
                 add_arguments, build_from_args)
