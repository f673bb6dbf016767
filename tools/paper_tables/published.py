"""Published numbers, the setting they were measured in, and the guard that keeps them beside like runs only.

A published-numbers file is a CSV (``dataset,k,direction,<method>...``) whose ``#`` lines carry the source
and one ``# setting:`` line, e.g. ``# setting: backbone=ViT-B/32; shots=16,all``. A table or plot shows
the published numbers only beside runs of that setting; anything else is refused with a message naming
the runs and what differs, unless the caller allows it explicitly (and the caption then says so).
"""
from __future__ import annotations

import csv
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from tools.results import GroupSummary

from .model import backbone_label
from .names import FDRD_DATASETS, PAPER_AVERAGE_LABEL, ZERO_SHOT_METHODS, dataset_name, normalise

DEFAULT_DCAR_PAPER_CSV = Path(__file__).resolve().parents[1] / "data" / "dcar_readme_table.csv"
ALL_SHOTS = -1  # DATASET.NUM_SHOTS for the whole training split

PublishedKey = tuple[str, int, str]  # (dataset display name or AVG, K, direction)


class SettingMismatchError(ValueError):
    """Runs of another setting than the published numbers'; the message lists them and the options."""


@dataclass(frozen=True)
class PaperSetting:
    """The setting published numbers were measured in. ``shots`` are the accepted NUM_SHOTS (-1 = all)."""

    backbone: str | None = None
    shots: tuple[int, ...] | None = None

    @classmethod
    def parse(cls, text: str) -> "PaperSetting":
        """``backbone=ViT-B/32; shots=16,all`` (keys optional)."""
        values: dict[str, str] = {}
        for part in text.split(";"):
            key, sep, value = part.partition("=")
            if sep:
                values[key.strip().lower()] = value.strip()
        shots = None
        if "shots" in values:
            shots = tuple(ALL_SHOTS if s.strip() == "all" else int(s) for s in values["shots"].split(",") if s.strip())
        return cls(values.get("backbone") or None, shots)

    def describe(self) -> str:
        parts = []
        if self.backbone:
            parts.append(f"CLIP {self.backbone}")
        if self.shots:
            names = ["the full training split" if s == ALL_SHOTS else f"{s} shots" for s in self.shots]
            parts.append(" or ".join(names))
        return ", ".join(parts) or "no stated setting"

    def differences(self, summary: GroupSummary, method: str) -> list[str]:
        """How a group's runs differ from this setting (empty: comparable)."""
        found = []
        if self.backbone:
            ran = summary.architecture or summary.backbone
            if ran is None:
                found.append("backbone unknown (no results.json)")
            elif normalise(ran) != normalise(self.backbone):
                found.append(f"backbone {backbone_label(summary)}")
        if self.shots and method not in ZERO_SHOT_METHODS and summary.num_shots not in self.shots:
            found.append("shots unknown" if summary.num_shots is None else f"{summary.num_shots} shots")
        if summary.mixed:
            found.append(f"its seeds differ in {', '.join(summary.mixed)}")
        return found


@dataclass(frozen=True)
class PublishedTable:
    """Published numbers: (dataset, K, direction) -> {method: value}; dataset ``AVG`` is the paper's mean."""

    values: dict[PublishedKey, dict[str, float]]
    setting: PaperSetting = PaperSetting()
    source: str = ""  # the file's first comment line, for the table notes

    @property
    def methods(self) -> frozenset[str]:
        return frozenset(method for row in self.values.values() for method in row)

    def get(self, dataset: str, k: int, direction: str, method: str) -> float | None:
        return self.values.get((dataset, k, direction), {}).get(method)

    def average(self, method: str, k: int, direction: str, used: Sequence[str],
                universe: Sequence[str] = FDRD_DATASETS) -> float | None:
        """The published mean over the datasets that entered ours: the paper's AVG when all did, else their mean."""
        if not used:
            return None
        if set(used) == set(universe):
            return self.get(PAPER_AVERAGE_LABEL, k, direction, method)
        values = [self.get(d, k, direction, method) for d in used]
        return None if any(v is None for v in values) else statistics.fmean(values)


def load_published_table(path: str | Path = DEFAULT_DCAR_PAPER_CSV) -> PublishedTable:
    """Read a published-numbers CSV (``#`` lines: source notes and the ``# setting:`` line)."""
    comments, lines = [], []
    with Path(path).open(newline="") as handle:
        for line in handle:
            if line.lstrip().startswith("#"):
                comments.append(line.lstrip()[1:].strip())
            elif line.strip():
                lines.append(line)
    values: dict[PublishedKey, dict[str, float]] = {}
    for record in csv.DictReader(lines):
        dataset = record.pop("dataset")
        key = (dataset if dataset == PAPER_AVERAGE_LABEL else dataset_name(dataset), int(record.pop("k")),
               record.pop("direction").lower())
        values[key] = {method: float(value) for method, value in record.items() if value not in ("", None)}
    settings = [c.split(":", 1)[1] for c in comments if c.lower().startswith("setting:")]
    sources = [c for c in comments if not c.lower().startswith("setting:")]
    return PublishedTable(values, PaperSetting.parse(settings[0]) if settings else PaperSetting(),
                          sources[0] if sources else str(path))


def check_setting(
    used: Iterable[tuple[str, str, GroupSummary]], published: PublishedTable, allow_other: bool = False,
    flag: str = "--paper-any-setting",
) -> list[str]:
    """Refuse (SettingMismatchError) to put published numbers beside runs of another setting.

    ``used``: (method, dataset, group) of every cell that would stand beside a published number. With
    ``allow_other`` nothing is refused; the differences come back as lines for the caption instead.
    """
    mismatches = []
    for method, dataset, group in used:
        if method not in published.methods:
            continue
        differences = published.setting.differences(group, method)
        if differences:
            mismatches.append(f"{method} on {dataset} ({group.group}): {', '.join(differences)}")
    if mismatches and not allow_other:
        shown = mismatches[:8] + ([f"... and {len(mismatches) - 8} more"] if len(mismatches) > 8 else [])
        raise SettingMismatchError(
            f"the published numbers were measured with {published.setting.describe()}; these runs were not:\n  "
            + "\n  ".join(shown)
            + f"\nKeep only runs of that setting (--backbone, --shots), drop --paper, or pass {flag} to show "
            "them side by side anyway (the caption then says the setting differs)."
        )
    return mismatches
