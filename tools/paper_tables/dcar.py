"""DCAR's table: FDRD domains × Recall@K rows, I2T then T2I method columns, optionally beside the paper."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from tools.results import GroupSummary, seedwise_std

from .kind import TableKind
from .model import DIFF, OURS, PAPER, Cell, Column, PaperTable, Row, average_notes, cell_from, plain_mean, \
    provenance_notes
from .names import DCAR_METHOD_ORDER, DIRECTIONS, FDRD_DATASETS, PAPER_AVERAGE_LABEL, RECALL_KS, method_name, \
    ordered
from .published import DEFAULT_DCAR_PAPER_CSV, PublishedTable, check_setting, load_published_table
from .selection import Selection, index_results, lookup

PAPER_NOTE = (
    "(paper) = DCAR authors' README (github.com/wyf202322/DCAR); Δ = ours − paper. Paper AVG = the published AVG "
    "when all 9 domains entered ours, else the mean of the published numbers over the same domains."
)


def build_dcar_table(
    summaries: Sequence[GroupSummary],
    methods: Sequence[str] | None = None,
    selection: Selection = Selection(),
    paper: PublishedTable | None = None,
    any_setting: bool = False,
) -> PaperTable:
    """DCAR's table: rows = FDRD domains × K (+ AVG per K), columns = methods for I2T then T2I.

    With ``paper``, each method present in it gets a published column and a difference column. The paper
    average of a column is the published AVG when our column covers all 9 domains, otherwise the mean of
    the published numbers over the same domains, so that the difference compares like with like. Runs of
    another setting than the paper's are refused (SettingMismatchError) unless ``any_setting``, and then
    the title and notes say so.
    """
    index = index_results(summaries, "retrieval", selection)
    methods = [method_name(m) for m in methods] if methods else ordered({k[0] for k in index}, DCAR_METHOD_ORDER)
    datasets = ordered({k[1] for k in index if k[0] in methods}, FDRD_DATASETS)
    groups = {(m, d): lookup(index, m, d, None) for m in methods for d in datasets}
    paper_methods = paper.methods if paper else frozenset()
    mismatches = []
    if paper:
        used = [(m, d, g) for (m, d), g in groups.items() if g is not None]
        mismatches = check_setting(used, paper, allow_other=any_setting)

    columns: list[Column] = []
    for direction in DIRECTIONS:
        for method in methods:
            columns.append(Column(direction.upper(), method))
            if method in paper_methods:
                columns += [Column(direction.upper(), method, PAPER), Column(direction.upper(), method, DIFF)]

    title = "FDRD image-text retrieval, Recall@K (%)"
    caveat = ""
    if mismatches:
        caveat = f"NOT the paper's setting ({paper.setting.describe()}): published numbers not comparable"
        title += f" — {caveat}"
    table = PaperTable(title, ("Dataset", "K"), columns, caveat=caveat)

    for dataset in datasets:
        for k in RECALL_KS:
            cells: list[Cell | None] = []
            for column in columns:
                ours = cell_from(groups[(column.method, dataset)], f"{column.group.lower()}/R@{k}")
                reference = paper.get(dataset, k, column.group.lower(), column.method) if paper else None
                if column.kind == OURS:
                    cells.append(ours)
                elif column.kind == PAPER:
                    cells.append(Cell(reference) if reference is not None else None)
                else:
                    cells.append(Cell(ours.value - reference) if ours is not None and reference is not None else None)
            table.rows.append(Row((dataset, str(k)), cells))

    entered: dict[str, tuple[str, ...]] = {}
    for k in RECALL_KS:
        dataset_rows = [row for row in table.rows if row.keys[1] == str(k) and not row.is_average]
        cells = []
        ours_average: dict[tuple[str, str], tuple[float | None, tuple[str, ...]]] = {}
        for c, column in enumerate(columns):
            if column.kind == OURS:
                present = [(row.keys[0], row.cells[c]) for row in dataset_rows if row.cells[c] is not None]
                used_datasets = tuple(d for d, _ in present)
                mean = plain_mean([cell.value for _, cell in present])
                ours_average[(column.group, column.method)] = (mean, used_datasets)
                entered[f"{column.group} {column.method}"] = used_datasets
                members = [groups[(column.method, d)] for d in used_datasets]
                std = seedwise_std(members, f"{column.group.lower()}/R@{k}") if used_datasets else None
                cells.append(Cell(mean, std) if mean is not None else None)
                continue
            mean, used_datasets = ours_average[(column.group, column.method)]
            reference = paper.average(column.method, k, column.group.lower(), used_datasets) if paper else None
            if column.kind == PAPER:
                cells.append(Cell(reference) if reference is not None else None)
            else:
                cells.append(Cell(mean - reference) if mean is not None and reference is not None else None)
        table.rows.append(Row((PAPER_AVERAGE_LABEL, str(k)), cells, is_average=True))

    table.notes += average_notes(PAPER_AVERAGE_LABEL, entered, FDRD_DATASETS)
    table.notes += provenance_notes(g for g in groups.values() if g is not None)
    if paper:
        table.notes.append(f"{PAPER_NOTE} Published setting: {paper.setting.describe()}.")
    if mismatches:
        table.notes.append("Shown beside the published numbers although the setting differs (--paper-any-setting): "
                           + "; ".join(mismatches) + ".")
    return table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--paper", action="store_true",
                        help="add the published numbers and ours − paper (runs of the paper's setting only)")
    parser.add_argument("--paper-csv", type=Path, default=DEFAULT_DCAR_PAPER_CSV)
    parser.add_argument("--paper-any-setting", action="store_true",
                        help="with --paper: show runs of another backbone or shot count too (the caption says so)")


def build_from_args(summaries: Sequence[GroupSummary], args: argparse.Namespace) -> PaperTable:
    paper = load_published_table(args.paper_csv) if args.paper else None
    return build_dcar_table(summaries, args.methods, Selection.from_args(args), paper, args.paper_any_setting)


KIND = TableKind("dcar", "FDRD retrieval table (DCAR)", add_arguments, build_from_args)
