"""Train or evaluate a prompt-learning method; CoOp's command line, so CoOp's shell scripts work as is.

    python train.py --root DATA --seed 1 --trainer CoOp \
        --dataset-config-file configs/datasets/oxford_pets.yaml \
        --config-file configs/trainers/CoOp/vit_b16.yaml \
        --output-dir output/oxford_pets/CoOp/seed1 DATASET.NUM_SHOTS 16
"""
from __future__ import annotations

import argparse
import contextlib
import difflib
import errno
import functools
import io
import os
import re
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from trainers.errors import (EXIT_INTERRUPTED, EXIT_USER_ERROR, CheckpointError, ConfigError, UserError,
                             user_message)


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
    cfg.RUN.EVAL_ONLY = bool(args.eval_only)
    cfg.RUN.MODEL_DIR = args.model_dir


def known_keys(node, prefix: str = "") -> list[str]:
    keys = []
    for key, value in node.items():
        full = f"{prefix}{key}"
        keys += known_keys(value, f"{full}.") if isinstance(value, dict) else [full]
    return keys


def unknown_key_message(cfg, key: str, where: str) -> str:
    close = difflib.get_close_matches(key, known_keys(cfg), n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(close)}?" if close else " Check its spelling against the trainer's add_config()."
    return f"{where}: unknown config key {key}.{hint}"


def type_mismatch_message(err: ValueError, where: str) -> str | None:
    """yacs' "Type mismatch (<class 'int'> vs. <class 'str'>) with values (4 vs. x) for config key: K"."""
    match = re.search(r"Type mismatch \(<class '(\w+)'> vs\. <class '(\w+)'>\) with values \((.*) vs\. (.*)\) "
                      r"for config key: (\S+)", str(err), re.S)
    if match is None:
        return None
    expected, got, default, value, key = match.groups()
    return f"{where}: {key} must be a {expected} (default {default}), got {value!r} ({got})."


def merge_config_file(cfg, label: str, path: str) -> None:
    file = Path(path)
    if not file.exists():
        raise ConfigError(f"The {label} file {path} does not exist (see configs/ for the available ones).")
    if file.is_dir():
        raise ConfigError(f"The {label} file {path} is a folder; pass a YAML file from it (e.g. "
                          f"{next(iter(sorted(file.glob('*.yaml'))), 'configs/trainers/CoOp/vit_b16.yaml')}).")
    try:
        cfg.merge_from_file(path)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"The {label} file {path} is not valid YAML: {problem}{where}.") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"The {label} file {path} is not UTF-8 text (byte {err.start}); save it as UTF-8.") from None
    except KeyError as err:
        key = str(err.args[0]).removeprefix("Non-existent config key: ")
        raise ConfigError(unknown_key_message(cfg, key, path)) from None
    except ValueError as err:
        raise ConfigError(type_mismatch_message(err, path) or f"{path}: {err}") from None
    except (TypeError, AttributeError, AssertionError) as err:  # a YAML list or scalar instead of a mapping
        raise ConfigError(f"The {label} file {path} must hold KEY: VALUE mappings like the files in configs/ "
                          f"({type(err).__name__}: {err}).") from None


def merge_overrides(cfg, opts: list[str]) -> None:
    """Trailing KEY VALUE pairs; each key checked first, so an unknown key is not reported as a pairing error."""
    flags = [opt for opt in opts if opt.startswith("--")]
    if flags:
        raise ConfigError(f"{flags[0]} comes after the KEY VALUE overrides, which must end the command line: put "
                          "every --option before the first KEY.")
    if len(opts) % 2:
        raise ConfigError(f"Command-line overrides must come in KEY VALUE pairs; {opts[-1]!r} has no value.")
    keys = set(known_keys(cfg))
    for key in opts[0::2]:
        if key not in keys:
            raise ConfigError(unknown_key_message(cfg, key, "Command-line override"))
    try:
        cfg.merge_from_list(opts)
    except ValueError as err:
        raise ConfigError(type_mismatch_message(err, "Command-line override") or f"Command-line override: {err}") \
            from None


def setup_cfg(args):
    from dassl.config import get_cfg_default

    from trainers.engine.config import extend_cfg

    cfg = extend_cfg(get_cfg_default(), ("trainers", "datasets"))
    for label, path in (("dataset config", args.dataset_config_file), ("config", args.config_file)):
        if path:
            merge_config_file(cfg, label, path)
    reset_cfg(cfg, args)
    merge_overrides(cfg, args.opts or [])
    cfg.freeze()
    return cfg


@dataclass
class Session:
    """What the error boundary needs to say where a failed or interrupted run stands."""
    cfg: Any = None
    trainer: Any = None
    lock: Any = None
    training: bool = False

    def committed_epoch(self) -> int | None:
        from trainers.engine.checkpoint import read_commit

        if self.cfg is None:
            return None
        try:
            commit = read_commit(Path(self.cfg.OUTPUT_DIR), verify=False)
        except UserError:
            return None
        return commit.epoch if commit else None

    def interrupted(self) -> str:
        if self.trainer is None:
            return "interrupted before training started; re-run the same command to start again"
        if not self.training:
            return "interrupted during evaluation; re-run the same command"
        epoch = getattr(self.trainer, "epoch", 0) + 1
        saved = self.committed_epoch()
        since = f" (from the checkpoint of epoch {saved})" if saved else ""
        return f"interrupted at epoch {epoch}; re-run the same command to resume{since}"

    def disk_full(self, err: OSError) -> str:
        where = f" while writing {err.filename}" if err.filename else ""
        saved = self.committed_epoch()
        kept = (f"Saved: the checkpoint of epoch {saved} in {self.cfg.OUTPUT_DIR}; free some space and re-run the "
                f"same command to resume from epoch {saved + 1}." if saved else
                "No checkpoint was saved yet; free some space and re-run the same command.")
        return f"No space left on the device{where}. {kept}"


def main(args, session: Session) -> None:
    try:
        import dassl  # noqa: F401
    except ImportError:
        raise UserError("Dassl is not installed. Run `make install` (or see README: Installing Dassl).")
    from dassl.engine import TRAINER_REGISTRY, build_trainer
    from dassl.utils import set_random_seed

    import datasets  # noqa: F401  (registers the datasets)
    import trainers  # noqa: F401  (registers the trainers)
    from trainers.engine.output_lock import OutputDirLock
    from trainers.engine.run_log import setup_run_log

    cfg = session.cfg = setup_cfg(args)
    if cfg.TRAINER.NAME not in TRAINER_REGISTRY.registered_names():
        known = ", ".join(sorted(TRAINER_REGISTRY.registered_names()))
        raise ConfigError(f"Unknown trainer {cfg.TRAINER.NAME!r}. Available: {known}.")
    if args.eval_only and args.model_dir and not Path(args.model_dir).is_dir():
        raise CheckpointError(f"--model-dir {args.model_dir} does not exist (it should be the --output-dir of a "
                              "training run).")
    session.lock = OutputDirLock(cfg.OUTPUT_DIR).acquire()
    if cfg.SEED >= 0:
        print(f"Setting fixed seed: {cfg.SEED}")
        set_random_seed(cfg.SEED)
    setup_run_log(cfg.OUTPUT_DIR)  # Dassl's logger, one log per attempt, the newest at log_latest.txt
    if torch.cuda.is_available() and cfg.USE_CUDA:
        torch.backends.cudnn.benchmark = True

    print("Collecting env info ...")
    print(f"** System info **\n{collect_env_info()}\n")
    print_args(args, cfg)

    trainer = session.trainer = build_trainer(cfg)
    if args.eval_only:  # without --model-dir only for trainers with nothing learnable (CLIPTrainer.check_cfg)
        trainer.load_model(args.model_dir, epoch=args.load_epoch)
        trainer.test()
        return
    if not args.no_train:
        session.training = True
        trainer.train()


@functools.lru_cache(maxsize=1)
def collect_env_info() -> str:
    """Dassl's environment report (it runs pip and nvidia-smi: seconds); once per process."""
    from dassl.utils import collect_env_info as collect

    return collect()


def print_args(args, cfg) -> None:
    print("***************\n** Arguments **\n***************")
    for key in sorted(vars(args)):
        print(f"{key}: {getattr(args, key)}")
    print("************\n** Config **\n************")
    print(cfg)


def describe_os_error(err: OSError, session: Session) -> str | None:
    """One message for the OS errors a user's environment causes (a full disk, a missing or unwritable file);
    None for the others, which stay tracebacks (they are bugs)."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return session.disk_full(err)
    if err.filename is None:
        return None
    if isinstance(err, FileNotFoundError):
        return f"{err.filename} does not exist ({err.strerror})."
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"Cannot write {err.filename} ({err.strerror}): make it writable or choose another --output-dir."
    return f"{err.filename}: {err.strerror or err}."


class Terminated(KeyboardInterrupt):
    """SIGTERM (a cluster's time limit or `scancel`, `kill PID`): ends the run like Ctrl-C, so the lock, the
    log and half-written files are cleaned up and the message says where the re-run resumes."""


EXIT_TERMINATED = 128 + signal.SIGTERM


@contextlib.contextmanager
def sigterm_as_exception():
    """While a run is in progress, SIGTERM raises :class:`Terminated` in the main thread of this process (not
    in forked DataLoader workers, which keep the default and die)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pid = os.getpid()

    def terminate(signum, frame):
        if os.getpid() != pid:  # a forked child: die as before
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code. Safe to call repeatedly in one process (e.g. the demo)."""
    args = build_parser().parse_args(argv)
    console = sys.stdout
    session = Session()
    try:
        with sigterm_as_exception():
            main(args, session)
    except Terminated:
        print(session.interrupted().replace("interrupted", "terminated (SIGTERM)", 1), file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print(session.interrupted(), file=sys.stderr)
        return EXIT_INTERRUPTED
    except UserError as err:
        print(f"error: {user_message(err)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as err:
        message = describe_os_error(err, session)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
    finally:
        # Dassl's setup_logger swaps sys.stdout for a tee into log.txt; undo it. Its Logger closes the
        # console it wraps when garbage-collected, so hand it a throwaway one and close only its file.
        logger, sys.stdout = sys.stdout, console
        if logger is not console and hasattr(logger, "console"):
            if getattr(logger, "file", None) is not None:
                try:
                    logger.file.close()
                except OSError:  # a full disk cannot take the last buffered lines of log.txt
                    pass
                logger.file = None
            logger.console = io.StringIO()
        if session.lock is not None:
            session.lock.release()
    return 0


if __name__ == "__main__":
    sys.exit(run())
