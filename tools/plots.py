"""PNG plots of aggregated results: few-shot curves (CoOp/DPT style) and Recall@K curves (DCAR/FDRD).

Usage:
    python tools/plots.py fewshot output/ --out plots/ [--methods ZeroshotCLIP CoOp DPT] [--metric accuracy]
    python tools/plots.py recall  output/ --out plots/ [--shots 16] [--paper]

Figures are drawn on matplotlib's Agg canvas directly (no pyplot), so importing this module never changes
the caller's backend and it works on machines without a display. Error bars are the std over seeds
(population std, as in the tables); the average panel gets error bars only when every dataset has the same
seeds, since a seed's average is otherwise undefined.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path
from typing import Mapping, Sequence

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tools.paper_tables import (
    DCAR_METHOD_ORDER,
    DEFAULT_DCAR_PAPER_CSV,
    DIRECTIONS,
    DPT_METHOD_ORDER,
    FDRD_DATASETS,
    FEWSHOT_DATASETS,
    PAPER_AVERAGE_LABEL,
    RECALL_KS,
    ZERO_SHOT_METHODS,
    Selection,
    index_results,
    load_dcar_paper_table,
    published_average,
    lookup,
    method_name,
    ordered,
)
from tools.results import GroupSummary, collect, seedwise_std

_PANEL_WIDTH, _PANEL_HEIGHT, _MAX_COLUMNS = 4.0, 3.2, 4


def _new_figure(n_panels: int, n_columns: int) -> tuple[Figure, list]:
    n_columns = max(1, min(n_columns, n_panels))
    n_rows = math.ceil(n_panels / n_columns)
    figure = Figure(figsize=(_PANEL_WIDTH * n_columns, _PANEL_HEIGHT * n_rows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(n_rows, n_columns, squeeze=False).ravel().tolist()
    for unused in axes[n_panels:]:
        unused.set_visible(False)
    return figure, axes[:n_panels]


def _method_colours(methods: Sequence[str]) -> dict[str, str]:
    """One colour per method across every panel."""
    return {method: f"C{i % 10}" for i, method in enumerate(methods)}


def _average_point(groups: Sequence[GroupSummary], metric: str) -> tuple[float, float | None]:
    mean = statistics.fmean(group.metrics[metric].mean for group in groups)
    return mean, seedwise_std(groups, metric)


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path


def plot_fewshot(
    summaries: Sequence[GroupSummary],
    out_path: Path,
    methods: Sequence[str] | None = None,
    selection: Selection = Selection(),
    metric: str = "accuracy",
) -> Path:
    """Metric vs shots (log2 axis), one line per method, one panel per dataset plus the average.

    Zero-shot CLIP has no shots: it is a dashed horizontal line.
    """
    index = index_results(summaries, "classification", selection)
    index = {key: group for key, group in index.items() if metric in group.metrics}
    methods = [method_name(m) for m in methods] if methods else ordered({k[0] for k in index}, DPT_METHOD_ORDER)
    datasets = ordered({d for m, d, _ in index if m in methods}, FEWSHOT_DATASETS)
    if not datasets:
        raise ValueError(f"no classification results with {metric!r} to plot")
    colours = _method_colours(methods)
    figure, axes = _new_figure(len(datasets) + 1, _MAX_COLUMNS)
    all_shots = sorted({s for m, _, s in index if m not in ZERO_SHOT_METHODS and s is not None and s > 0})

    for ax, dataset in zip(axes, datasets):
        for method in methods:
            if method in ZERO_SHOT_METHODS:
                group = lookup(index, method, dataset, None)
                if group is not None:
                    ax.axhline(group.metrics[metric].mean, color=colours[method], linestyle="--", label=method)
                continue
            points = sorted((s, g) for (m, d, s), g in index.items() if m == method and d == dataset and s and s > 0)
            if points:
                ax.errorbar([s for s, _ in points], [g.metrics[metric].mean for _, g in points],
                            yerr=[g.metrics[metric].std for _, g in points], marker="o", capsize=3,
                            color=colours[method], label=method)
        ax.set_title(dataset)

    average_ax = axes[len(datasets)]
    for method in methods:
        by_shots: dict[int | None, list[GroupSummary]] = {}
        for (m, _, s), group in index.items():
            if m == method:
                by_shots.setdefault(None if method in ZERO_SHOT_METHODS else s, []).append(group)
        if method in ZERO_SHOT_METHODS and None in by_shots:
            level = _average_point(by_shots[None], metric)[0]
            average_ax.axhline(level, color=colours[method], linestyle="--", label=method)
            continue
        points = sorted((s, _average_point(groups, metric)) for s, groups in by_shots.items() if s and s > 0)
        if points:
            stds = [std if std is not None else 0.0 for _, (_, std) in points]
            average_ax.errorbar([s for s, _ in points], [mean for _, (mean, _) in points], yerr=stds, marker="o",
                                capsize=3, color=colours[method], label=method)
    average_ax.set_title(f"Average over {len(datasets)} dataset{'s' if len(datasets) > 1 else ''}")

    for ax in axes:
        if all_shots:
            ax.set_xscale("log", base=2)
            ax.set_xticks(all_shots, [str(s) for s in all_shots])
        ax.set_xlabel("shots per class")
        ax.set_ylabel(f"{metric} (%)")
        ax.grid(alpha=0.3)
    _figure_legend(figure, axes)
    return _save(figure, Path(out_path))


def plot_recall(
    summaries: Sequence[GroupSummary],
    out_path: Path,
    methods: Sequence[str] | None = None,
    selection: Selection = Selection(),
    paper: Mapping[tuple[str, int, str], Mapping[str, float]] | None = None,
) -> Path:
    """Recall@K vs K, one line per method; one row of panels per FDRD domain plus the average, I2T left, T2I right.

    With ``paper``, the published curve of each plotted method is drawn dashed in the same colour.
    """
    index = index_results(summaries, "retrieval", selection)
    methods = [method_name(m) for m in methods] if methods else ordered({k[0] for k in index}, DCAR_METHOD_ORDER)
    datasets = ordered({d for m, d, _ in index if m in methods}, FDRD_DATASETS)
    if not datasets:
        raise ValueError("no retrieval results to plot")
    colours = _method_colours(methods)
    rows = datasets + [PAPER_AVERAGE_LABEL]
    figure, axes = _new_figure(2 * len(rows), 2)
    groups = {(m, d): lookup(index, m, d, None) for m in methods for d in datasets}

    for r, row_name in enumerate(rows):
        for c, direction in enumerate(DIRECTIONS):
            ax = axes[2 * r + c]
            for method in methods:
                metrics = [f"{direction}/R@{k}" for k in RECALL_KS]
                if row_name == PAPER_AVERAGE_LABEL:
                    members = [g for (m, _), g in groups.items() if m == method and g is not None]
                    if not members or any(metric not in g.metrics for g in members for metric in metrics):
                        continue
                    points = [_average_point(members, metric) for metric in metrics]
                    means, stds = [p[0] for p in points], [p[1] or 0.0 for p in points]
                    used = [d for d in datasets if groups[(method, d)] is not None]
                    paper_row = [published_average(paper, method, k, direction, used) for k in RECALL_KS]
                else:
                    group = groups[(method, row_name)]
                    if group is None or any(metric not in group.metrics for metric in metrics):
                        continue
                    means = [group.metrics[metric].mean for metric in metrics]
                    stds = [group.metrics[metric].std for metric in metrics]
                    paper_row = [(paper or {}).get((row_name, k, direction), {}).get(method) for k in RECALL_KS]
                ax.errorbar(RECALL_KS, means, yerr=stds, marker="o", capsize=3, color=colours[method], label=method)
                if paper and all(value is not None for value in paper_row):
                    ax.plot(RECALL_KS, paper_row, linestyle="--", color=colours[method], alpha=0.7,
                            label=f"{method} (paper)")
            scope = f" (mean of {len(datasets)} domains)" if row_name == PAPER_AVERAGE_LABEL else ""
            ax.set_title(f"{row_name} {direction.upper()}{scope}")
            ax.set_xticks(RECALL_KS, [f"R@{k}" for k in RECALL_KS])
            ax.set_ylabel("Recall (%)")
            ax.grid(alpha=0.3)
    _figure_legend(figure, axes)
    return _save(figure, Path(out_path))


def _figure_legend(figure: Figure, axes: Sequence) -> None:
    """One legend for the figure, with each label once."""
    handles: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    labels = sorted(handles, key=lambda label: label.endswith("(paper)"))  # ours first, published after
    if labels:
        figure.legend([handles[label] for label in labels], labels, loc="outside lower center",
                      ncols=min(len(labels), 6))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="plot", required=True)
    for name, help_text in (("fewshot", "accuracy vs shots per method"), ("recall", "Recall@K vs K per method")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("root", type=Path, help="output root to scan")
        p.add_argument("--out", type=Path, required=True, help="folder for the PNG")
        p.add_argument("--methods", nargs="+", help="trainer or method names (default: all found)")
        p.add_argument("--backbone")
        p.add_argument("--cfg")
        p.add_argument("--variant")
        if name == "fewshot":
            p.add_argument("--metric", default="accuracy")
        else:
            p.add_argument("--shots", type=int, nargs="+", help="keep runs with these shot counts")
            p.add_argument("--paper", action="store_true", help="overlay the published DCAR numbers (dashed)")
            p.add_argument("--paper-csv", type=Path, default=DEFAULT_DCAR_PAPER_CSV)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    summaries, _ = collect(args.root)
    shots = tuple(args.shots) if getattr(args, "shots", None) else None
    selection = Selection(shots, args.backbone, args.cfg, args.variant)
    try:
        if args.plot == "fewshot":
            out_path = args.out / f"fewshot_{args.metric}.png"
            path = plot_fewshot(summaries, out_path, args.methods, selection, args.metric)
        else:
            paper = load_dcar_paper_table(args.paper_csv) if args.paper else None
            path = plot_recall(summaries, args.out / "recall_at_k.png", args.methods, selection, paper)
    except ValueError as error:  # includes AmbiguousResultsError
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"Wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
