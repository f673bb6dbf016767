"""Which result groups fill which table cell: filters, and an error (never a silent pick) when several compete."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Iterable, Mapping

from tools.results import GroupSummary

from .names import ZERO_SHOT_METHODS, method_name, normalise, summary_dataset


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
            wanted = normalise(self.backbone)
            # the architecture that ran or the name it was loaded by; for runs that predate results.json,
            # CoOp's cfg name, which starts with the backbone (vit_b16_...)
            known = [name for name in (summary.architecture, summary.backbone) if name] or [summary.cfg or ""]
            if not any(normalise(name).startswith(wanted) for name in known):
                return False
        return True

    @classmethod
    def from_args(cls, args: argparse.Namespace, filter_shots: bool = True) -> "Selection":
        """The filters of the common command-line options (``--shots`` only when it filters runs)."""
        shots = tuple(args.shots) if filter_shots and getattr(args, "shots", None) else None
        return cls(shots, args.backbone, args.cfg, args.variant)


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
