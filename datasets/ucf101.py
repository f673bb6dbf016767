"""UCF101: 101 actions, one middle frame per video."""
from dassl.data.datasets import DATASET_REGISTRY

from .coop_split import CoOpSplitDataset


@DATASET_REGISTRY.register()
class UCF101(CoOpSplitDataset):
    """Split paths are relative to ucf101/UCF-101-midframes."""

    dataset_dir = "ucf101"
    image_subdir = "UCF-101-midframes"
    split_file = "split_zhou_UCF101.json"
    split_file_gdrive_id = "1I0S0q91hJfsV9Gf4xDIjgDq4AqBNJb1y"
    prompt_template = "a photo of a person doing {}."
    images_how = (
        "create {root}/ucf101 and extract UCF-101-midframes.zip (https://drive.google.com/file/d/"
        "10Jqome3vtUA2keJkNanAiFpgbyC9Hc2O/view) there (CoOp DATASETS.md, UCF101)"
    )
