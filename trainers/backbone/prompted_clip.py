"""The model interface every method implements: a frozen CLIP plus the method's learnable parts.

Subclasses override a few hooks (text context, deep text prompts, visual prompt provider, feature
post-processing); encoding, caching of frozen features and the classification head live here once.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .text_encoder import PromptedTextEncoder, TokenizedTexts, tokenize
from .vision_encoder import PromptProvider, PromptedVisionEncoder


class PromptedCLIP(nn.Module):
    #: number of context vectors a method inserts after SOT (reserved when tokenizing)
    num_text_ctx: int = 0
    #: whether visual prompts survive a block (MaPLe) or are replaced/dropped each block (VPT)
    carry_visual_prompts: bool = False
    #: False when the text side is plain frozen CLIP, so class features are computed once and cached
    learns_text: bool = False
    #: True when :meth:`raw_image_features` is the frozen CLIP image encoder, so test-image features can be
    #: cached on disk and classification can score them in one matmul. A subclass that overrides
    #: ``visual_prompts`` or ``raw_image_features`` must say what it is (checked when the class is defined);
    #: one whose image path depends on its config sets it per instance.
    image_path_frozen: bool = True

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        changes_images = any(name in vars(cls) for name in ("visual_prompts", "raw_image_features"))
        if changes_images and "image_path_frozen" not in vars(cls):
            raise TypeError(f"{cls.__name__} overrides the image path (visual_prompts/raw_image_features): declare "
                            "image_path_frozen (False unless its images still go through the frozen encoder), so "
                            "cached frozen features are never served for a prompted encoder.")

    def __init__(self, clip_model: nn.Module, classnames: list[str], template: str = "a photo of a {}."):
        super().__init__()
        for p in clip_model.parameters():
            p.requires_grad_(False)
        self.clip = clip_model
        self.text_encoder = PromptedTextEncoder(clip_model)
        self.is_vit = hasattr(clip_model.visual, "transformer")
        self.vision_encoder = PromptedVisionEncoder(clip_model.visual) if self.is_vit else None
        self.classnames = list(classnames)
        self.template = template
        self.register_buffer("logit_scale", clip_model.logit_scale.detach().exp().float(), persistent=False)
        self._frozen_class_features: torch.Tensor | None = None

    # ---- hooks -------------------------------------------------------------------------------
    def text_context(self) -> torch.Tensor | None:
        """(n, D) shared or (C, n, D) class-specific context, or None."""
        return None

    def deep_text_prompts(self) -> list[torch.Tensor] | None:
        return None

    def visual_prompts(self, images: torch.Tensor) -> PromptProvider | None:
        return None

    def adapt_image_features(self, features: torch.Tensor) -> torch.Tensor:
        return features

    def adapt_text_features(self, features: torch.Tensor) -> torch.Tensor:
        return features

    def class_prompt_texts(self) -> list[str]:
        """Texts encoded for classification: the hand-crafted template, or ``"{name}."`` after context."""
        if self.num_text_ctx:
            return [f"{name.replace('_', ' ')}." for name in self.classnames]
        return [self.template.format(name.replace("_", " ")) for name in self.classnames]

    # ---- encoding ------------------------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        return self.text_encoder.dtype

    def tokenize(self, texts: list[str]) -> TokenizedTexts:
        return tokenize(texts, self.text_encoder.context_length, reserved=self.num_text_ctx)

    @property
    def prompts_image(self) -> bool:
        """Whether the image path differs from frozen CLIP (then its features cannot be cached)."""
        return not self.image_path_frozen

    def raw_image_features(self, images: torch.Tensor) -> torch.Tensor:
        """The (prompted) image encoder's output, before any adapter and normalisation."""
        if self.vision_encoder is None:
            return self.clip.visual(images.to(self.clip.visual.conv1.weight.dtype))
        return self.vision_encoder(images, self.visual_prompts(images), carry=self.carry_visual_prompts)

    def image_features_from_raw(self, features: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        features = self.adapt_image_features(features)
        return F.normalize(features.float(), dim=-1) if normalize else features

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        return self.image_features_from_raw(self.raw_image_features(images), normalize)

    def encode_text(
        self,
        tokens: torch.Tensor,
        token_weights: torch.Tensor | None = None,
        ctx: torch.Tensor | None = None,
        normalize: bool = True,
    ) -> torch.Tensor:
        """Encode token rows (from :meth:`tokenize`) with this method's context and deep prompts."""
        ctx = self.text_context() if ctx is None else ctx
        x, eot = self.text_encoder.embed(tokens, ctx, token_weights)
        features = self.text_encoder(x, eot, self.deep_text_prompts())
        features = self.adapt_text_features(features)
        return F.normalize(features.float(), dim=-1) if normalize else features

    @torch.no_grad()
    def frozen_image_features(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised features of the unprompted, frozen CLIP image encoder (no adapter, no prompts)."""
        return F.normalize(self.clip.encode_image(images.to(self.clip.visual.conv1.weight.dtype)).float(), dim=-1)

    @torch.no_grad()
    def frozen_text_features(self, tokens: torch.Tensor) -> torch.Tensor:
        """Normalised features of plain CLIP text encoding: no context, no deep prompts, no adapter."""
        x, eot = self.text_encoder.embed(tokens)
        return F.normalize(self.text_encoder(x, eot).float(), dim=-1)

    def frozen_class_features(self, device: torch.device) -> torch.Tensor:
        """Zero-shot class features of the hand-crafted template, computed once."""
        if self._frozen_class_features is None or self._frozen_class_features.device != device:
            texts = [self.template.format(c.replace("_", " ")) for c in self.classnames]
            self._frozen_class_features = self.frozen_text_features(tokenize(texts).tokens.to(device))
        return self._frozen_class_features

    def class_text_features(self, device: torch.device) -> torch.Tensor:
        if not self.learns_text:
            return self.frozen_class_features(device)
        tokens = self.tokenize(self.class_prompt_texts()).tokens.to(device)
        return self.encode_text(tokens)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Classification logits (B, C)."""
        image_features = self.encode_image(images)
        text_features = self.class_text_features(images.device)
        return self.logit_scale * image_features @ text_features.t()
