"""Food-101: 101 dishes."""
from dassl.data.datasets import DATASET_REGISTRY

from .coop_split import CoOpSplitDataset


@DATASET_REGISTRY.register()
class Food101(CoOpSplitDataset):
    """Split paths are relative to food-101/images."""

    dataset_dir = "food-101"
    image_subdir = "images"
    split_file = "split_zhou_Food101.json"
    split_file_gdrive_id = "1QK0tGi096I0Ba6kggatX1ee6dJFIcEJl"
    prompt_template = "a photo of {}, a type of food."
    images_how = (
        "extract food-101.tar.gz from https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/ under {root}, "
        "giving {root}/food-101/images (CoOp DATASETS.md, Food101)"
    )
