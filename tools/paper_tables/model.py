"""The table model every table kind fills and every renderer reads, and the notes all tables share."""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Iterable, Mapping, Sequence

from tools.results import GroupSummary

from .names import method_name

OURS, PAPER, DIFF, STAT = "ours", "paper", "diff", "stat"  # STAT: a statistic (p-value), never bold
COUNT = "count"  # a whole number (seeds), never bold
CHECKPOINT_SUFFIXES = frozenset({".pt", ".pth", ".bin", ".safetensors", ".tar"})  # a backbone given as a file


@dataclass(frozen=True)
class Column:
    group: str  # upper header: "I2T", "16 shots" ("" for none)
    method: str
    kind: str = OURS  # OURS | PAPER (published number) | DIFF (ours − paper, or a paired difference) | STAT | COUNT

    @property
    def label(self) -> str:
        return {OURS: self.method, PAPER: f"{self.method} (paper)", DIFF: f"Δ {self.method}",
                STAT: self.method, COUNT: self.method}[self.kind]


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
    #: a warning that must stay visible wherever the table goes (LaTeX: a row under the table, CSV: the headers
    #: of the published and difference columns), e.g. published numbers beside runs of another setting
    caveat: str = ""

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

    def is_empty(self) -> bool:
        return not any(cell is not None for row in self.rows for cell in row.cells)


def cell_from(summary: GroupSummary | None, metric: str) -> Cell | None:
    """The mean over seeds; a std only from two seeds on (one seed's std of 0 would look like certainty)."""
    stats = summary.metrics.get(metric) if summary is not None else None
    if stats is None:
        return None
    return Cell(stats.mean, stats.std if stats.n > 1 else None, stats.n)


def plain_mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def average_notes(label: str, entered: Mapping[str, tuple[str, ...]], universe: Sequence[str]) -> list[str]:
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


def describe_setting(summary: GroupSummary) -> str:
    """What ran, in a few words: ``ViT-B/32, 16 shots (9-16 per class), 20 epochs, configs/.../vit_b32.yaml``."""
    parts = [backbone_label(summary)]
    if summary.num_shots is not None:
        parts.append("all training data" if summary.num_shots < 0 else f"{summary.num_shots} shots")
        real = summary.setting.shots_per_class
        if real is not None and summary.num_shots > 0 and real != (summary.num_shots, summary.num_shots):
            low, high = real
            parts[-1] += f" ({low}–{high} per class)" if low != high else f" ({low} per class)"
    if summary.setting.epochs is not None:
        parts.append(f"{summary.setting.epochs} epochs")
    if summary.setting.config_file:
        parts.append(summary.setting.config_file)
    if summary.mixed:
        parts.append(f"seeds differ in {', '.join(summary.mixed)}")
    return ", ".join(parts)


def backbone_label(summary: GroupSummary) -> str:
    """The architecture that ran, else the backbone name (a checkpoint path shortened to its file name)."""
    if summary.architecture:
        return summary.architecture
    if summary.backbone:
        name = PurePath(summary.backbone)
        return name.name if name.suffix in CHECKPOINT_SUFFIXES else summary.backbone
    return "backbone unknown"


def provenance_notes(used: Iterable[GroupSummary]) -> list[str]:
    """Where each method's numbers come from (folder, backbone, shots, epochs, recipe) and how many seeds."""
    by_method: dict[str, dict[tuple, str]] = {}
    seed_counts: set[int] = set()
    for summary in used:
        folder = f"{summary.cfg}_{summary.num_shots}shots" if summary.cfg else f"{summary.num_shots} shots"
        if summary.variant:
            folder += f"/{summary.variant}"
        order = (summary.cfg or "", summary.num_shots if summary.num_shots is not None else -1, summary.variant or "")
        by_method.setdefault(method_name(summary.trainer or "?"), {})[order] = f"{folder} ({describe_setting(summary)})"
        seed_counts.add(summary.n_seeds)
    notes = []
    if seed_counts:
        low, high = min(seed_counts), max(seed_counts)
        notes.append(f"Cells: mean over seeds ({low} seeds per cell)." if low == high else
                     f"Cells: mean over seeds ({low}–{high} seeds per cell; see tools.parse_results for which).")
    if by_method:
        described = [
            f"{method}: {', '.join(dict.fromkeys(settings[key] for key in sorted(settings)))}"
            for method, settings in by_method.items()
        ]
        notes.append("Runs: " + "; ".join(described) + ".")
    return notes
