"""Hybrid retrieval: the lexical channel fused with the dense one, as pure functions.

The dense channel (the towers' vectors) ranks by what a query means; it can miss the very
product a shopper names. The lexical channel finds the items whose text holds the query's
words (``mrse.features.lexical``: an item's terms are a binary sparse vector, and the engine
weighs each term by its inverse document frequency, so an item's lexical score is the IDF
mass of the query terms it contains). Fusion is gated by coverage:

    coverage(item) = IDF mass of the query's terms the item contains / IDF mass of them all
    score(item)    = dense(item) + weight * clip((coverage - threshold) / (1 - threshold), 0, 1)

An item that contains every term of a named product gets ``weight`` on top of its dense score
(with the default ``weight`` of 1, above every item that does not, when both sit in the dense
channel's usual range), one that contains rare words of the query but not all gets part of it,
and an item that shares only common words gets nothing, whatever BM25 would say. An item whose
title holds every term gains up to ``title_bonus`` more, in proportion to how much of its title
the query is (a shopper who types ``squared top`` means the product called that before the ones
whose descriptions mention a squared top, and before ``squared top with frill``): title terms
weigh 2 in the sparse vector (``mrse.features.lexical.TITLE_WEIGHT``), 1 elsewhere, as field
boosts weigh a title in BM25F.

Each query term is a ``Slot``: the term itself, or, for a word no item has (a misspelling),
the set of its spelling variants that items do have (``mrse.features.lexical.variants``); an
item covers a slot when it has any of its terms, and the slot weighs as its most common term.
A word with no variant in any item counts as the rarest word there is.

The lexical channel answers what the towers were never taught. A trained run keeps the words
of the query log it learnt from (``Run.taught``: on ``hm`` 105 words, colours and product types);
a query made only of those words (``navy blue shirts for men``) is one the towers were trained
for, and is theirs alone: the words of a fashion catalog's texts match such attribute queries
loosely (``t-shirt`` for ``tshirts``, ``red and black`` for ``black``), and boosting them cost
the benchmark queries 5%. A query with a word the log never had (a product's name, a model
number, a misspelling, a description) is where the towers may have nothing to go on, and the
words decide among the items that hold them. A run saved without its words is fused on every
query.

Candidates: the dense channel's best ``limit`` (with their terms, read back from the index) and
the lexical channel's best ``candidates`` by the engine's score (the IDF sum of the slots'
terms an item has, times their weights; their dense scores read back for those that gain).
An item beyond a full lexical list scores at most the list's last. When that last item still
gains, more items hold the query's words than the list does: the words do not single a product
out, and no item scoring at or below it gains, in the list or among the dense candidates; only
the items that match more of the query than that crowd do. So one request gives one list in
every process (what lies beyond the list never matters).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from mrse.features.lexical import TITLE_WEIGHT, QueryTerm, variants

FOUND_BY = ("dense", "lexical", "both")


@dataclass(frozen=True)
class HybridOptions:
    """How the lexical channel is fused (see the module docstring)."""

    weight: float = 1.0  # what an item containing every query term gains
    threshold: float = 0.5  # coverage at or below which an item gains nothing
    title_bonus: float = 0.25  # more, as a share of weight, when its title holds every term
    candidates: int = 100  # lexical candidates per request
    # fuse only queries with a word the run's query log never had (the towers' own ground)
    untaught_only: bool = True

    def __post_init__(self) -> None:
        if not self.weight >= 0 or not self.title_bonus >= 0:
            raise ValueError("hybrid.weight and hybrid.title_bonus must be >= 0")
        if not 0 <= self.threshold < 1:
            raise ValueError("hybrid.threshold must be in [0, 1)")
        if self.candidates < 1:
            raise ValueError("hybrid.candidates must be >= 1")


def idf(n_docs: int, df: int) -> float:
    """Inverse document frequency as Qdrant's IDF modifier computes it (BM25's):
    ``ln(1 + (N - n + 0.5) / (n + 0.5))``."""
    return math.log(1.0 + (n_docs - df + 0.5) / (df + 0.5))


@dataclass(frozen=True)
class Slot:
    """One query term as the fusion reads it: the term ids that satisfy it (the term, or its
    spelling variants that items have) and its IDF weight."""

    terms: frozenset[int]
    weight: float


def query_slots(
    query: Sequence[QueryTerm], known: Mapping[int, float], unknown_idf: float
) -> list[Slot]:
    """A query's slots from what the index knows: ``known`` maps the term ids items have (the
    query's terms and their spelling variants, as probed) to their IDF; a term no item has is
    read as its variants that items have (weighing as the most common of them), or, with none,
    as the rarest word (``unknown_idf``)."""
    out = []
    for q in query:
        if q.term in known:
            out.append(Slot(frozenset({q.term}), known[q.term]))
            continue
        found = {v: known[v] for v in variants(q.word) if v in known}
        if found:
            out.append(Slot(frozenset(found), min(found.values())))
        else:
            out.append(Slot(frozenset({q.term}), unknown_idf))
    return out


def coverage(item_terms: Iterable[int], slots: Sequence[Slot]) -> float:
    """The share of the query's IDF mass whose slots ``item_terms`` satisfy, in [0, 1]; 0 for a
    query without terms."""
    total = sum(s.weight for s in slots)
    if total <= 0:
        return 0.0
    have = set(item_terms)
    return sum(s.weight for s in slots if not have.isdisjoint(s.terms)) / total


@dataclass(frozen=True)
class Candidate:
    """One item as the fusion reads it: its dense score and what it holds of the query."""

    item_id: str
    dense: float
    coverage: float = 0.0  # the share of the query's IDF mass whose slots it satisfies
    title: float = 0.0  # when its title satisfies every slot: the share of its title's terms
    # that are the query's (1: the query is its name), else 0
    score: float = 0.0  # the engine's lexical score: IDF x weight over the terms it holds


def candidate(
    item_id: str,
    dense: float,
    item_terms: Mapping[int, float],
    slots: Sequence[Slot],
    known: Mapping[int, float],
) -> Candidate:
    """An item's ``Candidate`` from its lexical terms (term id -> weight, as indexed), the
    query's ``slots`` and the IDF of the terms items have (``known``)."""
    wanted = {t for s in slots for t in s.terms}
    score = sum(known.get(t, 0.0) * w for t, w in item_terms.items() if t in wanted)
    title = [t for t, w in item_terms.items() if w >= TITLE_WEIGHT]
    named = bool(slots) and all(not s.terms.isdisjoint(title) for s in slots)
    share = sum(t in wanted for t in title) / len(title) if named else 0.0
    return Candidate(item_id, dense, coverage(item_terms, slots), share, score)


def lexical_terms_for(
    query: Sequence[QueryTerm], taught: Collection[int], options: HybridOptions
) -> tuple[QueryTerm, ...]:
    """The terms the lexical channel searches for ``query``: all of them, or none when every
    one is a word the run was ``taught`` (its query log's) and ``untaught_only`` holds."""
    if options.untaught_only and taught and all(q.term in taught for q in query):
        return ()
    return tuple(query)


def gain_floor(last: Candidate | None, options: HybridOptions) -> float | None:
    """The lexical score at or below which no item gains, for one request: the last item of a
    full lexical list's, when that item still gains (see the module docstring); None when the
    list was not full (``last`` None) or its last item gains nothing."""
    return last.score if last is not None and _gain(last, options) > 0 else None


def boost(c: Candidate, options: HybridOptions, floor: float | None = None) -> float:
    """What candidate ``c`` adds to its dense score: nothing at or below ``floor``
    (``gain_floor``)."""
    if floor is not None and c.score <= floor:
        return 0.0
    return _gain(c, options)


def _gain(c: Candidate, options: HybridOptions) -> float:
    gain = min(1.0, max(0.0, (c.coverage - options.threshold) / (1.0 - options.threshold)))
    if gain > 0:
        gain += options.title_bonus * c.title
    return options.weight * gain


def admitted(
    lexical: Sequence[Candidate], floor: float | None, options: HybridOptions
) -> list[Candidate]:
    """The lexical channel's candidates that enter the fusion: those that gain above
    ``floor`` (``gain_floor``)."""
    return [c for c in lexical if boost(c, options, floor) > 0]


@dataclass(frozen=True)
class Fused:
    """One fused result: the dense score, what the lexical channel added, and which channel
    brought it (``dense``; ``lexical``: only the lexical channel's list had it; ``both``)."""

    item_id: str
    score: float
    dense: float
    lexical: float
    found_by: str


def fuse(
    dense: Sequence[Candidate],
    lexical: Sequence[Candidate],
    limit: int,
    options: HybridOptions,
    floor: float | None = None,
) -> list[Fused]:
    """The best ``limit`` by dense score + boost, equal scores in item id order.

    Args:
        dense: the dense channel's candidates.
        lexical: the admitted lexical candidates (those also among ``dense`` may be repeated;
            the dense entry is kept).
        floor: the lexical score at or below which nothing gains (``gain_floor``).
    """
    out: dict[str, Fused] = {}
    for c in dense:
        gain = boost(c, options, floor)
        out[c.item_id] = Fused(c.item_id, c.dense + gain, c.dense, gain,
                               "both" if gain > 0 else "dense")  # fmt: skip
    for c in lexical:
        if c.item_id not in out:
            gain = boost(c, options, floor)
            out[c.item_id] = Fused(c.item_id, c.dense + gain, c.dense, gain, "lexical")
    return sorted(out.values(), key=lambda f: (-f.score, f.item_id))[:limit]
