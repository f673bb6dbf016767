"""DPT-style few-shot classification table: datasets × (shots × methods), mean over seeds, Average row."""
from __future__ import annotations

import argparse
from typing import Sequence

from tools.results import GroupSummary, seedwise_std

from .kind import TableKind
from .model import Cell, Column, PaperTable, Row, average_notes, cell_from, plain_mean, provenance_notes
from .names import DPT_METHOD_ORDER, FEWSHOT_DATASETS, ZERO_SHOT_METHODS, method_name, ordered
from .selection import Selection, index_results, lookup


def build_dpt_table(
    summaries: Sequence[GroupSummary],
    methods: Sequence[str] | None = None,
    shots: Sequence[int] | None = None,
    selection: Selection = Selection(),
    metric: str = "accuracy",
) -> PaperTable:
    """DPT-style few-shot table: rows = datasets (+ Average), columns = shots × methods, cells = mean over seeds.

    Zero-shot CLIP (trained on nothing) is repeated under every shot count, as the papers draw it.
    """
    index = index_results(summaries, "classification", selection)
    methods = [method_name(m) for m in methods] if methods else ordered({k[0] for k in index}, DPT_METHOD_ORDER)
    if shots is None:
        shots = sorted({s for m, _, s in index if m not in ZERO_SHOT_METHODS and s is not None and s > 0})
    shot_list: list[int | None] = list(shots) or [None]
    datasets = ordered({k[1] for k in index if k[0] in methods}, FEWSHOT_DATASETS)

    columns = [Column(f"{s} shots" if s is not None else "", m) for s in shot_list for m in methods]
    column_shots = [s for s in shot_list for _ in methods]
    table = PaperTable(f"Few-shot classification, {metric} (%)", ("Dataset",), columns)
    used_groups: list[GroupSummary] = []
    cell_groups: dict[tuple[int, str], GroupSummary] = {}
    for dataset in datasets:
        cells = []
        for c, column in enumerate(columns):
            summary = lookup(index, column.method, dataset, column_shots[c])
            if summary is not None:
                used_groups.append(summary)
                cell_groups[(c, dataset)] = summary
            cells.append(cell_from(summary, metric))
        table.rows.append(Row((dataset,), cells))

    entered: dict[str, tuple[str, ...]] = {}
    average_cells: list[Cell | None] = []
    for c, column in enumerate(columns):
        present = [(row.keys[0], row.cells[c]) for row in table.rows if row.cells[c] is not None]
        used = tuple(d for d, _ in present)
        entered[f"{column.group} {column.method}".strip()] = used
        mean = plain_mean([cell.value for _, cell in present])
        std = seedwise_std([cell_groups[(c, d)] for d in used], metric) if used else None
        average_cells.append(Cell(mean, std) if mean is not None else None)
    table.rows.append(Row(("Average",), average_cells, is_average=True))
    universe = ordered(set(FEWSHOT_DATASETS) | set(datasets), FEWSHOT_DATASETS)
    table.notes += average_notes("Average", entered, universe)
    table.notes += provenance_notes({group.group: group for group in used_groups}.values())
    return table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metric", default="accuracy", help="classification metric (accuracy, macro_f1)")


def build_from_args(summaries: Sequence[GroupSummary], args: argparse.Namespace) -> PaperTable:
    return build_dpt_table(summaries, args.methods, args.shots, Selection.from_args(args, filter_shots=False),
                           args.metric)


KIND = TableKind("dpt", "few-shot classification table (DPT); --shots are its column groups", add_arguments,
                 build_from_args, shots_filter=False)
