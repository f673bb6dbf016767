"""Lay aggregated results out like the papers' tables (DCAR retrieval, DPT few-shot) as Markdown, CSV or LaTeX.

Usage:
    python tools/paper_tables.py dcar output/ --format md|csv|latex [--paper] [--methods ZeroshotCLIP CoOp DCAR]
    python tools/paper_tables.py dpt  output/ --format latex [--shots 1 2 4 8 16] [--out table.tex]

The papers name methods, not trainers, and order datasets their own way; both live here in one place
(``METHOD_NAMES``, ``FDRD_DATASETS``, ``FEWSHOT_DATASETS``) so that a table and a plot never disagree.
Every cell is the mean over seeds; the average row is the plain mean over the datasets present, and the
notes say which datasets entered it when some are missing. With ``--paper`` (DCAR only) each method gets the
published number (DCAR README, CLIP ViT-B/32) and the difference ours − paper beside it.
"""
from __future__ import annotations

import argparse
import csv
import io
import re
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tabulate import tabulate

from tools.results import GroupSummary, collect, seedwise_std

# ------------------------------------------------------------------------------------------------ names

# Trainer name (normalised: lower case, letters and digits only) -> method name as the papers print it.
METHOD_NAMES: dict[str, str] = {
    "zeroshotclip": "CLIP",
    "zeroshotclip2": "CLIP",
    "zsclip": "CLIP",
    "clip": "CLIP",
    "coop": "CoOp",
    "mycoop": "CoOp",  # the name DPT's repository registers its CoOp baseline under
    "cocoop": "CoCoOp",
    "clipadapter": "CLIP-Adapter",
    "maple": "MaPLe",
    "vpt": "VPT",
    "vlp": "VLP",
    "dpt": "DPT",
    "dcar": "DCAR",
    "filip": "FILIP",
    "alip": "ALIP",
    "fineclip": "FineCLIP",
}
ZERO_SHOT_METHODS = frozenset({"CLIP"})  # trained on nothing: one result serves every shot count

DCAR_METHOD_ORDER = ("CLIP", "CoOp", "CLIP-Adapter", "MaPLe", "FILIP", "ALIP", "FineCLIP", "DCAR")
DPT_METHOD_ORDER = ("CLIP", "CoOp", "CoCoOp", "CLIP-Adapter", "VPT", "MaPLe", "VLP", "DPT")

# Dataset alias (normalised; FDRD domain keys, CoOp config names, Dassl class names) -> display name.
DATASET_NAMES: dict[str, str] = {
    "caltech101": "Caltech101",
    "caltech": "Caltech101",
    "oxfordpets": "OxfordPets",
    "pets": "OxfordPets",
    "stanfordcars": "StanfordCars",
    "cars": "StanfordCars",
    "car": "StanfordCars",
    "oxfordflowers": "Flowers102",
    "flowers102": "Flowers102",
    "flowers": "Flowers102",
    "flower": "Flowers102",
    "food101": "Food101",
    "food": "Food101",
    "fgvcaircraft": "FGVCAircraft",
    "aircraft": "FGVCAircraft",
    "plane": "FGVCAircraft",
    "sun397": "SUN397",
    "dtd": "DTD",
    "describabletextures": "DTD",
    "ucf101": "UCF101",
    "eurosat": "EuroSAT",
    "imagenet": "ImageNet",
    "imagenetv2": "ImageNetV2",
    "imagenetsketch": "ImageNet-Sketch",
    "imageneta": "ImageNet-A",
    "imagenetr": "ImageNet-R",
}
FDRD_DATASETS = (
    "Caltech101", "OxfordPets", "StanfordCars", "Flowers102", "Food101", "FGVCAircraft", "SUN397", "DTD", "UCF101",
)
FEWSHOT_DATASETS = (
    "ImageNet", "Caltech101", "OxfordPets", "StanfordCars", "Flowers102", "Food101", "FGVCAircraft", "SUN397", "DTD",
    "EuroSAT", "UCF101",
)
RECALL_KS = (1, 5, 10)
DIRECTIONS = ("i2t", "t2i")
DEFAULT_DCAR_PAPER_CSV = Path(__file__).resolve().parent / "data" / "dcar_readme_table.csv"
PAPER_AVERAGE_LABEL = "AVG"


def _normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def method_name(trainer: str) -> str:
    """The paper's name for a trainer (``ZeroshotCLIP`` -> ``CLIP``); unknown trainers keep their own name."""
    return METHOD_NAMES.get(_normalise(trainer), trainer)


def dataset_name(name: str) -> str:
    """Display name of a dataset or FDRD domain (``fdrd_pets``, ``pets``, ``oxford_pets`` -> ``OxfordPets``)."""
    key = _normalise(name)
    if key.startswith("fdrd") and len(key) > len("fdrd"):
        key = key[len("fdrd") :]
    return DATASET_NAMES.get(key, name)


def summary_dataset(summary: GroupSummary) -> str | None:
    """A group's dataset display name: the FDRD domain when there is one, else the dataset."""
    raw = summary.domain or summary.dataset
    return dataset_name(raw) if raw else None


def ordered(names: Iterable[str], order: Sequence[str]) -> list[str]:
    """``names`` in the paper's order, unknown ones after it alphabetically."""
    names = set(names)
    return [n for n in order if n in names] + sorted(names - set(order))


# ---------------------------------------------------------------------------------------------- lookup


class AmbiguousResultsError(ValueError):
    """Several result groups compete for one table cell; the message names them and the filters to use."""


@dataclass(frozen=True)
class Selection:
    """Filters that pick which runs fill a table (all optional). Zero-shot methods ignore ``shots``."""

    shots: tuple[int, ...] | None = None
    backbone: str | None = None
    cfg: str | None = None
    variant: str | None = None

    def accepts(self, summary: GroupSummary, method: str) -> bool:
        if self.shots is not None and method not in ZERO_SHOT_METHODS and summary.num_shots not in self.shots:
            return False
        if self.cfg is not None and summary.cfg != self.cfg:
            return False
        if self.variant is not None and (summary.variant or "") != self.variant:
            return False
        if self.backbone is not None:
            wanted = _normalise(self.backbone)
            known = summary.backbone or summary.cfg or ""  # CoOp's cfg names start with the backbone (vit_b16_...)
            if not _normalise(known).startswith(wanted):
                return False
        return True


CellKey = tuple[str, str, int | None]  # (method, dataset, shots)


def index_results(
    summaries: Iterable[GroupSummary], task: str, selection: Selection = Selection()
) -> dict[CellKey, GroupSummary]:
    """Map (method, dataset, shots) to its group; several candidates for one key are an error, never a silent pick."""
    index: dict[CellKey, GroupSummary] = {}
    for summary in summaries:
        dataset = summary_dataset(summary)
        if summary.task != task or summary.trainer is None or dataset is None:
            continue
        method = method_name(summary.trainer)
        if not selection.accepts(summary, method):
            continue
        key = (method, dataset, summary.num_shots)
        if key in index:
            raise AmbiguousResultsError(
                f"{method} on {dataset} ({summary.num_shots} shots) has several result groups: "
                f"{index[key].group} and {summary.group}; choose one with --cfg, --variant or --backbone"
            )
        index[key] = summary
    return index


def lookup(
    index: Mapping[CellKey, GroupSummary], method: str, dataset: str, shots: int | None
) -> GroupSummary | None:
    """The group for a cell. ``shots=None`` means "any, if unique"; a zero-shot method serves every shot count."""
    if shots is not None and (method, dataset, shots) in index:
        return index[(method, dataset, shots)]
    if shots is not None and method not in ZERO_SHOT_METHODS:
        return None
    candidates = [summary for (m, d, _), summary in index.items() if m == method and d == dataset]
    if len(candidates) > 1:
        groups = ", ".join(summary.group for summary in candidates)
        raise AmbiguousResultsError(
            f"{method} on {dataset} has results for several shot counts ({groups}); choose one with --shots"
        )
    return candidates[0] if candidates else None


# ----------------------------------------------------------------------------------------- table model

OURS, PAPER, DIFF = "ours", "paper", "diff"


@dataclass(frozen=True)
class Column:
    group: str  # upper header: "I2T", "16 shots" ("" for none)
    method: str
    kind: str = OURS  # OURS | PAPER (published number) | DIFF (ours − paper)

    @property
    def label(self) -> str:
        return {OURS: self.method, PAPER: f"{self.method} (paper)", DIFF: f"Δ {self.method}"}[self.kind]


@dataclass(frozen=True)
class Cell:
    value: float
    std: float | None = None
    n: int | None = None


@dataclass
class Row:
    keys: tuple[str, ...]  # ("Caltech101", "1") or ("Average",)
    cells: list[Cell | None]
    is_average: bool = False


@dataclass
class PaperTable:
    title: str
    key_names: tuple[str, ...]
    columns: list[Column]
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def best_cells(self, decimals: int = 2) -> set[tuple[int, int]]:
        """(row, column) of the best of our methods per row and column group, ties included, as the papers bold.

        Published and difference columns never compete; a group with a single value gets no bold.
        """
        best: set[tuple[int, int]] = set()
        groups = dict.fromkeys(column.group for column in self.columns)
        for r, row in enumerate(self.rows):
            for group in groups:
                candidates = [
                    (round(cell.value, decimals), c)
                    for c, (column, cell) in enumerate(zip(self.columns, row.cells))
                    if column.group == group and column.kind == OURS and cell is not None
                ]
                if len(candidates) < 2:
                    continue
                top = max(value for value, _ in candidates)
                best.update((r, c) for value, c in candidates if value == top)
        return best

    def column_values(self, label: str, group: str = "") -> dict[tuple[str, ...], float]:
        """Values of one column by row keys (handy for checks and tests)."""
        for c, column in enumerate(self.columns):
            if column.label == label and column.group == group:
                return {row.keys: row.cells[c].value for row in self.rows if row.cells[c] is not None}
        raise KeyError(f"no column {group!r} / {label!r}")


def _cell_from(summary: GroupSummary | None, metric: str) -> Cell | None:
    """The mean over seeds; a std only from two seeds on (one seed's std of 0 would look like certainty)."""
    stats = summary.metrics.get(metric) if summary is not None else None
    if stats is None:
        return None
    return Cell(stats.mean, stats.std if stats.n > 1 else None, stats.n)


def _plain_mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _average_notes(label: str, entered: Mapping[str, tuple[str, ...]], universe: Sequence[str]) -> list[str]:
    """Say which datasets entered each average, grouping the columns that share a set."""
    by_set: dict[tuple[str, ...], list[str]] = {}
    for column_label, datasets in entered.items():
        if datasets:
            by_set.setdefault(datasets, []).append(column_label)
    notes = []
    for datasets, columns in by_set.items():
        missing = [d for d in universe if d not in datasets]
        scope = "" if len(by_set) == 1 else f" for {', '.join(columns)}"
        if missing:
            notes.append(
                f"{label}{scope} = plain mean over {', '.join(datasets)} ({len(datasets)} of {len(universe)}; "
                f"missing: {', '.join(missing)})."
            )
        else:
            notes.append(f"{label}{scope} = plain mean over all {len(universe)} datasets.")
    return notes


def _provenance_notes(used: Iterable[GroupSummary]) -> list[str]:
    """Which config/shots/variant each method's numbers come from, and how many seeds back the cells."""
    by_method: dict[str, dict[tuple, str]] = {}
    seed_counts: set[int] = set()
    for summary in used:
        setting = f"{summary.cfg}_{summary.num_shots}shots" if summary.cfg else f"{summary.num_shots} shots"
        if summary.variant:
            setting += f"/{summary.variant}"
        order = (summary.cfg or "", summary.num_shots if summary.num_shots is not None else -1, summary.variant or "")
        by_method.setdefault(method_name(summary.trainer or "?"), {})[order] = setting
        seed_counts.add(summary.n_seeds)
    notes = []
    if seed_counts:
        low, high = min(seed_counts), max(seed_counts)
        notes.append(f"Cells: mean over seeds ({low} seeds per cell)." if low == high else
                     f"Cells: mean over seeds ({low}–{high} seeds per cell; see parse_results.py for which).")
    if by_method:
        described = [
            f"{method}: {', '.join(settings[key] for key in sorted(settings))}"
            for method, settings in by_method.items()
        ]
        notes.append("Runs: " + "; ".join(described) + ".")
    return notes


# -------------------------------------------------------------------------------------------- builders


def load_dcar_paper_table(path: str | Path = DEFAULT_DCAR_PAPER_CSV) -> dict[tuple[str, int, str], dict[str, float]]:
    """Published DCAR numbers: (dataset, K, direction) -> {method: Recall@K}; dataset ``AVG`` is the paper's mean.

    ``#`` lines (the source note) are skipped.
    """
    with Path(path).open(newline="") as handle:
        lines = [line for line in handle if line.strip() and not line.lstrip().startswith("#")]
    reader = csv.DictReader(lines)
    table: dict[tuple[str, int, str], dict[str, float]] = {}
    for record in reader:
        dataset = record.pop("dataset")
        key = (dataset if dataset == PAPER_AVERAGE_LABEL else dataset_name(dataset), int(record.pop("k")),
               record.pop("direction").lower())
        table[key] = {method: float(value) for method, value in record.items() if value not in ("", None)}
    return table


def build_dcar_table(
    summaries: Sequence[GroupSummary],
    methods: Sequence[str] | None = None,
    selection: Selection = Selection(),
    paper: Mapping[tuple[str, int, str], Mapping[str, float]] | None = None,
) -> PaperTable:
    """DCAR's table: rows = FDRD domains × K (+ AVG per K), columns = methods for I2T then T2I.

    With ``paper``, each method present in it gets a published column and a difference column. The paper
    average of a column is the published AVG when our column covers all 9 domains, otherwise the mean of
    the published numbers over the same domains, so that the difference compares like with like.
    """
    index = index_results(summaries, "retrieval", selection)
    methods = [method_name(m) for m in methods] if methods else ordered({k[0] for k in index}, DCAR_METHOD_ORDER)
    datasets = ordered({k[1] for k in index if k[0] in methods}, FDRD_DATASETS)
    paper_methods = set().union(*(set(v) for v in paper.values())) if paper else set()

    columns: list[Column] = []
    for direction in DIRECTIONS:
        for method in methods:
            columns.append(Column(direction.upper(), method))
            if method in paper_methods:
                columns += [Column(direction.upper(), method, PAPER), Column(direction.upper(), method, DIFF)]

    groups = {(m, d): lookup(index, m, d, None) for m in methods for d in datasets}
    table = PaperTable("FDRD image-text retrieval, Recall@K (%)", ("Dataset", "K"), columns)

    def published(dataset: str, k: int, column: Column) -> float | None:
        return (paper or {}).get((dataset, k, column.group.lower()), {}).get(column.method)

    for dataset in datasets:
        for k in RECALL_KS:
            cells: list[Cell | None] = []
            for column in columns:
                ours = _cell_from(groups[(column.method, dataset)], f"{column.group.lower()}/R@{k}")
                reference = published(dataset, k, column)
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
                used = tuple(d for d, _ in present)
                mean = _plain_mean([cell.value for _, cell in present])
                ours_average[(column.group, column.method)] = (mean, used)
                entered[f"{column.group} {column.method}"] = used
                members = [groups[(column.method, d)] for d in used]
                std = seedwise_std(members, f"{column.group.lower()}/R@{k}") if used else None
                cells.append(Cell(mean, std) if mean is not None else None)
                continue
            mean, used = ours_average[(column.group, column.method)]
            reference = published_average(paper, column.method, k, column.group.lower(), used)
            if column.kind == PAPER:
                cells.append(Cell(reference) if reference is not None else None)
            else:
                cells.append(Cell(mean - reference) if mean is not None and reference is not None else None)
        table.rows.append(Row((PAPER_AVERAGE_LABEL, str(k)), cells, is_average=True))

    table.notes += _average_notes(PAPER_AVERAGE_LABEL, entered, FDRD_DATASETS)
    table.notes += _provenance_notes(g for g in groups.values() if g is not None)
    if paper:
        table.notes.append(
            "(paper) = DCAR authors' README (github.com/wyf202322/DCAR, CLIP ViT-B/32); Δ = ours − paper. "
            "Paper AVG = the published AVG when all 9 domains entered ours, else the mean of the published "
            "numbers over the same domains."
        )
    return table


def published_average(
    paper: Mapping[tuple[str, int, str], Mapping[str, float]] | None, method: str, k: int, direction: str,
    used: Sequence[str],
) -> float | None:
    """The published average over the domains that entered ours: the paper's AVG when all 9 did, else their mean."""
    if not paper or not used:
        return None
    if set(used) == set(FDRD_DATASETS):
        return paper.get((PAPER_AVERAGE_LABEL, k, direction), {}).get(method)
    values = [paper.get((d, k, direction), {}).get(method) for d in used]
    return None if any(v is None for v in values) else statistics.fmean(values)


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
            cells.append(_cell_from(summary, metric))
        table.rows.append(Row((dataset,), cells))

    entered: dict[str, tuple[str, ...]] = {}
    average_cells: list[Cell | None] = []
    for c, column in enumerate(columns):
        present = [(row.keys[0], row.cells[c]) for row in table.rows if row.cells[c] is not None]
        used = tuple(d for d, _ in present)
        entered[f"{column.group} {column.method}".strip()] = used
        mean = _plain_mean([cell.value for _, cell in present])
        std = seedwise_std([cell_groups[(c, d)] for d in used], metric) if used else None
        average_cells.append(Cell(mean, std) if mean is not None else None)
    table.rows.append(Row(("Average",), average_cells, is_average=True))
    universe = ordered(set(FEWSHOT_DATASETS) | set(datasets), FEWSHOT_DATASETS)
    table.notes += _average_notes("Average", entered, universe)
    table.notes += _provenance_notes({group.group: group for group in used_groups}.values())
    return table


# ------------------------------------------------------------------------------------------- rendering


def _format_value(cell: Cell, column: Column, decimals: int) -> str:
    return f"{cell.value:+.{decimals}f}" if column.kind == DIFF else f"{cell.value:.{decimals}f}"


def render_markdown(table: PaperTable, decimals: int = 2, show_std: bool = False) -> str:
    best = table.best_cells(decimals)
    headers = list(table.key_names) + [f"{c.group} {c.label}".strip() for c in table.columns]
    body = []
    for r, row in enumerate(table.rows):
        line = list(row.keys)
        for c, (column, cell) in enumerate(zip(table.columns, row.cells)):
            if cell is None:
                line.append("–")
                continue
            text = _format_value(cell, column, decimals)
            if show_std and cell.std is not None and column.kind == OURS:
                text += f" ± {cell.std:.{decimals}f}"
            line.append(f"**{text}**" if (r, c) in best else text)
        body.append(line)
    parts = [f"**{table.title}**", "", tabulate(body, headers=headers, tablefmt="github", disable_numparse=True)]
    if table.notes:
        parts += [""] + [f"- {note}" for note in table.notes]
    return "\n".join(parts) + "\n"


def render_csv(table: PaperTable, decimals: int = 2, show_std: bool = False) -> str:
    """Plain numbers (no bold); with ``show_std`` a ``<column> std`` column follows each of our columns."""
    header = list(table.key_names)
    for column in table.columns:
        header.append(f"{column.group} {column.label}".strip())
        if show_std and column.kind == OURS:
            header.append(f"{column.group} {column.label} std".strip())
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in table.rows:
        line = list(row.keys)
        for column, cell in zip(table.columns, row.cells):
            line.append(_format_value(cell, column, decimals) if cell is not None else "")
            if show_std and column.kind == OURS:
                line.append(f"{cell.std:.{decimals}f}" if cell is not None and cell.std is not None else "")
        writer.writerow(line)
    return buffer.getvalue()


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "Δ": r"$\Delta$",
                  "−": "--", "–": "--", "±": r"$\pm$"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(char, char) for char in text)


def render_latex(table: PaperTable, decimals: int = 2, show_std: bool = False) -> str:
    """A booktabs ``tabular``: grouped headers with cmidrules, the best of our methods in bold, notes as comments."""
    best = table.best_cells(decimals)
    n_keys = len(table.key_names)
    lines = [f"% {latex_escape(table.title)}"] + [f"% {note}" for note in table.notes]
    lines += [r"% requires \usepackage{booktabs}", rf"\begin{{tabular}}{{{'l' * n_keys}{'c' * len(table.columns)}}}"]
    lines.append(r"\toprule")

    spans: list[tuple[str, int, int]] = []  # (group, first column, last column), 1-based over the whole row
    for c, column in enumerate(table.columns, start=n_keys + 1):
        if spans and spans[-1][0] == column.group:
            spans[-1] = (column.group, spans[-1][1], c)
        else:
            spans.append((column.group, c, c))
    if any(group for group, _, _ in spans):
        header = [""] * n_keys + [
            rf"\multicolumn{{{last - first + 1}}}{{c}}{{{latex_escape(group)}}}" for group, first, last in spans
        ]
        lines.append(" & ".join(header) + r" \\")
        lines.append(" ".join(rf"\cmidrule(lr){{{first}-{last}}}" for group, first, last in spans if group))
    names = list(table.key_names) + [column.label for column in table.columns]
    lines.append(" & ".join(latex_escape(name) for name in names) + r" \\")
    lines.append(r"\midrule")

    previous: Row | None = None
    for r, row in enumerate(table.rows):
        new_block = previous is not None and (
            row.is_average != previous.is_average or (n_keys > 1 and row.keys[0] != previous.keys[0])
        )
        if new_block:
            lines.append(r"\midrule")
        keys = [latex_escape(key) for key in row.keys]
        if n_keys > 1 and previous is not None and not new_block:
            keys[0] = ""  # the dataset name heads its block once, as in the papers
        cells = []
        for c, (column, cell) in enumerate(zip(table.columns, row.cells)):
            if cell is None:
                cells.append("--")
                continue
            text = _format_value(cell, column, decimals)
            text = rf"\textbf{{{text}}}" if (r, c) in best else text
            if show_std and cell.std is not None and column.kind == OURS:
                text += rf"$_{{\pm {cell.std:.{decimals}f}}}$"
            cells.append(text)
        lines.append(" & ".join(keys + cells) + r" \\")
        previous = row
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


RENDERERS: dict[str, Callable[[PaperTable, int, bool], str]] = {
    "md": render_markdown,
    "csv": render_csv,
    "latex": render_latex,
}


# ------------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="table", required=True)
    for name, help_text in (("dcar", "FDRD retrieval table (DCAR)"), ("dpt", "few-shot classification table (DPT)")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("root", type=Path, help="output root to scan")
        p.add_argument("--format", choices=sorted(RENDERERS), default="md")
        p.add_argument("--methods", nargs="+", help="trainer or method names, in column order (default: all found)")
        p.add_argument("--shots", type=int, nargs="+", help="shot counts to keep (dpt: the column groups)")
        p.add_argument("--backbone", help="keep runs of this backbone (ViT-B/32 or vit_b32)")
        p.add_argument("--cfg", help="keep runs of this config name (the part before _<N>shots)")
        p.add_argument("--variant", help="keep runs of this variant folder (e.g. nctx16_cscFalse_ctpend)")
        p.add_argument("--std", action="store_true", help="show the std over seeds next to each mean")
        p.add_argument("--decimals", type=int, default=2)
        p.add_argument("--out", type=Path, help="write here instead of stdout")
        if name == "dcar":
            p.add_argument("--paper", action="store_true", help="add the published numbers and ours − paper")
            p.add_argument("--paper-csv", type=Path, default=DEFAULT_DCAR_PAPER_CSV)
        else:
            p.add_argument("--metric", default="accuracy", help="classification metric (accuracy, macro_f1)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    summaries, failed = collect(args.root)
    selection = Selection(tuple(args.shots) if args.shots and args.table == "dcar" else None,
                          args.backbone, args.cfg, args.variant)
    try:
        if args.table == "dcar":
            paper = load_dcar_paper_table(args.paper_csv) if args.paper else None
            table = build_dcar_table(summaries, args.methods, selection, paper)
        else:
            table = build_dpt_table(summaries, args.methods, args.shots, selection, args.metric)
    except AmbiguousResultsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not any(cell is not None for row in table.rows for cell in row.cells):
        print(f"error: no {args.table} results under {args.root}", file=sys.stderr)
        return 1
    if failed:
        print(f"note: {len(failed)} failed run(s) left out; see tools/parse_results.py {args.root}", file=sys.stderr)
    text = RENDERERS[args.format](table, args.decimals, args.std)
    if args.format == "csv" and table.notes:
        print("\n".join(table.notes), file=sys.stderr)  # CSV has no place for notes
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"Wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
