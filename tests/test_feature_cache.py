"""The image-feature cache key changes with anything that changes the features; hits load what was stored."""
from __future__ import annotations

import os

import pytest
import torch

from trainers.engine.feature_cache import ImageFeatureCache, cache_key


def test_key_depends_on_backbone_transform_precision_and_images(tmp_path):
    image = tmp_path / "a.jpg"
    image.write_bytes(b"x")
    base = cache_key("ViT-B/32", "Compose(resize 224)", "fp16", [str(image)])
    assert base == cache_key("ViT-B/32", "Compose(resize 224)", "fp16", [str(image)])
    assert base != cache_key("ViT-B/16", "Compose(resize 224)", "fp16", [str(image)])
    assert base != cache_key("ViT-B/32", "Compose(resize 336)", "fp16", [str(image)])
    assert base != cache_key("ViT-B/32", "Compose(resize 224)", "fp32", [str(image)])
    image.write_bytes(b"xy")  # the image changed on disk
    assert base != cache_key("ViT-B/32", "Compose(resize 224)", "fp16", [str(image)])


def test_get_or_compute_stores_then_hits(tmp_path):
    cache = ImageFeatureCache(tmp_path)
    calls = []
    features = torch.randn(5, 8)
    compute = lambda: calls.append(1) or features  # noqa: E731
    first, hit1 = cache.get_or_compute("k", compute)
    second, hit2 = cache.get_or_compute("k", compute)
    assert (hit1, hit2) == (False, True) and len(calls) == 1 and torch.equal(first, second)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    (tmp_path / "k.pt").write_bytes(b"truncated")
    again, hit3 = cache.get_or_compute("k", compute)
    assert not hit3 and torch.equal(again, features)


def test_a_model_that_changes_the_image_path_must_say_whether_it_stays_frozen():
    from trainers.backbone.prompted_clip import PromptedCLIP

    with pytest.raises(TypeError, match="image_path_frozen"):
        class Undeclared(PromptedCLIP):  # noqa: F841 - its definition is the test
            def raw_image_features(self, images):
                return images

    class Declared(PromptedCLIP):
        image_path_frozen = False

        def visual_prompts(self, images):
            return None

    assert Declared.image_path_frozen is False and PromptedCLIP.image_path_frozen is True
