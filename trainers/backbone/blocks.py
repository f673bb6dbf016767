"""Running CLIP's residual attention blocks with a mask of our choosing.

``clip.model.ResidualAttentionBlock`` bakes a 77x77 causal mask into the module; running the text
transformer on fewer positions needs the same block with a cropped mask. This is the only place that
re-states the block's computation; both encoders use it.
"""
from __future__ import annotations

import torch
from torch import nn


def run_block(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One CLIP block on ``x`` (L, N, D); for text blocks the causal mask is cropped to L."""
    mask = block.attn_mask
    if mask is None:
        return block(x)
    seq = x.shape[0]
    mask = mask[:seq, :seq].to(dtype=x.dtype, device=x.device)
    h = block.ln_1(x)
    x = x + block.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
    return x + block.mlp(block.ln_2(x))
