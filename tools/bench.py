"""``make bench``: speed and memory of every trainer, the DCAR/MaPLe step ratio and Recall@K at scale.

    python -m tools.bench [--data ./data] [--trainers ...] [--repeats 7] [--steps 3] [--out bench_results]
                          [--backbone PATH_OR_NAME|random:NAME] [--dataset-config ...] [--device cpu|cuda]
                          [--only trainers dcar recall] [--recall-sizes 5000 30000 100000] [KEY VALUE ...]

``--backbone random:ViT-B/32`` (any OpenAI name) times the real architecture with random weights, where the
weights cannot be downloaded: speed and memory depend on the shapes only. Trailing ``KEY VALUE`` pairs override
every trainer's config (as in train.py), e.g. ``TRAINER.DCAR.PROMPT_DEPTH 2`` on a shallow backbone. Every time
is measured as ``--repeats`` rounds; in each round the measured run and its baselines run back to back, in
reversed order every other round, so machine load moves them together; a ratio is taken per round and reported as
the median with its interquartile range ``median [q1, q3]``.

Per trainer (the list is ``trainers.registered_trainers()``), on one training batch:
- the optimisation step (forward, backward, update) relative to (a) the stock CLIP forward, image and caption
  encoders at CLIP's 77 tokens without grad (what upstream CoOp-style code pays per forward), and (b) the bare
  frozen forward at the *step's* sequence length (the context tokens inserted, no prompts, no grad);
- training images/s (median round), evaluation throughput ((test images + captions) / s of ``trainer.test()``),
  the cached-feature speed-up of the test image pass for trainers whose image path is frozen CLIP, and peak
  memory (CUDA max allocated, or the peak RSS of the trainer's own process).

``dcar``: DCAR's step over MaPLe's on the same retrieval batch, MaPLe given DCAR's context length, depth and
precision (the same dual prompts; DCAR adds DTR and the K negatives per caption), by default on ViT-B/32's shapes
with random weights and DCAR's ``vit_b32`` recipe (``--dcar-backbone``, ``--dcar-config``): the ratio depends on
how the image and the text tower share the cost, which a tiny model does not reproduce.

``recall``: :func:`trainers.retrieval_metrics.retrieval_ranks` vs the naive full-matrix ranks (one N x N matmul,
the same tie rule) on random 1:1 galleries of dim 512: the time ratio (alternated, in one process) and the peak
memory beyond the features (each measurement in a fresh process: peak RSS, restarted once the features are
allocated, minus that RSS); sizes too large for the full matrix (over ``--naive-max``) measure the blocked version only.

Results go to ``<out>/bench.json`` and ``<out>/bench.md``.
"""
from __future__ import annotations

import argparse
import atexit
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tabulate import tabulate

from trainers.atomic_io import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("trainers", "dcar", "recall")


# ---- measurement ---------------------------------------------------------------------------------
def alternated(runs: dict[str, Callable[[], object]], repeats: int, steps: int, sync) -> dict[str, list[float]]:
    """Seconds per call of each run, per round: one warm-up call each, then ``repeats`` rounds of ``steps`` calls
    of every run back to back, the order reversed every other round."""
    names = list(runs)
    for name in names:
        runs[name]()
    sync()
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(repeats):
        for name in names if round_index % 2 == 0 else reversed(names):
            start = time.perf_counter()
            for _ in range(steps):
                runs[name]()
            sync()
            times[name].append((time.perf_counter() - start) / steps)
    return times


def spread(values: list[float]) -> dict[str, float]:
    """Median and interquartile range."""
    if len(values) < 2:
        return {"median": values[0], "q1": values[0], "q3": values[0]}
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return {"median": statistics.median(values), "q1": q1, "q3": q3}


def ratio(times: dict[str, list[float]], numerator: str, denominator: str) -> dict[str, float]:
    return spread([a / b for a, b in zip(times[numerator], times[denominator])])


def show(stat: dict | None, digits: int = 2) -> str:
    if not stat:
        return ""
    return f"{stat['median']:.{digits}f} [{stat['q1']:.{digits}f}, {stat['q3']:.{digits}f}]"


# ---- trainers ------------------------------------------------------------------------------------
def build_bench_trainer(trainer_name: str, args: argparse.Namespace, overrides: list[str] | None = None,
                        recipe: str | None = None):
    """The trainer train.py would build for the benchmark (recipe ``--config`` unless given), or why none."""
    import datasets  # noqa: F401
    import trainers  # noqa: F401
    from dassl.engine import build_trainer

    from train import build_parser, setup_cfg

    config = ROOT / "configs" / "trainers" / trainer_name / f"{recipe or args.config}.yaml"
    if not config.is_file():
        return f"no recipe {config.relative_to(ROOT)}"
    cache_dir, run_dir = tempfile.mkdtemp(prefix="bench-features-"), tempfile.mkdtemp(prefix="bench-run-")
    for folder in (cache_dir, run_dir):
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
    argv = ["--root", args.data, "--seed", "1", "--trainer", trainer_name, "--dataset-config-file", args.dataset_config,
            "--config-file", str(config), "--output-dir", run_dir,
            "MODEL.BACKBONE.NAME", args.backbone, "DATASET.NUM_SHOTS", str(args.shots),
            "USE_CUDA", str(args.device == "cuda"), "TEST.FEATURE_CACHE", "True", "TEST.FEATURE_CACHE_DIR", cache_dir,
            "TRAIN.PRINT_FREQ", "1000000", *args.opts, *(overrides or [])]
    return build_trainer(setup_cfg(build_parser().parse_args(argv)))


def _sync(device):
    import torch

    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def _step(trainer, batch, steps: int):
    """One optimisation step; never the epoch's last batch (no LR step)."""
    trainer.set_model_mode("train")
    trainer.batch_idx, trainer.num_batches = 0, 10**9
    return lambda: trainer.forward_backward(batch)


def _reference_forwards(trainer, batch):
    """(stock CLIP forward at 77 tokens, bare frozen forward at the step's sequence length), both without grad."""
    import clip
    import torch

    model, device = trainer.model, trainer.device
    images = batch["img"].to(device)
    if trainer.is_retrieval:
        texts = [trainer.dm.dataset.train_x[i].caption for i in batch["index"].tolist()]
        tokens = trainer.caption_tokens["train"][batch["index"]].to(device)
    else:
        texts = model.class_prompt_texts()
        tokens = model.tokenize(texts).tokens.to(device)
    stock_tokens = clip.tokenize(texts, truncate=True).to(device)  # CLIP's full 77 positions
    image_dtype = model.clip.visual.conv1.weight.dtype

    @torch.no_grad()
    def stock_forward():
        with trainer.precision.autocast():
            model.clip.encode_image(images.to(image_dtype))
            model.clip.encode_text(stock_tokens)

    @torch.no_grad()
    def frozen_forward():
        with trainer.precision.autocast():
            model.clip.encode_image(images.to(image_dtype))
            ctx = model.text_context()
            x, eot = model.text_encoder.embed(tokens, None if ctx is None else ctx.detach())
            model.text_encoder(x, eot)

    return stock_forward, frozen_forward


def bench_trainer(trainer_name: str, args: argparse.Namespace) -> dict:
    """Runs inside a fresh process (see :func:`main`)."""
    import torch

    torch.set_num_threads(args.threads)
    trainer = build_bench_trainer(trainer_name, args)
    if isinstance(trainer, str):
        return {"trainer": trainer_name, "skipped": trainer}
    device = trainer.device
    sync = _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    batch = next(iter(trainer.train_loader_x))
    batch_size = len(batch["img"])
    stock_forward, frozen_forward = _reference_forwards(trainer, batch)
    runs = {"stock": stock_forward, "frozen": frozen_forward}
    if trainer.get_model_names():
        runs["step"] = _step(trainer, batch, args.steps)
    times = alternated(runs, args.repeats, args.steps, sync)
    result = {"trainer": trainer_name, "device": str(device), "precision": trainer.precision.name,
              "batch_size": batch_size, "frozen_vs_stock": ratio(times, "frozen", "stock")}
    if "step" in times:
        result.update(step_vs_stock=ratio(times, "step", "stock"), step_vs_frozen=ratio(times, "step", "frozen"),
                      train_images_per_s=batch_size / statistics.median(times["step"]))

    model = trainer.model
    items = len(trainer.dm.dataset.test) * (2 if trainer.is_retrieval else 1)
    start = time.perf_counter()
    trainer.test()  # a cacheable trainer writes the feature cache here
    sync()
    result["eval_items_per_s"] = items / (time.perf_counter() - start)
    if not model.prompts_image:
        # what the cache changes: the pass over the test images, uncached vs. read back from the cache
        loader = trainer.test_loader
        with torch.no_grad(), trainer.precision.autocast():
            cache_times = alternated({"uncached": lambda: trainer._encode_images(loader, model.encode_image),
                                      "cached": lambda: trainer.encode_test_images(loader)},
                                     max(1, args.repeats // 2), 1, sync)
        result["feature_cache_speedup"] = ratio(cache_times, "uncached", "cached")
    if device.type == "cuda":
        result["peak_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        result["peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def bench_dcar(args: argparse.Namespace) -> dict:
    """DCAR's step over MaPLe's on one retrieval batch (one process, alternated), and where the difference goes:
    DCAR with DTR only (its frozen image pass) and with CAA only (the K negatives through the prompted encoder)."""
    import torch

    torch.set_num_threads(args.threads)
    dcar = build_bench_trainer("DCAR", args)
    if isinstance(dcar, str):
        return {"skipped": dcar}
    c = dcar.cfg.TRAINER.DCAR
    # MaPLe's FDRD recipes are named fdrd_<backbone> (DCAR's <backbone>)
    recipe = args.config if (ROOT / "configs/trainers/MaPLe" / f"{args.config}.yaml").is_file() else f"fdrd_{args.config}"
    maple = build_bench_trainer("MaPLe", args, recipe=recipe, overrides=[
        "TRAINER.MAPLE.N_CTX", str(c.N_CTX), "TRAINER.MAPLE.PROMPT_DEPTH", str(c.PROMPT_DEPTH),
        "TRAINER.MAPLE.PREC", c.PREC])
    if isinstance(maple, str):
        return {"skipped": maple}
    batch = next(iter(dcar.train_loader_x))
    runs = {"dcar": _step(dcar, batch, args.steps), "maple": _step(maple, batch, args.steps)}
    if c.USE_DTR and c.USE_CAA:
        for name, key in (("dtr_only", "TRAINER.DCAR.USE_CAA"), ("caa_only", "TRAINER.DCAR.USE_DTR")):
            runs[name] = _step(build_bench_trainer("DCAR", args, [key, "False"]), batch, args.steps)
    times = alternated(runs, args.repeats, args.steps, _sync(dcar.device))
    k = dcar.negatives.num_negatives if dcar.negatives is not None else 0
    result = {"dcar_vs_maple": ratio(times, "dcar", "maple"), "batch_size": len(batch["img"]), "maple_recipe": recipe,
              "config": {"N_CTX": c.N_CTX, "PROMPT_DEPTH": c.PROMPT_DEPTH, "PREC": dcar.precision.name,
                         "USE_DTR": c.USE_DTR, "USE_CAA": c.USE_CAA, "K": k, "CATE_ENCODER": c.CATE_ENCODER,
                         "VISUAL_PROMPTS": c.VISUAL_PROMPTS}}
    for name in ("dtr_only", "caa_only"):
        if name in times:
            result[f"{name}_vs_maple"] = ratio(times, name, "maple")
    return result


# ---- Recall@K --------------------------------------------------------------------------------------
def naive_ranks(images, texts):
    """Full-matrix ranks of a 1:1 gallery with the module's tie rule (the baseline)."""
    import torch
    import torch.nn.functional as F

    scores = F.normalize(images.float(), dim=-1) @ F.normalize(texts.float(), dim=-1).T
    target = scores.diagonal().clone()
    index = torch.arange(len(target), device=scores.device)
    lower = index.unsqueeze(0) < index.unsqueeze(1)  # [i, j]: j < i
    i2t = (scores > target[:, None]).sum(1) + ((scores == target[:, None]) & lower).sum(1)
    t2i = (scores > target[None]).sum(0) + ((scores == target[None]) & lower.T).sum(0)
    return i2t, t2i


def _random_gallery(size: int, dim: int, device: str):
    import torch

    generator = torch.Generator().manual_seed(size)
    images = torch.randn(size, dim, generator=generator)
    texts = images + 1.5 * torch.randn(size, dim, generator=generator)  # paired, not trivially
    texts[1] = texts[0]  # a tie
    return images.to(device), texts.to(device)


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def _reset_peak_rss() -> bool:
    """Linux: make VmHWM (the peak RSS) start again from the current RSS; False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def recall_memory(size: int, method: str, args: argparse.Namespace) -> dict:
    """In a fresh process: peak memory of one ranking beyond the features."""
    import torch

    from trainers.retrieval_metrics import retrieval_ranks

    torch.set_num_threads(args.threads)
    images, texts = _random_gallery(size, args.recall_dim, args.device)
    if args.device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        # the gallery's own temporaries (randn, sums) and the BLAS library's first-call pages must not count: the
        # peak restarts with the features allocated and a small product done
        naive_ranks(images[:64], texts[:64])
        resettable = _reset_peak_rss()
        base = _status_mb("VmRSS")
    start = time.perf_counter()
    (naive_ranks if method == "naive" else retrieval_ranks)(images, texts)
    seconds = time.perf_counter() - start
    if args.device == "cuda":
        extra = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak = _status_mb("VmHWM") if resettable else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        extra = peak - base
    return {"extra_memory_mb": extra, "seconds": seconds}


def bench_recall_time(size: int, args: argparse.Namespace) -> dict:
    import torch

    from trainers.retrieval_metrics import retrieval_ranks

    torch.set_num_threads(args.threads)
    images, texts = _random_gallery(size, args.recall_dim, args.device)
    sync = _sync(images.device)
    blocked, naive = retrieval_ranks(images, texts), naive_ranks(images, texts)
    same = all(torch.equal(a, b) for a, b in zip(blocked, naive))
    times = alternated({"blocked": lambda: retrieval_ranks(images, texts), "naive": lambda: naive_ranks(images, texts)},
                       args.recall_repeats, 1, sync)
    return {"blocked_vs_naive": ratio(times, "blocked", "naive"), "identical_ranks": same,
            "blocked_s": spread(times["blocked"]), "naive_s": spread(times["naive"])}


def random_backbone_file(name: str) -> str:
    """A temporary checkpoint of OpenAI's ``name`` architecture with random weights (removed at exit)."""
    import torch

    from trainers.backbone.architecture import random_openai_clip

    folder = tempfile.mkdtemp(prefix="bench-backbone-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    path = Path(folder) / f"random_{name.replace('/', '-').replace('@', '-')}.pt"
    state = {key: value.half() if value.is_floating_point() else value
             for key, value in random_openai_clip(name).state_dict().items()}  # half the file; loaded as fp32
    torch.save(state, path)
    return str(path)


# ---- driver --------------------------------------------------------------------------------------
def _subprocess(flags: list[str], args: argparse.Namespace) -> dict:
    passthrough = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
                   if k in ("data", "config", "dataset_config", "backbone", "shots", "steps", "repeats", "threads",
                            "device", "recall_dim", "recall_repeats")]
    proc = subprocess.run([sys.executable, "-m", "tools.bench", *flags, *passthrough, *args.opts], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    line = next((l for l in proc.stdout.splitlines() if l.startswith("BENCH_JSON ")), None)
    if proc.returncode != 0 or line is None:
        return {"skipped": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(line.removeprefix("BENCH_JSON "))


def _trainer_table(rows: list[dict]) -> str:
    columns = [("trainer", "trainer"), ("step_vs_stock", "step / stock fwd"), ("step_vs_frozen", "step / frozen fwd"),
               ("frozen_vs_stock", "frozen / stock"), ("train_images_per_s", "train img/s"),
               ("eval_items_per_s", "eval items/s"), ("feature_cache_speedup", "cache speed-up"),
               ("peak_memory_mb", "peak MB"), ("skipped", "note")]

    def cell(value):
        if isinstance(value, dict):
            return show(value)
        return f"{value:.1f}" if isinstance(value, float) else ("" if value is None else str(value))

    table = [[cell(row.get(key)) for key, _ in columns] for row in rows]
    return tabulate(table, headers=[h for _, h in columns], tablefmt="github", disable_numparse=True)


def _recall_table(rows: list[dict]) -> str:
    table = [[row["size"], show(row.get("blocked_vs_naive")), row.get("identical_ranks", ""),
              f"{row['blocked_memory_mb']:.0f}" if "blocked_memory_mb" in row else "",
              f"{row['naive_memory_mb']:.0f}" if "naive_memory_mb" in row else "",
              f"{row['blocked_once_s']:.1f}" if "blocked_once_s" in row else ""] for row in rows]
    headers = ["N", "time blocked / naive", "same ranks", "extra MB blocked", "extra MB naive", "blocked s (once)"]
    return tabulate(table, headers=headers, tablefmt="github", disable_numparse=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="./data")
    parser.add_argument("--trainers", nargs="+", default=None, help="default: trainers.registered_trainers()")
    parser.add_argument("--config", default="demo", help="recipe name in configs/trainers/<TRAINER>/")
    parser.add_argument("--dataset-config", default="configs/datasets/fdrd_synthetic.yaml")
    parser.add_argument("--backbone", default="", help="CLIP name or file, or random:NAME for OpenAI's NAME "
                        "architecture with random weights (default: the demo's tiny CLIP)")
    parser.add_argument("--dcar-backbone", default="random:ViT-B/32",
                        help="backbone of the DCAR/MaPLe section: the ratio is decided by how the image and the text "
                             "tower share the cost, so it is measured on ViT-B's shapes ('' = --backbone)")
    parser.add_argument("--dcar-config", default="vit_b32", help="DCAR's recipe for that section ('' = --config)")
    parser.add_argument("--dcar-steps", type=int, default=1, help="calls per timed round in that section")
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3, help="calls per timed round")
    parser.add_argument("--repeats", type=int, default=7, help="alternated rounds per measurement")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--recall-sizes", nargs="+", type=int, default=[5000, 30000, 100000])
    parser.add_argument("--recall-dim", type=int, default=512)
    parser.add_argument("--recall-repeats", type=int, default=5)
    parser.add_argument("--naive-max", type=int, default=30000, help="largest N the full matrix is measured at")
    parser.add_argument("--out", default="bench_results")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one trainer, print JSON
    parser.add_argument("--dcar-one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--recall-one", nargs=2, metavar=("SIZE", "WHAT"), help=argparse.SUPPRESS)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides for every trainer")
    args = parser.parse_args(argv)
    if len(args.opts) % 2:
        parser.error(f"config overrides must come in KEY VALUE pairs; {args.opts[-1]!r} has no value")

    if args.one or args.dcar_one or args.recall_one:
        if args.one:
            result = bench_trainer(args.one, args)
        elif args.dcar_one:
            result = bench_dcar(args)
        else:
            size, what = int(args.recall_one[0]), args.recall_one[1]
            result = bench_recall_time(size, args) if what == "time" else recall_memory(size, what, args)
        print("BENCH_JSON " + json.dumps(result))
        return 0

    dcar_label = args.dcar_backbone or args.backbone or "the demo's tiny CLIP"
    used = {"backbone": "trainers" in args.only or ("dcar" in args.only and not args.dcar_backbone),
            "dcar_backbone": "dcar" in args.only}
    for flag in ("backbone", "dcar_backbone"):
        value = getattr(args, flag)
        if value.startswith("random:"):
            from trainers.backbone.architecture import OPENAI_ARCHITECTURES

            name = value.removeprefix("random:")
            if name not in OPENAI_ARCHITECTURES.values():
                parser.error(f"--{flag.replace('_', '-')} {value}: no OpenAI architecture {name!r}; known: "
                             f"{', '.join(OPENAI_ARCHITECTURES.values())}")
            setattr(args, flag, random_backbone_file(name) if used[flag] else "")  # 300 MB only where it runs
    if ("trainers" in args.only or "dcar" in args.only) and not args.backbone:
        from tools.demo.build import build_demo_assets
        from tools.demo.tiny_clip import default_weights_path

        build_demo_assets(args.data)
        args.backbone = str(default_weights_path(Path(args.data)))

    report: dict = {"threads": args.threads, "device": args.device, "repeats": args.repeats, "overrides": args.opts}
    text: list[str] = []
    if "trainers" in args.only:
        import trainers

        rows = []
        for name in args.trainers or list(trainers.registered_trainers()):
            print(f"benchmarking {name} ...", flush=True)
            rows.append({"trainer": name, **_subprocess(["--one", name], args)})
        report["trainers"] = rows
        text += ["Trainers (ratios: median [q1, q3] of alternated rounds)", "", _trainer_table(rows), ""]
    if "dcar" in args.only:
        print("benchmarking DCAR vs MaPLe ...", flush=True)
        dcar_args = argparse.Namespace(**{**vars(args), "backbone": args.dcar_backbone or args.backbone,
                                          "config": args.dcar_config or args.config, "steps": args.dcar_steps})
        report["dcar"] = {"backbone": dcar_label, **_subprocess(["--dcar-one"], dcar_args)}
        dcar = report["dcar"]
        text += [f"DCAR step / MaPLe step on {dcar_label}: {show(dcar.get('dcar_vs_maple'))} "
                 f"{dcar.get('config', dcar.get('skipped', ''))}"]
        text += [f"  {name} / MaPLe: {show(dcar[f'{name}_vs_maple'])}" for name in ("dtr_only", "caa_only")
                 if f"{name}_vs_maple" in dcar]
        text.append("")
    if "recall" in args.only:
        rows = []
        for size in args.recall_sizes:
            print(f"benchmarking Recall@K at N={size} ...", flush=True)
            row: dict = {"size": size}
            blocked = _subprocess(["--recall-one", str(size), "blocked"], args)
            row.update(blocked_memory_mb=blocked.get("extra_memory_mb"), blocked_once_s=blocked.get("seconds"))
            if size <= args.naive_max:
                row["naive_memory_mb"] = _subprocess(["--recall-one", str(size), "naive"], args).get("extra_memory_mb")
                row.update(_subprocess(["--recall-one", str(size), "time"], args))
            rows.append({k: v for k, v in row.items() if v is not None})
        report["recall"] = rows
        text += [f"Recall@K, random 1:1 galleries of dim {args.recall_dim} (extra memory: peak beyond the features)",
                 "", _recall_table(rows), ""]

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "bench.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(out / "bench.md", "\n".join(text))
    print("\n".join(text))
    print(f"Written to {out / 'bench.json'} and {out / 'bench.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
