"""Prompt-learning trainers for CLIP, registered in Dassl's TRAINER_REGISTRY on import.

Each method lives in its own module and only holds what makes it different; the shared pieces are in
``trainers.backbone`` (CLIP loading, prompted encoders, precision) and ``trainers.engine`` (the Dassl
trainer base, schedulers, checkpoints). Without Dassl the pure modules (backbone, losses, metrics) still
import, which keeps their unit tests runnable on a machine that lacks it.
"""
from __future__ import annotations

import importlib
import importlib.util
import pkgutil


def _import_every_module() -> None:
    """A new method file registers itself on import: there is no list of methods to edit."""
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


def registered_trainers() -> dict[str, type]:
    """This project's trainers (Dassl's own, also in the registry, left out), by registry name: the one list of
    methods that tests and tools iterate over."""
    from dassl.engine import TRAINER_REGISTRY

    from .engine.trainer import CLIPTrainer

    classes = {name: TRAINER_REGISTRY.get(name) for name in TRAINER_REGISTRY.registered_names()}
    return {name: cls for name, cls in sorted(classes.items()) if issubclass(cls, CLIPTrainer)}


if importlib.util.find_spec("dassl") is not None:
    _import_every_module()
