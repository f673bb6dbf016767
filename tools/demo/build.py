"""Build the CPU demo assets: the ``synthetic`` retrieval domain and the pretrained tiny CLIP.

Usage::

    python -m tools.demo.build --data DATA_ROOT [--seed 0] [--steps 600] [--pool-size 20000]
                               [--weights PATH] [--quiet]

Idempotent: each asset is rebuilt only when missing or built with another seed/recipe, so the
command is safe to put in front of every demo run. The tiny CLIP's zero-shot Recall@K, the floor
that learned prompts must clear, is the ZeroshotCLIP trainer's row of ``python -m tools.demo.run``.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from tools.demo.synthetic_domain import DomainSpec, DomainSummary, ensure_synthetic_domain
from tools.demo.tiny_clip import PretrainRecipe, TinyClipBuild, default_weights_path, ensure_tiny_clip


@dataclass(frozen=True)
class DemoAssets:
    domain: DomainSummary
    weights: TinyClipBuild


def build_demo_assets(
    data_root: Path | str,
    seed: int = 0,
    recipe: PretrainRecipe | None = None,
    spec: DomainSpec = DomainSpec(),
    weights_path: Path | str | None = None,
    progress: bool = True,
) -> DemoAssets:
    """Ensure both assets exist under ``data_root``; ``recipe.seed`` is overridden by ``seed``."""
    data_root = Path(data_root)
    recipe = replace(recipe or PretrainRecipe(), seed=seed)
    weights_path = Path(weights_path) if weights_path else default_weights_path(data_root)
    say = print if progress else (lambda *args, **kwargs: None)

    say(f"[1/2] synthetic domain (seed {seed}) under {data_root}")
    domain = ensure_synthetic_domain(data_root, seed, spec)
    verb = "built" if domain.built else "reused"
    say(f"      {verb}: {len(domain.class_names)} classes, {domain.counts} images in {domain.seconds:.1f}s")

    say(f"[2/2] tiny CLIP ({recipe.steps} steps, batch {recipe.batch_size}, pool {recipe.pool_size}) -> {weights_path}")
    weights = ensure_tiny_clip(weights_path, recipe, progress=progress)
    if weights.built:
        losses = weights.record["loss_per_step"]
        say(f"      pretrained in {weights.record['seconds']:.1f}s, loss {losses[0]:.3f} -> {losses[-1]:.3f}, "
            f"logit scale {weights.record['final_logit_scale']:.1f}")
    else:
        say("      reused (recipe and checkpoint hash match the sidecar)")
    return DemoAssets(domain=domain, weights=weights)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    defaults = PretrainRecipe()
    parser = argparse.ArgumentParser(prog="python -m tools.demo.build", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path, help="data root (the $DATA of the CoOp layout)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the domain images and of pretraining")
    parser.add_argument("--steps", type=int, default=defaults.steps, help="pretraining steps")
    parser.add_argument("--pool-size", type=int, default=defaults.pool_size, help="generic pretraining images")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--weights", type=Path, default=None, help="checkpoint path (default DATA/weights/...)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    recipe = replace(PretrainRecipe(), steps=args.steps, pool_size=args.pool_size, batch_size=args.batch_size)
    start = time.perf_counter()
    build_demo_assets(
        args.data,
        seed=args.seed,
        recipe=recipe,
        weights_path=args.weights,
        progress=not args.quiet,
    )
    if not args.quiet:
        print(f"done in {time.perf_counter() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
