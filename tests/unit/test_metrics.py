from __future__ import annotations

import math

import pytest

from mrse.metrics.ranking import (
    dcg_at_k,
    history_slice,
    hit_rate_at_k,
    mean_metrics,
    mrr_at_k,
    ndcg_at_k,
    query_metrics,
    recall_at_k,
    slice_metrics,
    top_grade_items,
)


def test_dcg_discounts_by_log2_rank():
    assert dcg_at_k([3.0, 1.0, 1.0], 3) == pytest.approx(3 + 1 / math.log2(3) + 1 / 2)
    assert dcg_at_k([3.0, 1.0, 1.0], 1) == 3.0


def test_ndcg_graded_exponential_gain():
    rels = {"a": 2, "b": 1, "c": 1}
    # ideal order a, b, c: gains 3, 1, 1
    ideal = 3 + 1 / math.log2(3) + 1 / 2
    assert ndcg_at_k(["a", "b", "c"], rels, 10) == pytest.approx(1.0)
    got = ndcg_at_k(["x", "b", "a"], rels, 10)
    assert got == pytest.approx((1 / math.log2(3) + 3 / 2) / ideal)
    assert ndcg_at_k(["x", "y"], rels, 10) == 0.0
    assert ndcg_at_k(["a"], {}, 10) == 0.0


def test_ndcg_cut_off_ignores_items_below_k():
    rels = {"a": 1}
    assert ndcg_at_k(["x"] * 10 + ["a"], rels, 10) == 0.0


def test_recall_counts_grade_one_and_above():
    rels = {"a": 2, "b": 1, "c": 1, "d": 0}
    assert recall_at_k(["a", "d", "b"], rels, 10) == pytest.approx(2 / 3)
    assert recall_at_k(["a", "d", "b"], rels, 1) == pytest.approx(1 / 3)


def test_mrr_and_hit_rate_use_the_highest_grade():
    rels = {"bought": 2, "similar": 1}
    ranked = ["similar", "x", "bought"]
    assert mrr_at_k(ranked, rels, 10, min_grade=2) == pytest.approx(1 / 3)
    assert hit_rate_at_k(ranked, rels, 2, min_grade=2) == 0.0
    m = query_metrics(ranked, rels)
    assert m["mrr@10"] == pytest.approx(1 / 3)
    assert m["hr@10"] == 1.0


def test_single_grade_queries_use_grade_one():
    m = query_metrics(["x", "a"], {"a": 1, "b": 1})
    assert m["mrr@10"] == pytest.approx(0.5)
    assert m["recall@10"] == pytest.approx(0.5)


def test_mean_is_macro_average():
    a = query_metrics(["a"], {"a": 1})
    b = query_metrics(["x"], {"a": 1})
    assert mean_metrics([a, b])["ndcg@10"] == pytest.approx(0.5)


def test_history_slices_have_fixed_edges():
    assert [history_slice(n) for n in (0, 1, 4, 5, 300)] == [
        "no history", "1-4 events", "1-4 events", "5+ events", "5+ events",
    ]  # fmt: skip
    with pytest.raises(ValueError):
        history_slice(-1)


def test_slice_metrics_average_within_each_slice_and_report_empty_ones():
    bought = {"target": 2, "same-colour": 1}
    per_query = {
        "a": query_metrics(["target"], bought),  # 5+ events, bought item first
        "b": query_metrics(["x", "target"], bought),  # 5+ events, second
        "c": query_metrics(["same-colour"], bought),  # 1-4 events, only a grade-1 item
    }
    out = slice_metrics(per_query, {"a": 7, "b": 5, "c": 2})
    assert out["5+ events"]["queries"] == 2
    assert out["5+ events"]["mrr@10"] == pytest.approx((1.0 + 0.5) / 2)
    assert out["5+ events"]["hr@10"] == 1.0
    assert out["1-4 events"] == {"queries": 1, "ndcg@10": per_query["c"]["ndcg@10"],
                                 "mrr@10": 0.0, "hr@10": 0.0}  # fmt: skip
    assert out["no history"] == {"queries": 0}


def test_top_grade_items_are_what_mrr_and_hit_rate_look_for():
    assert top_grade_items({"a": 1, "b": 2, "c": 2}) == {"b", "c"}
    assert top_grade_items({"a": 1, "b": 1}) == {"a", "b"}
    assert top_grade_items({"a": 0}) == set() and top_grade_items({}) == set()
