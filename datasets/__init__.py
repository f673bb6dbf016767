"""CoOp's 11 classification datasets and 4 ImageNet variants, registered in Dassl's DATASET_REGISTRY.

Importing this package registers every dataset under its CoOp class name, so ``cfg.DATASET.NAME``
selects it. Shared split/few-shot logic lives in ``datasets.coop_split``.
"""
import importlib.util

# Registration needs Dassl; without it the pure modules (fdrd_formats, coop_split's helpers) still import.
if importlib.util.find_spec("dassl") is not None:
    from . import (  # noqa: F401  (imported for their registration side effect)
        caltech101,
        dtd,
        fdrd,
        eurosat,
        fgvc_aircraft,
        food101,
        imagenet,
        imagenet_variants,
        oxford_flowers,
        oxford_pets,
        stanford_cars,
        sun397,
        ucf101,
    )

COOP_DATASET_NAMES = (
    "ImageNet",
    "Caltech101",
    "OxfordPets",
    "StanfordCars",
    "OxfordFlowers",
    "Food101",
    "FGVCAircraft",
    "SUN397",
    "DescribableTextures",
    "EuroSAT",
    "UCF101",
    "ImageNetV2",
    "ImageNetSketch",
    "ImageNetA",
    "ImageNetR",
)
