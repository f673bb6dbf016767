"""CoOp's 11 classification datasets, 4 ImageNet variants and the FDRD caption domains, registered in Dassl's
DATASET_REGISTRY.

Importing this package imports every module in it, so each dataset registers itself under its class name and
``cfg.DATASET.NAME`` selects it; there is no list of datasets to edit. Shared split/few-shot logic lives in
``datasets.coop_split``; what is particular to a dataset (folders, split file and its Google-Drive id, zero-shot
prompt template) lives on its class.
"""
from __future__ import annotations

import importlib
import importlib.util
import pkgutil


def _import_every_module() -> None:
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):  # not __main__ (the download command)
            importlib.import_module(f"{__name__}.{info.name}")


def registered_datasets() -> dict[str, type]:
    """This project's datasets (Dassl's own, also in the registry, left out), by registry name."""
    from dassl.data.datasets import DATASET_REGISTRY

    classes = {name: DATASET_REGISTRY.get(name) for name in DATASET_REGISTRY.registered_names()}
    return {name: cls for name, cls in sorted(classes.items()) if cls.__module__.startswith(f"{__name__}.")}


# Registration needs Dassl; without it the pure modules (fdrd_formats, coop_split's helpers) still import.
if importlib.util.find_spec("dassl") is not None:
    _import_every_module()
