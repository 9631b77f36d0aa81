"""Hashed word and character-trigram ids (the Que2Search / DPSR text features).

A text becomes a bag of ids in ``[1, buckets)`` (0 is reserved for padding): one id per word,
per adjacent word pair, and per character trigram of ``#word#``. Hashing needs no vocabulary,
so unseen words and typos of seen ones still share trigrams, and nothing depends on which
queries or items were in training.
"""

from __future__ import annotations

import re
import zlib

_TOKEN = re.compile(r"[a-z0-9]+")
MAX_NGRAMS = 96


def tokenize(text: str) -> list[str]:
    """Lower-cased alphanumeric words."""
    return _TOKEN.findall(text.lower())


def _hash(kind: bytes, s: str, buckets: int) -> int:
    return 1 + zlib.crc32(kind + s.encode()) % (buckets - 1)


def ngram_ids(text: str, buckets: int, max_ngrams: int = MAX_NGRAMS) -> list[int]:
    """Hashed ids of the words, word bigrams and character trigrams of ``text``.

    Words come first so that truncation to ``max_ngrams`` keeps the most specific features.
    """
    if buckets < 2:
        raise ValueError("buckets must be >= 2")
    words = tokenize(text)
    ids = [_hash(b"w", w, buckets) for w in words]
    ids += [_hash(b"b", f"{a} {b}", buckets) for a, b in zip(words, words[1:], strict=False)]
    for w in words:
        padded = f"#{w}#"
        ids += [_hash(b"c", padded[i : i + 3], buckets) for i in range(len(padded) - 2)]
    return ids[:max_ngrams]


def hashed_id(value: str, buckets: int) -> int:
    """A categorical value (category, brand) as one id in ``[1, buckets)``; ``""`` -> 0."""
    value = value.strip().lower()
    return _hash(b"v", value, buckets) if value else 0
