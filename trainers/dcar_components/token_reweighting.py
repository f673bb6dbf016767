"""Dynamic Token Re-Weighting (DTR): per-token caption weights from how much the image explains each token.

For caption token j and its paired image I, the frozen, unprompted CLIP scores the token against the image and
against a blank image ∅ (DCAR's Fig. 2, ``w_j = |S(token_j, I) − S(token_j, ∅)|``):

    t_j  = the frozen text feature of token j *on its own*: CLIP's text tower on ``[SOT, token_j, EOT]``
    ΔS_j = cos(t_j, f(I)) − cos(t_j, f(∅)) = t_j · (f(I) − f(∅))      (t_j, f(·) L2-normalised)
    raw_j = |ΔS_j|

Why a token on its own and not the token's hidden state inside the caption: CLIP's text attention is causal,
so the hidden state at position j summarises the whole prefix up to j. Scored that way the fixed prefix
"This is a photo of", identical in every caption, received weights spanning the whole clamp range, and a
caption's weights with its own image and with a random image correlated at only 0.16 (measured; see
docs/dcar.md). A token's own feature depends on the token alone, so it is computed once per vocabulary id and
cached: DTR then costs one gather and one dot product per step (plus the frozen image pass).

Tokens shared by most training captions (the boilerplate prefix, punctuation) are *neutral*: they keep weight
1 and do not enter the normalisation. The others are rescaled to mean 1 and clamped to [floor, ceil] (see
:func:`normalise_token_scores`); SOT, EOT and padding keep weight 1. The weights multiply the caption's token
embeddings at training time only: at test the pairing is unknown.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ..backbone.text_encoder import EOT_TOKEN, SOT_TOKEN

if TYPE_CHECKING:  # pragma: no cover
    from clip.model import CLIP

__all__ = [
    "DynamicTokenReweighting",
    "boilerplate_token_ids",
    "normalise_token_scores",
    "word_token_mask",
    "blank_image_features",
    "OPENAI_CLIP_MEAN",
    "OPENAI_CLIP_STD",
]

OPENAI_CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

Normalization = Literal["mean", "none"]


def word_token_mask(tokens: Tensor, neutral_ids: Tensor | None = None) -> Tensor:
    """[B, L] bool, True at the caption's scored tokens: positions 1 .. eot-1 (SOT at 0, EOT = argmax id, as
    CLIP), minus the ids in ``neutral_ids`` (boilerplate)."""
    eot = tokens.argmax(dim=-1, keepdim=True)
    positions = torch.arange(tokens.shape[-1], device=tokens.device).unsqueeze(0)
    mask = (positions >= 1) & (positions < eot)
    if neutral_ids is not None and neutral_ids.numel():
        mask &= ~torch.isin(tokens, neutral_ids.to(tokens.device))
    return mask


def boilerplate_token_ids(tokens: Tensor, min_fraction: float) -> Tensor:
    """Ids that occur in at least ``min_fraction`` of the captions ``tokens`` [N, L] (document frequency).

    SOT, EOT and padding are not listed (they are never scored). ``min_fraction`` > 1 lists nothing."""
    if tokens.numel() == 0 or min_fraction > 1:
        return torch.empty(0, dtype=torch.long)
    present = torch.zeros(tokens.shape[0], int(tokens.max()) + 1, dtype=torch.bool)
    present.scatter_(1, tokens.cpu(), True)
    fraction = present.float().mean(dim=0)
    ids = torch.nonzero(fraction >= min_fraction).flatten()
    return ids[(ids != 0) & (ids != SOT_TOKEN) & (ids != EOT_TOKEN)]


def normalise_token_scores(
    raw: Tensor,
    word_mask: Tensor,
    floor: float = 0.5,
    ceil: float = 2.0,
    mode: Normalization = "mean",
) -> Tensor:
    """Turn raw token scores |ΔS| into weights.

    ``mode="mean"``: ``w_j = clamp(raw_j / mean(raw over the caption's scored tokens), floor, ceil)``, i.e.
    ``L·|ΔS_j| / Σ|ΔS|`` then clamped; without clamping the scored tokens average exactly 1, so the caption keeps
    its overall scale and only the balance between words changes.
    ``mode="none"``: ``w_j = clamp(raw_j, floor, ceil)``.

    A scored token whose score is 0 does not change the image-text similarity, so it gets the floor; when every
    scored token of a caption is 0 every one gets the floor rather than 0/0. Positions outside ``word_mask``
    (SOT, EOT, padding, boilerplate) get exactly 1, and so does a caption without scored tokens.

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


class DynamicTokenReweighting:
    """Per-token caption weights against the paired images (see the module docstring).

    Args:
        frozen_text_features: maps token rows [n, L] to L2-normalised frozen, unprompted CLIP text features
            [n, E] (:meth:`PromptedCLIP.frozen_text_features`); called once per new vocabulary id.
        blank_features: [E] frozen feature of the blank image (:func:`blank_image_features`).
        neutral_ids: token ids that always keep weight 1 (:func:`boilerplate_token_ids`).

    Owns no parameters and nothing of the model (so nothing reaches a state dict or an optimiser); its only
    state is the cache of single-token features, which is a pure function of the frozen weights.
    """

    def __init__(
        self,
        frozen_text_features: Callable[[Tensor], Tensor],
        blank_features: Tensor,
        neutral_ids: Sequence[int] | Tensor = (),
        normalization: Normalization = "mean",
        floor: float = 0.5,
        ceil: float = 2.0,
    ) -> None:
        if normalization not in ("mean", "none"):
            raise ValueError(f"normalization must be 'mean' or 'none', got {normalization!r}")
        if not 0.0 < floor <= ceil:
            raise ValueError(f"need 0 < floor <= ceil, got floor={floor}, ceil={ceil}")
        self.encode = frozen_text_features
        self.blank = F.normalize(blank_features.float().flatten(), dim=0)
        self.neutral_ids = torch.as_tensor(neutral_ids, dtype=torch.long).flatten()
        self.normalization = normalization
        self.floor = floor
        self.ceil = ceil
        self._row_of_id: dict[int, int] = {}
        self._features = torch.empty(0, self.blank.shape[0], device=self.blank.device)

    @torch.no_grad()
    def token_features(self, ids: Tensor) -> Tensor:
        """[...] token ids -> [..., E] float32 frozen features of each token on its own (cached per id)."""
        flat = ids.flatten().tolist()
        missing = sorted(set(flat) - self._row_of_id.keys())
        if missing:
            rows = torch.zeros(len(missing), 3, dtype=torch.long)
            rows[:, 0], rows[:, 1], rows[:, 2] = SOT_TOKEN, torch.tensor(missing), EOT_TOKEN
            new = self.encode(rows.to(self.blank.device)).float().to(self.blank.device)
            self._row_of_id.update({token: len(self._row_of_id) + i for i, token in enumerate(missing)})
            self._features = torch.cat([self._features, new])
        index = torch.tensor([self._row_of_id[t] for t in flat], device=self._features.device)
        return self._features[index].reshape(*ids.shape, -1)

    @torch.no_grad()
    def raw_scores(self, tokens: Tensor, image_features: Tensor) -> Tensor:
        """[B, L] float32 ``|ΔS_j|`` at the scored tokens, 0 elsewhere."""
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be [B, L], got shape {tuple(tokens.shape)}")
        if image_features.shape[0] != tokens.shape[0]:
            raise ValueError(f"image_features has {image_features.shape[0]} rows for {tokens.shape[0]} captions")
        mask = word_token_mask(tokens, self.neutral_ids)
        raw = torch.zeros(tokens.shape, device=self.blank.device)
        if mask.any():
            rows, cols = torch.nonzero(mask.to(self.blank.device), as_tuple=True)
            features = self.token_features(tokens.to(self.blank.device)[rows, cols])  # [n, E]
            image = F.normalize(image_features.to(self.blank.device).float(), dim=-1)
            raw[rows, cols] = (features * (image[rows] - self.blank)).sum(dim=-1).abs()
        return raw

    @torch.no_grad()
    def __call__(self, tokens: Tensor, image_features: Tensor) -> Tensor:
        """Token weights [B, L] float32 for captions ``tokens`` [B, L] paired with frozen image features [B, E]
        (renormalised here)."""
        raw = self.raw_scores(tokens, image_features)
        mask = word_token_mask(tokens.to(raw.device), self.neutral_ids)
        return normalise_token_scores(raw, mask, self.floor, self.ceil, self.normalization)

    def __repr__(self) -> str:
        return (f"DynamicTokenReweighting(normalization={self.normalization!r}, floor={self.floor}, "
                f"ceil={self.ceil}, neutral_ids={self.neutral_ids.numel()}, cached_ids={len(self._row_of_id)})")


@torch.no_grad()
def blank_image_features(
    clip_model: "CLIP",
    image_size: int | None = None,
    mean: Sequence[float] = OPENAI_CLIP_MEAN,
    std: Sequence[float] = OPENAI_CLIP_STD,
    pixel_value: float | None = None,
) -> Tensor:
    """L2-normalised float32 [E] feature of a blank image under the frozen CLIP image encoder.

    The default blank is the mean-grey image, i.e. an all-zero tensor *after* normalisation: it carries no
    content and no colour cast relative to the training distribution. ``mean``/``std`` matter only for the
    alternative ``pixel_value`` (a constant in [0, 1] for every channel before normalisation, e.g. 0 for
    black), which gives ``(pixel_value - mean) / std``. Compute it once and reuse it.
    """
    visual = clip_model.visual
    size = int(image_size if image_size is not None else visual.input_resolution)
    parameter = next(visual.parameters())
    if pixel_value is None:
        image = torch.zeros(1, 3, size, size)
    else:
        mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        image = (torch.full((1, 3, size, size), float(pixel_value)) - mean_t) / std_t
    features = clip_model.encode_image(image.to(parameter.device, parameter.dtype))
    return F.normalize(features.float(), dim=-1)[0]
