"""Hybrid retrieval: the fusion maths on plain numbers, and both index backends against an
exact reference (the same body for Qdrant Edge and qdrant-client's local mode)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from qdrant_client import QdrantClient

from mrse.features.lexical import item_terms, lexical_query, query_terms, terms, variants
from mrse.index import SearchFilter
from mrse.index.client import ClientIndex
from mrse.index.edge import EdgeIndex
from mrse.index.hybrid import (
    Candidate,
    HybridOptions,
    Slot,
    admitted,
    boost,
    candidate,
    coverage,
    fuse,
    gain_floor,
    idf,
    lexical_terms_for,
    query_slots,
)

DIM = 8
OPTS = HybridOptions(weight=1.0, threshold=0.5, candidates=50)


def test_terms_are_stemmed_case_folded_words_without_stop_words():
    assert terms("The Blue SHIRTS for Men, running!") == ["blue", "shirt", "men", "run"]
    assert terms("Café crème") == ["café", "crème"]  # any script, accents kept
    assert query_terms("the of and") == []
    ids = item_terms("Cool Blair hoop", "Hoop earrings in metal.", "H&M", "Accessories > Jewellery")
    assert list(ids)[:3] == query_terms("cool blair hoop")
    assert [ids[t] for t in query_terms("cool blair hoop earrings metal")] == [2, 2, 2, 1, 1]


def test_misspelt_words_are_read_as_their_variants_that_items_have():
    q = lexical_query("Cool blari HOOP hoops")
    assert [t.word for t in q] == ["cool", "blari", "hoop"]  # distinct terms: hoops = hoop
    blair, blare = query_terms("blair")[0], query_terms("blare")[0]
    assert {blair, blare} <= set(variants("blari")) and q[1].term not in variants("blari")
    assert variants("top") == () and variants("t-shirt") == ()  # short or not a-z: none
    known = {q[0].term: 2.0, q[2].term: 1.0, blair: 3.0, blare: 5.0}
    slots = query_slots(q, known, unknown_idf=9.0)
    assert slots[1] == Slot(frozenset({blair, blare}), 3.0)  # as common as its most common
    assert query_slots(q, {q[0].term: 2.0}, 9.0)[1] == Slot(frozenset({q[1].term}), 9.0)


def C(item_id, dense, cov=0.0, title=0.0, score=None):  # noqa: N802 - a short constructor
    return Candidate(item_id, dense, cov, title, cov if score is None else score)


def test_coverage_boost_and_fuse_on_plain_numbers():
    w = [Slot(frozenset({1}), 2.0), Slot(frozenset({2}), 1.0), Slot(frozenset({3, 4}), 1.0)]
    assert coverage([1, 2, 3, 9], w) == 1.0 and coverage([2, 3], w) == 0.5
    assert coverage([2, 4], w) == 0.5 and coverage([3, 4], w) == 0.25  # a slot counts once
    assert coverage([1], w) == 0.5 and coverage([], w) == 0.0 and coverage([1], []) == 0.0
    known = {1: 2.0, 2: 1.0, 3: 1.0, 4: 0.5}
    c = candidate("x", 0.3, {1: 2.0, 2: 2.0, 4: 2.0, 9: 1.0}, w, known)
    assert (c.coverage, c.title, c.score) == (1.0, 1.0, 2 * 2.0 + 2 * 1.0 + 2 * 0.5)
    longer = candidate("x", 0.3, {1: 2.0, 2: 2.0, 4: 2.0, 7: 2.0}, w, known)
    assert longer.title == 0.75  # 3 of its 4 title terms are the query's
    assert candidate("x", 0.3, {1: 2.0, 2: 1.0, 3: 2.0}, w, known).title == 0
    assert boost(C("a", 0, 1.0), OPTS) == 1.0 and boost(C("a", 0, 0.5), OPTS) == 0.0
    assert boost(C("a", 0, 0.75), OPTS) == 0.5 and boost(C("a", 0, 0.4, title=1.0), OPTS) == 0
    assert boost(C("a", 0, 1.0, title=1.0), OPTS) == 1.25  # the query is its whole title
    assert boost(C("a", 0, 1.0, title=0.5), OPTS) == 1.125
    assert idf(100, 0) > idf(100, 1) > idf(100, 50) > 0
    assert idf(5, 1) == pytest.approx(math.log(1 + 4.5 / 1.5))
    dense = [C("a", 0.9), C("b", 0.8, 1.0), C("c", 0.7)]
    lexical = [C("z", 0.1, 1.0), C("b", 0.8, 1.0)]
    out = fuse(dense, lexical, 3, OPTS)
    assert [(f.item_id, f.found_by) for f in out] == [
        ("b", "both"),
        ("z", "lexical"),
        ("a", "dense"),
    ]
    assert out[0].score == pytest.approx(1.8) and out[0].lexical == 1.0 and out[0].dense == 0.8
    tied = fuse([C("y", 0.5), C("x", 0.5)], [], 2, OPTS)
    assert [f.item_id for f in tied] == ["x", "y"]  # equal scores in item id order


def test_nothing_gains_at_or_below_the_last_of_a_full_list():
    """Equal scores may run past the list the engine returned, in its own order, and when
    more items hold the words than the list does, the words single nothing out: nothing at or
    below its last gains, in the list or among the dense candidates."""
    opts = HybridOptions(threshold=0.5, candidates=3)
    assert gain_floor(C("c", 0, 0.6), opts) == 0.6 and gain_floor(C("c", 0, 0.3), opts) is None
    assert gain_floor(None, opts) is None
    covs = [C("a", 0, 1.0), C("b", 0, 0.9), C("c", 0, 0.6)]
    assert [c.item_id for c in admitted(covs, 0.6, opts)] == ["a", "b"]  # c at the cut
    assert admitted([C("a", 0, 1.0)] * 3, 1.0, opts) == []
    assert [c.item_id for c in admitted([C("a", 0, 1.0), C("b", 0, 0.4)], None, opts)] == ["a"]
    crowd = fuse([C("a", 0.9), C("b", 0.5, 1.0)], [], 2, opts, floor=1.0)
    assert [(f.item_id, f.lexical, f.found_by) for f in crowd] == [
        ("a", 0, "dense"),
        ("b", 0, "dense"),
    ]
    above = fuse([C("a", 0.9), C("b", 0.5, 1.0)], [], 2, opts, floor=0.8)
    assert above[0].item_id == "b" and above[0].lexical == pytest.approx(1.0)


def test_queries_of_words_the_run_was_taught_are_left_to_the_towers():
    taught = {t.term for t in lexical_query("black white vest top shirts men")}
    q = lexical_query("Black shirts for men")
    assert lexical_terms_for(q, taught, OPTS) == ()  # only the log's words
    assert lexical_terms_for(lexical_query("black blair hoop"), taught, OPTS)  # a name
    assert lexical_terms_for(q, frozenset(), OPTS) == q  # a run saved without its words
    assert lexical_terms_for(q, taught, HybridOptions(untaught_only=False)) == q


TITLES = [
    "cool blair hoop",
    "lola brazilian acacia",
    "tora long sleeve",
    "blanks jerry hood",
    "rae lace thong",
    "dana double chain",
    "zebra velvet opera gloves",
    "silver hoop earrings",
] + [f"plain jersey top {i}" for i in range(40)]


def _catalog(seed=0):
    rng = np.random.default_rng(seed)
    n = len(TITLES)
    vecs = rng.normal(size=(n, DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ids = [f"item-{i:03d}" for i in range(n)]
    payloads = [{"category": "jewellery" if i < 8 else "tops", "brand": "b"} for i in range(n)]
    lex = [item_terms(t, "", "", "") for t in TITLES]
    return ids, vecs, payloads, lex


def _reference(ids, vecs, payloads, lex, q, qt, k, opts, f=None):
    """Exact fusion over every item (no candidate lists): what the index must return when its
    lexical list is not full."""
    known = {t: idf(len(ids), sum(t in x for x in lex)) for x in lex for t in x}
    slots = [Slot(frozenset({t.term}), known[t.term]) for t in qt]
    rows = [
        candidate(ids[i], float(vecs[i] @ q), lex[i], slots, known)
        for i in range(len(ids))
        if f is None or f.matches(payloads[i])
    ]
    dense_top = sorted(rows, key=lambda r: (-r.dense, r.item_id))[:k]
    others = [r for r in rows if boost(r, opts) > 0]
    fused = fuse(dense_top, others, k, opts)
    return [(x.item_id, round(x.score, 4), x.found_by) for x in fused]


def test_hybrid_search_finds_a_named_item_the_dense_channel_misses_on_both_backends(index):
    ids, vecs, payloads, lex = _catalog()
    index.upsert(ids, vecs, payloads, lex)
    assert index.has_lexical
    target = 6  # "zebra velvet opera gloves": orthogonal to the query, so dense ranks it low
    q = np.random.default_rng(9).normal(size=DIM).astype(np.float32)
    q -= (q @ vecs[target]) * vecs[target]
    q /= np.linalg.norm(q)
    qt = lexical_query("Zebra velvet opera gloves")
    dense = [h.item_id for h in index.search(q, 5)]
    assert ids[target] not in dense
    hits = index.search(q, 5, terms=qt, hybrid=OPTS)
    assert hits[0].item_id == ids[target] and hits[0].found_by == "lexical"
    gain = 1.0 + OPTS.title_bonus  # every word, in its title
    assert hits[0].lexical == pytest.approx(gain) and hits[0].payload["category"] == "jewellery"
    assert hits[0].score == pytest.approx(float(vecs[target] @ q) + gain, abs=1e-4)
    got = [(h.item_id, round(h.score, 4), h.found_by) for h in hits]
    assert got == _reference(ids, vecs, payloads, lex, q, qt, 5, OPTS)
    for text, f in [("hoop", None), ("silver hoop", None), ("blair hoop", SearchFilter(
            categories=("jewellery",))), ("jersey top 7", None), ("hoop", SearchFilter(
            categories=("tops",)))]:  # fmt: skip
        qt = lexical_query(text)
        got = [
            (h.item_id, round(h.score, 4), h.found_by)
            for h in index.search(q, 6, f, terms=qt, hybrid=OPTS)
        ]
        assert got == _reference(ids, vecs, payloads, lex, q, qt, 6, OPTS, f), text
    # no terms, no options, or stop words only: the dense channel alone
    assert [h.item_id for h in index.search(q, 5, terms=[], hybrid=OPTS)] == dense
    assert [h.item_id for h in index.search(q, 5, terms=qt)] == dense
    assert [h.item_id for h in index.search(q, 5, terms=lexical_query("the"), hybrid=OPTS)] == dense


def test_a_misspelt_word_is_read_as_its_variants_and_a_word_no_item_has_as_the_rarest(index):
    """ "blari hoop" finds "cool blair hoop" (blair is one edit from blari); "blxrq hoop" lifts
    nothing: no item has blxrq or a word one edit from it, and hoop alone is too little."""
    ids, vecs, payloads, lex = _catalog()
    index.upsert(ids, vecs, payloads, lex)
    q = np.random.default_rng(9).normal(size=DIM).astype(np.float32)
    q -= (q @ vecs[0]) * vecs[0]  # item 0, "cool blair hoop", at dense score 0
    q /= np.linalg.norm(q)
    dense = [h.item_id for h in index.search(q, 5)]
    hits = index.search(q, 5, terms=lexical_query("blxrq hoop"), hybrid=OPTS)
    assert all(h.lexical == 0 for h in hits) and [h.item_id for h in hits] == dense
    for text in ("blair hoop", "blari hoop", "cool blari"):
        hits = index.search(q, 5, terms=lexical_query(text), hybrid=OPTS)
        # every word, in its title, which has one more: "cool blair hoop"
        assert hits[0].item_id == ids[0] and hits[0].lexical == pytest.approx(1 + 0.25 * 2 / 3)


@pytest.mark.parametrize("backend", ["edge", "client"])
def test_hybrid_results_do_not_depend_on_write_order_when_the_lexical_list_is_full(
    backend, tmp_path
):
    """40 items contain every query word; the lexical list holds 5: whatever order the
    catalog was written in, one search gives one list."""
    ids, vecs, payloads, lex = _catalog()
    opts = HybridOptions(candidates=5)
    q = vecs[3]
    results = []
    rng = np.random.default_rng(3)
    for run in range(3):
        order = rng.permutation(len(ids))
        idx = (
            EdgeIndex(tmp_path / f"e{run}", DIM)
            if backend == "edge"
            else ClientIndex(QdrantClient(":memory:"), f"items_{run}", DIM)
        )
        idx.upsert([ids[i] for i in order], vecs[order], [payloads[i] for i in order],
                   [lex[i] for i in order])  # fmt: skip
        hits = idx.search(q, 8, terms=lexical_query("plain jersey top"), hybrid=opts)
        results.append([(h.item_id, round(h.score, 4)) for h in hits])
        idx.close()
    assert results[0] == results[1] == results[2]
