"""``make bench``: speed and memory of every trainer on the demo domain (or any dataset/backbone).

    python -m tools.bench [--data ./data] [--trainers ...] [--steps 20] [--out bench_results]
                          [--backbone PATH_OR_NAME] [--dataset-config ...] [--device cpu|cuda]

Per trainer, on the same training batch:
- training images/s of a full optimisation step (forward, backward, update);
- the step's overhead relative to the bare frozen CLIP forward (image + caption encoders, no grad);
- evaluation throughput: (test images + test captions) / seconds of ``trainer.test()``;
- for trainers whose image path is frozen CLIP, the test again with the image-feature cache warm
  (the speed-up a sweep gets from the second run on);
- peak memory: CUDA max allocated, or the process's peak RSS on the CPU (each trainer runs in its own
  process, so the peak is its own).
Results go to ``<out>/bench.json`` and ``<out>/bench.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

ROOT = Path(__file__).resolve().parents[1]
TRAINERS = ("ZeroshotCLIP", "CoOp", "CLIPAdapter", "MaPLe", "VPT", "VLP", "DPT", "DCAR")


def _timed(fn, repeats: int, sync) -> float:
    """Mean seconds per call after one warm-up call."""
    fn()
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return (time.perf_counter() - start) / repeats


def bench_one(trainer_name: str, args: argparse.Namespace) -> dict:
    """Runs inside a fresh process (see :func:`main`)."""
    import torch

    import datasets  # noqa: F401
    import trainers  # noqa: F401
    from dassl.engine import build_trainer

    from train import build_parser, setup_cfg

    torch.set_num_threads(args.threads)
    config = ROOT / "configs" / "trainers" / trainer_name / f"{args.config}.yaml"
    if not config.is_file():
        return {"trainer": trainer_name, "skipped": f"no recipe {config.relative_to(ROOT)}"}
    cache_dir = tempfile.mkdtemp(prefix="bench-features-")
    argv = ["--root", args.data, "--seed", "1", "--trainer", trainer_name, "--dataset-config-file", args.dataset_config,
            "--config-file", str(config), "--output-dir", tempfile.mkdtemp(prefix="bench-run-"),
            "MODEL.BACKBONE.NAME", args.backbone, "DATASET.NUM_SHOTS", str(args.shots),
            "USE_CUDA", str(args.device == "cuda"), "TEST.FEATURE_CACHE", "True", "TEST.FEATURE_CACHE_DIR", cache_dir]
    cfg = setup_cfg(build_parser().parse_args(argv))
    trainer = build_trainer(cfg)
    device = trainer.device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    batch = next(iter(trainer.train_loader_x))
    images = batch["img"].to(device)
    batch_size = images.shape[0]
    model = trainer.model
    if trainer.is_retrieval:
        tokens = trainer.caption_tokens["train"][batch["index"]].to(device)
    else:
        tokens = model.tokenize(model.class_prompt_texts()).tokens.to(device)

    @torch.no_grad()
    def frozen_forward():
        with trainer.precision.autocast():
            model.clip.encode_image(images.to(model.clip.visual.conv1.weight.dtype))
            x, eot = model.text_encoder.embed(tokens)
            model.text_encoder(x, eot)

    frozen_s = _timed(frozen_forward, args.steps, sync)
    result = {"trainer": trainer_name, "device": str(device), "precision": trainer.precision.name,
              "batch_size": batch_size, "frozen_forward_ms": 1000 * frozen_s}
    if trainer.get_model_names():
        trainer.set_model_mode("train")
        trainer.batch_idx, trainer.num_batches = 0, args.steps + 10  # never the epoch's last batch: no LR step
        step_s = _timed(lambda: trainer.forward_backward(batch), args.steps, sync)
        result.update(train_step_ms=1000 * step_s, train_images_per_s=batch_size / step_s,
                      step_overhead_vs_frozen=step_s / frozen_s)

    items = len(trainer.dm.dataset.test) * (2 if trainer.is_retrieval else 1)
    start = time.perf_counter()
    trainer.test()  # a cacheable trainer writes the feature cache here
    sync()
    result["eval_items_per_s"] = items / (time.perf_counter() - start)
    if not model.prompts_image:
        # what the cache changes: the pass over the test images, uncached vs. read back from the cache
        loader = trainer.test_loader
        with torch.no_grad(), trainer.precision.autocast():
            start = time.perf_counter()
            trainer._encode_images(loader, model.encode_image)
            sync()
            uncached = time.perf_counter() - start
            start = time.perf_counter()
            trainer.encode_test_images(loader)
            sync()
            cached = time.perf_counter() - start
        result.update(test_images_s_uncached=uncached, test_images_s_cached=cached,
                      feature_cache_speedup=uncached / cached)
    if device.type == "cuda":
        result["peak_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        result["peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="./data")
    parser.add_argument("--trainers", nargs="+", default=list(TRAINERS))
    parser.add_argument("--config", default="demo", help="recipe name in configs/trainers/<TRAINER>/")
    parser.add_argument("--dataset-config", default="configs/datasets/fdrd_synthetic.yaml")
    parser.add_argument("--backbone", default="", help="CLIP name or file (default: the demo's tiny CLIP)")
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--out", default="bench_results")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one trainer, print JSON
    args = parser.parse_args(argv)

    if args.one:
        print("BENCH_JSON " + json.dumps(bench_one(args.one, args)))
        return 0

    if not args.backbone:
        from tools.demo.build import build_demo_assets
        from tools.demo.tiny_clip import default_weights_path

        build_demo_assets(args.data, evaluate=False)
        args.backbone = str(default_weights_path(Path(args.data)))

    rows = []
    passthrough = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
                   if k in ("data", "config", "dataset_config", "backbone", "shots", "steps", "threads", "device")]
    for name in args.trainers:
        print(f"benchmarking {name} ...", flush=True)
        proc = subprocess.run([sys.executable, "-m", "tools.bench", "--one", name, *passthrough], cwd=ROOT,
                              capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        line = next((l for l in proc.stdout.splitlines() if l.startswith("BENCH_JSON ")), None)
        if proc.returncode != 0 or line is None:
            rows.append({"trainer": name, "skipped": (proc.stderr.strip().splitlines() or ["failed"])[-1]})
        else:
            rows.append(json.loads(line.removeprefix("BENCH_JSON ")))

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(rows, indent=2) + "\n")
    columns = [("trainer", "trainer"), ("train_images_per_s", "train img/s"), ("train_step_ms", "step ms"),
               ("step_overhead_vs_frozen", "x frozen fwd"), ("eval_items_per_s", "eval items/s"),
               ("feature_cache_speedup", "cache speed-up"), ("peak_memory_mb", "peak MB"), ("skipped", "note")]
    table = [[row.get(key, "") if not isinstance(row.get(key), float) else f"{row[key]:.1f}" for key, _ in columns]
             for row in rows]
    text = tabulate(table, headers=[h for _, h in columns], tablefmt="github", disable_numparse=True)
    (out / "bench.md").write_text(text + "\n")
    print(text)
    print(f"\nWritten to {out / 'bench.json'} and {out / 'bench.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
