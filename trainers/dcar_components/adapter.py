"""DCAR's trainable CAA block (docs/dcar.md, "Category-Aware Augmentation": the optional CAA head)."""
from __future__ import annotations

from ..adapters import ResidualAdapter

__all__ = ["CategoryAwareAdapter"]


class CategoryAwareAdapter(ResidualAdapter):
    """The CAA block: a :class:`ResidualAdapter` applied to frozen *text* features of the positive and negatives.

    It feeds only L_cate; retrieval uses the un-adapted features, so the adapter shapes the training signal
    without changing the test-time encoder. Kept as its own class (not an alias) so checkpoints and module
    listings name it.
    """

    def __init__(self, dim: int, reduction: int = 4, ratio: float = 0.2) -> None:
        super().__init__(dim, reduction=reduction, ratio=ratio)
