"""Convert a checkpoint of a method's official code into this project's layout, for ``train.py --eval-only``.

Usage:
    python -m tools.import_checkpoint --from coop SRC DST [--epoch N | --epoch best]

SRC is the official run's output folder (the one holding ``prompt_learner/``, ``MultiModalPromptLearner/``,
``clip_adapter/`` or ``image_encoder.transformer.*/``); DST becomes a model folder of ours. By default the model
file each official folder's ``checkpoint`` file names (the latest) is converted. The files are read without
running any code they pickle, and every official key and shape is checked. The tool prints the command line that
evaluates the result, with the config keys the weights imply (prompt lengths, depths, ...), and records them in
DST/imported_from.json. ``--from`` takes the names the trainers register (see ``--help``).
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

if not __package__:  # started as a file: the imports below need the repository root, as `python -m` gives
    print("error: run this tool from the repository root as a module: python -m tools.import_checkpoint ...",
          file=sys.stderr)
    sys.exit(2)

IMPORT_RECORD = "imported_from.json"


def official_layouts() -> dict[str, tuple[str, object]]:
    """``--from`` name -> (our trainer name, its OfficialLayout), from Dassl's trainer registry."""
    from dassl.engine import TRAINER_REGISTRY

    import trainers  # noqa: F401  (registers our trainers)

    layouts = {}
    for trainer in TRAINER_REGISTRY.registered_names():
        layout = vars(TRAINER_REGISTRY.get(trainer)).get("OFFICIAL_CHECKPOINT")
        if layout is not None:
            layouts[layout.name] = (trainer, layout)
    return layouts


def build_parser(choices: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="method", required=True, choices=choices,
                        help="the official code base that wrote SRC")
    parser.add_argument("src", type=Path, help="output folder of the official run")
    parser.add_argument("dst", type=Path, help="model folder to write (then: train.py --eval-only --model-dir DST)")
    parser.add_argument("--epoch", default=None,
                        help="N for model.pth.tar-N, 'best' for model-best.pth.tar (default: the latest)")
    return parser


def format_value(value) -> str:
    return shlex.quote(str(value)) if str(value) else "''"


def main(argv: list[str] | None = None) -> int:
    from trainers.atomic_io import atomic_write_text
    from trainers.errors import CheckpointError
    from trainers.engine.official_checkpoints import import_official

    layouts = official_layouts()
    args = build_parser(sorted(layouts)).parse_args(argv)
    epoch = args.epoch
    if epoch is not None and epoch != "best":
        if not epoch.isdigit():
            print(f"error: --epoch takes a number or 'best', got {epoch!r}", file=sys.stderr)
            return 2
        epoch = int(epoch)
    trainer, layout = layouts[args.method]
    try:
        converted, filename = import_official(layout, args.src, args.dst, epoch, trainer)
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    record = {"source": layout.source, "src": str(args.src), "trainer": trainer, "model_file": filename,
              "overrides": converted.overrides, "notes": converted.notes}
    atomic_write_text(args.dst / IMPORT_RECORD, json.dumps(record, indent=2) + "\n")
    load = "" if filename.endswith("best.pth.tar") else f" --load-epoch {filename.rsplit('-', 1)[1]}"
    overrides = " ".join(f"{key} {format_value(value)}" for key, value in converted.overrides.items())
    print(f"Converted {layout.source} checkpoint {args.src} -> {args.dst} ({', '.join(converted.states)})")
    for note in converted.notes:
        print(f"  note: {note}")
    print("Evaluate with:\n"
          f"  python train.py --trainer {trainer} --root DATA --dataset-config-file configs/datasets/DATASET.yaml \\\n"
          f"    --config-file configs/trainers/{trainer}/CONFIG.yaml --output-dir OUT --eval-only \\\n"
          f"    --model-dir {shlex.quote(str(args.dst))}{load} {overrides}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
