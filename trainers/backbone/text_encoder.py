"""CLIP's text transformer with learnable context vectors, per-token weights and deep prompts.

Token layout of every prompted sequence: ``[SOT] ctx_1..ctx_n  text tokens ... [EOT] pad``. With
``n = 0`` this is CLIP's own encoding. Because CLIP's text attention is causal, the feature at EOT only
depends on positions up to EOT, so a batch is run only up to its last EOT: identical features, 2-3x less work
on typical captions. A large batch of captions of mixed lengths (DCAR's captions and their negatives, test
captions) is run in groups of similar length, each up to its own last EOT (:func:`length_groups`).
"""
from __future__ import annotations

import itertools
import logging
from collections import Counter
from dataclasses import dataclass

import torch
from torch import nn

from ..bpe import bpe_ids
from ..errors import ConfigError
from .blocks import run_block

logger = logging.getLogger(__name__)

SOT_TOKEN = 49406
EOT_TOKEN = 49407


@dataclass
class TokenizedTexts:
    tokens: torch.Tensor  # (N, context_length - reserved), long
    num_truncated: int


def tokenize(texts: list[str], context_length: int = 77, reserved: int = 0) -> TokenizedTexts:
    """BPE-encode texts into ``context_length - reserved`` slots, leaving room for ``reserved`` context
    vectors. Too-long texts are cut and keep their EOT; the count is returned, not raised."""
    width = context_length - reserved
    if width < 3:
        raise ConfigError(f"{reserved} context tokens (N_CTX) leave no room for text in CLIP's {context_length}-token "
                          "context; use fewer.")
    tokens = torch.zeros(len(texts), width, dtype=torch.long)
    truncated = 0
    for row, text in enumerate(texts):
        ids = bpe_ids(text)
        if len(ids) > width - 2:
            ids = ids[: width - 2]
            truncated += 1
        seq = [SOT_TOKEN, *ids, EOT_TOKEN]
        tokens[row, : len(seq)] = torch.tensor(seq)
    return TokenizedTexts(tokens, truncated)


#: the fixed cost of one more encoder call, in rows of its length: a group splits off only where it saves more
#: padded positions than that (kernel launches and small matmuls make tiny groups slower than padding)
GROUP_OVERHEAD_ROWS = 16


def length_groups(lengths: list[int], overhead_rows: int = GROUP_OVERHEAD_ROWS) -> list[list[int]]:
    """Rows grouped by length so that ``sum over groups of (rows + overhead_rows) * longest row`` is least.

    Rows are taken in length order; the best split into contiguous runs is found exactly by dynamic programming
    over the distinct lengths (at most CLIP's 77). Returns the row indices of each group, shortest group first."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    counts = Counter(lengths)
    distinct = sorted(counts)
    below = [0, *itertools.accumulate(counts[length] for length in distinct)]  # rows shorter than distinct[j]
    best, cut = [0.0] * (len(distinct) + 1), [0] * (len(distinct) + 1)
    for j in range(1, len(distinct) + 1):  # best[j]: least cost of the rows of the j shortest lengths
        best[j], cut[j] = min((best[i] + (below[j] - below[i] + overhead_rows) * distinct[j - 1], i)
                              for i in range(j))  # the last group: lengths distinct[i:j]
    bounds, j = [], len(distinct)
    while j > 0:
        bounds.append((below[cut[j]], below[j]))
        j = cut[j]
    return [order[start:stop] for start, stop in reversed(bounds)]


class PromptedTextEncoder(nn.Module):
    """Holds references to the frozen CLIP text modules (they are not copied)."""

    def __init__(self, clip_model: nn.Module):
        super().__init__()
        self.token_embedding = clip_model.token_embedding
        self.positional_embedding = clip_model.positional_embedding
        self.transformer = clip_model.transformer
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.context_length = clip_model.positional_embedding.shape[0]

    @property
    def dtype(self) -> torch.dtype:
        # OpenAI's convert_weights leaves the token embedding in fp32; the projections carry the run's dtype
        return self.text_projection.dtype

    @property
    def width(self) -> int:
        return self.token_embedding.weight.shape[1]

    def embed(
        self,
        tokens: torch.Tensor,
        ctx: torch.Tensor | None = None,
        token_weights: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Token embeddings with ``ctx`` (n, D) or (N, n, D) inserted after SOT.

        ``token_weights`` (N, T) multiply the text token embeddings (Dynamic Token Re-Weighting).
        Returns the (N, L, D) sequence and each row's EOT position."""
        emb = self.token_embedding(tokens)
        if token_weights is not None:
            emb = emb * token_weights.to(emb.dtype).unsqueeze(-1)
        eot = tokens.argmax(dim=-1)
        if ctx is None:
            return emb, eot
        ctx = ctx.to(emb.dtype)
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0).expand(tokens.shape[0], -1, -1)
        return torch.cat([emb[:, :1], ctx, emb[:, 1:]], dim=1), eot + ctx.shape[1]

    def forward(
        self,
        x: torch.Tensor,
        eot: torch.Tensor,
        deep_prompts: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Encode embedded sequences (N, L, D) to unnormalised features (N, E), in groups of similar length.

        ``deep_prompts[i]`` (n, D) replaces positions 1..n before block i+1 (MaPLe-style deep text
        prompts; block 0 sees the context inserted by :meth:`embed`)."""
        groups = length_groups((eot + 1).tolist())
        if len(groups) <= 1:
            return self.encode_group(x, eot, deep_prompts)
        features = [self.encode_group(x[rows], eot[rows], deep_prompts)
                    for rows in (torch.tensor(g, device=x.device) for g in groups)]
        order = torch.tensor([row for group in groups for row in group], device=x.device)
        return torch.cat(features)[torch.argsort(order)]

    def encode_group(
        self,
        x: torch.Tensor,
        eot: torch.Tensor,
        deep_prompts: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """:meth:`forward` for one group: every row run up to the group's last EOT."""
        length = int(eot.max()) + 1
        x = x[:, :length].to(self.dtype) + self.positional_embedding[:length].to(self.dtype)
        x = x.permute(1, 0, 2)  # NLD -> LND
        deep_prompts = deep_prompts or []
        for i, block in enumerate(self.transformer.resblocks):
            if 0 < i <= len(deep_prompts):
                prompt = deep_prompts[i - 1].to(x.dtype).unsqueeze(1).expand(-1, x.shape[1], -1)
                x = torch.cat([x[:1], prompt, x[1 + prompt.shape[0]:]], dim=0)
            x = run_block(block, x)
        x = x.permute(1, 0, 2)
        x = self.ln_final(x).to(self.dtype)
        return x[torch.arange(x.shape[0], device=x.device), eot] @ self.text_projection
