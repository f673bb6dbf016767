"""MaPLe (Khattak et al., CVPR 2023): coupled vision-language prompts.

Text prompts ``V_l`` (n x 512) enter the first J text blocks; the visual prompts of the same blocks are
generated from them, ``E_l = F_l(V_l)`` with F_l linear 512 -> 768, and appended after the patch tokens.
After block J the processed prompts are carried through the remaining blocks on both sides.

The first ``N_CTX`` words of CTX_INIT ("a photo of a") initialise V_1; the rest of the phrase stays as
fixed words before the class name (MaPLe's construction). On caption datasets the context goes before
each caption instead. DCAR reuses this model for its dual prompts.
"""
from __future__ import annotations

import torch
from dassl.engine import TRAINER_REGISTRY
from torch import nn

from .backbone.prompted_clip import PromptedCLIP
from .backbone.text_encoder import tokenize
from .backbone.vision_encoder import expand_prompts
from .engine.config import set_defaults
from .errors import ConfigError
from .engine.trainer import CLIPTrainer


def add_config(cfg) -> None:
    set_defaults(cfg, "TRAINER.MAPLE", {
        "N_CTX": 2,                   # prompt tokens per layer, per modality
        "CTX_INIT": "a photo of a",
        "PROMPT_DEPTH": 9,            # J: prompts in text/vision blocks 1..J (1 = shallow prompts only)
        "PREC": "fp16",
    })


class CoupledPromptCLIP(PromptedCLIP):
    learns_text = True
    carry_visual_prompts = True

    def __init__(self, clip_model, classnames, n_ctx: int = 2, ctx_init: str = "a photo of a", depth: int = 9):
        super().__init__(clip_model, classnames)
        if self.vision_encoder is None:
            raise ConfigError("MaPLe-style coupled prompts need a ViT backbone (e.g. ViT-B/32).")
        layers = min(len(clip_model.transformer.resblocks), self.vision_encoder.num_layers)
        if not 1 <= depth <= layers:
            raise ConfigError(f"PROMPT_DEPTH must be between 1 and {layers} for this backbone, got {depth}.")
        text_width, vision_width = self.text_encoder.width, self.vision_encoder.width
        words = ctx_init.replace("_", " ").split()
        self.fixed_words = " ".join(words[n_ctx:]) if len(words) >= n_ctx else ""
        self.num_text_ctx = n_ctx
        self.depth = depth
        self.learnable = nn.Module()
        self.learnable.ctx = nn.Parameter(self._init_ctx(words, n_ctx, text_width))
        self.learnable.deep_text = nn.ParameterList(
            [nn.Parameter(torch.randn(n_ctx, text_width) * 0.02) for _ in range(depth - 1)])
        self.learnable.to_visual = nn.ModuleList([nn.Linear(text_width, vision_width) for _ in range(depth)])

    def _init_ctx(self, words: list[str], n_ctx: int, width: int) -> torch.Tensor:
        if len(words) < n_ctx:
            return torch.randn(n_ctx, width) * 0.02
        tokens = tokenize([" ".join(words[:n_ctx])]).tokens
        emb = self.text_encoder.token_embedding(tokens.to(self.text_encoder.token_embedding.weight.device))
        if int(tokens.argmax()) - 1 != n_ctx:  # a word split into several BPE pieces: fall back to random
            return torch.randn(n_ctx, width) * 0.02
        return emb[0, 1:1 + n_ctx].detach().float().clone()

    def class_prompt_texts(self) -> list[str]:
        prefix = f"{self.fixed_words} " if self.fixed_words else ""
        return [f"{prefix}{name.replace('_', ' ')}." for name in self.classnames]

    def text_prompts(self) -> list[torch.Tensor]:
        return [self.learnable.ctx, *self.learnable.deep_text]

    def text_context(self):
        return self.learnable.ctx

    def deep_text_prompts(self):
        return list(self.learnable.deep_text)

    def visual_prompts(self, images):
        visual = [proj(prompt) for proj, prompt in zip(self.learnable.to_visual, self.text_prompts())]
        ln_pre = self.vision_encoder.visual.ln_pre  # MaPLe appends the first prompts before ln_pre

        def provider(block: int, hidden: torch.Tensor):
            if block >= self.depth:
                return None  # carried from the previous block
            prompt = visual[block].to(hidden.dtype)
            if block == 0:
                prompt = ln_pre(prompt)
            return expand_prompts(prompt, hidden.shape[1])

        return provider


@TRAINER_REGISTRY.register()
class MaPLe(CLIPTrainer):
    CONFIG_NODE = "MAPLE"

    def build_prompted_clip(self, clip_model, classnames):
        c = self.method_cfg
        return CoupledPromptCLIP(clip_model, classnames, c.N_CTX, c.CTX_INIT, c.PROMPT_DEPTH)
