"""CLIP-Adapter (Gao et al., IJCV 2023): a residual bottleneck adapter on the frozen image features.

The text side stays frozen CLIP (the dataset's hand-crafted template for classification, the plain
caption for retrieval), so its class features are encoded once and cached.
"""
from __future__ import annotations

from dassl.engine import TRAINER_REGISTRY
from torch import nn

from .adapters import ResidualAdapter
from .backbone.prompted_clip import PromptedCLIP
from .engine.config import set_defaults
from .engine.official_checkpoints import CheckpointError, ConvertedCheckpoint, OfficialLayout, as_fp32, take
from .engine.templates import template_for
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


def from_official_clip_adapter(states) -> ConvertedCheckpoint:
    """gaopengcuhk/CLIP-Adapter: ``clip_adapter/`` holds the Adapter's ``fc.0.weight`` (d/r, d) and ``fc.2.weight``
    (d, d/r); its residual ratio is hard-coded 0.2."""
    state, where = states["clip_adapter"], "clip_adapter (official CLIP-Adapter)"
    down, up = take(state, "fc.0.weight", where, 2), take(state, "fc.2.weight", where, 2)
    hidden, dim = down.shape
    if up.shape != (dim, hidden) or dim % hidden:
        raise CheckpointError(f"{where}: fc.0.weight {tuple(down.shape)} and fc.2.weight {tuple(up.shape)} are not "
                              "a bottleneck d -> d/r -> d.")
    return ConvertedCheckpoint({"prompt_learner": as_fp32({"adapter.fc.0.weight": down, "adapter.fc.2.weight": up})},
                               {"TRAINER.CLIP_ADAPTER.REDUCTION": dim // hidden, "TRAINER.CLIP_ADAPTER.RATIO": 0.2},
                               [f"image features of width {dim}: the backbone must have that output width"])


@TRAINER_REGISTRY.register()
class CLIPAdapter(CLIPTrainer):
    CONFIG_NODE = "CLIP_ADAPTER"
    OFFICIAL_CHECKPOINT = OfficialLayout("clip_adapter", "gaopengcuhk/CLIP-Adapter", ("clip_adapter",),
                                         from_official_clip_adapter)

    def build_prompted_clip(self, clip_model, classnames):
        c = self.method_cfg
        return AdaptedCLIP(clip_model, classnames, template_for(self.cfg.DATASET.NAME), c.RATIO, c.REDUCTION)
