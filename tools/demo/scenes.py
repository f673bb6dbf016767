"""Attribute vocabulary, scene sampling and caption writing shared by the domain and the pretraining pool.

The point of one shared module: the pretraining captions teach the tiny CLIP exactly the attribute
words ("large", "red", "striped", "star-shaped", "on a pale background") that the synthetic domain's
captions use, so zero-shot retrieval can work through attributes while the invented subcategory
names stay unknown. Anything that makes a caption (templates, words) lives here and only here, which
is also what lets :func:`caption_vocabulary` list every word pretraining can ever see.
"""
from __future__ import annotations

import colorsys
import math
import re
from dataclasses import dataclass

import numpy as np

from tools.demo.drawing import (
    PATTERN_NAMES,
    ROTATION_INVARIANT_SHAPES,
    SHAPE_NAMES,
    DrawnObject,
    Scene,
    pattern_colour,
)

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (205, 35, 35),
    "orange": (240, 135, 25),
    "yellow": (235, 205, 35),
    "green": (45, 160, 60),
    "teal": (25, 150, 150),
    "blue": (40, 75, 215),
    "purple": (135, 55, 185),
    "pink": (240, 125, 175),
    "brown": (135, 85, 40),
    "grey": (130, 130, 130),
}
SIZES: tuple[str, ...] = ("small", "large")
BACKGROUNDS: tuple[str, ...] = ("pale", "dark")
# Background tints, named by hue; hues are drawn near the bin centre so the name is never ambiguous.
BACKGROUND_TINTS: tuple[str, ...] = ("red", "yellow", "green", "teal", "blue", "purple")
COUNT_WORDS: dict[int, str] = {1: "a", 2: "two", 3: "three"}
TILT_PHRASES: dict[str, str] = {"upright": "upright", "tilted": "slightly rotated"}

# Radius ranges (fraction of the image side) per (count, size): several objects must fit side by side.
_RADIUS_RANGES: dict[tuple[int, str], tuple[float, float]] = {
    (1, "small"): (0.17, 0.22),
    (1, "large"): (0.31, 0.38),
    (2, "small"): (0.11, 0.14),
    (2, "large"): (0.18, 0.21),
    (3, "small"): (0.10, 0.12),
    (3, "large"): (0.15, 0.17),
}
_UPRIGHT_MAX_DEG = 4.0
_TILT_RANGE_DEG = (14.0, 30.0)  # below 45 degrees, so a tilted square never reads as a diamond
_COLOUR_JITTER = 12
_NOISE_RANGE = (2.0, 8.0)

_PATTERN_WITH: dict[str, str] = {
    "plain": "with a plain surface",
    "striped": "with {stripes} thin stripes",
    "dotted": "covered in small dots",
    "checkered": "with a checkered pattern",
    "bordered": "with a thick border",
}
_PATTERN_ADJECTIVE: dict[str, str] = {
    "plain": "plain",
    "striped": "striped",
    "dotted": "dotted",
    "checkered": "checkered",
    "bordered": "bordered",
}
_NUMBER_WORDS: dict[int, str] = {2: "two", 3: "three", 4: "four"}

# Body templates. Fields: np/NP (noun phrase), pattern_with (" with ..." or ""), on_background / set_against
# (" on a pale red background" / ", set against a pale red background" or ""), where (", in the centre" or ""),
# tilt (", slightly rotated" or ""), state (" It is striped." or "").
BODY_TEMPLATES: tuple[str, ...] = (
    "{NP}{pattern_with}{on_background}{where}{tilt}.",
    "The image shows {np}{pattern_with}{set_against}{where}{tilt}.",
    "{NP}{on_background}{where}.{state}",
)
ON_BACKGROUND = " on a {} background"
SET_AGAINST = ", set against a {} background"
PHOTO_PREFIX = "This is a photo of {name}."  # FDRD Format A prefix: no space follows the period.

# Nouns the pretraining captions use where the domain puts an invented subcategory name.
GENERIC_NOUNS: tuple[str, ...] = ("object", "shape", "figure", "sign", "token", "symbol", "item", "thing")

_POSITION_PHRASES: dict[tuple[int, int], str] = {
    (0, 0): "in the top left corner",
    (0, 1): "at the top",
    (0, 2): "in the top right corner",
    (1, 0): "on the left",
    (1, 1): "in the centre",
    (1, 2): "on the right",
    (2, 0): "in the bottom left corner",
    (2, 1): "at the bottom",
    (2, 2): "in the bottom right corner",
}


@dataclass(frozen=True)
class SceneAttributes:
    """What a caption may say about an image; everything here is visible in the pixels."""

    shape: str
    colour: str
    pattern: str
    count: int
    size: str
    background: str  # tone: "pale" / "dark"
    background_tint: str
    position: str | None  # only for single objects
    tilt: str | None  # "upright" / "tilted"; None for several objects or rotation-invariant shapes
    stripes: int


def _pick(rng: np.random.Generator, options: tuple[str, ...] | list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _background_rgb(tone: str, tint: str, rng: np.random.Generator) -> tuple[int, int, int]:
    hue = (BACKGROUND_TINTS.index(tint) + float(rng.uniform(-0.25, 0.25))) / len(BACKGROUND_TINTS)
    hue %= 1.0
    if tone == "pale":
        saturation, value = rng.uniform(0.12, 0.28), rng.uniform(0.86, 0.96)
    else:
        saturation, value = rng.uniform(0.35, 0.6), rng.uniform(0.12, 0.24)
    red, green, blue = colorsys.hsv_to_rgb(hue, float(saturation), float(value))
    return int(round(red * 255)), int(round(green * 255)), int(round(blue * 255))


def _jittered(colour: tuple[int, int, int], rng: np.random.Generator, amount: int = _COLOUR_JITTER) -> tuple[int, int, int]:
    jitter = rng.integers(-amount, amount + 1, size=3)
    red, green, blue = (int(np.clip(c + j, 0, 255)) for c, j in zip(colour, jitter))
    return red, green, blue


#: every position phrase a caption can use
POSITION_PHRASES: tuple[str, ...] = tuple(_POSITION_PHRASES.values())


def _position_phrase(x: float, y: float) -> str:
    column = min(int(x * 3), 2)
    row = min(int(y * 3), 2)
    return _POSITION_PHRASES[(row, column)]


def _sample_angle(rng: np.random.Generator, tilted: bool) -> float:
    if tilted:
        degrees = rng.uniform(*_TILT_RANGE_DEG) * (1 if rng.random() < 0.5 else -1)
    else:
        degrees = rng.uniform(-_UPRIGHT_MAX_DEG, _UPRIGHT_MAX_DEG)
    return math.radians(float(degrees))


def _place_centres(rng: np.random.Generator, count: int, radius: float) -> list[tuple[float, float]]:
    """Non-overlapping centres by rejection sampling; shrinking the gap is a safe fallback."""
    gap = 0.04
    for attempt in range(200):
        centres = [tuple(rng.uniform(radius, 1.0 - radius, size=2)) for _ in range(count)]
        if all(
            math.dist(a, b) >= 2 * radius + gap for i, a in enumerate(centres) for b in centres[i + 1 :]
        ):
            return [(float(x), float(y)) for x, y in centres]
        if attempt == 100:
            gap = 0.0
    raise RuntimeError(f"could not place {count} objects of radius {radius}")


def sample_scene(
    rng: np.random.Generator,
    shape: str | None = None,
    colour: str | None = None,
    pattern: str | None = None,
    count_weights: tuple[float, float, float] = (0.6, 0.3, 0.1),
    rgb: tuple[int, int, int] | None = None,
    colour_jitter: int | None = None,
) -> tuple[SceneAttributes, Scene]:
    """Sample one image: fixed class-defining attributes, everything else (the nuisance) drawn from ``rng``.

    ``rgb`` paints the object in that exact shade instead of the named colour's (``colour`` still names it),
    with ``colour_jitter`` (default ±12 per channel) of per-image variation."""
    shape = shape or _pick(rng, SHAPE_NAMES)
    colour = colour or _pick(rng, list(COLOURS))
    pattern = pattern or _pick(rng, PATTERN_NAMES)
    count = int(rng.choice([1, 2, 3], p=np.asarray(count_weights) / sum(count_weights)))
    size = _pick(rng, SIZES)
    background = _pick(rng, BACKGROUNDS)
    tint = _pick(rng, BACKGROUND_TINTS)
    stripes = int(rng.integers(2, 4))
    low, high = _RADIUS_RANGES[(count, size)]
    radius = float(rng.uniform(low, high))
    centres = _place_centres(rng, count, radius)
    tilted = bool(rng.random() < 0.5)
    rgb = _jittered(rgb or COLOURS[colour], rng, _COLOUR_JITTER if colour_jitter is None else colour_jitter)
    secondary = pattern_colour(rgb, on_dark_background=background == "dark")
    objects = tuple(
        DrawnObject(
            shape=shape,
            colour=rgb,
            pattern=pattern,
            centre=centre,
            radius=radius,
            angle=_sample_angle(rng, tilted if count == 1 else bool(rng.random() < 0.5)),
            pattern_colour=secondary,
            stripes=stripes,
        )
        for centre in centres
    )
    scene = Scene(
        background=_background_rgb(background, tint, rng),
        objects=objects,
        noise_std=float(rng.uniform(*_NOISE_RANGE)),
        noise_seed=int(rng.integers(2**31)),
    )
    single = count == 1
    attributes = SceneAttributes(
        shape=shape,
        colour=colour,
        pattern=pattern,
        count=count,
        size=size,
        background=background,
        background_tint=tint,
        position=_position_phrase(*centres[0]) if single else None,
        tilt=("tilted" if tilted else "upright") if single and shape not in ROTATION_INVARIANT_SHAPES else None,
        stripes=stripes,
    )
    return attributes, scene


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


@dataclass(frozen=True)
class Mentions:
    """Which identity attributes a caption states; nuisance attributes (count, size, background,
    position, tilt) are always stated. Leaving identity attributes out is what makes a domain
    fine-grained: the class name then carries information the generic words do not."""

    shape: bool = True
    colour: bool = True
    pattern: bool = True
    #: nuisance: the size, the background (tone, and its hue after it: "pale red"), position and tilt
    size: bool = True
    background: bool = True
    background_tint: bool = True
    position: bool = True
    tilt: bool = True


def _state_sentence(attributes: SceneAttributes, mentions: Mentions, be: str) -> str:
    """Template 2's second sentence ("It is striped, slightly rotated."), or nothing to say."""
    parts = [_PATTERN_ADJECTIVE[attributes.pattern]] if mentions.pattern else []
    if attributes.tilt and mentions.tilt:
        parts.append(TILT_PHRASES[attributes.tilt])
    return f" {be} {', '.join(parts)}." if parts else ""


def describe(attributes: SceneAttributes, noun: str, plural: str, mentions: Mentions, template: int) -> str:
    """One caption body for ``attributes``; ``noun`` is a class name in the domain, a generic word in pretraining."""
    count = attributes.count
    words = [COUNT_WORDS[count]] + ([attributes.size] if mentions.size else [])
    if mentions.colour:
        words.append(attributes.colour)
    if mentions.shape:
        words.append(f"{attributes.shape}-shaped")
    words.append(noun if count == 1 else plural)
    noun_phrase = " ".join(words)
    pattern_with = _PATTERN_WITH[attributes.pattern].format(stripes=_NUMBER_WORDS[attributes.stripes])
    be = "It is" if count == 1 else "They are"
    background = f"{attributes.background} {attributes.background_tint}" if mentions.background_tint \
        else attributes.background
    fields = {
        "np": noun_phrase,
        "NP": _capitalised(noun_phrase),
        "pattern_with": f" {pattern_with}" if mentions.pattern else "",
        "on_background": ON_BACKGROUND.format(background) if mentions.background else "",
        "set_against": SET_AGAINST.format(background) if mentions.background else "",
        "where": f", {attributes.position}" if attributes.position and mentions.position else "",
        "tilt": f", {TILT_PHRASES[attributes.tilt]}" if attributes.tilt and mentions.tilt else "",
        "state": _state_sentence(attributes, mentions, be),
    }
    return BODY_TEMPLATES[template % len(BODY_TEMPLATES)].format(**fields)


def photo_prefix(name: str) -> str:
    """The FDRD Format A caption head, ``This is a photo of {name}.``"""
    return PHOTO_PREFIX.format(name=name)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", re.sub(r"\{[^}]*\}", " ", text).lower()))


def caption_vocabulary() -> frozenset[str]:
    """Every word a pretraining caption can contain (templates, attribute words, generic nouns, plurals)."""
    words: set[str] = set()
    for text in (*BODY_TEMPLATES, PHOTO_PREFIX, ON_BACKGROUND, SET_AGAINST, *_PATTERN_WITH.values(),
                 *_PATTERN_ADJECTIVE.values()):
        words |= _words(text)
    for text in (*_POSITION_PHRASES.values(), *TILT_PHRASES.values(), *COUNT_WORDS.values(), *_NUMBER_WORDS.values()):
        words |= _words(text)
    words |= set(COLOURS) | set(SIZES) | set(BACKGROUNDS) | set(BACKGROUND_TINTS)
    words |= {"it", "is", "they", "are", "shaped"}
    for noun in (*GENERIC_NOUNS, *SHAPE_NAMES):
        words |= {noun, plural_of(noun)}
    return frozenset(words)


def plural_of(noun: str) -> str:
    """English-ish plural, good enough for shape words, generic nouns and invented names."""
    if noun.endswith(("s", "x", "sh", "ch")):
        return noun + "es"
    return noun + "s"
