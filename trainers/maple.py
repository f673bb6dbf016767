"""MaPLe (Khattak et al., CVPR 2023): coupled vision-language prompts.

Text prompts ``V_l`` (n x 512) enter the first J text blocks; the visual prompts of the same blocks are
generated from them, ``E_l = F_l(V_l)`` with F_l linear 512 -> 768, and appended after the patch tokens.
After block J the processed prompts are carried through the remaining blocks on both sides.

Initialisation as in the official code (muzairkhattak/multimodal-prompt-learning):
- With CTX_INIT and ``N_CTX <= 4``, the first ``N_CTX`` words of CTX_INIT ("a photo of a") initialise V_1 and the
  rest of the phrase stays as fixed words before the class name ("of a {name}."). With ``N_CTX > 4`` (or no
  CTX_INIT) V_1 is random, N(0, 0.02²), and no fixed words are kept: the official fallback. Where the official
  code would take sub-word pieces (a first-N_CTX word that is several BPE tokens, or a phrase shorter than
  N_CTX, where it cuts into the class name) we use the random start instead.
- F_1 is its own Linear; F_2..F_J are deep copies of one initialised Linear (``_get_clones``), so they are
  identical at step 0. The deep text prompts V_2..V_J are N(0, 0.02²).
On caption datasets the context goes before each caption instead. DCAR reuses this model for its dual prompts.
"""
from __future__ import annotations

import copy

import torch
from dassl.engine import TRAINER_REGISTRY
from torch import nn

from .backbone.prompted_clip import PromptedCLIP
from .backbone.text_encoder import tokenize
from .backbone.vision_encoder import expand_prompts
from .engine.config import check_at_least, set_defaults
from .errors import ConfigError
from .engine.official_checkpoints import ConvertedCheckpoint, OfficialLayout, as_fp32, take
from .engine.trainer import CLIPTrainer


def add_config(cfg) -> None:
    set_defaults(cfg, "TRAINER.MAPLE", {
        "N_CTX": 2,                   # prompt tokens per layer, per modality
        "CTX_INIT": "a photo of a",
        "PROMPT_DEPTH": 9,            # J: prompts in text/vision blocks 1..J (1 = shallow prompts only)
        "PREC": "fp16",
    })


class CoupledPromptCLIP(PromptedCLIP):
    image_path_frozen = False  # visual prompts in the ViT blocks
    learns_text = True
    carry_visual_prompts = True
    #: the official code initialises the context from CTX_INIT only up to this many tokens
    MAX_INIT_CTX = 4

    def __init__(self, clip_model, classnames, n_ctx: int = 2, ctx_init: str = "a photo of a", depth: int = 9):
        super().__init__(clip_model, classnames)
        if self.vision_encoder is None:
            raise ConfigError("MaPLe-style coupled prompts need a ViT backbone (e.g. ViT-B/32).")
        layers = min(len(clip_model.transformer.resblocks), self.vision_encoder.num_layers)
        if not 1 <= depth <= layers:
            raise ConfigError(f"PROMPT_DEPTH must be between 1 and {layers} for this backbone, got {depth}.")
        text_width, vision_width = self.text_encoder.width, self.vision_encoder.width
        self.num_text_ctx = n_ctx
        self.depth = depth
        self.learnable = nn.Module()
        ctx, self.fixed_words = self._init_ctx(ctx_init, n_ctx, text_width)
        self.learnable.ctx = nn.Parameter(ctx)
        self.learnable.deep_text = nn.ParameterList(
            [nn.Parameter(torch.randn(n_ctx, text_width) * 0.02) for _ in range(depth - 1)])
        deep_projection = nn.Linear(text_width, vision_width)
        self.learnable.to_visual = nn.ModuleList([nn.Linear(text_width, vision_width)] + [
            copy.deepcopy(deep_projection) for _ in range(depth - 1)])

    def _init_ctx(self, ctx_init: str, n_ctx: int, width: int) -> tuple[torch.Tensor, str]:
        """(V_1, the fixed words between the context and the class name)."""
        words = ctx_init.replace("_", " ").split()
        if words and n_ctx <= self.MAX_INIT_CTX and len(words) >= n_ctx:
            tokens = tokenize([" ".join(words[:n_ctx])]).tokens
            if int(tokens.argmax()) - 1 == n_ctx:  # each of the first n_ctx words is one BPE token
                emb = self.text_encoder.token_embedding(tokens.to(self.text_encoder.token_embedding.weight.device))
                return emb[0, 1:1 + n_ctx].detach().float().clone(), " ".join(words[n_ctx:])
        return torch.randn(n_ctx, width) * 0.02, ""

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


def from_official_maple(states) -> ConvertedCheckpoint:
    """muzairkhattak/multimodal-prompt-learning registers the whole CustomCLIP as ``MultiModalPromptLearner``: its
    learned part is ``prompt_learner.{ctx, proj.*, compound_prompts_text.i, compound_prompt_projections.i.*}``
    (beside ``token_prefix``/``token_suffix`` and the frozen CLIP weights, which are not needed)."""
    state, where = states["MultiModalPromptLearner"], "MultiModalPromptLearner (official MaPLe)"
    prefix = "prompt_learner."
    ctx = take(state, prefix + "ctx", where, 2)
    deep = sum(1 for key in state if key.startswith(prefix + "compound_prompts_text."))
    ours = {"ctx": ctx, "to_visual.0.weight": take(state, prefix + "proj.weight", where, 2),
            "to_visual.0.bias": take(state, prefix + "proj.bias", where, 1)}
    for i in range(deep):
        ours[f"deep_text.{i}"] = take(state, f"{prefix}compound_prompts_text.{i}", where, 2)
        for part, ndim in (("weight", 2), ("bias", 1)):
            ours[f"to_visual.{i + 1}.{part}"] = take(state, f"{prefix}compound_prompt_projections.{i}.{part}", where,
                                                     ndim)
    n_ctx = ctx.shape[0]
    notes = [f"trained on {take(state, prefix + 'token_prefix', where, 3).shape[0]} classes"]
    if n_ctx <= CoupledPromptCLIP.MAX_INIT_CTX:
        notes.append("TRAINER.MAPLE.CTX_INIT must be the official run's (its recipes: 'a photo of a'): the words "
                     "after the first N_CTX stay fixed before the class name")
    return ConvertedCheckpoint({"prompt_learner": as_fp32(ours)},
                               {"TRAINER.MAPLE.N_CTX": n_ctx, "TRAINER.MAPLE.PROMPT_DEPTH": deep + 1}, notes)


@TRAINER_REGISTRY.register()
class MaPLe(CLIPTrainer):
    CONFIG_NODE = "MAPLE"
    OFFICIAL_CHECKPOINT = OfficialLayout("maple", "muzairkhattak/multimodal-prompt-learning",
                                         ("MultiModalPromptLearner",), from_official_maple)

    def build_prompted_clip(self, clip_model, classnames):
        c = self.method_cfg
        check_at_least(self.cfg, "TRAINER.MAPLE.N_CTX", 1, "prompt tokens per layer and modality")
        return CoupledPromptCLIP(clip_model, classnames, c.N_CTX, c.CTX_INIT, c.PROMPT_DEPTH)
