"""SUN397: 397 scene categories."""
from dassl.data.datasets import DATASET_REGISTRY

from .coop_split import CoOpSplitDataset


@DATASET_REGISTRY.register()
class SUN397(CoOpSplitDataset):
    """Split paths are relative to sun397/SUN397."""

    dataset_dir = "sun397"
    image_subdir = "SUN397"
    split_file = "split_zhou_SUN397.json"
    split_file_gdrive_id = "1y2RD81BYuiyvebdN-JymPfyWYcd8_MUq"
    prompt_template = "a photo of a {}."
    images_how = (
        "create {root}/sun397 and extract http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz there "
        "(CoOp DATASETS.md, SUN397)"
    )
