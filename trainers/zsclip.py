"""Zero-shot CLIP: the hand-crafted template per dataset for classification, plain captions for retrieval."""
from __future__ import annotations

from dassl.engine import TRAINER_REGISTRY

from .backbone.prompted_clip import PromptedCLIP
from .engine.config import set_defaults
from .engine.templates import template_for
from .engine.trainer import CLIPTrainer


def add_config(cfg) -> None:
    set_defaults(cfg, "TRAINER.ZSCLIP", {"PREC": "fp16"})


@TRAINER_REGISTRY.register()
class ZeroshotCLIP(CLIPTrainer):
    CONFIG_NODE = "ZSCLIP"

    def build_prompted_clip(self, clip_model, classnames):
        return PromptedCLIP(clip_model, classnames, template_for(self.cfg.DATASET.NAME))
