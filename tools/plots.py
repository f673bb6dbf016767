"""Figures of aggregated results, as PNG, PDF and SVG: metric-vs-shots curves and Recall@K curves.

Usage:
    python -m tools.plots fewshot output/ --out plots/ [--methods ZeroshotCLIP CoOp DPT] [--metric accuracy]
    python -m tools.plots fewshot output/ --out plots/ --metric mean_recall      # FDRD: recall vs shots
    python -m tools.plots recall  output/ --out plots/ [--shots 16] [--paper]    # FDRD: Recall@K vs K

``fewshot`` plots any metric against the shot count: classification metrics (accuracy, macro_f1) over
the CoOp datasets, retrieval metrics (mean_recall, i2t/R@1, t2i/R@5, ...) over the FDRD domains. Every
figure's title names the backbone(s) and shots its runs used. Figures are drawn on matplotlib's Agg
canvas directly (no pyplot), so importing this module never changes the caller's backend and it works on
machines without a display. Error bars are the std over seeds (population std, as in the tables); the
average panel (drawn only with two datasets or more) gets error bars only when every dataset has the same
seeds, since a seed's average is otherwise undefined. ``--paper`` overlays the published DCAR numbers for
runs of the paper's setting only (see tools/paper_tables/published.py); ``--paper-any-setting`` overrides
that, and the title then says so.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import textwrap
from pathlib import Path
from typing import Iterable, Sequence

if not __package__:  # started as a file: the imports below need the repository root, as `python -m` gives
    print("error: run this tool from the repository root as a module: python -m tools.plots ...", file=sys.stderr)
    sys.exit(2)

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tools.paper_tables.model import backbone_label
from tools.paper_tables.names import (
    DCAR_METHOD_ORDER,
    DIRECTIONS,
    DPT_METHOD_ORDER,
    FDRD_DATASETS,
    FEWSHOT_DATASETS,
    PAPER_AVERAGE_LABEL,
    RECALL_KS,
    ZERO_SHOT_METHODS,
    method_name,
    ordered,
)
from tools.paper_tables.published import (
    DEFAULT_DCAR_PAPER_CSV,
    PublishedTable,
    SettingMismatchError,
    check_setting,
    load_published_table,
)
from tools.paper_tables.selection import AmbiguousResultsError, Selection, index_results, lookup
from tools.results import GroupSummary, collect, metric_label, seedwise_std

FORMATS = ("png", "pdf", "svg")
_PANEL_WIDTH, _PANEL_HEIGHT, _MAX_COLUMNS, _MIN_WIDTH = 4.0, 3.2, 4, 6.0
_CLASSIFICATION_METRICS = frozenset({"accuracy", "macro_f1", "error"})


def task_of_metric(metric: str) -> str:
    """``accuracy``/``macro_f1`` are classification metrics; everything else (mean_recall, i2t/R@1) is retrieval."""
    return "classification" if metric in _CLASSIFICATION_METRICS else "retrieval"


def _new_figure(n_panels: int, n_columns: int) -> tuple[Figure, list]:
    n_columns = max(1, min(n_columns, n_panels))
    n_rows = math.ceil(n_panels / n_columns)
    width = max(_PANEL_WIDTH * n_columns, _MIN_WIDTH)  # room for the title above a single panel
    figure = Figure(figsize=(width, _PANEL_HEIGHT * n_rows + 0.5), layout="constrained")
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


def _shots_text(shots: Iterable[int | None]) -> str:
    values = sorted({s for s in shots if s is not None and s != 0})
    if not values:
        return "zero-shot"
    names = ["all training data" if s < 0 else str(s) for s in values]
    if len(values) == 1:
        return names[0] if values[0] < 0 else f"{names[0]} shots"
    return f"{', '.join(names)} shots"


def setting_title(groups: Iterable[GroupSummary]) -> str:
    """``CLIP ViT-B/32 · 16 shots``: the backbone(s) and shot counts of the plotted runs (zero-shot runs aside)."""
    groups = list(groups)
    backbones = ", ".join(dict.fromkeys(sorted(backbone_label(g) for g in groups)))
    trained = [g.num_shots for g in groups if method_name(g.trainer or "") not in ZERO_SHOT_METHODS]
    return f"CLIP {backbones} · {_shots_text(trained)}" if groups else ""


def _set_title(figure: Figure, text: str) -> None:
    """The figure's title, wrapped to its width so that nothing is cut off."""
    width = int(figure.get_figwidth() * 11)  # characters per line at the default title size
    figure.suptitle("\n".join(textwrap.fill(line, width) for line in text.splitlines()))


def metric_axis_label(metric: str) -> str:
    """``accuracy`` -> ``accuracy``, ``mean_recall`` -> ``mean recall``, ``i2t/R@1`` -> ``I2T R@1``."""
    return "mean recall" if metric == "mean_recall" else metric_label(metric) if "/" in metric else \
        metric.replace("_", " ")


def save_figure(figure: Figure, path: Path, formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write the figure once per format beside each other (``path`` with each suffix); return the paths."""
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        target = path.with_suffix(f".{fmt}")
        figure.savefig(target, dpi=150 if fmt == "png" else None)
        written.append(target)
    return written


def fewshot_figure(
    summaries: Sequence[GroupSummary],
    methods: Sequence[str] | None = None,
    selection: Selection = Selection(),
    metric: str = "accuracy",
) -> Figure:
    """Metric vs shots (log2 axis), one line per method, one panel per dataset plus the average (2+ datasets).

    Classification metrics draw the CoOp datasets, retrieval metrics the FDRD domains. Zero-shot CLIP has no
    shots: it is a dashed horizontal line. Runs on the full training split (-1 shots) are left out (no x).
    """
    task = task_of_metric(metric)
    index = index_results(summaries, task, selection)
    index = {key: group for key, group in index.items() if metric in group.metrics}
    order = DPT_METHOD_ORDER if task == "classification" else DCAR_METHOD_ORDER
    methods = [method_name(m) for m in methods] if methods else ordered({k[0] for k in index}, order)
    datasets = ordered({d for m, d, _ in index if m in methods},
                       FEWSHOT_DATASETS if task == "classification" else FDRD_DATASETS)
    if not datasets:
        raise ValueError(f"no {task} results with {metric!r} to plot")
    colours = _method_colours(methods)
    with_average = len(datasets) > 1
    figure, axes = _new_figure(len(datasets) + with_average, _MAX_COLUMNS)
    plotted = [g for (m, _, _), g in index.items() if m in methods]
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

    if with_average:
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
                average_ax.errorbar([s for s, _ in points], [mean for _, (mean, _) in points], yerr=stds,
                                    marker="o", capsize=3, color=colours[method], label=method)
        average_ax.set_title(f"Average over {len(datasets)} datasets")

    label = metric_axis_label(metric)
    for ax in axes:
        if all_shots:
            ax.set_xscale("log", base=2)
            ax.set_xticks(all_shots, [str(s) for s in all_shots])
            ax.set_xlabel("shots per class")
        else:  # zero-shot levels only: no shot axis to draw (matplotlib would show 0..1 "shots")
            ax.set_xticks([])
        ax.set_ylabel(f"{label} (%)")
        ax.grid(alpha=0.3)
    what = "Few-shot classification" if task == "classification" else "FDRD retrieval"
    _set_title(figure, f"{what}: {label} vs shots — {setting_title(plotted)}")
    _figure_legend(figure, axes)
    return figure


def recall_figure(
    summaries: Sequence[GroupSummary],
    methods: Sequence[str] | None = None,
    selection: Selection = Selection(),
    paper: PublishedTable | None = None,
    any_setting: bool = False,
) -> Figure:
    """Recall@K vs K, one line per method; one row of panels per FDRD domain plus the average (2+ domains),
    I2T left, T2I right.

    With ``paper``, the published curve of each plotted method is drawn dashed in the same colour, for runs
    of the paper's setting only (SettingMismatchError otherwise, unless ``any_setting``: then the title says so).
    """
    index = index_results(summaries, "retrieval", selection)
    methods = [method_name(m) for m in methods] if methods else ordered({k[0] for k in index}, DCAR_METHOD_ORDER)
    datasets = ordered({d for m, d, _ in index if m in methods}, FDRD_DATASETS)
    if not datasets:
        raise ValueError("no retrieval results to plot")
    groups = {(m, d): lookup(index, m, d, None) for m in methods for d in datasets}
    used = [(m, d, g) for (m, d), g in groups.items() if g is not None]
    mismatches = check_setting(used, paper, allow_other=any_setting) if paper else []
    colours = _method_colours(methods)
    rows = datasets + ([PAPER_AVERAGE_LABEL] if len(datasets) > 1 else [])
    figure, axes = _new_figure(2 * len(rows), 2)

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
                    present = [d for d in datasets if groups[(method, d)] is not None]
                    paper_row = [paper.average(method, k, direction, present) if paper else None for k in RECALL_KS]
                else:
                    group = groups[(method, row_name)]
                    if group is None or any(metric not in group.metrics for metric in metrics):
                        continue
                    means = [group.metrics[metric].mean for metric in metrics]
                    stds = [group.metrics[metric].std for metric in metrics]
                    paper_row = [paper.get(row_name, k, direction, method) if paper else None for k in RECALL_KS]
                ax.errorbar(RECALL_KS, means, yerr=stds, marker="o", capsize=3, color=colours[method], label=method)
                if paper and all(value is not None for value in paper_row):
                    ax.plot(RECALL_KS, paper_row, linestyle="--", color=colours[method], alpha=0.7,
                            label=f"{method} (paper)")
            scope = f" (mean of {len(datasets)} domains)" if row_name == PAPER_AVERAGE_LABEL else ""
            ax.set_title(f"{row_name} {direction.upper()}{scope}")
            ax.set_xticks(RECALL_KS, [f"R@{k}" for k in RECALL_KS])
            ax.set_ylabel("Recall (%)")
            ax.grid(alpha=0.3)
    title = f"FDRD Recall@K — {setting_title(g for _, _, g in used)}"
    if mismatches:
        title += f"\ndashed: published with {paper.setting.describe()} — NOT this setting, not comparable"
    elif paper:
        title += " (dashed: published)"
    _set_title(figure, title)
    _figure_legend(figure, axes)
    return figure


def plot_fewshot(summaries: Sequence[GroupSummary], out_path: Path, methods: Sequence[str] | None = None,
                 selection: Selection = Selection(), metric: str = "accuracy",
                 formats: Sequence[str] = FORMATS) -> list[Path]:
    """:func:`fewshot_figure`, written beside ``out_path`` in every format."""
    return save_figure(fewshot_figure(summaries, methods, selection, metric), Path(out_path), formats)


def plot_recall(summaries: Sequence[GroupSummary], out_path: Path, methods: Sequence[str] | None = None,
                selection: Selection = Selection(), paper: PublishedTable | None = None, any_setting: bool = False,
                formats: Sequence[str] = FORMATS) -> list[Path]:
    """:func:`recall_figure`, written beside ``out_path`` in every format."""
    return save_figure(recall_figure(summaries, methods, selection, paper, any_setting), Path(out_path), formats)


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
    parser = argparse.ArgumentParser(prog="python -m tools.plots", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="plot", required=True)
    for name, help_text in (("fewshot", "a metric vs shots per method (accuracy, or mean_recall/i2t/R@1 on FDRD)"),
                            ("recall", "Recall@K vs K per method (FDRD)")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("root", type=Path, help="output root to scan")
        p.add_argument("--out", type=Path, required=True, help="folder for the figures")
        p.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS),
                       help="file formats, written side by side (default: all)")
        p.add_argument("--methods", nargs="+", help="trainer or method names (default: all found)")
        p.add_argument("--backbone")
        p.add_argument("--cfg")
        p.add_argument("--variant")
        if name == "fewshot":
            p.add_argument("--metric", default="accuracy",
                           help="accuracy, macro_f1 (classification) or mean_recall, i2t/R@1, ... (retrieval)")
        else:
            p.add_argument("--shots", type=int, nargs="+", help="keep runs with these shot counts")
            p.add_argument("--paper", action="store_true",
                           help="overlay the published DCAR numbers (dashed), for runs of the paper's setting only")
            p.add_argument("--paper-csv", type=Path, default=DEFAULT_DCAR_PAPER_CSV)
            p.add_argument("--paper-any-setting", action="store_true",
                           help="with --paper: overlay them on runs of another setting too (the title says so)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.root.is_dir():
        print(f"error: {args.root} is not a directory", file=sys.stderr)
        return 2
    summaries, _ = collect(args.root)
    shots = tuple(args.shots) if getattr(args, "shots", None) else None
    selection = Selection(shots, args.backbone, args.cfg, args.variant)
    try:
        if args.plot == "fewshot":
            out_path = args.out / f"fewshot_{args.metric.replace('/', '_').replace('@', '')}.png"
            paths = plot_fewshot(summaries, out_path, args.methods, selection, args.metric, args.formats)
        else:
            paper = load_published_table(args.paper_csv) if args.paper else None
            paths = plot_recall(summaries, args.out / "recall_at_k.png", args.methods, selection, paper,
                                args.paper_any_setting, args.formats)
    except (AmbiguousResultsError, SettingMismatchError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ValueError as error:  # nothing to plot
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("Wrote " + ", ".join(str(path) for path in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
