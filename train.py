"""Train or evaluate a prompt-learning method; CoOp's command line, so CoOp's shell scripts work as is.

    python train.py --root DATA --seed 1 --trainer CoOp \
        --dataset-config-file configs/datasets/oxford_pets.yaml \
        --config-file configs/trainers/CoOp/vit_b16.yaml \
        --output-dir output/oxford_pets/CoOp/seed1 DATASET.NUM_SHOTS 16
"""
from __future__ import annotations

import argparse
import io
import sys

import torch


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=str, default="", help="path to dataset")
    p.add_argument("--output-dir", type=str, default="", help="output directory")
    p.add_argument("--resume", type=str, default="", help="checkpoint directory (from which the training resumes)")
    p.add_argument("--seed", type=int, default=-1, help="only positive value enables a fixed seed")
    p.add_argument("--source-domains", type=str, nargs="+", help="source domains for DA/DG")
    p.add_argument("--target-domains", type=str, nargs="+", help="target domains for DA/DG")
    p.add_argument("--transforms", type=str, nargs="+", help="data augmentation methods")
    p.add_argument("--config-file", type=str, default="", help="path to config file")
    p.add_argument("--dataset-config-file", type=str, default="", help="path to config file for dataset setup")
    p.add_argument("--trainer", type=str, default="", help="name of trainer")
    p.add_argument("--backbone", type=str, default="", help="name of CNN backbone")
    p.add_argument("--head", type=str, default="", help="name of head")
    p.add_argument("--eval-only", action="store_true", help="evaluation only")
    p.add_argument("--model-dir", type=str, default="", help="load model from this directory for eval-only mode")
    p.add_argument("--load-epoch", type=int, help="load model weights at this epoch for evaluation")
    p.add_argument("--no-train", action="store_true", help="do not call trainer.train()")
    p.add_argument("opts", default=None, nargs=argparse.REMAINDER, help="modify config options using the command-line")
    return p


def reset_cfg(cfg, args) -> None:
    if args.root:
        cfg.DATASET.ROOT = args.root
    if args.output_dir:
        cfg.OUTPUT_DIR = args.output_dir
    if args.resume:
        cfg.RESUME = args.resume
    if args.seed:
        cfg.SEED = args.seed
    if args.source_domains:
        cfg.DATASET.SOURCE_DOMAINS = args.source_domains
    if args.target_domains:
        cfg.DATASET.TARGET_DOMAINS = args.target_domains
    if args.transforms:
        cfg.INPUT.TRANSFORMS = args.transforms
    if args.trainer:
        cfg.TRAINER.NAME = args.trainer
    if args.backbone:
        cfg.MODEL.BACKBONE.NAME = args.backbone
    if args.head:
        cfg.MODEL.HEAD.NAME = args.head
    cfg.RUN.CONFIG_FILE = args.config_file
    cfg.RUN.DATASET_CONFIG_FILE = args.dataset_config_file
    cfg.RUN.OVERRIDES = [str(opt) for opt in args.opts or []]


class UserError(Exception):
    """A problem with the command line, a config or an input file: shown as one message, no traceback."""


def setup_cfg(args):
    from dassl.config import get_cfg_default

    from trainers.engine.config import extend_cfg

    cfg = extend_cfg(get_cfg_default())
    for label, path in (("dataset config", args.dataset_config_file), ("config", args.config_file)):
        if not path:
            continue
        try:
            cfg.merge_from_file(path)
        except FileNotFoundError:
            raise UserError(f"The {label} file {path} does not exist (see configs/ for the available ones).")
        except KeyError as err:
            raise UserError(f"{path}: {err.args[0]}. Check the key's spelling against the trainer's add_config().")
    reset_cfg(cfg, args)
    try:
        cfg.merge_from_list(args.opts or [])
    except KeyError as err:
        raise UserError(f"Command-line override: {err.args[0]}.")
    except AssertionError as err:
        raise UserError(f"Command-line overrides must come in KEY VALUE pairs ({err}).")
    except ValueError as err:
        raise UserError(f"Command-line override: {err}")
    cfg.freeze()
    return cfg


def main(args) -> None:
    try:
        import dassl  # noqa: F401
    except ImportError:
        raise UserError("Dassl is not installed. Run `make install` (or see README: Installing Dassl).")
    from dassl.engine import TRAINER_REGISTRY, build_trainer
    from dassl.utils import collect_env_info, set_random_seed

    import datasets  # noqa: F401  (registers the datasets)
    import trainers  # noqa: F401  (registers the trainers)
    from trainers.engine.run_log import setup_run_log

    cfg = setup_cfg(args)
    if cfg.TRAINER.NAME not in TRAINER_REGISTRY.registered_names():
        known = ", ".join(sorted(TRAINER_REGISTRY.registered_names()))
        raise UserError(f"Unknown trainer {cfg.TRAINER.NAME!r}. Available: {known}.")
    if cfg.SEED >= 0:
        print(f"Setting fixed seed: {cfg.SEED}")
        set_random_seed(cfg.SEED)
    setup_run_log(cfg.OUTPUT_DIR)  # Dassl's logger, one log per attempt, the newest at log_latest.txt
    if torch.cuda.is_available() and cfg.USE_CUDA:
        torch.backends.cudnn.benchmark = True

    print("Collecting env info ...")
    print(f"** System info **\n{collect_env_info()}\n")
    print_args(args, cfg)

    trainer = build_trainer(cfg)
    if args.eval_only:
        trainer.load_model(args.model_dir, epoch=args.load_epoch)
        trainer.test()
        return
    if not args.no_train:
        trainer.train()


def print_args(args, cfg) -> None:
    print("***************\n** Arguments **\n***************")
    for key in sorted(vars(args)):
        print(f"{key}: {getattr(args, key)}")
    print("************\n** Config **\n************")
    print(cfg)


def run(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code. Safe to call repeatedly in one process (e.g. the demo)."""
    args = build_parser().parse_args(argv)
    console = sys.stdout
    try:
        main(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as err:
        # Missing files, and the config/data errors our packages raise, name the thing and the fix.
        if isinstance(err, FileNotFoundError) or type(err).__module__.startswith(("datasets", "trainers")):
            print(f"error: {err}", file=sys.stderr)
            return 2
        raise
    finally:
        # Dassl's setup_logger swaps sys.stdout for a tee into log.txt; undo it. Its Logger closes the
        # console it wraps when garbage-collected, so hand it a throwaway one and close only its file.
        logger, sys.stdout = sys.stdout, console
        if logger is not console and hasattr(logger, "console"):
            if getattr(logger, "file", None) is not None:
                logger.file.close()
                logger.file = None
            logger.console = io.StringIO()
    return 0


if __name__ == "__main__":
    sys.exit(run())
