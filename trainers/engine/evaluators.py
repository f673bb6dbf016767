"""Dassl evaluators of our own: ``Retrieval`` scores caption datasets by Recall@K in both directions.

Registered in Dassl's EVALUATOR_REGISTRY, so a run on a caption dataset says "Loading evaluator:
Retrieval" and evaluates through ``self.evaluator`` like any Dassl trainer; the metric itself is
:func:`trainers.retrieval_metrics.recall_at_k` (ground truth by index, stable ties, in blocks).
"""
from __future__ import annotations

from typing import Any

import torch
from dassl.evaluation import EVALUATOR_REGISTRY, EvaluatorBase

from ..retrieval_metrics import recall_at_k

RETRIEVAL_EVALUATOR = "Retrieval"


@EVALUATOR_REGISTRY.register()
class Retrieval(EvaluatorBase):
    """Image-to-text and text-to-image Recall@K (``TEST.RETRIEVAL_KS``) of paired image/caption features."""

    def __init__(self, cfg, **kwargs):
        super().__init__(cfg)
        self.ks = tuple(cfg.TEST.RETRIEVAL_KS)
        self.max_block_bytes = int(cfg.TEST.RETRIEVAL_BLOCK_MB * 2**20)
        self.reset()

    def reset(self) -> None:
        self._images: list[torch.Tensor] = []
        self._captions: list[torch.Tensor] = []

    def process(self, image_features: torch.Tensor, caption_features: torch.Tensor) -> None:
        """Add pairs: caption ``i`` of a batch belongs to image ``i`` (ground truth by index)."""
        if len(image_features) != len(caption_features):
            raise ValueError(f"{len(image_features)} images but {len(caption_features)} captions: pairs expected")
        self._images.append(image_features)
        self._captions.append(caption_features)

    def evaluate(self) -> dict[str, Any]:
        """``{"i2t": {"R@1": ...}, "t2i": {...}, "mean_recall": ...}`` in percent, as results.json stores it."""
        recall = recall_at_k(torch.cat(self._images), torch.cat(self._captions), ks=self.ks,
                             max_block_bytes=self.max_block_bytes)
        return {
            "i2t": {f"R@{k}": float(recall["i2t"][k]) for k in self.ks},
            "t2i": {f"R@{k}": float(recall["t2i"][k]) for k in self.ks},
            "mean_recall": float(recall["mean_recall"]),
        }
