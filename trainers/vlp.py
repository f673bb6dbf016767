"""VLP: CoOp text prompts + VPT-deep visual prompts, trained with DPT's "general knowledge guidance".

For the first PRETRAIN.C epochs each modality's prompts are fitted against the *other* modality's
frozen zero-shot CLIP features, plus a little of the joint objective:
    L = CE(l1) + CE(l2) + 0.1 CE(l)     (l1: frozen image x learned text, l2: prompted image x frozen text)
afterwards only the joint head, l = prompted image x learned text, which is also the only test-time head.
On caption datasets the same schedule uses symmetric InfoNCE: learned text = captions with the learned
context, frozen text = the plain captions.
Three-way split of the optimisation as in the official code: the text context has its own learning rate and
warm-up (TEXT_LR, TEXT_WARMUP_EPOCH; hard-coded 0.002 / 1 there), the visual prompts follow OPTIM, except that on
ImageNet they warm up for IMAGENET_WARMUP_EPOCH (hard-coded 1 there; -1 keeps OPTIM.WARMUP_EPOCH). The
official VPT trainer has no such rule, and neither has ours.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from dassl.engine import TRAINER_REGISTRY

from .coop import CoOpCLIP, official_text_context
from .engine.config import check_at_least, set_defaults
from .engine.templates import template_for
from .errors import ConfigError
from .engine.official_checkpoints import CheckpointError, ConvertedCheckpoint, OfficialLayout, as_fp32
from .engine.trainer import CLIPTrainer
from .losses import symmetric_info_nce
from .vpt import OFFICIAL_VPT_FOLDER, VisualPromptTokens, official_vpt_tokens, prompted_blocks


def add_config(cfg) -> None:
    set_defaults(cfg, "PRETRAIN", {"C": 30})  # epochs of general knowledge guidance (official key)
    set_defaults(cfg, "TRAINER.VLP", {
        "PREC": "",  # fp16 | bf16 | amp | fp32; "" = TRAINER.COOP.PREC, the key of the official scripts
        "TEXT_LR": 0.002,
        "TEXT_WARMUP_EPOCH": 1,
        "IMAGENET_WARMUP_EPOCH": 1,
    })


@dataclass
class ImageOutput:
    raw: torch.Tensor                      # prompted image features, unnormalised
    frozen: torch.Tensor | None            # zero-shot CLIP image features, normalised (no grad)


class DualModalityCLIP(CoOpCLIP):
    """CoOp's shared text context + VPT tokens in ``vpt_blocks``."""
    image_path_frozen = False  # visual prompts in the ViT blocks

    def __init__(self, clip_model, classnames, template: str, n_ctx: int, ctx_init: str, vpt_length: int,
                 vpt_blocks: list[int]):
        super().__init__(clip_model, classnames, n_ctx, ctx_init)
        if self.vision_encoder is None:
            raise ConfigError("Visual prompts need a ViT backbone (e.g. ViT-B/32).")
        self.template = template  # the frozen zero-shot head (l2, and DPT's selector) uses it
        self.vpt = (VisualPromptTokens(vpt_blocks, vpt_length, self.vision_encoder.width)
                    if vpt_length > 0 and vpt_blocks else None)

    def visual_prompts(self, images):
        return self.vpt

    def class_features_raw(self, device: torch.device) -> torch.Tensor:
        """Learned-context class features (C, E), unnormalised: DPT's queries and the joint head."""
        return self.encode_text(self.tokenize(self.class_prompt_texts()).tokens.to(device), normalize=False)

    def encode_image_with_aux(self, images, class_features_raw=None, need_frozen: bool = False) -> ImageOutput:
        frozen = self.frozen_image_features(images) if need_frozen else None
        return ImageOutput(self.raw_image_features(images), frozen)


def official_shared_text_context(states, method: str) -> tuple[torch.Tensor, int]:
    ctx, num_classes = official_text_context(states["prompt_learner"], f"prompt_learner (official {method})")
    if ctx.dim() != 2:
        raise CheckpointError(f"The official {method} run learned a class-specific context {tuple(ctx.shape)}; "
                              f"{method} here uses one shared context (TRAINER.COOP.CSC False).")
    return ctx, num_classes


def from_official_vlp(states) -> ConvertedCheckpoint:
    """fanrena/DPT's VLP: ``prompt_learner/`` (CoOp's ``ctx``, ``token_prefix``, ``token_suffix``) and
    ``image_encoder.transformer.ctx_learner/`` (``ctx``, one VPT token set per block)."""
    ctx, num_classes = official_shared_text_context(states, "VLP")
    prompts = official_vpt_tokens(states, "VLP")
    return ConvertedCheckpoint(
        {"prompt_learner": as_fp32({"ctx": ctx}), "ctx_learner": as_fp32({"prompts": prompts})},
        {"TRAINER.COOP.N_CTX": ctx.shape[0], "TRAINER.COOP.CSC": False, "TRAINER.COOP.CTX_INIT": "",
         "TRAINER.VPT.N_CTX": prompts.shape[1], "TRAINER.VPT.DEPTH": 0},
        [f"trained on {num_classes} classes; VPT prompts for all {prompts.shape[0]} blocks"])


def check_prompt_settings(cfg) -> None:
    """The prompt settings VLP and DPT read: the official recipe's text prompt only (one shared context, the class
    name at the end; the other CoOp choices are refused rather than ignored), and prompt lengths in range."""
    name = cfg.TRAINER.NAME
    if cfg.TRAINER.COOP.CSC:
        raise ConfigError(f"{name} uses one shared text context: set TRAINER.COOP.CSC False.")
    if not cfg.TRAINER.COOP.CTX_INIT:
        check_at_least(cfg, "TRAINER.COOP.N_CTX", 1, "the number of learned text context vectors")
    check_at_least(cfg, "TRAINER.VPT.N_CTX", 0, "visual prompt tokens per block; 0 disables VPT")
    if cfg.TRAINER.COOP.CLASS_TOKEN_POSITION != "end":
        raise ConfigError(f"{name} puts the class name at the end of the prompt: TRAINER.COOP.CLASS_TOKEN_POSITION "
                          f"{cfg.TRAINER.COOP.CLASS_TOKEN_POSITION!r} is not implemented here; set it to end.")


@TRAINER_REGISTRY.register()
class VLP(CLIPTrainer):
    CONFIG_NODE = "VLP"
    OFFICIAL_PREC_NODE = "COOP"
    OFFICIAL_CHECKPOINT = OfficialLayout("vlp", "fanrena/DPT (VLP)", ("prompt_learner", OFFICIAL_VPT_FOLDER),
                                         from_official_vlp)

    def build_prompted_clip(self, clip_model, classnames):
        cfg = self.cfg
        check_prompt_settings(cfg)
        blocks = prompted_blocks(len(clip_model.visual.transformer.resblocks), cfg.TRAINER.VPT.DEPTH) \
            if hasattr(clip_model.visual, "transformer") else []
        return DualModalityCLIP(clip_model, classnames, template_for(cfg.DATASET.NAME), cfg.TRAINER.COOP.N_CTX,
                                cfg.TRAINER.COOP.CTX_INIT, cfg.TRAINER.VPT.N_CTX, blocks)

    def optimized_modules(self):
        text = self.cfg.OPTIM.clone()
        text.defrost()
        text.LR, text.WARMUP_EPOCH = self.method_cfg.TEXT_LR, self.method_cfg.TEXT_WARMUP_EPOCH
        groups = [("prompt_learner", self.model.learnable, text)]
        if self.model.vpt is not None:
            groups.append(("ctx_learner", self.model.vpt, self.visual_optim_cfg()))
        return groups

    def visual_optim_cfg(self):
        """OPTIM for the visual prompts (and DPT's generators): on ImageNet the official code warms them up for one
        epoch whatever OPTIM.WARMUP_EPOCH says."""
        epochs = self.method_cfg.IMAGENET_WARMUP_EPOCH
        if self.cfg.DATASET.NAME != "ImageNet" or epochs < 0:
            return self.cfg.OPTIM
        optim = self.cfg.OPTIM.clone()
        optim.defrost()
        optim.WARMUP_EPOCH = epochs
        return optim

    @property
    def in_guidance(self) -> bool:
        return self.epoch < self.cfg.PRETRAIN.C

    def auxiliary_loss(self, out: ImageOutput, labels: torch.Tensor) -> torch.Tensor | None:
        return None

    def compute_loss(self, batch):
        model, scale = self.model, self.model.logit_scale
        guidance = self.in_guidance
        if self.is_retrieval:
            images, tokens, labels = self.parse_retrieval_batch(batch)
            captions = model.encode_text(tokens)
            out = model.encode_image_with_aux(images, need_frozen=guidance)
            image = F.normalize(out.raw.float(), dim=-1)
            joint = symmetric_info_nce(image, captions, scale)
            if guidance:
                frozen_captions = model.frozen_text_features(tokens)
                main = (symmetric_info_nce(out.frozen, captions, scale)
                        + symmetric_info_nce(image, frozen_captions, scale) + 0.1 * joint)
            else:
                main = joint
        else:
            images, labels = self.parse_batch_train(batch)
            class_raw = model.class_features_raw(self.device)
            text = F.normalize(class_raw.float(), dim=-1)
            out = model.encode_image_with_aux(images, class_raw, need_frozen=guidance)
            image = F.normalize(out.raw.float(), dim=-1)
            joint = F.cross_entropy(scale * image @ text.t(), labels)
            if guidance:
                zero_shot_text = model.frozen_class_features(self.device)
                main = (F.cross_entropy(scale * out.frozen @ text.t(), labels)
                        + F.cross_entropy(scale * image @ zero_shot_text.t(), labels) + 0.1 * joint)
            else:
                main = joint
        summary = {"loss_main": main.item()}
        loss = main
        aux = self.auxiliary_loss(out, labels)
        if aux is not None:
            loss = loss + aux
            summary["loss_aux"] = aux.item()
        summary["loss"] = loss.item()
        return loss, summary
