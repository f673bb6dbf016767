"""Oxford Flowers-102: 102 flower species."""
from dassl.data.datasets import DATASET_REGISTRY

from .coop_split import CoOpSplitDataset


@DATASET_REGISTRY.register()
class OxfordFlowers(CoOpSplitDataset):
    """Split paths are relative to oxford_flowers/jpg; class names come from the split file."""

    dataset_dir = "oxford_flowers"
    image_subdir = "jpg"
    split_file = "split_zhou_OxfordFlowers.json"
    split_file_gdrive_id = "1Pp0sRXzZFZq15zVOzKjKBu4A9i01nozT"
    prompt_template = "a photo of a {}, a type of flower."
    images_how = (
        "create {root}/oxford_flowers and extract https://www.robots.ox.ac.uk/~vgg/data/flowers/102/102flowers.tgz "
        "there, giving jpg/ (CoOp DATASETS.md, Flowers102)"
    )
