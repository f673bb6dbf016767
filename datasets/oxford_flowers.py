"""Oxford Flowers-102: 102 flower species."""
from dassl.data.datasets import DATASET_REGISTRY

from .coop_split import CoOpSplitDataset


@DATASET_REGISTRY.register()
class OxfordFlowers(CoOpSplitDataset):
    """Split paths are relative to oxford_flowers/jpg; class names come from the split file."""

    dataset_dir = "oxford_flowers"
    image_subdir = "jpg"
    split_file = "split_zhou_OxfordFlowers.json"
    images_how = (
        "create {root}/oxford_flowers and extract https://www.robots.ox.ac.uk/~vgg/data/flowers/102/102flowers.tgz "
        "there, giving jpg/ (CoOp DATASETS.md, Flowers102)"
    )
