"""DCAR's building blocks, each separately tested: token re-weighting (DTR), category-aware negatives and the
CAA adapter. Nothing here depends on Dassl."""
from .adapter import CategoryAwareAdapter
from .negatives import CategoryAwareNegatives, siblings_from_meta, siblings_from_text_features
from .token_reweighting import (
    DynamicTokenReweighting,
    blank_image_features,
    boilerplate_token_ids,
    normalise_token_scores,
    word_token_mask,
)

__all__ = [
    "CategoryAwareAdapter",
    "CategoryAwareNegatives",
    "DynamicTokenReweighting",
    "blank_image_features",
    "boilerplate_token_ids",
    "normalise_token_scores",
    "siblings_from_meta",
    "siblings_from_text_features",
    "word_token_mask",
]
