"""VPT-deep (Jia et al., ECCV 2022) on CLIP's ViT, as in the DPT paper's baselines.

N learnable tokens are appended after the patch tokens of each prompted block and dropped after it; the
next block gets its own fresh tokens. The text side is frozen CLIP: the hand-crafted template for
classification, the plain caption for retrieval.
"""
from __future__ import annotations

import torch
from dassl.engine import TRAINER_REGISTRY
from torch import nn

from .backbone.prompted_clip import PromptedCLIP
from .backbone.vision_encoder import expand_prompts
from .engine.config import check_at_least, set_defaults
from .engine.templates import template_for
from .errors import ConfigError
from .engine.official_checkpoints import ConvertedCheckpoint, OfficialLayout, as_fp32, take
from .engine.trainer import CLIPTrainer

#: the folder fanrena/DPT's VPT, VLP and DPT trainers register their VPT tokens under
OFFICIAL_VPT_FOLDER = "image_encoder.transformer.ctx_learner"


def add_config(cfg) -> None:
    set_defaults(cfg, "TRAINER.VPT", {
        "N_CTX": 5,      # prompt tokens per block (the official DPT scripts use 10)
        "DEPTH": 0,      # prompted blocks from the first one; 0 = every block
        "LN": False,     # accepted for the official scripts' overrides; unused there too
        "PREC": "",      # fp16 | bf16 | amp | fp32; "" = TRAINER.COOP.PREC, the key of the official scripts
    })


class VisualPromptTokens(nn.Module):
    """Fresh prompt tokens for each of ``blocks`` (0-based block indices), N(0, 0.02²) as in DPT's code."""

    def __init__(self, blocks: list[int], length: int, width: int):
        super().__init__()
        self.blocks = {block: i for i, block in enumerate(blocks)}
        self.prompts = nn.Parameter(torch.randn(len(blocks), length, width) * 0.02)

    def __call__(self, block: int, hidden: torch.Tensor) -> torch.Tensor | None:
        index = self.blocks.get(block)
        if index is None:
            return None
        return expand_prompts(self.prompts[index].to(hidden.dtype), hidden.shape[1])


def prompted_blocks(num_layers: int, depth: int) -> list[int]:
    if depth < 0 or depth > num_layers:
        raise ConfigError(f"TRAINER.VPT.DEPTH must be between 0 (all) and {num_layers}, got {depth}")
    return list(range(depth or num_layers))


class VPTCLIP(PromptedCLIP):
    image_path_frozen = False  # prompts in the ViT blocks
    def __init__(self, clip_model, classnames, template: str, length: int, depth: int = 0):
        super().__init__(clip_model, classnames, template)
        if self.vision_encoder is None:
            raise ConfigError("VPT needs a ViT backbone (e.g. ViT-B/32).")
        blocks = prompted_blocks(self.vision_encoder.num_layers, depth)
        self.learnable = VisualPromptTokens(blocks, length, self.vision_encoder.width)

    def visual_prompts(self, images):
        return self.learnable


def official_vpt_tokens(states, method: str) -> torch.Tensor:
    """The ``ctx`` (blocks, N_CTX, width) of fanrena/DPT's VPTDeepPromptLearner."""
    return take(states[OFFICIAL_VPT_FOLDER], "ctx", f"{OFFICIAL_VPT_FOLDER} (official {method})", 3)


def from_official_vpt(states) -> ConvertedCheckpoint:
    """fanrena/DPT's VPT: ``image_encoder.transformer.ctx_learner/`` holds ``ctx``, one token set per block."""
    prompts = official_vpt_tokens(states, "VPT")
    return ConvertedCheckpoint({"ctx_learner": as_fp32({"prompts": prompts})},
                               {"TRAINER.VPT.N_CTX": prompts.shape[1], "TRAINER.VPT.DEPTH": 0},
                               [f"prompts for all {prompts.shape[0]} blocks: the backbone must have as many"])


@TRAINER_REGISTRY.register()
class VPT(CLIPTrainer):
    CONFIG_NODE = "VPT"
    OFFICIAL_PREC_NODE = "COOP"
    OFFICIAL_CHECKPOINT = OfficialLayout("vpt", "fanrena/DPT (VPT)", (OFFICIAL_VPT_FOLDER,), from_official_vpt)

    def build_prompted_clip(self, clip_model, classnames):
        c = self.method_cfg
        check_at_least(self.cfg, "TRAINER.VPT.N_CTX", 1, "prompt tokens per block: VPT learns nothing else")
        return VPTCLIP(clip_model, classnames, template_for(self.cfg.DATASET.NAME), c.N_CTX, c.DEPTH)

    def optimized_modules(self):
        return [("ctx_learner", self.model.learnable, self.cfg.OPTIM)]
