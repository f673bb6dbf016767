"""CLIP's ViT with prompt tokens injected per block, without touching the installed ``clip`` package.

A *prompt provider* is called before each block with the block index and the hidden states
(L, B, W) of the image tokens (CLS + patches, prompts already stripped). It returns the prompt tokens
(P, B, W) to append after the patch tokens for this block, or None. What happens to prompts after a
block depends on ``carry``: VPT/DPT drop them (fresh prompts per block), MaPLe carries the processed
prompts into the next block unless new ones replace them.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from .blocks import run_block

PromptProvider = Callable[[int, torch.Tensor], Optional[torch.Tensor]]


class PromptedVisionEncoder(nn.Module):
    def __init__(self, visual: nn.Module):
        super().__init__()
        if not hasattr(visual, "transformer"):
            raise ValueError("Visual prompts need a ViT backbone (ViT-B/32, ViT-B/16, ...); ResNet CLIPs have no tokens.")
        self.visual = visual

    @property
    def width(self) -> int:
        return self.visual.conv1.out_channels

    @property
    def num_layers(self) -> int:
        return len(self.visual.transformer.resblocks)

    @property
    def dtype(self) -> torch.dtype:
        return self.visual.conv1.weight.dtype

    def stem(self, images: torch.Tensor) -> torch.Tensor:
        """Patch embedding + CLS + positions + ln_pre, as (L, B, W)."""
        v = self.visual
        x = v.conv1(images.to(self.dtype)).flatten(2).transpose(1, 2)
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)
        return v.ln_pre(x).permute(1, 0, 2)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual.ln_post(x[0]) @ self.visual.proj

    def forward(self, images: torch.Tensor, prompts: PromptProvider | None = None, carry: bool = False) -> torch.Tensor:
        x = self.stem(images)
        num_tokens = x.shape[0]
        slot: torch.Tensor | None = None
        for i, block in enumerate(self.visual.transformer.resblocks):
            new = prompts(i, x) if prompts is not None else None
            if new is not None:
                slot = new.to(x.dtype)
            elif not carry:
                slot = None
            h = run_block(block, x if slot is None else torch.cat([x, slot], dim=0))
            x, slot = h[:num_tokens], (h[num_tokens:] if slot is not None else None)
        return self.head(x)


def expand_prompts(prompts: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(P, W) shared prompts -> (P, B, W)."""
    return prompts.unsqueeze(1).expand(-1, batch_size, -1)
