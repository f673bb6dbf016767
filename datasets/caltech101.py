"""Caltech-101: 100 object classes (CoOp's split drops BACKGROUND_Google and Faces_easy)."""
from dassl.data.datasets import DATASET_REGISTRY

from .coop_split import CoOpSplitDataset


@DATASET_REGISTRY.register()
class Caltech101(CoOpSplitDataset):
    """Split paths are relative to caltech-101/101_ObjectCategories."""

    dataset_dir = "caltech-101"
    image_subdir = "101_ObjectCategories"
    split_file = "split_zhou_Caltech101.json"
    split_file_gdrive_id = "1hyarUivQE36mY6jSomru6Fjd-JzwcCzN"
    prompt_template = "a photo of a {}."
    images_how = (
        "create {root}/caltech-101 and extract 101_ObjectCategories.tar.gz from "
        "http://www.vision.caltech.edu/Image_Datasets/Caltech101/ there (CoOp DATASETS.md, Caltech101)"
    )
