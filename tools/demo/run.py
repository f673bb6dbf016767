"""``make demo``: build the synthetic domain and tiny CLIP if missing, train each method, print Recall@K.

    python -m tools.demo.run [--data ./data] [--out output/demo] [--shots 16] [--seed 1] [--methods ...]

Every method runs through ``train.py`` exactly as a user would call it (the same argument list; in one
process, to save the start-up of one Python per method), with the recipes in
``configs/trainers/<TRAINER>/demo.yaml``. Each run's full Dassl log is in its output folder.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import sys
import time
from pathlib import Path

from tabulate import tabulate

from tools.demo.build import build_demo_assets
from tools.demo.tiny_clip import PretrainRecipe, default_weights_path

#: (trainer, label, extra command-line flags); zero-shot first: it is the bar the others must clear
METHODS: list[tuple[str, str, tuple[str, ...]]] = [
    ("ZeroshotCLIP", "zero-shot CLIP", ("--eval-only",)),
    ("CoOp", "CoOp", ()),
    ("MaPLe", "MaPLe", ()),
    ("DPT", "DPT", ()),
    ("DCAR", "DCAR", ()),
]
KS = (1, 5, 10)


def train_argv(trainer: str, flags: tuple[str, ...], data: Path, out: Path, weights: Path, shots: int,
               seed: int) -> list[str]:
    return ["--root", str(data), "--seed", str(seed), "--trainer", trainer,
            "--dataset-config-file", "configs/datasets/fdrd_synthetic.yaml",
            "--config-file", f"configs/trainers/{trainer}/demo.yaml", "--output-dir", str(out), *flags,
            "MODEL.BACKBONE.NAME", str(weights), "DATASET.NUM_SHOTS", str(shots)]


def run_method(argv: list[str]) -> tuple[int, str]:
    """Run train.py in-process with its console output captured (it is in the run's log.txt)."""
    import train

    captured = io.StringIO()
    with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
        code = train.run(argv)
    return code, captured.getvalue()


def results_row(label: str, results: dict, baseline: dict | None) -> list:
    row = [label]
    for direction in ("i2t", "t2i"):
        row += [f"{results[direction][f'R@{k}']:.2f}" for k in KS]
    row.append(f"{results['mean_recall']:.2f}")
    row.append("" if baseline is None else f"{results['mean_recall'] - baseline['mean_recall']:+.2f}")
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="./data", help="dataset root (the demo assets are built here)")
    parser.add_argument("--out", default="output/demo", help="where the runs go (replaced on each demo)")
    parser.add_argument("--shots", type=int, default=16, help="image-caption pairs per class for training")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--methods", nargs="+", default=[m[0] for m in METHODS], help="trainers to run")
    parser.add_argument("--pretrain-steps", type=int, default=PretrainRecipe.steps,
                        help="tiny CLIP pretraining steps (the cached checkpoint is rebuilt when this changes)")
    parser.add_argument("--pretrain-pool", type=int, default=PretrainRecipe.pool_size,
                        help="images in the generic pretraining pool")
    args = parser.parse_args(argv)

    import trainers  # noqa: F401  (fails here, clearly, if Dassl is missing)
    from dassl.engine import TRAINER_REGISTRY

    from trainers.engine.trainer import RESULTS_FILE

    start = time.time()
    data, out = Path(args.data), Path(args.out)
    build_demo_assets(data, recipe=PretrainRecipe(steps=args.pretrain_steps, pool_size=args.pretrain_pool))
    weights = default_weights_path(data)
    selected = [m for m in METHODS if m[0] in args.methods]
    unknown = set(args.methods) - {m[0] for m in METHODS}
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; choose from {[m[0] for m in METHODS]}")

    rows, summary, baseline = [], {}, None
    print(f"Training on the synthetic domain ({args.shots} shots, seed {args.seed}); logs in {out}/<method>/log.txt")
    for i, (trainer, label, flags) in enumerate(selected, 1):
        if trainer not in TRAINER_REGISTRY.registered_names():
            print(f"[{i}/{len(selected)}] {label}: not available in this checkout, skipped")
            continue
        run_dir = out / trainer
        shutil.rmtree(run_dir, ignore_errors=True)
        print(f"[{i}/{len(selected)}] {label} ...", end=" ", flush=True)
        t0 = time.time()
        code, console = run_method(train_argv(trainer, flags, data, run_dir, weights, args.shots, args.seed))
        if code != 0 or not (run_dir / RESULTS_FILE).is_file():
            print(f"failed (exit {code}); see {run_dir}/log.txt\n{console[-2000:]}")
            return 1
        results = json.loads((run_dir / RESULTS_FILE).read_text())
        baseline = baseline or (results if trainer == "ZeroshotCLIP" else None)
        summary[trainer] = results
        rows.append(results_row(label, results, None if trainer == "ZeroshotCLIP" else baseline))
        print(f"done in {time.time() - t0:.1f}s, mean recall {results['mean_recall']:.2f}")

    headers = ["method"] + [f"{d} R@{k}" for d in ("I2T", "T2I") for k in KS] + ["mean", "vs zero-shot"]
    table = tabulate(rows, headers=headers, disable_numparse=True, colalign=("left",) + ("right",) * 8)
    print(f"\nRecall@K on the synthetic domain's test split ({summary and next(iter(summary.values()))['num_images']} "
          f"images x captions):\n{table}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo_results.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "demo_results.md").write_text(tabulate(rows, headers=headers, disable_numparse=True, tablefmt="github") + "\n")
    print(f"\nTotal {time.time() - start:.0f}s. Table saved to {out / 'demo_results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
