"""Stanford Cars: 196 car models."""
from dassl.data.datasets import DATASET_REGISTRY

from .coop_split import CoOpSplitDataset


@DATASET_REGISTRY.register()
class StanfordCars(CoOpSplitDataset):
    """Split paths (cars_train/..., cars_test/...) are relative to stanford_cars itself."""

    dataset_dir = "stanford_cars"
    image_subdir = ""
    split_file = "split_zhou_StanfordCars.json"
    split_file_gdrive_id = "1ObCFbaAgVu0I-k_Au-gIUcefirdAuizT"
    prompt_template = "a photo of a {}."
    images_how = (
        "create {root}/stanford_cars and extract cars_train.tgz and cars_test.tgz from "
        "http://ai.stanford.edu/~jkrause/car196/ there (CoOp DATASETS.md, StanfordCars)"
    )
