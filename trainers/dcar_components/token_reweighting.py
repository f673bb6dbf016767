"""Dynamic Token Re-Weighting (DTR), DCAR's per-token caption weights (dcar.md §1.2, decisions 5-6).

For caption token j and its paired image I, the frozen, unprompted CLIP scores the token by how much the image
(rather than a blank image ∅) explains it:

    p_j  = normalise(ln_final(h_j) @ text_projection)      h_j: final hidden state of token j (causal, frozen)
    ΔS_j = cos(p_j, f(I)) − cos(p_j, f(∅)) = p_j · (f(I) − f(∅))   (f(·) L2-normalised)
    raw_j = |ΔS_j|

read as a pointwise-mutual-information estimate with the blank image standing in for the marginal. Computing
ΔS as one dot product with the *difference* of the two image features makes it exactly 0 when I and ∅ coincide,
instead of a rounding residue.

raw_j is about 0.01-0.1, so it is rescaled to mean 1 over the caption's word tokens and clamped to
[floor, ceil] = [0.5, 2]; SOT, EOT and padding keep weight 1 (see :func:`normalise_token_scores`). The weights
are used at training time only (test captions get weight 1: no O(N²) text passes, no pairing leak).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..backbone.blocks import run_block

if TYPE_CHECKING:  # pragma: no cover
    from clip.model import CLIP

__all__ = [
    "DynamicTokenReweighting",
    "normalise_token_scores",
    "word_token_mask",
    "blank_image_features",
    "OPENAI_CLIP_MEAN",
    "OPENAI_CLIP_STD",
]

OPENAI_CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

Normalization = Literal["mean", "none"]


def word_token_mask(tokens: Tensor) -> Tensor:
    """[B, L] bool, True at the caption's word tokens: positions 1 .. eot-1 (SOT at 0, EOT = argmax id, as CLIP)."""
    eot = tokens.argmax(dim=-1, keepdim=True)
    positions = torch.arange(tokens.shape[-1], device=tokens.device).unsqueeze(0)
    return (positions >= 1) & (positions < eot)


def normalise_token_scores(
    raw: Tensor,
    word_mask: Tensor,
    floor: float = 0.5,
    ceil: float = 2.0,
    mode: Normalization = "mean",
) -> Tensor:
    """Turn raw token scores |ΔS| into weights.

    ``mode="mean"``: ``w_j = clamp(raw_j / mean(raw over the caption's words), floor, ceil)``, i.e. the
    decision-6 rule ``L·|ΔS_j| / Σ|ΔS|`` then clamped; without clamping the words average exactly 1, so the
    caption keeps its overall scale and only the balance between words changes.
    ``mode="none"``: ``w_j = clamp(raw_j, floor, ceil)``.

    A word whose score is 0 does not change the image-text similarity, so it gets the floor. In particular, when
    every word of a caption scores 0 (mean 0) every word gets the floor rather than 0/0: "nothing is
    image-specific" is the lowest-evidence case, not the neutral one. Non-word positions (SOT, EOT, padding) get
    exactly 1. A caption without words (the empty string) is all ones.

    Returns float32 [B, L].
    """
    if raw.shape != word_mask.shape:
        raise ValueError(f"raw {tuple(raw.shape)} and word_mask {tuple(word_mask.shape)} must match")
    if not 0.0 < floor <= ceil:
        raise ValueError(f"need 0 < floor <= ceil, got floor={floor}, ceil={ceil}")
    raw = raw.float()
    word_mask = word_mask.bool()
    if mode == "mean":
        num_words = word_mask.sum(dim=-1, keepdim=True)
        total = (raw * word_mask).sum(dim=-1, keepdim=True)
        # total > 0 implies num_words > 0; the clamp_min only guards the division on rows that where() discards.
        mean = total / num_words.clamp_min(1)
        scaled = torch.where(total > 0, raw / mean.clamp_min(torch.finfo(raw.dtype).tiny), torch.zeros_like(raw))
    elif mode == "none":
        scaled = raw
    else:
        raise ValueError(f"normalization must be 'mean' or 'none', got {mode!r}")
    weights = scaled.clamp(min=floor, max=ceil)
    return torch.where(word_mask, weights, torch.ones_like(weights))


@dataclass(frozen=True)
class _FrozenTextTower:
    """References to the frozen CLIP text modules, held outside nn.Module's registry on purpose."""

    token_embedding: nn.Embedding
    positional_embedding: Tensor
    transformer: nn.Module
    ln_final: nn.Module
    text_projection: Tensor


class DynamicTokenReweighting(nn.Module):
    """Per-token caption weights from the frozen, unprompted CLIP text tower (see the module docstring).

    Holds references to ``clip_model``'s token_embedding, positional_embedding, transformer, ln_final and
    text_projection without registering them, so this module owns no parameters, adds nothing to a state dict
    and can never be picked up by an optimiser. Everything runs under ``torch.no_grad``.

    The transformer runs only up to the batch's last EOT: with CLIP's causal mask a token's hidden state depends
    only on the tokens before it, so the truncated pass gives the same states as the 77-token pass (a 2-3x saving
    on FDRD captions of median length 26-47).
    """

    def __init__(
        self,
        clip_model: "CLIP",
        normalization: Normalization = "mean",
        floor: float = 0.5,
        ceil: float = 2.0,
    ) -> None:
        super().__init__()
        if normalization not in ("mean", "none"):
            raise ValueError(f"normalization must be 'mean' or 'none', got {normalization!r}")
        if not 0.0 < floor <= ceil:
            raise ValueError(f"need 0 < floor <= ceil, got floor={floor}, ceil={ceil}")
        self.tower = _FrozenTextTower(
            token_embedding=clip_model.token_embedding,
            positional_embedding=clip_model.positional_embedding,
            transformer=clip_model.transformer,
            ln_final=clip_model.ln_final,
            text_projection=clip_model.text_projection,
        )
        self.normalization = normalization
        self.floor = floor
        self.ceil = ceil

    @property
    def dtype(self) -> torch.dtype:
        """The text tower's compute dtype (fp16 after ``clip.model.convert_weights``, else fp32)."""
        return self.tower.text_projection.dtype

    @torch.no_grad()
    def token_projections(self, tokens: Tensor) -> Tensor:
        """[B, T] token ids → [B, T, E] float32 unit vectors ``normalise(ln_final(h_j) @ text_projection)``.

        Runs on exactly the T positions given; callers truncate to the last EOT themselves.
        """
        tower = self.tower
        device = tower.text_projection.device
        tokens = tokens.to(device)
        length = tokens.shape[1]
        x = tower.token_embedding(tokens).to(self.dtype)
        x = x + tower.positional_embedding[:length].to(self.dtype)
        x = x.permute(1, 0, 2)  # NLD -> LND
        for block in tower.transformer.resblocks:
            x = run_block(block, x)  # causal mask cropped to the T positions
        x = x.permute(1, 0, 2)
        x = tower.ln_final(x).to(self.dtype)
        projected = x @ tower.text_projection
        return F.normalize(projected.float(), dim=-1)

    @torch.no_grad()
    def raw_scores(self, tokens: Tensor, image_features: Tensor, blank_features: Tensor) -> Tensor:
        """[B, L] float32 ``|ΔS_j|`` (0 beyond the batch's last EOT, where nothing is computed)."""
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be [B, L], got shape {tuple(tokens.shape)}")
        batch, context = tokens.shape
        if image_features.shape[0] != batch:
            raise ValueError(f"image_features has {image_features.shape[0]} rows for {batch} captions")
        length = int(tokens.argmax(dim=-1).max().item()) + 1
        projections = self.token_projections(tokens[:, :length])
        image = F.normalize(image_features.to(projections.device).float(), dim=-1)
        blank = F.normalize(blank_features.to(projections.device).float().reshape(1, -1), dim=-1)
        delta = torch.einsum("bte,be->bt", projections, image - blank)
        raw = projections.new_zeros(batch, context)
        raw[:, :length] = delta.abs()
        return raw

    @torch.no_grad()
    def forward(self, tokens: Tensor, image_features: Tensor, blank_features: Tensor) -> Tensor:
        """Token weights [B, L] float32 for captions ``tokens`` [B, L] paired with ``image_features`` [B, E].

        ``image_features`` are the frozen, unprompted CLIP image features of the paired images and
        ``blank_features`` [E] those of the blank image (:func:`blank_image_features`); both are renormalised
        here, so the cosines are exact even if the caller passed raw features.
        """
        raw = self.raw_scores(tokens, image_features, blank_features)
        mask = word_token_mask(tokens.to(raw.device))
        return normalise_token_scores(raw, mask, self.floor, self.ceil, self.normalization)

    def extra_repr(self) -> str:
        return f"normalization={self.normalization!r}, floor={self.floor}, ceil={self.ceil}"


@torch.no_grad()
def blank_image_features(
    clip_model: "CLIP",
    image_size: int | None = None,
    mean: Sequence[float] = OPENAI_CLIP_MEAN,
    std: Sequence[float] = OPENAI_CLIP_STD,
    pixel_value: float | None = None,
) -> Tensor:
    """L2-normalised float32 [E] feature of a blank image under the frozen CLIP image encoder.

    The default blank is the mean-grey image, i.e. an all-zero tensor *after* normalisation (decision 5): it
    carries no content and no colour cast relative to the training distribution. ``mean``/``std`` matter only
    for the alternative ``pixel_value`` (a constant in [0, 1] for every channel before normalisation, e.g. 0 for
    black), which gives ``(pixel_value - mean) / std``. Compute it once and reuse it.
    """
    visual = clip_model.visual
    size = int(image_size if image_size is not None else visual.input_resolution)
    device = next(visual.parameters()).device
    if pixel_value is None:
        image = torch.zeros(1, 3, size, size)
    else:
        mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        image = (torch.full((1, 3, size, size), float(pixel_value)) - mean_t) / std_t
    features = clip_model.encode_image(image.to(device))
    return F.normalize(features.float(), dim=-1)[0]
