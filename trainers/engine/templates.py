"""The zero-shot prompt of a dataset. Each dataset class states its own (``prompt_template``: CoOp's one
hand-crafted template per dataset, no ensembling); this reads it through Dassl's registry, so trainers/ holds
no list of datasets."""
from __future__ import annotations

from dassl.data.datasets import DATASET_REGISTRY

DEFAULT_TEMPLATE = "a photo of a {}."


def template_for(dataset_name: str) -> str:
    """The registered dataset's ``prompt_template``; CLIP's plain prompt where it sets none (FDRD's caption
    domains) or where the name is not registered (a model built outside train.py)."""
    if dataset_name not in DATASET_REGISTRY.registered_names():
        return DEFAULT_TEMPLATE
    return getattr(DATASET_REGISTRY.get(dataset_name), "prompt_template", "") or DEFAULT_TEMPLATE
