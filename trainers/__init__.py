"""Prompt-learning trainers for CLIP, registered in Dassl's TRAINER_REGISTRY on import.

Each method lives in its own module and only holds what makes it different; the shared pieces are in
``trainers.backbone`` (CLIP loading, prompted encoders, precision) and ``trainers.engine`` (the Dassl
trainer base, schedulers, checkpoints). Without Dassl the pure modules (backbone, losses, metrics) still
import, which keeps their unit tests runnable on a machine that lacks it.
"""
import importlib.util

if importlib.util.find_spec("dassl") is not None:
    from . import clip_adapter, coop, dcar, dpt, maple, vlp, vpt, zsclip  # noqa: F401
