"""Zero-shot image-text retrieval of a CLIP on the synthetic test split (the baseline prompts must beat).

Protocol, as for FDRD (``dcar.md`` §1.3): a 1:1 gallery of N test images x N positive captions,
ground truth by index, captions encoded plainly with ``clip.tokenize(..., truncate=True)``,
L2-normalised features, Recall@K in percent for image->text and text->image.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tools.demo.atomic import read_json
from tools.demo.synthetic_domain import DomainPaths
from tools.demo.tiny_clip import images_to_clip_tensor

RECALL_KS: tuple[int, ...] = (1, 5, 10)


def load_test_pairs(data_root: Path | str) -> tuple[list[Path], list[str]]:
    """Image paths and positive captions of ``fdrd/synthetic_test.json``, in file order."""
    paths = DomainPaths(Path(data_root))
    entries = read_json(paths.test_captions)
    if entries is None:
        raise FileNotFoundError(
            f"expected the synthetic test captions at {paths.test_captions}; run python -m tools.demo.build"
        )
    image_paths = [paths.image_dir / entry["class_name"] / entry["file_name"] for entry in entries.values()]
    return image_paths, [entry["positive"] for entry in entries.values()]


def _load_images(image_paths: list[Path], resolution: int) -> np.ndarray:
    images = []
    for path in image_paths:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if image.size != (resolution, resolution):
                image = image.resize((resolution, resolution), Image.BICUBIC)
            images.append(np.asarray(image))
    return np.stack(images)


def recall_at_k(similarity: torch.Tensor, ks: tuple[int, ...] = RECALL_KS) -> dict[str, float]:
    """Recall@K (percent) for a square image x text similarity whose ground truth is the diagonal.

    The rank of a true match is the number of candidates scoring strictly higher, so exact ties
    (byte-identical captions of two images) count in the query's favour.
    """
    diagonal = similarity.diagonal()
    image_ranks = (similarity > diagonal[:, None]).sum(dim=1)
    text_ranks = (similarity > diagonal[None, :]).sum(dim=0)
    metrics: dict[str, float] = {}
    for direction, ranks in (("i2t", image_ranks), ("t2i", text_ranks)):
        for k in ks:
            metrics[f"{direction}_R@{k}"] = round(100.0 * (ranks < k).float().mean().item(), 2)
    metrics["mean_R"] = round(sum(metrics.values()) / len(metrics), 2)
    return metrics


@torch.no_grad()
def zero_shot_recall(model: torch.nn.Module, data_root: Path | str, batch_size: int = 256) -> dict[str, float]:
    """Recall@1/5/10 both ways of ``model`` on the synthetic test split, plus ``n_pairs`` and chance R@1."""
    import clip

    was_training = model.training
    model.eval()
    image_paths, captions = load_test_pairs(data_root)
    pixels = _load_images(image_paths, model.visual.input_resolution)
    image_features, text_features = [], []
    for start in range(0, len(captions), batch_size):
        images = images_to_clip_tensor(pixels[start : start + batch_size])
        tokens = clip.tokenize(captions[start : start + batch_size], truncate=True)
        image_features.append(model.encode_image(images).float())
        text_features.append(model.encode_text(tokens).float())
    image_matrix = torch.nn.functional.normalize(torch.cat(image_features), dim=-1)
    text_matrix = torch.nn.functional.normalize(torch.cat(text_features), dim=-1)
    model.train(was_training)
    metrics = recall_at_k(image_matrix @ text_matrix.t())
    metrics["n_pairs"] = len(captions)
    metrics["chance_R@1"] = round(100.0 / len(captions), 2)
    return metrics
