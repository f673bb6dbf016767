"""Negative caption generator of DCAR's Category-Aware Augmentation (docs/dcar.md, "Category-Aware Augmentation").

Every released FDRD *train* JSON has ``negative: []``, so negatives are generated on the fly, freshly at every
call, from the positive caption:

* **category swap**: the own class name is replaced by a *sibling* class (same meta-category), the hard
  negative Fig. 2 draws (Yorkshire Terrier → Wheaten Terrier). Matching is whole-word and case-insensitive, and
  the replacement copies the case style of the match; this avoids the substring bugs of the released test
  negatives ("desert-moon orchid", "air707-320", docs/fdrd.md "The test negatives");
* **attribute swap**: same class, the description (body) of another caption of that class behind the own
  class prefix ("This is a photo of {c}.").

A negative whose text equals the positive is never returned (the released test negatives contain such
byte-identical "negatives"), and duplicates are removed.
"""
from __future__ import annotations

import os.path
import random
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "CategoryAwareNegatives",
    "siblings_from_meta",
    "siblings_from_text_features",
    "NegativeKind",
]

NegativeKind = Literal["category", "attribute"]

# Letters, digits, "_" and "-" continue a word: "cat" must not match in "concatenate", and "rose" must not match
# in "desert-rose" nor "707-320" in "air707-320".
_WORD_BOUNDARY_BEFORE = r"(?<![\w-])"
_WORD_BOUNDARY_AFTER = r"(?![\w-])"
# "This is a photo of X." / "This is a X." at the start of a caption, whatever X is (fallback of category swaps).
_ANY_CLASS_PREFIX = re.compile(
    r"^(?P<lead>\s*this is an? (?:photo of (?:an? |the )?)?)(?P<name>[^.]+?)\.", re.IGNORECASE
)


_SEPARATORS = r"[\s_-]+"  # between the words of a multi-word name: "Yorkshire Terrier", "yorkshire_terrier", "Yorkshire-Terrier"


def _name_words(name: str) -> list[str]:
    return [w for w in re.split(_SEPARATORS, name.strip()) if w]


def english_plural(word: str) -> str:
    """The regular English plural of ``word`` (``terrier``→``terriers``, ``zindex``→``zindexes``,
    ``daisy``→``daisies``); a word that does not end in a letter has none (returns it unchanged)."""
    if not word[-1:].isalpha():
        return word
    if re.search(r"(s|x|z|ch|sh)$", word, re.IGNORECASE):
        return word + ("ES" if word.isupper() else "es")
    if re.search(r"[^aeiou]y$", word, re.IGNORECASE):
        return word[:-1] + ("IES" if word.isupper() else "ies")
    return word + ("S" if word.isupper() else "s")


def _name_pattern(name: str) -> re.Pattern:
    """Every mention of class ``name``: whole words, any case, words joined by spaces, underscores or hyphens,
    singular or regular plural (group ``plural``)."""
    words = _name_words(name)
    head = "".join(re.escape(w) + _SEPARATORS for w in words[:-1])
    last, plural = words[-1], english_plural(words[-1])
    tail = f"(?:(?P<plural>{re.escape(plural)})|{re.escape(last)})" if plural != last else re.escape(last)
    return re.compile(_WORD_BOUNDARY_BEFORE + head + tail + _WORD_BOUNDARY_AFTER, re.IGNORECASE)


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def _title(text: str) -> str:
    """Upper-case the first character of every space/underscore/hyphen-separated word, leave the rest as written."""
    return re.sub(r"(^|[\s_-])(\S)", lambda m: m.group(1) + m.group(2).upper(), text)


def _singular_of_match(matched: str, own_name: str) -> str:
    """A plural mention of ``own_name`` back in the singular, in the mention's own case ("Terriers" -> "Terrier",
    "DAISIES" -> "DAISY")."""
    last = _name_words(own_name)[-1]
    plural = english_plural(last)
    common = len(os.path.commonprefix([last.lower(), plural.lower()]))
    tail = last[common:]
    stem = matched[: len(matched) - (len(plural) - common)]
    return stem + (tail.upper() if stem[-1:].isupper() else tail.lower())


def _in_style_of(matched: str, own_name: str, replacement: str, plural: bool = False) -> str:
    """Write class name ``replacement`` the way the caption wrote its mention ``matched`` of ``own_name``.

    * separators: underscores if the mention has them, hyphens if a multi-word mention is hyphenated, else
      spaces ("yorkshire_terrier", "Yorkshire-Terrier", "yorkshire terrier");
    * a mention written exactly as the own class name is (its canonical spelling, underscores or spaces) → the
      replacement's canonical spelling, so proper names such as "Cessna 172" or "A300B4" survive;
    * all lower → lower; all upper (two letters or more) → UPPER;
    * Capitalised: every word capitalised (or a single word) → every word capitalised ("Wheaten Terrier");
      only the first word → only the first letter ("Wheaten terrier");
    * a plural mention gets the replacement's plural ("Yorkshire Terriers" → "Wheaten Terriers").
    """
    singular = _singular_of_match(matched, own_name) if plural else matched
    words = _name_words(replacement)
    if "_" in singular:
        text = "_".join(words) if "_" not in replacement else replacement
    elif len(_name_words(own_name)) > 1 and re.search(r"\w-\w", singular) and "-" not in own_name:
        text = "-".join(words)
    else:
        text = replacement.replace("_", " ")
    canonical = {own_name, own_name.replace("_", " ")}
    letters = [c for c in singular if c.isalpha()]
    if singular in canonical or not letters:
        pass
    elif all(c.islower() for c in letters):
        text = text.lower()
    elif len(letters) > 1 and all(c.isupper() for c in letters):
        text = text.upper()
    elif all(w[0].isupper() for w in re.split(_SEPARATORS, singular) if w and w[0].isalpha()):
        text = _title(text)
    else:
        text = _upper_first(text)
    if plural:
        head, sep, last = text.rpartition(" ") if " " in text else ("", "", text)
        if not sep:
            for separator in ("_", "-"):
                if separator in text:
                    head, sep, last = text.rpartition(separator)
                    break
        text = head + sep + english_plural(last)
    return text


def _lazy_shuffle(rng: random.Random, items: Sequence) -> Iterator:
    """Yield ``items`` in a uniformly random order, drawing only as many as the consumer takes."""
    pool = list(items)
    for i in range(len(pool)):
        j = rng.randrange(i, len(pool))
        pool[i], pool[j] = pool[j], pool[i]
        yield pool[i]


def _canonical_name(name: str) -> str:
    return " ".join(name.replace("_", " ").split()).casefold()


def siblings_from_meta(classnames: Sequence[str], meta: Mapping[str, Sequence[str]]) -> dict[int, list[int]]:
    """Siblings from a meta-category table ``{meta name: [class names]}`` (Pets cat/dog, Aircraft manufacturer, ...).

    ``siblings[c]`` lists, in increasing order, the other classes sharing at least one meta-category with c;
    classes in no meta-category get ``[]`` (the generator then draws from all classes). Names are matched
    ignoring case, underscores and repeated spaces. Names of ``meta`` absent from ``classnames`` are ignored,
    because a split may keep only a subset of classes (base/new sub-sampling).
    """
    index_by_name: dict[str, list[int]] = {}
    for index, name in enumerate(classnames):
        index_by_name.setdefault(_canonical_name(name), []).append(index)
    siblings: dict[int, set[int]] = {c: set() for c in range(len(classnames))}
    for members in meta.values():
        group = sorted({i for name in members for i in index_by_name.get(_canonical_name(name), [])})
        for c in group:
            siblings[c].update(other for other in group if other != c)
    return {c: sorted(others) for c, others in siblings.items()}


def siblings_from_text_features(features: Tensor, top_k: int = 10) -> dict[int, list[int]]:
    """Siblings as the ``top_k`` nearest other classes by cosine similarity of class-name text features [C, E].

    For domains without an official hierarchy (Flowers, Food, Caltech, DTD). Lists are ordered by decreasing
    similarity, lower index first among ties; ``top_k`` is capped at C - 1.
    """
    if features.dim() != 2:
        raise ValueError(f"features must be [C, E], got shape {tuple(features.shape)}")
    num_classes = features.shape[0]
    k = max(0, min(top_k, num_classes - 1))
    normed = F.normalize(features.detach().float(), dim=-1)
    similarity = normed @ normed.T
    similarity.fill_diagonal_(float("-inf"))
    order = torch.sort(similarity, dim=1, descending=True, stable=True).indices[:, :k]
    return {c: order[c].tolist() for c in range(num_classes)}


class CategoryAwareNegatives:
    """Draws ``num_category`` category swaps and ``num_attribute`` attribute swaps per positive caption.

    Args:
        classnames: class names as in the dataset (``"yorkshire_terrier"``, ``"Apply_Eye_Makeup"``).
        captions_by_class: training captions of each class; the attribute swaps come from here.
        siblings: ``siblings[c]`` = classes of c's meta-category (see :func:`siblings_from_meta` and
            :func:`siblings_from_text_features`). A class without siblings swaps with any other class.
        num_category, num_attribute: negatives of each kind. When a class has no second distinct description,
            the missing attribute swaps are replaced by extra category swaps, so K stays constant when the
            sibling pool allows it; category swaps are never topped up with non-siblings, so the result can be
            shorter than K (the loss masks missing candidates).
        seed: seed of the generator's own ``random.Random``, used when :meth:`sample` gets no ``rng``.
    """

    def __init__(
        self,
        classnames: Sequence[str],
        captions_by_class: Mapping[int, Sequence[str]],
        siblings: Mapping[int, Sequence[int]],
        num_category: int = 2,
        num_attribute: int = 2,
        seed: int = 0,
    ) -> None:
        if num_category < 0 or num_attribute < 0:
            raise ValueError("num_category and num_attribute must be >= 0")
        self.classnames = list(classnames)
        num_classes = len(self.classnames)
        self.num_category = num_category
        self.num_attribute = num_attribute
        self._rng = random.Random(seed)

        self._name_patterns = [_name_pattern(name) for name in self.classnames]
        self._prefix_patterns = [
            re.compile(r"^\s*this is an? (?:photo of (?:an? |the )?)?(?:" + _name_pattern(name).pattern + r")\.",
                       re.IGNORECASE)
            for name in self.classnames
        ]

        for c in list(captions_by_class) + list(siblings):
            if not 0 <= int(c) < num_classes:
                raise ValueError(f"class index {c} out of range for {num_classes} classes")
        self._captions = {
            int(c): list(dict.fromkeys(captions)) for c, captions in captions_by_class.items()
        }
        self._category_pool: list[list[int]] = []
        for c in range(num_classes):
            pool = [int(s) for s in dict.fromkeys(siblings.get(c, [])) if int(s) != c]
            for s in pool:
                if not 0 <= s < num_classes:
                    raise ValueError(f"sibling {s} of class {c} out of range for {num_classes} classes")
            self._category_pool.append(pool or [s for s in range(num_classes) if s != c])

    @property
    def num_negatives(self) -> int:
        """K, the number of negatives a call returns when enough candidates exist."""
        return self.num_category + self.num_attribute

    def split_prefix(self, caption: str, label: int) -> tuple[str | None, str]:
        """``(class prefix sentence, body)``; the prefix is ``None`` when the caption does not start with one."""
        match = self._prefix_patterns[label].match(caption)
        if match is None:
            return None, caption
        return caption[: match.end()], caption[match.end():]

    def category_swap(self, caption: str, label: int, target: int) -> str:
        """The caption with class ``label`` renamed to class ``target`` (see the class docstring for the rules)."""
        own = self.classnames[label]
        replacement = self.classnames[target]
        pattern = self._name_patterns[label]
        if pattern.search(caption):
            return pattern.sub(lambda m: _in_style_of(m.group(0), own, replacement, m.group("plural") is not None
                                                      if "plural" in pattern.groupindex else False), caption)
        prefix = _ANY_CLASS_PREFIX.match(caption)
        if prefix is not None:
            name = _in_style_of(prefix.group("name"), own, replacement)
            return caption[: prefix.start("name")] + name + caption[prefix.end("name"):]
        return f"This is a photo of {replacement.replace('_', ' ')}. {caption}"

    def _attribute_texts(self, caption: str, label: int, rng: random.Random) -> Iterator[str]:
        """Same-class captions, in random order, with their body behind the positive's own class prefix."""
        own_prefix, _ = self.split_prefix(caption, label)
        for other in _lazy_shuffle(rng, self._captions.get(label, [])):
            if own_prefix is None:
                yield other
            else:
                yield own_prefix + self.split_prefix(other, label)[1]

    def sample(
        self, caption: str, label: int, rng: random.Random | None = None
    ) -> list[tuple[str, int, NegativeKind]]:
        """Fresh negatives for one positive: ``[(text, class index, kind), ...]``, category swaps first.

        Never contains ``caption`` itself nor duplicates. ``rng`` defaults to the generator's seeded one, so a
        run is reproducible for a given seed and call order.
        """
        if not 0 <= label < len(self.classnames):
            raise ValueError(f"label {label} out of range for {len(self.classnames)} classes")
        rng = self._rng if rng is None else rng
        seen = {caption}

        attribute: list[tuple[str, int, NegativeKind]] = []
        if self.num_attribute > 0:
            for text in self._attribute_texts(caption, label, rng):
                if len(attribute) == self.num_attribute:
                    break
                if text not in seen:
                    seen.add(text)
                    attribute.append((text, label, "attribute"))

        wanted = self.num_category + (self.num_attribute - len(attribute))
        category: list[tuple[str, int, NegativeKind]] = []
        if wanted > 0:
            for target in _lazy_shuffle(rng, self._category_pool[label]):
                if len(category) == wanted:
                    break
                text = self.category_swap(caption, label, target)
                if text not in seen:
                    seen.add(text)
                    category.append((text, target, "category"))
        return category + attribute
