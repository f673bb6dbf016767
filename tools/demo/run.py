"""``make demo``: build the synthetic domain and tiny CLIP if missing, train each method, print Recall@K.

    python -m tools.demo.run [--data ./data] [--out DIR] [--shots 16] [--seeds 1 [2 ...]] [--methods ...] [--fresh]

The methods are the registered trainers that have a demo recipe, ``configs/trainers/<TRAINER>/demo.yaml``
(zero-shot CLIP first: it is the bar the others must clear). Every run goes through ``train.py`` exactly as a
user would call it (the same argument list; in one process, to save one interpreter start per run), so the
zero-shot row *is* the ZeroshotCLIP trainer's result and every number comes from the library's own evaluation.
Each run's log and ``results.json`` stay in ``<out>/<TRAINER>/seed<N>/``; a finished run is reused (``--fresh``
retrains). With several seeds the table gives mean ± std over them (population std, as ``tools.parse_results``),
and a second table the paired difference of ``--paired-with`` (default DCAR) to every other method, seed by seed,
with a two-sided paired t-test. The default output folder follows
``--data`` (``output/demo/<data folder name>-<hash of its path>``), so two demos on two data roots never mix.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import TextIO

if not __package__:  # started as a file: the imports below need the repository root, as `python -m` gives
    print("error: run this tool from the repository root as a module: python -m tools.demo.run ...", file=sys.stderr)
    sys.exit(2)

from tabulate import tabulate

from tools.demo.build import build_demo_assets
from tools.demo.tiny_clip import PretrainRecipe, default_weights_path
from tools.results import paired_difference

ROOT = Path(__file__).resolve().parents[2]
ZERO_SHOT = "ZeroshotCLIP"
KS = (1, 5, 10)
LABELS = {ZERO_SHOT: "zero-shot CLIP", "CLIPAdapter": "CLIP-Adapter"}


def demo_recipe(trainer: str) -> Path:
    return ROOT / "configs" / "trainers" / trainer / "demo.yaml"


def demo_methods(registered: list[str]) -> list[str]:
    """Registered trainers with a demo recipe: zero-shot first, then by name."""
    methods = sorted(name for name in registered if demo_recipe(name).is_file())
    return sorted(methods, key=lambda name: name != ZERO_SHOT)


def default_output(data: Path) -> Path:
    resolved = data.expanduser().resolve()
    return Path("output") / "demo" / f"{resolved.name}-{hashlib.sha1(str(resolved).encode()).hexdigest()[:8]}"


def train_argv(trainer: str, data: Path, out: Path, weights: Path, shots: int, seed: int,
               epochs: int | None = None) -> list[str]:
    flags = ["--eval-only"] if trainer == ZERO_SHOT else []
    overrides = ["OPTIM.MAX_EPOCH", str(epochs)] if epochs is not None and trainer != ZERO_SHOT else []
    return ["--root", str(data), "--seed", str(seed), "--trainer", trainer,
            "--dataset-config-file", str(ROOT / "configs" / "datasets" / "fdrd_synthetic.yaml"),
            "--config-file", str(demo_recipe(trainer)), "--output-dir", str(out), *flags,
            "MODEL.BACKBONE.NAME", str(weights), "DATASET.NUM_SHOTS", str(shots), *overrides]


class ProgressEcho(io.StringIO):
    """A run's console output, captured (it is in the run's log too), with its progress lines shown as they come.

    The trainers' first-batch estimate and per-epoch lines (trainers/engine/progress.py) go to ``console``,
    indented, so that a slow machine is never silent for a whole run; on a terminal the epoch lines overwrite
    each other in place (cut to its width), elsewhere (CI logs) each gets its own line.
    """

    SHOWN = ("=> first batch took", "=> epoch ")

    def __init__(self, console: TextIO):
        super().__init__()
        self.console = console
        self.in_place = console.isatty()
        self._pending = ""  # the unfinished last line
        self._open_line = False  # an in-place line is on the console, not yet ended

    def write(self, text: str) -> int:
        super().write(text)
        *lines, self._pending = (self._pending + text).split("\n")
        for line in lines:
            if line.startswith(self.SHOWN):
                self._show(line)
        return len(text)

    def _show(self, line: str) -> None:
        if self.in_place and line.startswith("=> epoch "):
            width = shutil.get_terminal_size().columns - 1
            self.console.write(f"\r\033[K    {line}"[:width + 4])  # + the 4 characters of \\r and the erase code
            self._open_line = True
        else:
            self.end_line()
            self.console.write(f"    {line}\n")
        self.console.flush()

    def end_line(self) -> None:
        """End an in-place line, so that what follows starts on a line of its own."""
        if self._open_line:
            self.console.write("\n")
            self._open_line = False


def run_method(argv: list[str]) -> tuple[int, str]:
    """Run train.py in-process with its console output captured and its progress lines shown."""
    import train

    captured = ProgressEcho(sys.stdout)
    with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
        code = train.run(argv)
    captured.end_line()
    return code, captured.getvalue()


def metric_values(results: dict) -> dict[str, float]:
    """The table's columns of one run's results.json."""
    values = {f"{d.upper()} R@{k}": results[d][f"R@{k}"] for d in ("i2t", "t2i") for k in KS}
    values["mean"] = results["mean_recall"]
    if "hard_negative_i2t" in results:
        values["hard-neg R@1"] = results["hard_negative_i2t"]["R@1"]
    return values


def summarise(runs: dict[str, list[dict]]) -> tuple[list[str], list[list[str]]]:
    """Rows of mean (± std over seeds) per method, and the mean recall's difference to zero-shot."""
    columns = list(metric_values(next(iter(runs.values()))[0]))
    baseline = statistics.mean(r["mean_recall"] for r in runs.get(ZERO_SHOT, [])) if ZERO_SHOT in runs else None
    rows = []
    for trainer, results in runs.items():
        per_seed = [metric_values(r) for r in results]
        cells = []
        for column in columns:
            values = [v[column] for v in per_seed if column in v]
            spread = f" ± {statistics.pstdev(values):.2f}" if len(values) > 1 and trainer != ZERO_SHOT else ""
            cells.append(f"{statistics.mean(values):.2f}{spread}" if values else "")
        mean = statistics.mean(r["mean_recall"] for r in results)
        delta = "" if baseline is None or trainer == ZERO_SHOT else f"{mean - baseline:+.2f}"
        rows.append([LABELS.get(trainer, trainer)] + cells + [delta])
    return ["method", *columns, "vs zero-shot"], rows


PAIRED_METRICS = (("mean", "mean recall"), ("hard-neg R@1", "hard-neg R@1"))


def paired_differences(runs: dict[str, list[dict]], reference: str) -> tuple[list[str], list[list[str]]]:
    """Rows of ``reference`` − method per other method: mean ± std of the per-seed differences over the seeds both
    ran, and the paired t-test's p-value, for the mean recall and the hard-negative R@1."""
    by_seed = {trainer: {r["seed"]: metric_values(r) for r in results} for trainer, results in runs.items()}
    headers = ["method", "seeds"]
    headers += [h for _, label in PAIRED_METRICS for h in (f"{reference} − method, {label}", "p")]
    rows = []
    for trainer in runs:
        if trainer in (reference, ZERO_SHOT):
            continue
        seeds = sorted(set(by_seed[reference]) & set(by_seed[trainer]))
        row = [LABELS.get(trainer, trainer), " ".join(map(str, seeds))]
        for column, _ in PAIRED_METRICS:
            ours = [by_seed[reference][s].get(column) for s in seeds]
            theirs = [by_seed[trainer][s].get(column) for s in seeds]
            if len(seeds) < 2 or None in ours or None in theirs:
                row += ["", ""]
                continue
            mean, std, p_value = paired_difference(ours, theirs)
            row += [f"{mean:+.2f} ± {std:.2f}", f"{float('nan') if p_value is None else p_value:.3f}"]
        rows.append(row)
    return headers, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.demo.run", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--data", default="./data", type=Path, help="dataset root (the demo assets are built here)")
    parser.add_argument("--out", type=Path, help="where the runs go (default: output/demo/<data name>-<hash>)")
    parser.add_argument("--shots", type=int, default=16, help="image-caption pairs per class for training")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--methods", nargs="+", help="trainers to run (default: every one with a demo recipe)")
    parser.add_argument("--fresh", action="store_true", help="retrain runs that already have results")
    parser.add_argument("--paired-with", default="DCAR", metavar="TRAINER",
                        help="with several seeds, the method whose paired difference to each other one is tabulated")
    parser.add_argument("--epochs", type=int, help="train this many epochs instead of the recipes' (a quick check)")
    parser.add_argument("--pretrain-steps", type=int, default=PretrainRecipe.steps,
                        help="tiny CLIP pretraining steps (the cached checkpoint is rebuilt when this changes)")
    parser.add_argument("--pretrain-pool", type=int, default=PretrainRecipe.pool_size,
                        help="images in the generic pretraining pool")
    args = parser.parse_args(argv)

    import trainers  # noqa: F401  (fails here, clearly, if Dassl is missing)
    from dassl.engine import TRAINER_REGISTRY

    from trainers.atomic_io import atomic_write_text
    from trainers.engine.trainer import RESULTS_FILE

    available = demo_methods(list(TRAINER_REGISTRY.registered_names()))
    selected = [m for m in available if m in (args.methods or available)]
    unknown = sorted(set(args.methods or []) - set(available))
    if unknown:
        parser.error(f"no demo recipe for {unknown}; choose from {available}")

    start = time.time()
    out = args.out or default_output(args.data)
    build_demo_assets(args.data, recipe=PretrainRecipe(steps=args.pretrain_steps, pool_size=args.pretrain_pool))
    weights = default_weights_path(args.data)
    jobs = [(trainer, seed) for trainer in selected for seed in (args.seeds if trainer != ZERO_SHOT else [1])]
    print(f"Training on the synthetic domain ({args.shots} shots, seeds {' '.join(map(str, args.seeds))}); "
          f"runs and logs in {out}/<TRAINER>/seed<N>/")
    runs: dict[str, list[dict]] = {}
    for i, (trainer, seed) in enumerate(jobs, 1):
        run_dir = out / trainer / f"seed{seed}"
        label = f"[{i}/{len(jobs)}] {LABELS.get(trainer, trainer)}, seed {seed}"
        if args.fresh:
            shutil.rmtree(run_dir, ignore_errors=True)
        if not (run_dir / RESULTS_FILE).is_file():
            print(f"{label} ...", flush=True)
            t0 = time.time()
            code, console = run_method(train_argv(trainer, args.data, run_dir, weights, args.shots, seed,
                                                  args.epochs))
            if code != 0 or not (run_dir / RESULTS_FILE).is_file():
                print(f"failed (exit {code}); see {run_dir}/log_latest.txt\n{console[-2000:]}")
                return 1
            print(f"  done in {time.time() - t0:.0f}s", end=", ")
        else:
            print(f"{label}: finished earlier,", end=" ")
        results = json.loads((run_dir / RESULTS_FILE).read_text())
        runs.setdefault(trainer, []).append(results)
        print(f"mean recall {results['mean_recall']:.2f}", flush=True)

    headers, rows = summarise(runs)
    n_images = next(iter(runs.values()))[0]["num_images"]
    seeds = f"seed {args.seeds[0]}" if len(args.seeds) == 1 else f"mean ± std over seeds {' '.join(map(str, args.seeds))}"
    print(f"\nRecall@K on the synthetic domain's test split ({n_images} images x captions, {args.shots} shots, {seeds}; "
          f"hard-neg R@1: each image's caption against its 4 sibling/attribute swaps):")
    print(tabulate(rows, headers=headers, disable_numparse=True, colalign=("left",) + ("right",) * (len(headers) - 1)))
    markdown = tabulate(rows, headers=headers, disable_numparse=True, tablefmt="github") + "\n"
    if len(args.seeds) > 1 and args.paired_with in runs:
        paired_headers, paired_rows = paired_differences(runs, args.paired_with)
        title = f"Paired by seed: {args.paired_with} minus each method (mean ± std of the differences, paired t-test)"
        print(f"\n{title}:")
        print(tabulate(paired_rows, headers=paired_headers, disable_numparse=True))
        markdown += f"\n{title}\n\n" + tabulate(paired_rows, headers=paired_headers, disable_numparse=True,
                                                  tablefmt="github") + "\n"
    summary = {trainer: {"seeds": [r["seed"] for r in results], "runs": results} for trainer, results in runs.items()}
    atomic_write_text(out / "demo_results.json", json.dumps(summary, indent=2) + "\n")
    atomic_write_text(out / "demo_results.md", markdown)
    print(f"\nTotal {time.time() - start:.0f}s. Table saved to {out / 'demo_results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
