"""EuroSAT: 10 Sentinel-2 land-cover classes (RGB)."""
from dassl.data.datasets import DATASET_REGISTRY

from .coop_split import CoOpSplitDataset


@DATASET_REGISTRY.register()
class EuroSAT(CoOpSplitDataset):
    """Split paths are relative to eurosat/2750; the split carries CoOp's readable class names."""

    dataset_dir = "eurosat"
    image_subdir = "2750"
    split_file = "split_zhou_EuroSAT.json"
    split_file_gdrive_id = "1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o"
    prompt_template = "a centered satellite photo of {}."
    images_how = (
        "create {root}/eurosat and extract http://madm.dfki.de/files/sentinel/EuroSAT.zip there, giving 2750/ "
        "(CoOp DATASETS.md, EuroSAT)"
    )
