"""CLIP-Adapter (Gao et al., IJCV 2023): a residual bottleneck adapter on the frozen image features.

The text side stays frozen CLIP (the dataset's hand-crafted template for classification, the plain
caption for retrieval), so its class features are encoded once and cached.
"""
from __future__ import annotations

from dassl.engine import TRAINER_REGISTRY
from torch import nn

from .adapters import ResidualAdapter
from .backbone.prompted_clip import PromptedCLIP
from .backbone.templates import template_for
from .engine.config import set_defaults
from .engine.trainer import CLIPTrainer


def add_config(cfg) -> None:
    set_defaults(cfg, "TRAINER.CLIP_ADAPTER", {
        "RATIO": 0.2,      # residual mix: 0.2 of adapted + 0.8 of the frozen feature
        "REDUCTION": 4,    # bottleneck width = feature dim / REDUCTION
        "PREC": "fp16",
    })


class AdaptedCLIP(PromptedCLIP):
    def __init__(self, clip_model, classnames, template: str, ratio: float, reduction: int):
        super().__init__(clip_model, classnames, template)
        self.learnable = nn.Module()
        self.learnable.adapter = ResidualAdapter(clip_model.text_projection.shape[1], reduction, ratio)

    def adapt_image_features(self, features):
        return self.learnable.adapter(features)


@TRAINER_REGISTRY.register()
class CLIPAdapter(CLIPTrainer):
    CONFIG_NODE = "CLIP_ADAPTER"

    def build_prompted_clip(self, clip_model, classnames):
        c = self.method_cfg
        return AdaptedCLIP(clip_model, classnames, template_for(self.cfg.DATASET.NAME), c.RATIO, c.REDUCTION)
