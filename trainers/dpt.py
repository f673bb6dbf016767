"""DPT (Xing et al., IEEE TMM 2023): VLP + Class-Aware Visual Prompt Tuning (CAVPT).

Follows the official implementation's semantics (docs/dpt.md), with its bugs fixed:
- A frozen zero-shot selector (unprompted image x hand-crafted template) picks the top-K = min(CPN, C)
  classes of each image, at train and test time; labels never enter the selection.
- VPT-deep tokens go into blocks 1..BOTTOMLIMIT-1; each block from BOTTOMLIMIT on gets K class-aware
  prompts instead, generated from the *learned* (unnormalised) text features of the K selected classes:
  Q0 = Linear(T_S); attention with a 32-d query/key space over [detached hidden states ; 10 learnable
  tokens]; O = (A KV) W_v; prompts = LN(O + Q0); auxiliary class logits = Linear(LN(O)).
- L = (VLP's scheduled loss) + ALPHA * L_cav, L_cav = CE of the auxiliary logits of the tokens whose
  selected class is the ground truth, in every CAVPT block; a batch with no such token has no L_cav term
  (as officially: the auxiliary classifiers get no gradient, so SGD leaves them alone on that step).
- The generator runs in fp32 with standard LayerNorms, whatever the backbone's precision (the official
  code forces it to fp16, which breaks its fp32 and AMP paths).
Retrieval (FDRD): the captions carry the learned text context; CAVPT's queries are the learned class-name
prompts of the selector's top-K classes of the domain, and L_cav uses the caption's class label.
Domain generalisation: the auxiliary classifiers are sized by the training classes and unused at test, so
loading a checkpoint into a model of another class count skips them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from dassl.engine import TRAINER_REGISTRY
from torch import nn

from .engine.config import set_defaults
from .engine.templates import template_for
from .errors import ConfigError
from .engine.official_checkpoints import ConvertedCheckpoint, OfficialLayout, as_fp32, take
from .losses import class_aware_loss
from .vlp import VLP, DualModalityCLIP, ImageOutput, check_prompt_settings, official_shared_text_context
from .vpt import OFFICIAL_VPT_FOLDER, official_vpt_tokens


def add_config(cfg) -> None:
    set_defaults(cfg, "TRAINER.SELECTED_COVPT", {"CPN": 5})                     # K, clipped to the class count
    set_defaults(cfg, "TRAINER.TOPDOWN_SECOVPT", {"BOTTOMLIMIT": 12, "LR": 0.01})  # LR: official key, unused
    if "ALPHA" not in cfg.TRAINER:
        cfg.TRAINER.ALPHA = 1.0                                                   # weight of L_cav (recipe: 0.3)
    set_defaults(cfg, "TRAINER.DPT", {
        "PREC": "",                # fp16 | bf16 | amp | fp32; "" = TRAINER.COOP.PREC, the official scripts' key
        "TEXT_LR": 0.002,          # the text context's own LR and warm-up (hard-coded in the official code)
        "TEXT_WARMUP_EPOCH": 1,
        "IMAGENET_WARMUP_EPOCH": 1,  # the visual prompts' and generators' warm-up on ImageNet (-1: OPTIM's)
        "NUM_KV_TOKENS": 10,       # learnable key/value tokens per CAVPT block (hard-coded 10 there)
        "ATTN_DIM": 32,            # query/key width of the CAVPT attention (hard-coded 32 there)
    })


class ClassAwarePromptGenerator(nn.Module):
    """One CAVPT block's generator: K class queries attend over the image tokens (see module docstring)."""

    def __init__(self, text_dim: int, width: int, num_classes: int, num_kv_tokens: int = 10, attn_dim: int = 32):
        super().__init__()
        self.query = nn.Linear(text_dim, width)
        self.kv_tokens = nn.Parameter(torch.randn(num_kv_tokens, width) * 0.02)
        self.w_q = nn.Linear(width, attn_dim, bias=False)
        self.w_k = nn.Linear(width, attn_dim, bias=False)
        self.w_v = nn.Linear(width, width, bias=False)
        self.norm_aux = nn.LayerNorm(width)
        self.norm_prompt = nn.LayerNorm(width)
        self.classifier = nn.Linear(width, num_classes, bias=False)
        self.scale = 1.0 / math.sqrt(attn_dim)

    def forward(self, hidden: torch.Tensor, class_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """hidden (L, B, W) image tokens entering the block; class_features (B, K, E) -> prompts (K, B, W)
        in the block's dtype and auxiliary logits (B, K, C) in fp32."""
        tokens = hidden.detach().float().permute(1, 0, 2)  # the CAVPT loss must not reach earlier prompts
        queries = self.query(class_features.float())
        kv = torch.cat([tokens, self.kv_tokens.unsqueeze(0).expand(tokens.shape[0], -1, -1)], dim=1)
        attention = torch.softmax(self.w_q(queries) @ self.w_k(kv).transpose(1, 2) * self.scale, dim=-1)
        attended = self.w_v(attention @ kv)
        logits = self.classifier(self.norm_aux(attended))
        prompts = self.norm_prompt(attended + queries)
        return prompts.permute(1, 0, 2).to(hidden.dtype), logits


def layer_split(num_layers: int, bottom_limit: int) -> tuple[list[int], list[int]]:
    """0-based (VPT blocks, CAVPT blocks) for the 1-based BOTTOMLIMIT: VPT in 1..B-1, CAVPT in B..L."""
    if not 1 <= bottom_limit <= num_layers:
        raise ConfigError(f"TRAINER.TOPDOWN_SECOVPT.BOTTOMLIMIT must be between 1 and {num_layers}, got {bottom_limit}")
    return list(range(bottom_limit - 1)), list(range(bottom_limit - 1, num_layers))


@dataclass
class ClassAwareImageOutput(ImageOutput):
    """VLP's image output plus what L_cav needs."""

    aux_logits: torch.Tensor | None = None  # (B, CAVPT blocks, K, C)
    selection: torch.Tensor | None = None   # (B, K) classes chosen by the zero-shot selector


class ClassAwareCLIP(DualModalityCLIP):
    image_path_frozen = False  # class-aware prompts in the last ViT blocks
    def __init__(self, clip_model, classnames, template, n_ctx, ctx_init, vpt_length, bottom_limit: int,
                 num_selected: int, num_kv_tokens: int = 10, attn_dim: int = 32):
        vpt_blocks, cavpt_blocks = layer_split(len(clip_model.visual.transformer.resblocks), bottom_limit)
        super().__init__(clip_model, classnames, template, n_ctx, ctx_init, vpt_length, vpt_blocks)
        text_dim, width = clip_model.text_projection.shape[1], self.vision_encoder.width
        self.cavpt_blocks = {block: j for j, block in enumerate(cavpt_blocks)}
        self.cavpt = nn.ModuleList([ClassAwarePromptGenerator(text_dim, width, len(classnames), num_kv_tokens,
                                                              attn_dim) for _ in cavpt_blocks])
        self.num_selected = min(num_selected, len(classnames))
        if self.num_selected < 1:
            raise ConfigError("TRAINER.SELECTED_COVPT.CPN must be at least 1.")

    @torch.no_grad()
    def select_classes(self, frozen_image_features: torch.Tensor) -> torch.Tensor:
        """The zero-shot top-K classes (B, K), best first: frozen features only, never the labels."""
        scores = frozen_image_features @ self.frozen_class_features(frozen_image_features.device).t()
        return scores.topk(self.num_selected, dim=-1).indices

    def encode_image_with_aux(self, images, class_features_raw=None,
                              need_frozen: bool = True) -> ClassAwareImageOutput:
        frozen = self.frozen_image_features(images)
        selection = self.select_classes(frozen)
        if class_features_raw is None:
            class_features_raw = self.class_features_raw(images.device)
        queries = class_features_raw[selection]  # (B, K, E), unnormalised, with gradient
        aux: list[torch.Tensor] = []

        def provider(block: int, hidden: torch.Tensor):
            j = self.cavpt_blocks.get(block)
            if j is None:
                return self.vpt(block, hidden) if self.vpt is not None else None
            prompts, logits = self.cavpt[j](hidden, queries)
            aux.append(logits)
            return prompts

        raw = self.vision_encoder(images, provider, carry=False)
        return ClassAwareImageOutput(raw, frozen, torch.stack(aux, dim=1), selection)

    def raw_image_features(self, images):
        return self.encode_image_with_aux(images).raw


OFFICIAL_EXTRACTOR_FOLDER = "image_encoder.transformer.extractor"
#: our generator's sub-module -> the official CAVPT's module (j: the CAVPT block), and whether it has a bias
OFFICIAL_GENERATOR_KEYS = {"query": ("meta_nets.{j}", True), "w_q": ("attns.{j}.qmlp", False),
                           "w_k": ("attns.{j}.kmlp", False), "w_v": ("attns.{j}.vmlp", False),
                           "norm_aux": ("lns.{j}", True), "norm_prompt": ("lns2.{j}", True),
                           "classifier": ("classfiers.{j}", False)}


def from_official_dpt(states) -> ConvertedCheckpoint:
    """fanrena/DPT: ``prompt_learner/`` (CoOp), ``image_encoder.transformer.ctx_learner/`` (``ctx``: VPT tokens of
    blocks 1..BOTTOMLIMIT-1) and ``image_encoder.transformer.extractor/`` (the CAVPT: ``meta_nets.j``,
    ``attns.j.{q,k,v}mlp``, ``lns.j``, ``lns2.j``, ``classfiers.j`` and ``ctx``, the key/value tokens of every
    CAVPT block)."""
    ctx, num_classes = official_shared_text_context(states, "DPT")
    vpt = official_vpt_tokens(states, "DPT")
    extractor, where = states[OFFICIAL_EXTRACTOR_FOLDER], f"{OFFICIAL_EXTRACTOR_FOLDER} (official DPT)"
    kv_tokens = take(extractor, "ctx", where, 3)
    generators = {}
    for j in range(kv_tokens.shape[0]):
        generators[f"{j}.kv_tokens"] = kv_tokens[j]
        for ours, (theirs, has_bias) in OFFICIAL_GENERATOR_KEYS.items():
            for part in ("weight", "bias") if has_bias else ("weight",):
                generators[f"{j}.{ours}.{part}"] = take(extractor, f"{theirs.format(j=j)}.{part}", where, (1, 2))
    converted = {"prompt_learner": as_fp32({"ctx": ctx}), "extractor": as_fp32(generators)}
    if vpt.shape[0]:  # BOTTOMLIMIT 1: no VPT blocks, and no ctx_learner here
        converted["ctx_learner"] = as_fp32({"prompts": vpt})
    return ConvertedCheckpoint(
        converted,
        {"TRAINER.COOP.N_CTX": ctx.shape[0], "TRAINER.COOP.CSC": False, "TRAINER.COOP.CTX_INIT": "",
         "TRAINER.VPT.N_CTX": vpt.shape[1], "TRAINER.TOPDOWN_SECOVPT.BOTTOMLIMIT": vpt.shape[0] + 1,
         "TRAINER.DPT.NUM_KV_TOKENS": kv_tokens.shape[1],
         "TRAINER.DPT.ATTN_DIM": take(extractor, "attns.0.qmlp.weight", where, 2).shape[0]},
        [f"trained on {num_classes} classes, {vpt.shape[0]} VPT + {kv_tokens.shape[0]} CAVPT blocks: the backbone "
         f"must have {vpt.shape[0] + kv_tokens.shape[0]}",
         "TRAINER.SELECTED_COVPT.CPN is not stored: use the official run's (its script: 10)"])


@TRAINER_REGISTRY.register()
class DPT(VLP):
    CONFIG_NODE = "DPT"
    OFFICIAL_CHECKPOINT = OfficialLayout("dpt", "fanrena/DPT", ("prompt_learner", OFFICIAL_VPT_FOLDER,
                                                                OFFICIAL_EXTRACTOR_FOLDER), from_official_dpt)
    #: the auxiliary classifiers depend on the class count and are unused at test (domain generalisation)
    LOAD_IGNORE_KEYS = (".classifier.",)

    def build_prompted_clip(self, clip_model, classnames):
        cfg = self.cfg
        if not hasattr(clip_model.visual, "transformer"):
            raise ConfigError("DPT needs a ViT backbone (e.g. ViT-B/32).")
        check_prompt_settings(cfg)
        c = self.method_cfg
        return ClassAwareCLIP(clip_model, classnames, template_for(cfg.DATASET.NAME), cfg.TRAINER.COOP.N_CTX,
                              cfg.TRAINER.COOP.CTX_INIT, cfg.TRAINER.VPT.N_CTX,
                              cfg.TRAINER.TOPDOWN_SECOVPT.BOTTOMLIMIT, cfg.TRAINER.SELECTED_COVPT.CPN,
                              c.NUM_KV_TOKENS, c.ATTN_DIM)

    def optimized_modules(self):
        return super().optimized_modules() + [("extractor", self.model.cavpt, self.visual_optim_cfg())]

    def auxiliary_loss(self, out: ClassAwareImageOutput, labels: torch.Tensor) -> torch.Tensor | None:
        loss = class_aware_loss(out.aux_logits, out.selection, labels)
        return None if loss is None else self.cfg.TRAINER.ALPHA * loss
