"""Oxford-IIIT Pets: 37 cat and dog breeds."""
from dassl.data.datasets import DATASET_REGISTRY

from .coop_split import CoOpSplitDataset


@DATASET_REGISTRY.register()
class OxfordPets(CoOpSplitDataset):
    """Split paths are relative to oxford_pets/images."""

    dataset_dir = "oxford_pets"
    image_subdir = "images"
    split_file = "split_zhou_OxfordPets.json"
    split_file_gdrive_id = "1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs"
    prompt_template = "a photo of a {}, a type of pet."
    images_how = (
        "create {root}/oxford_pets and extract https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz "
        "there (CoOp DATASETS.md, OxfordPets)"
    )
