"""The lexical channel's terms: what an item's text and a query say, word for word.

A shopper who types a product's name wants that product, and a learnt embedding that groups
items by colour and type cannot always single it out. The lexical channel matches words: each
item is a bag of terms (title, description, brand and category; case-folded words of any
script, English stop words dropped, Snowball-stemmed), each term a stable 32-bit id (CRC32 of
the stem, so no vocabulary is stored and a new item's words need nothing from training). The
index holds them as a sparse vector, weight 2 for a title's terms and 1 for the others', and
weighs terms by their inverse document frequency itself (Qdrant's IDF modifier), so a query's
score against an item is the IDF mass of the query's terms it holds, its title's counted twice
(``mrse.index.hybrid``).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import Stemmer

from mrse.data.products import words

# bm25s's English list (the BM25 baseline's), so both lexical methods drop the same words
STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their "
    "then there these they this to was will with".split()
)
MAX_TERMS = 256  # an item's distinct terms kept (title first): bounds a point's sparse vector
TITLE_WEIGHT = 2.0  # a title term's weight in the sparse vector (others weigh 1)
MIN_VARIANT_LETTERS = 4  # shorter words are not read as their spelling variants
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


@lru_cache(maxsize=1)
def _stemmer() -> Stemmer.Stemmer:
    return Stemmer.Stemmer("english")


def terms(text: str | None) -> list[str]:
    """The stemmed, non-stop words of ``text`` in order (repeats kept)."""
    ws = [w for w in words(text) if w not in STOPWORDS]
    return _stemmer().stemWords(ws) if ws else []


def term_id(term: str) -> int:
    """A term's id in the sparse vector: CRC32 of its UTF-8 bytes (0 .. 2**32 - 1)."""
    return zlib.crc32(term.encode())


def term_ids(texts: Iterable[str | None], limit: int = MAX_TERMS) -> list[int]:
    """The distinct term ids of ``texts`` (first occurrence first, at most ``limit``)."""
    out: dict[int, None] = {}
    for text in texts:
        for t in terms(text):
            out.setdefault(term_id(t), None)
            if len(out) >= limit:
                return list(out)
    return list(out)


def item_terms(title: str, description: str, brand: str, category: str) -> dict[int, float]:
    """An item's distinct term ids and their weights: ``TITLE_WEIGHT`` for its title's, 1 for
    its brand's, category's and description's (at most ``MAX_TERMS``, title first)."""
    out = {t: TITLE_WEIGHT for t in term_ids((title,))}
    for t in term_ids((brand, category.replace(">", " "), description)):
        if len(out) >= MAX_TERMS:
            break
        out.setdefault(t, 1.0)
    return out


def query_terms(query: str) -> list[int]:
    """A query's distinct term ids (empty for a query of stop words or punctuation only)."""
    return [t.term for t in lexical_query(query)]


def vocabulary(queries: Iterable[str]) -> np.ndarray:
    """The distinct term ids of ``queries`` (a query log), sorted (uint32)."""
    ids = {q.term for text in queries for q in lexical_query(text)}
    return np.array(sorted(ids), dtype=np.uint32)


@dataclass(frozen=True)
class QueryTerm:
    """One distinct term of a query and the word it was typed as (its spelling variants are
    looked up when no item has the term)."""

    term: int
    word: str


def lexical_query(query: str) -> tuple[QueryTerm, ...]:
    """A query's distinct terms with their words, in order."""
    ws = [w for w in words(query) if w not in STOPWORDS]
    out: dict[int, QueryTerm] = {}
    for w, stem in zip(ws, _stemmer().stemWords(ws) if ws else [], strict=True):
        t = term_id(stem)
        out.setdefault(t, QueryTerm(t, w))
    return tuple(out.values())


@lru_cache(maxsize=4096)
def variants(word: str) -> tuple[int, ...]:
    """The term ids of ``word``'s spelling variants one edit away (dropped, added, replaced or
    swapped letters; a-z), stemmed, without the word's own; none for words under 4 letters or
    with other characters."""
    if len(word) < MIN_VARIANT_LETTERS or not (word.isascii() and word.isalpha()):
        return ()
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    edits = {a + b[1:] for a, b in splits if b}
    edits |= {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
    edits |= {a + c + b[1:] for a, b in splits if b for c in _LETTERS}
    edits |= {a + c + b for a, b in splits for c in _LETTERS}
    edits.discard(word)
    own = term_id(_stemmer().stemWord(word))
    ids = {term_id(s) for s in _stemmer().stemWords(sorted(edits))}
    ids.discard(own)
    return tuple(sorted(ids))
