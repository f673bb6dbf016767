"""Find finished runs under an output root and aggregate them over seeds.

The trainers and this module meet at a small contract, so that tables and plots never depend on how a
trainer logs:

* A run folder follows CoOp's layout, ``<root>/<dataset>/<TRAINER>/<cfg>_<shots>shots/[<variant>/]seed<N>``
  (evaluation-only runs: ``<root>/evaluation/<TRAINER>/<cfg>_<shots>shots/<target>/seed<N>``).
* A finished run writes ``results.json`` there. Runs that predate it (plain CoOp/Dassl output) only have
  ``log.txt``; its last Dassl ``=> result`` block is read instead.
* A seed folder with a log but no result is a failed run (crashed, or still running): it is reported,
  never averaged.

Runs are grouped by their path relative to the root with the ``seed<N>`` component removed, so any
layout (base-to-new, cross-dataset, ablation variants) groups correctly without knowing it in advance.
The dataset, trainer, config and shots are read from ``results.json`` first and from the path second.
"""
from __future__ import annotations

import json
import math
import os
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Mapping, Sequence

RESULTS_FILE = "results.json"
LOG_FILE = "log.txt"
SWEEP_LOG_FILE = "sweep.log"  # written by tools/sweep.py; holds the tracebacks that Dassl's log.txt misses
EVALUATION_DIR = "evaluation"

SEED_DIR = re.compile(r"^seed(\d+)$")
SHOTS_DIR = re.compile(r"^(?P<cfg>.+)_(?P<shots>-?\d+|all)shots$")  # "all": the full training split (-1)
# Dassl never overwrites a log: a second run in the same folder writes log.txt-YYYY-MM-DD-HH-MM-SS
# (and trainers/engine/run_log.py adds -2, -3 ... for attempts started within the same second).
_TIMESTAMPED_LOG = re.compile(r"^log\.txt-\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}(-\d+)?$")
_DASSL_RESULT_HEADER = "=> result"
_DASSL_RESULT_LINE = re.compile(r"^\* (?P<key>[A-Za-z_][\w ]*): (?P<value>-?[\d,]*\.?\d+)%?$")
# Lines of the Dassl block that are counts or redundant with accuracy, not metrics to average.
_DASSL_NON_METRICS = frozenset({"total", "correct", "error"})

# Fields of results.json that describe the run rather than measure it (written by the trainers' write_results).
METADATA_KEYS = frozenset({
    "task", "trainer", "dataset", "domain", "seed",
    "backbone",         # MODEL.BACKBONE.NAME as given: an OpenAI name or a checkpoint path
    "architecture",     # what that loaded: "ViT-B/32", or a description of a custom CLIP
    "num_shots",        # DATASET.NUM_SHOTS as asked (-1: all, 0: no training data)
    "shots_per_class",  # {"min", "max"}: the training items per class that ran (a class may have fewer)
    "epochs",           # epochs of training behind the evaluated weights (0: none)
    "max_epoch",        # OPTIM.MAX_EPOCH of the run's config
    "config_file", "dataset_config_file", "overrides",  # the recipe and what the command line changed
    "subsample_classes",  # DATASET.SUBSAMPLE_CLASSES: all, or the base/new half of the classes (base-to-new)
    "weights_from",     # the --model-dir an evaluation-only run loaded (None: trained in this folder, or nothing)
    "epoch",            # older results.json files: the same as epochs
})

STD_NOTE = (
    "mean ± std over seeds; std is the population std (ddof=0, numpy's default, as in CoOp's parse_test_res.py)"
)


@dataclass(frozen=True)
class PathInfo:
    """What the folder layout says about a run; every field may be unknown (None)."""

    group: str
    seed: int | None
    dataset: str | None
    trainer: str | None
    cfg: str | None
    num_shots: int | None
    variant: str | None


@dataclass(frozen=True)
class RunSetting:
    """What a run was: the fields of results.json that decide whether two numbers may be compared.

    Every field is None when unknown (runs that predate these fields, or Dassl logs without results.json).
    """

    architecture: str | None = None
    epochs: int | None = None
    shots_per_class: tuple[int, int] | None = None  # (min, max) training items per class
    config_file: str | None = None
    overrides: tuple[str, ...] | None = None
    subsample_classes: str | None = None  # "all", "base" or "new"
    #: the run folder whose weights an evaluation-only run loaded (seed 1's, for a group); None: trained here
    weights_from: str | None = None

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> "RunSetting":
        shots = record.get("shots_per_class")
        shots_range = None
        if isinstance(shots, Mapping) and _is_number(shots.get("min")) and _is_number(shots.get("max")):
            shots_range = (int(shots["min"]), int(shots["max"]))
        overrides = record.get("overrides")
        epochs = record.get("epochs", record.get("epoch"))
        return cls(
            architecture=record.get("architecture") or None,
            epochs=_optional_int(epochs),
            shots_per_class=shots_range,
            config_file=record.get("config_file") or None,
            overrides=tuple(str(item) for item in overrides) if isinstance(overrides, list) else None,
            # runs written before the field existed used every class
            subsample_classes=record.get("subsample_classes") or "all",
            weights_from=record.get("weights_from") or None,
        )

    def weights_source(self) -> PathInfo | None:
        """What the folder layout of ``weights_from`` says about the run that trained the evaluated weights."""
        return parse_run_path(PurePosixPath(Path(self.weights_from).as_posix())) if self.weights_from else None


@dataclass(frozen=True)
class RunResult:
    """One finished run (one seed). ``metrics`` maps flat metric names (``accuracy``, ``i2t/R@1``) to values."""

    run_dir: Path
    group: str
    seed: int | None
    task: str
    trainer: str | None
    dataset: str | None
    domain: str | None
    backbone: str | None
    cfg: str | None
    num_shots: int | None
    variant: str | None
    metrics: dict[str, float]
    source: str  # the file the metrics were read from
    setting: RunSetting


@dataclass(frozen=True)
class FailedRun:
    """A run folder with a log but no result: crashed, killed, or still running."""

    run_dir: Path
    group: str
    seed: int | None
    reason: str
    log_paths: tuple[Path, ...]


@dataclass
class Discovery:
    """Everything found under a root: finished runs, and run folders that did not finish."""

    runs: list[RunResult] = field(default_factory=list)
    failed: list[FailedRun] = field(default_factory=list)


@dataclass(frozen=True)
class MetricStats:
    """One metric over the seeds of a group. ``ci95`` is the Student-t 95% half-width (None with one seed)."""

    mean: float
    std: float
    n: int
    ci95: float | None
    values: tuple[float, ...]
    seeds: tuple[int | None, ...]


@dataclass(frozen=True)
class GroupSummary:
    """All seeds of one configuration, with per-metric statistics."""

    group: str
    task: str
    trainer: str | None
    dataset: str | None
    domain: str | None
    backbone: str | None
    cfg: str | None
    num_shots: int | None
    variant: str | None
    seeds: tuple[int | None, ...]
    metrics: dict[str, MetricStats]
    setting: RunSetting = RunSetting()
    #: names of the fields (backbone, epochs, ...) in which the group's seeds differ: such a group
    #: mixes runs that should not be averaged (e.g. a re-run with other overrides into the same folder)
    mixed: tuple[str, ...] = ()

    @property
    def n_seeds(self) -> int:
        return len(self.seeds)

    @property
    def architecture(self) -> str | None:
        return self.setting.architecture


@dataclass(frozen=True)
class SeedWarning:
    """A group with fewer seeds than expected."""

    group: str
    found: tuple[int | None, ...]
    missing: tuple[int, ...]
    expected: int


# --------------------------------------------------------------------------------------------- parsing


def parse_run_path(relative: PurePosixPath) -> PathInfo:
    """Read seed, dataset, trainer, cfg, shots and variant from a run folder's path relative to the root."""
    parts = list(relative.parts)
    seed = None
    seed_positions = [i for i, part in enumerate(parts) if SEED_DIR.match(part)]
    if seed_positions:
        position = seed_positions[-1]
        seed = int(SEED_DIR.match(parts[position]).group(1))
        del parts[position]
    group = "/".join(parts) if parts else "."

    shots_positions = [i for i, part in enumerate(parts) if SHOTS_DIR.match(part)]
    if not shots_positions:
        return PathInfo(group, seed, None, None, None, None, None)
    position = shots_positions[0]
    match = SHOTS_DIR.match(parts[position])
    trainer = parts[position - 1] if position >= 1 else None
    dataset = parts[position - 2] if position >= 2 else None
    rest = parts[position + 1 :]
    if dataset == EVALUATION_DIR:  # evaluation/<TRAINER>/<cfg>_<shots>shots/<target dataset>/...
        dataset, rest = (rest[0], rest[1:]) if rest else (None, rest)
    variant = "/".join(rest) if rest else None
    shots = -1 if match.group("shots") == "all" else int(match.group("shots"))
    return PathInfo(group, seed, dataset, trainer, match.group("cfg"), shots, variant)


def parse_dassl_result_block(text: str) -> dict[str, float] | None:
    """Values of the LAST ``=> result`` block of a Dassl log (``accuracy``, ``macro_f1``, ``total`` ...).

    The last block is the final test: earlier blocks come from validation during training.
    """
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == _DASSL_RESULT_HEADER]
    if not starts:
        return None
    values: dict[str, float] = {}
    for line in lines[starts[-1] + 1 :]:
        match = _DASSL_RESULT_LINE.match(line.strip())
        if match is None:
            break
        values[match.group("key").strip()] = float(match.group("value").replace(",", ""))
    return values or None


def flatten_metrics(record: Mapping[str, Any]) -> dict[str, float]:
    """Numeric fields of a results.json record, nested ones as ``outer/inner`` (``i2t/R@1``).

    Metadata and test-set sizes (``num_*``) are left out. A nested key that is a bare number (``"1"``,
    what ``json.dump`` makes of an int key) is read as ``R@1``.
    """
    metrics: dict[str, float] = {}
    for key, value in record.items():
        if key in METADATA_KEYS or key.startswith("num_"):
            continue
        if isinstance(value, Mapping):
            for inner, inner_value in value.items():
                if _is_number(inner_value):
                    inner_name = f"R@{inner}" if str(inner).isdigit() else str(inner)
                    metrics[f"{key}/{inner_name}"] = float(inner_value)
        elif _is_number(value):
            metrics[key] = float(value)
    return metrics


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# ------------------------------------------------------------------------------------------- discovery


def discover_runs(root: str | os.PathLike) -> Discovery:
    """Walk ``root`` and read every run folder (a ``seed<N>`` folder, or any folder with results.json/log.txt)."""
    root = Path(root)
    discovery = Discovery()
    for directory, subdirs, files in os.walk(root):
        subdirs.sort()
        here = Path(directory)
        file_names = set(files)
        is_seed_dir = SEED_DIR.match(here.name) is not None
        logs = _log_files(here, file_names)
        if RESULTS_FILE not in file_names and not logs and not (is_seed_dir and SWEEP_LOG_FILE in file_names):
            continue
        info = parse_run_path(_layout_path(root, here))
        outcome = _read_run(here, info, file_names, logs)
        if isinstance(outcome, RunResult):
            discovery.runs.append(outcome)
        elif is_seed_dir or not subdirs:
            discovery.failed.append(outcome)
        else:
            continue  # a stray log above other runs (not a run folder): keep walking
        subdirs.clear()  # a run's sub-folders hold checkpoints, not other runs
    return discovery


def _layout_path(root: Path, here: Path) -> PurePosixPath:
    """``here`` relative to ``root``; when ``root`` is itself inside the layout (a recipe folder
    ``<dataset>/<TRAINER>/<cfg>_<shots>shots`` or one of its variants, as the ablation table is pointed at), the
    layout's folders above it come first, so dataset, trainer, shots and variant are still read from the path."""
    relative = PurePosixPath(here.relative_to(root).as_posix())
    if any(SHOTS_DIR.match(part) for part in relative.parts):
        return relative
    above = root.resolve().parts
    shots_at = [i for i, part in enumerate(above) if SHOTS_DIR.match(part)]
    if not shots_at:
        return relative
    return PurePosixPath(*above[max(0, shots_at[-1] - 2):], *relative.parts)


def _log_files(directory: Path, file_names: set[str]) -> list[Path]:
    """The folder's Dassl logs, newest first: re-runs' time-stamped logs (newest first), then the original log.txt.

    The newest log with a result block wins, so a crashed first attempt followed by a good re-run (or an
    ``--eval-only`` re-test) reads the latest result.
    """
    stamped = sorted((name for name in file_names if _TIMESTAMPED_LOG.match(name)), reverse=True)
    names = stamped + ([LOG_FILE] if LOG_FILE in file_names else [])
    return [directory / name for name in names]


def _read_run(directory: Path, info: PathInfo, file_names: set[str], logs: list[Path]) -> RunResult | FailedRun:
    log_paths = tuple(logs) + ((directory / SWEEP_LOG_FILE,) if SWEEP_LOG_FILE in file_names else ())
    if RESULTS_FILE in file_names:
        try:
            record = json.loads((directory / RESULTS_FILE).read_text())
        except (OSError, json.JSONDecodeError) as error:
            return FailedRun(directory, info.group, info.seed, f"unreadable {RESULTS_FILE}: {error}", log_paths)
        if not isinstance(record, dict):
            return FailedRun(directory, info.group, info.seed, f"{RESULTS_FILE} is not an object", log_paths)
        return _run_from_record(directory, info, record)
    for log in logs:
        block = parse_dassl_result_block(log.read_text(errors="replace"))
        if block is not None:
            metrics = {key: value for key, value in block.items() if key not in _DASSL_NON_METRICS}
            return _run_from_record(directory, info, {"task": "classification", **metrics}, source=log.name)
    if logs:
        reason = "no result block in the log (crashed, killed or still running)"
    else:
        reason = f"no {LOG_FILE} (crashed at start?)"
    return FailedRun(directory, info.group, info.seed, reason, log_paths)


def _run_from_record(
    directory: Path, info: PathInfo, record: Mapping[str, Any], source: str = RESULTS_FILE
) -> RunResult:
    seed = info.seed if info.seed is not None else _optional_int(record.get("seed"))
    shots = _optional_int(record.get("num_shots"))
    return RunResult(
        run_dir=directory,
        group=info.group,
        seed=seed,
        task=str(record.get("task") or "classification"),
        trainer=record.get("trainer") or info.trainer,
        dataset=record.get("dataset") or info.dataset,
        domain=record.get("domain"),
        backbone=record.get("backbone"),
        cfg=info.cfg,
        num_shots=shots if shots is not None else info.num_shots,
        variant=info.variant,
        metrics=flatten_metrics(record),
        source=source,
        setting=RunSetting.from_record(record),
    )


def _optional_int(value: Any) -> int | None:
    return int(value) if _is_number(value) else None


# ----------------------------------------------------------------------------------------- aggregation

# Two-sided 95% Student-t quantiles for 1..30 degrees of freedom (beyond, the normal 1.96 is close enough);
# kept here so a confidence interval does not pull in scipy.
_T_975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)


def metric_stats(values: Sequence[float], seeds: Sequence[int | None] | None = None) -> MetricStats:
    """Mean, population std (ddof=0, like CoOp) and the t-based 95% CI half-width (sample std) of ``values``."""
    values = tuple(float(v) for v in values)
    if not values:
        raise ValueError("metric_stats needs at least one value")
    n = len(values)
    ci95 = None
    if n > 1:
        t = _T_975[n - 2] if n - 1 <= len(_T_975) else 1.96
        ci95 = t * statistics.stdev(values) / math.sqrt(n)
    seeds = tuple(seeds) if seeds is not None else (None,) * n
    return MetricStats(statistics.fmean(values), statistics.pstdev(values), n, ci95, values, seeds)


def aggregate(runs: Iterable[RunResult]) -> list[GroupSummary]:
    """Group runs by everything but the seed and compute per-metric statistics, sorted by group path."""
    by_group: dict[str, list[RunResult]] = {}
    for run in runs:
        by_group.setdefault(run.group, []).append(run)
    summaries = []
    for group in sorted(by_group):
        members = sorted(by_group[group], key=lambda run: (run.seed is None, run.seed or 0))
        first = members[0]
        metric_names: list[str] = []
        for run in members:
            metric_names.extend(name for name in run.metrics if name not in metric_names)
        metrics = {}
        for name in metric_names:
            having = [run for run in members if name in run.metrics]
            metrics[name] = metric_stats([run.metrics[name] for run in having], [run.seed for run in having])
        mixed = tuple(name for name, values in (
            ("backbone", {run.backbone for run in members}),
            ("num_shots", {run.num_shots for run in members}),
            *((field_name, {getattr(run.setting, field_name) for run in members})
              for field_name in ("architecture", "epochs", "shots_per_class", "config_file", "overrides",
                                 "subsample_classes")),
        ) if len(values) > 1)
        summaries.append(
            GroupSummary(
                group=group,
                task=first.task,
                trainer=first.trainer,
                dataset=first.dataset,
                domain=first.domain,
                backbone=first.backbone,
                cfg=first.cfg,
                num_shots=first.num_shots,
                variant=first.variant,
                seeds=tuple(run.seed for run in members),
                metrics=metrics,
                setting=first.setting,
                mixed=mixed,
            )
        )
    return summaries


def collect(root: str | os.PathLike) -> tuple[list[GroupSummary], list[FailedRun]]:
    """Discover and aggregate in one call: what every table and plot starts from."""
    discovery = discover_runs(root)
    return aggregate(discovery.runs), discovery.failed


def check_seeds(summaries: Sequence[GroupSummary], expected: Sequence[int] | None = None) -> list[SeedWarning]:
    """Groups missing seeds: those not in ``expected`` or, without it, fewer than the most complete group has.

    Without ``expected`` a group is compared with the groups of the same task and trainer only, so that a
    deterministic zero-shot baseline run once is not flagged next to trainers run with three seeds.
    """
    if expected:
        wanted = set(expected)
        return [
            SeedWarning(summary.group, summary.seeds, tuple(sorted(wanted - set(summary.seeds))), len(wanted))
            for summary in summaries
            if wanted - set(summary.seeds)
        ]
    peers: dict[tuple[str, str | None], list[GroupSummary]] = {}
    for summary in summaries:
        peers.setdefault((summary.task, summary.trainer), []).append(summary)
    warnings = []
    for summary in summaries:
        group_peers = peers[(summary.task, summary.trainer)]
        most = max(peer.n_seeds for peer in group_peers)
        if summary.n_seeds < most:
            reference = set().union(*(set(p.seeds) for p in group_peers if p.n_seeds == most)) - {None}
            missing = tuple(sorted(reference - set(summary.seeds)))
            warnings.append(SeedWarning(summary.group, summary.seeds, missing, most))
    return warnings


def seedwise_std(summaries: Sequence[GroupSummary], metric: str) -> float | None:
    """Std over seeds of the across-group mean (e.g. the spread of a dataset average).

    Defined only when every group has the metric for the same seeds (at least two): otherwise a seed's
    average would mix different sets of groups, so None is returned.
    """
    stats = [summary.metrics.get(metric) for summary in summaries]
    if not stats or any(s is None for s in stats):
        return None
    seed_sets = {s.seeds for s in stats}
    if len(seed_sets) != 1 or len(stats[0].seeds) < 2 or None in stats[0].seeds:
        return None
    per_seed = [statistics.fmean(s.values[i] for s in stats) for i in range(len(stats[0].seeds))]
    return statistics.pstdev(per_seed)


def paired_difference(ours: Sequence[float], theirs: Sequence[float]) -> tuple[float, float | None, float | None]:
    """Seed-paired ``ours − theirs``: the mean of the differences, their std (population, like every std here;
    None for one pair) and the two-sided paired t-test's p-value (None for one pair or differences without
    spread, where the test is undefined)."""
    from scipy import stats  # here, not at import: most tools never pair

    differences = [a - b for a, b in zip(ours, theirs, strict=True)]
    if len(differences) < 2:
        return statistics.fmean(differences), None, None
    std = statistics.pstdev(differences)
    p_value = float(stats.ttest_rel(ours, theirs).pvalue) if std > 0 else None
    return statistics.fmean(differences), std, p_value


# --------------------------------------------------------------------------------------------- display


def metric_label(name: str) -> str:
    """Short column label: ``i2t/R@1`` -> ``I2T R@1``, ``mean_recall`` -> ``mean R``, ``macro_f1`` -> ``macro F1``."""
    special = {"accuracy": "acc", "macro_f1": "macro F1", "mean_recall": "mean R"}
    if name in special:
        return special[name]
    if "/" in name:
        outer, inner = name.split("/", 1)
        outer = outer.replace("hard_negative_", "HN ").replace("i2t", "I2T").replace("t2i", "T2I")
        return f"{outer.replace('_', ' ')} {inner}"
    return name.replace("_", " ")


def sort_metric_names(names: Iterable[str]) -> list[str]:
    """Classification metrics, then I2T, T2I, mean recall, then anything else (kept in first-seen order)."""
    rank = {"accuracy": 0, "macro_f1": 1, "mean_recall": 4}

    def key(item: tuple[int, str]) -> tuple[int, int]:
        position, name = item
        if name in rank:
            return rank[name], position
        if name.startswith("i2t/"):
            return 2, position
        if name.startswith("t2i/"):
            return 3, position
        return 5, position

    return [name for _, name in sorted(enumerate(dict.fromkeys(names)), key=key)]


def format_mean_std(stats: MetricStats, decimals: int = 2, ci95: bool = False) -> str:
    """``91.20 ± 0.35`` (and ``[±0.87]`` for the 95% CI half-width when asked and defined)."""
    text = f"{stats.mean:.{decimals}f} ± {stats.std:.{decimals}f}"
    if ci95:
        text += f" [±{stats.ci95:.{decimals}f}]" if stats.ci95 is not None else " [n/a]"
    return text
