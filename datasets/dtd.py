"""Describable Textures (DTD): 47 texture classes."""
from dassl.data.datasets import DATASET_REGISTRY

from .coop_split import CoOpSplitDataset


@DATASET_REGISTRY.register()
class DescribableTextures(CoOpSplitDataset):
    """Split paths are relative to dtd/images."""

    dataset_dir = "dtd"
    image_subdir = "images"
    split_file = "split_zhou_DescribableTextures.json"
    split_file_gdrive_id = "1u3_QfB467jqHgNXC00UIzbLZRQCg2S7x"
    prompt_template = "{} texture."
    images_how = (
        "extract https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz under {root}, giving "
        "{root}/dtd/images (CoOp DATASETS.md, DTD)"
    )
