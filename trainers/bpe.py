"""CLIP's BPE tokenizer, built once per process for every layer that counts or encodes tokens (the prompted
text encoder, CoOp's class-name lengths, the caption datasets' length report, the demo's name generator).

On the bottom floor so that the datasets may use it too; ``clip`` is imported on first use only.
"""
from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clip.simple_tokenizer import SimpleTokenizer


@lru_cache(maxsize=1)
def clip_bpe() -> SimpleTokenizer:
    """The tokenizer (it reads a 1.3 MB vocabulary and builds its merge table: about a second)."""
    from clip.simple_tokenizer import SimpleTokenizer

    return SimpleTokenizer()


@lru_cache(maxsize=200_000)
def bpe_ids(text: str) -> tuple[int, ...]:
    """BPE ids of one text, without SOT/EOT; memoised because captions and generated negatives recur every epoch."""
    return tuple(clip_bpe().encode(text))


def count_bpe_tokens(text: str) -> int:
    """How many BPE tokens ``text`` becomes on its own (CoOp's ``name_lens``)."""
    return len(bpe_ids(text))
