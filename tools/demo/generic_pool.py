"""The generic image-caption pool the tiny CLIP is pretrained on.

It plays the role of CLIP's web data: the same renderer and attribute words as the synthetic domain,
but every shape family, colour and pattern combination, and only generic nouns ("a large red
star-shaped object", "two small blue stars"). So the model learns attributes, never the domain's
invented subcategory names. Nothing here may mention a domain class name; the test checks this
against :func:`pretraining_vocabulary`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tools.demo.files import sha256_of
from tools.demo.drawing import SHAPE_NAMES, render
from tools.demo.scenes import (
    GENERIC_NOUNS,
    Mentions,
    SceneAttributes,
    caption_vocabulary,
    describe,
    photo_prefix,
    plural_of,
    sample_scene,
)

_POOL_STREAM = 7_919  # keeps pool draws independent of the domain's draws for the same seed
_POOL_COUNT_WEIGHTS = (0.5, 0.3, 0.2)
# Web captions are partial too: an identity attribute is sometimes left unsaid, so the text encoder
# learns that a missing word means "unknown", the situation it meets in domain captions.
_POOL_MENTION_RATE = 0.8
# Nuisance is stated less often than identity. Stated always, the background alone (12 tone x tint
# combinations) and the size tell most of a 256-image batch apart, and pretraining never learns shape
# or colour: measured, a nearest-centroid probe on the frozen image features then read shape at 31%
# (chance 17%) and colour at 61% (docs/dcar.md, "The embedded benchmark").
_POOL_NUISANCE_RATE = 0.3


@dataclass(frozen=True)
class GenericPool:
    images: np.ndarray  # uint8, (N, H, W, 3)
    captions: list[str]


def generic_caption(rng: np.random.Generator, attributes: SceneAttributes) -> str:
    """Name the object by its shape word or a generic noun, with the Format A prefix half the time.

    The prefix teaches "This is a photo of X." so the domain's prefix is not out of distribution;
    the "<shape>-shaped <noun>" form is what the domain captions use around an invented name.
    """
    if rng.random() < 0.5:
        noun, shaped = attributes.shape, False  # "a red star" already names the shape
    else:
        noun, shaped = GENERIC_NOUNS[int(rng.integers(len(GENERIC_NOUNS)))], bool(rng.random() < _POOL_MENTION_RATE)
    nuisance = [bool(rng.random() < _POOL_NUISANCE_RATE) for _ in range(4)]
    mentions = Mentions(
        shape=shaped, colour=bool(rng.random() < _POOL_MENTION_RATE), pattern=bool(rng.random() < _POOL_MENTION_RATE),
        size=nuisance[0], background=nuisance[1], background_tint=nuisance[1] and bool(rng.random() < 0.5),
        position=nuisance[2], tilt=nuisance[3],
    )
    body = describe(attributes, noun, plural_of(noun), mentions, template=int(rng.integers(3)))
    return photo_prefix(noun) + body if rng.random() < 0.5 else body


def generate_generic_pool(size: int, seed: int = 0, image_size: int = 32) -> GenericPool:
    """``size`` random scenes over every shape, colour and pattern, with their generic captions."""
    rng = np.random.default_rng([seed, _POOL_STREAM])
    images = np.empty((size, image_size, image_size, 3), dtype=np.uint8)
    captions: list[str] = []
    for index in range(size):
        shape = SHAPE_NAMES[index % len(SHAPE_NAMES)]  # balanced shape families
        attributes, scene = sample_scene(rng, shape=shape, count_weights=_POOL_COUNT_WEIGHTS)
        images[index] = render(scene, image_size)
        captions.append(generic_caption(rng, attributes))
    return GenericPool(images=images, captions=captions)


def pool_fingerprint() -> str:
    """Hash of a small fixed sample of the pool: changes whenever drawing or caption code changes.

    Stored in the tiny CLIP's recipe record, so cached weights pretrained on an older pool are not
    silently reused after an edit to the renderer or the templates.
    """
    sample = generate_generic_pool(16, seed=12_345)
    return sha256_of(sample.images.tobytes() + "\n".join(sample.captions).encode("utf-8"))


def pretraining_vocabulary() -> frozenset[str]:
    """Every word a pretraining caption can contain."""
    return caption_vocabulary()
