"""Transfer without further training, laid out as MaPLe's Tables 2 and 3: models trained on a source dataset
(ImageNet, or one FDRD domain) evaluated on other datasets.

    python -m tools.paper_tables crossdataset output/                    # scripts/transfer/cross_dataset.sh
    python -m tools.paper_tables dg output/                              # scripts/dpt/dg.sh: ImageNet -> V2/S/A/R
    python -m tools.paper_tables crossdataset output/ --task retrieval   # scripts/transfer/cross_domain.sh (FDRD)

Rows = datasets (+ Average over the targets), columns = one per method under each source. A target cell is
an evaluation run that loaded trained weights (results.json's ``weights_from``) on all classes; its source is
the folder those weights came from, and the source's own row is that training run's in-domain test (when it
lies under the root). Zero-shot CLIP (nothing trained) fills every row of every source.
"""
from __future__ import annotations

import argparse
from typing import Sequence

from tools.results import GroupSummary

from .kind import TableKind
from .model import Cell, Column, PaperTable, Row, average_notes, cell_from, plain_mean, provenance_notes
from .names import DCAR_METHOD_ORDER, DPT_METHOD_ORDER, FDRD_DATASETS, FEWSHOT_DATASETS, IMAGENET_VARIANTS, \
    ZERO_SHOT_METHODS, dataset_name, method_name, ordered, summary_dataset
from .selection import AmbiguousResultsError, Selection

TASKS = {  # task -> (default metric, method order)
    "classification": ("accuracy", DPT_METHOD_ORDER),
    "retrieval": ("mean_recall", DCAR_METHOD_ORDER),
}


def _all_classes(summary: GroupSummary) -> bool:
    return summary.setting.subsample_classes in (None, "all")


def _is_source_of(trained: GroupSummary, weights_group: str) -> bool:
    """Whether ``trained`` (a group path relative to the table's root) is the run folder ``weights_group`` names
    (a path as the evaluation was given it, relative to where it ran or absolute)."""
    return weights_group == trained.group or weights_group.endswith("/" + trained.group)


def build_transfer_table(
    summaries: Sequence[GroupSummary],
    universe: Sequence[str],
    title: str,
    methods: Sequence[str] | None = None,
    selection: Selection = Selection(),
    task: str = "classification",
    metric: str | None = None,
) -> PaperTable:
    default_metric, method_order = TASKS[task]
    metric = metric or default_metric
    usable = [s for s in summaries if s.task == task and s.trainer is not None and _all_classes(s)
              and summary_dataset(s) in universe and selection.accepts(s, method_name(s.trainer))]
    trained = [s for s in usable if s.setting.weights_from is None and s.setting.epochs != 0]
    zero_shot = [s for s in usable if method_name(s.trainer) in ZERO_SHOT_METHODS and s.setting.weights_from is None]

    # (source dataset, method) -> {target dataset: group}; the source's own entry is the training run
    cells: dict[tuple[str, str], dict[str, GroupSummary]] = {}
    for summary in usable:
        source = summary.setting.weights_source()
        if source is None:
            continue
        method = method_name(summary.trainer)
        # the source dataset: the training run's own record when it lies under the root, else its folder's name
        origin = next((c for c in trained if method_name(c.trainer) == method and _is_source_of(c, source.group)), None)
        source_dataset = summary_dataset(origin) if origin is not None else dataset_name(source.dataset or "?")
        if source_dataset not in universe:
            continue
        targets = cells.setdefault((source_dataset, method), {})
        target = summary_dataset(summary)
        if target in targets and targets[target].group != summary.group:
            raise AmbiguousResultsError(
                f"{method} trained on {source_dataset} has several evaluations on {target}: {targets[target].group} "
                f"and {summary.group}; choose one with --cfg, --shots, --backbone or --variant")
        targets[target] = summary
        if origin is not None:
            targets.setdefault(source_dataset, origin)
    sources = ordered({source for source, _ in cells}, universe)
    found = {method for _, method in cells} | {method_name(s.trainer) for s in zero_shot}
    methods = [method_name(m) for m in methods] if methods else ordered(found, method_order)
    for summary in zero_shot:
        for source in sources:
            entry = cells.setdefault((source, method_name(summary.trainer)), {})
            if summary_dataset(summary) in entry:
                raise AmbiguousResultsError(f"zero-shot {summary.trainer} has several runs on "
                                            f"{summary_dataset(summary)}: {entry[summary_dataset(summary)].group} and "
                                            f"{summary.group}; choose one with --cfg or --backbone")
            entry[summary_dataset(summary)] = summary

    columns = [Column(f"from {source}", method) for source in sources for method in methods]
    rows = ordered({d for entry in cells.values() for d in entry} | set(sources), universe)
    table = PaperTable(f"{title}, {metric} (%)", ("Dataset",), columns)
    for dataset in rows:
        table.rows.append(Row((dataset,), [
            cell_from(cells.get((source_of(column), column.method), {}).get(dataset), metric) for column in columns]))
    entered: dict[str, tuple[str, ...]] = {}
    average: list[Cell | None] = []
    for c, column in enumerate(columns):
        present = [(row.keys[0], row.cells[c]) for row in table.rows
                   if row.cells[c] is not None and row.keys[0] != source_of(column)]
        entered[f"{column.group} {column.method}"] = tuple(d for d, _ in present)
        mean = plain_mean([cell.value for _, cell in present])
        average.append(Cell(mean) if mean is not None else None)
    table.rows.append(Row(("Average",), average, is_average=True))
    for source in sources:
        table.notes.append(f"from {source}: trained on {source} (its row: the training run's own test), evaluated "
                           "on the other rows without further training.")
    targets = [d for d in universe if d not in sources]
    table.notes += average_notes("Average (targets only)", entered, targets if len(sources) == 1 else universe)
    used = {g.group: g for entry in cells.values() for g in entry.values()}
    table.notes += provenance_notes(used.values())
    return table


def source_of(column: Column) -> str:
    return column.group.removeprefix("from ")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", choices=sorted(TASKS), default="classification",
                        help="classification, or FDRD retrieval (cross-domain: one column group per source domain)")
    parser.add_argument("--metric", help="default: accuracy, or mean_recall for retrieval (e.g. i2t/R@1)")


def build_crossdataset(summaries: Sequence[GroupSummary], args: argparse.Namespace) -> PaperTable:
    retrieval = args.task == "retrieval"
    return build_transfer_table(
        summaries, FDRD_DATASETS if retrieval else FEWSHOT_DATASETS,
        "Cross-domain transfer on FDRD" if retrieval else "Cross-dataset transfer",
        args.methods, Selection.from_args(args), args.task, args.metric)


def build_dg(summaries: Sequence[GroupSummary], args: argparse.Namespace) -> PaperTable:
    return build_transfer_table(summaries, IMAGENET_VARIANTS, "Domain generalisation from ImageNet", args.methods,
                                Selection.from_args(args), "classification", args.metric)


def add_dg_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metric", help="default: accuracy")


CROSSDATASET = TableKind("crossdataset", "transfer without training: ImageNet -> 10 datasets (or, --task retrieval, "
                         "one FDRD domain -> the others)", add_arguments, build_crossdataset)
DG = TableKind("dg", "domain generalisation: ImageNet -> ImageNetV2, -Sketch, -A, -R", add_dg_arguments, build_dg)
