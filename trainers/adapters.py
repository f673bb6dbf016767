"""Residual bottleneck adapters in the CLIP-Adapter form (Gao et al., 2021).

One class serves both CLIP-Adapter (on image features) and DCAR's CAA block (on text features), so the two
methods cannot drift apart.
"""
from __future__ import annotations

from torch import Tensor, nn

from .errors import ConfigError

__all__ = ["ResidualAdapter"]


class ResidualAdapter(nn.Module):
    """``a = (1 - ratio) * x + ratio * MLP(x)`` with ``MLP = Linear(d, d/r) → ReLU → Linear(d/r, d) → ReLU``.

    Both linears have no bias, as in CLIP-Adapter, and the sub-module is named ``fc`` like theirs (an official
    checkpoint's ``clip_adapter/fc.*`` becomes ``adapter.fc.*`` here: tools/import_checkpoint.py). The residual
    mix keeps the frozen CLIP feature dominant (ratio ≈ 0.2), which is what lets a small adapter train on few
    examples without destroying zero-shot knowledge.

    The output has the dtype of the input: the adapter's own weights may stay float32 while CLIP runs in fp16.
    """

    def __init__(self, dim: int, reduction: int = 4, ratio: float = 0.2) -> None:
        super().__init__()
        if reduction < 1 or dim % reduction != 0:
            raise ConfigError(f"The adapter's REDUCTION ({reduction}) must be a positive divisor of the feature "
                              f"dimension ({dim})")
        if not 0.0 <= ratio <= 1.0:
            raise ConfigError(f"The adapter's RATIO must be in [0, 1], got {ratio}")
        self.ratio = ratio
        hidden = dim // reduction
        self.fc = nn.Sequential(
            nn.Linear(dim, hidden, bias=False),
            nn.ReLU(),
            nn.Linear(hidden, dim, bias=False),
            nn.ReLU(),
        )

    def forward(self, x: Tensor) -> Tensor:
        weight_dtype = self.fc[0].weight.dtype
        adapted = self.fc(x.to(weight_dtype)).to(x.dtype)
        return (1.0 - self.ratio) * x + self.ratio * adapted

    def extra_repr(self) -> str:
        return f"ratio={self.ratio}"
