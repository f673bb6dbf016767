"""Config defaults: every trainer and dataset module contributes its own node via ``add_config(cfg)``.

``train.py`` discovers those hooks by walking the ``trainers`` and ``datasets`` packages, so adding a
method never means editing a central list of keys.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Callable

from yacs.config import CfgNode as CN

from ..errors import ConfigError


def set_defaults(cfg: CN, path: str, defaults: dict[str, Any]) -> CN:
    """Create ``cfg.<path>`` if missing and fill in the keys it lacks (idempotent; shared nodes such
    as TRAINER.COOP may be declared by several trainers)."""
    node = cfg
    for part in path.split("."):
        if part not in node:
            node[part] = CN()
        node = node[part]
    for key, value in defaults.items():
        if key not in node:
            node[key] = CN(value) if isinstance(value, dict) else value
    return node


def check_at_least(cfg: CN, key: str, minimum: int, why: str) -> None:
    """``cfg.<key> >= minimum``, else one message naming the key (prompt lengths: a negative one would fail
    in torch with a traceback, a zero one would train nothing without saying so)."""
    value = cfg
    for part in key.split("."):
        value = value[part]
    if value < minimum:
        raise ConfigError(f"{key} must be at least {minimum}, got {value} ({why})")


def add_common_config(cfg: CN) -> None:
    # How the run was asked for (filled in by train.py; results.json records it next to the metrics).
    set_defaults(cfg, "RUN", {"CONFIG_FILE": "", "DATASET_CONFIG_FILE": "", "OVERRIDES": [],
                              "EVAL_ONLY": False, "MODEL_DIR": ""})  # --eval-only, --model-dir: for check_cfg
    set_defaults(cfg, "MODEL", {
        "CLIP_CACHE_DIR": "",
        # TorchScript archives (OpenAI's original .pt) and checkpoints holding pickled Python objects can
        # only be read by running code stored in them: refused unless this is True.
        "ALLOW_UNSAFE_LOAD": False,
    })
    set_defaults(cfg, "DATASET", {
        "SUBSAMPLE_CLASSES": "all",
        # Decode every image of every split once when the dataset is built, so a corrupt file is reported
        # before training instead of when a batch first reaches it (costs one pass over the images).
        "VERIFY_IMAGES": False,
    })
    set_defaults(cfg, "TEST", {
        "RETRIEVAL_KS": [1, 5, 10],
        "RETRIEVAL_BLOCK_MB": 64,   # memory of one Recall@K score block (trainers/retrieval_metrics.py)
        "TEXT_BATCH_SIZE": 256,    # captions encoded per forward pass at test time
        # Frozen image features of the test split are cached on disk for methods whose image path is
        # plain CLIP (zero-shot, CoOp, CLIP-Adapter). "" = ~/.cache/prompt-clip/image-features.
        "FEATURE_CACHE": True,
        "FEATURE_CACHE_DIR": "",
    })


def config_hooks(package_names: tuple[str, ...] = ("trainers",)) -> list[Callable[[CN], None]]:
    hooks: list[Callable[[CN], None]] = [add_common_config]
    for package_name in package_names:
        package = importlib.import_module(package_name)
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package_name}."):
            module = importlib.import_module(info.name)
            hook = getattr(module, "add_config", None)
            if callable(hook) and hook not in hooks:
                hooks.append(hook)
    return hooks


def extend_cfg(cfg: CN, package_names: tuple[str, ...] = ("trainers",)) -> CN:
    """Add every hook's defaults; the caller names the packages to walk (train.py: trainers and datasets),
    so this layer never imports the dataset package itself."""
    for hook in config_hooks(package_names):
        hook(cfg)
    return cfg
