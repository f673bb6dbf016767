"""Name the CLIP architecture a model has, whatever it was loaded from (an OpenAI name, a file, the Hub).

results.json records it so that tables compare like with like: a checkpoint passed by path is still
``ViT-B/32`` if it has ViT-B/32's shapes, and a tiny test model is never mistaken for one.
"""
from __future__ import annotations

import torch
from torch import nn

#: (vision tower, its width, its layers (ViT) or blocks per stage (ResNet), patch, input px, embedding dim,
#: text width) of OpenAI's released models
OPENAI_ARCHITECTURES: dict[tuple, str] = {
    ("ViT", 768, 12, 32, 224, 512, 512): "ViT-B/32",
    ("ViT", 768, 12, 16, 224, 512, 512): "ViT-B/16",
    ("ViT", 1024, 24, 14, 224, 768, 768): "ViT-L/14",
    ("ViT", 1024, 24, 14, 336, 768, 768): "ViT-L/14@336px",
    ("ResNet", 64, (3, 4, 6, 3), None, 224, 1024, 512): "RN50",
    ("ResNet", 64, (3, 4, 23, 3), None, 224, 512, 512): "RN101",
    ("ResNet", 80, (4, 6, 10, 6), None, 288, 640, 640): "RN50x4",
    ("ResNet", 96, (6, 8, 18, 8), None, 384, 768, 768): "RN50x16",
    ("ResNet", 128, (3, 15, 36, 10), None, 448, 1024, 1024): "RN50x64",
}


def architecture_key(clip_model: nn.Module) -> tuple:
    visual = clip_model.visual
    text_width = clip_model.transformer.width
    if hasattr(visual, "transformer"):  # VisionTransformer
        return ("ViT", visual.transformer.width, visual.transformer.layers, visual.conv1.kernel_size[0],
                visual.input_resolution, visual.proj.shape[1], text_width)
    blocks = tuple(len(getattr(visual, f"layer{i}")) for i in range(1, 5))
    return ("ResNet", visual.conv3.out_channels, blocks, None, visual.input_resolution, visual.output_dim, text_width)


def describe_architecture(clip_model: nn.Module) -> str:
    """``ViT-B/32`` for OpenAI's shapes, else e.g. ``custom ViT (width 64, 2 layers, patch 8, 32 px)``."""
    key = architecture_key(clip_model)
    if key in OPENAI_ARCHITECTURES:
        return OPENAI_ARCHITECTURES[key]
    kind, width, layers, patch, resolution, embed_dim, text_width = key
    depth = f"{layers} layers, patch {patch}" if kind == "ViT" else f"blocks {'-'.join(map(str, layers))}"
    return f"custom {kind} (width {width}, {depth}, {resolution} px, embedding {embed_dim}, text width {text_width})"


def random_openai_clip(name: str, seed: int = 0) -> nn.Module:
    """An fp32 CLIP with the shapes of OpenAI's ``name`` and random weights: what a speed or memory measurement
    needs of a real architecture, without its download (the features mean nothing)."""
    from clip.model import CLIP

    shapes = {arch: key for key, arch in OPENAI_ARCHITECTURES.items()}
    if name not in shapes:
        raise ValueError(f"no OpenAI CLIP architecture named {name!r}; known: {', '.join(shapes)}")
    kind, width, layers, patch, resolution, embed_dim, text_width = shapes[name]
    with torch.random.fork_rng(devices=[]):  # the caller's random stream stays as it was
        torch.manual_seed(seed)
        # every released model has a 12-block text tower of 64-wide heads, 77 positions and CLIP's 49,408 tokens
        return CLIP(embed_dim, resolution, layers, width, patch, 77, 49408, text_width, text_width // 64, 12).eval()
