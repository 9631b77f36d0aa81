"""The home feed: its metrics, popularity, the interests' best score, the evaluation's cases and
leak-free interactions, the peers, the feed examples of training, and the request's validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mrse.evaluation.recommend import (
    RECOMMEND_METRICS,
    evaluate_recommend,
    fit_events,
    format_recommend,
    recommend_cases,
)
from mrse.features.popularity import decayed_counts, popular_items, top_rows
from mrse.features.profile import empty_profile, viewed_profile
from mrse.features.queries import FEED_QUERY
from mrse.index.examples import best_score, interest_weights
from mrse.metrics.ranking import average_precision_at_k
from mrse.retrieval.recommenders import RECOMMEND_PEERS, Interactions, fill, peer_rankings
from mrse.serving.validation import InvalidRequest, validate_recommend
from mrse.v1 import search_pb2

DAY = 86400.0


def test_average_precision_is_the_competition_s():
    assert average_precision_at_k(["a", "b", "c"], {"a"}, 12) == 1.0
    assert average_precision_at_k(["x", "a"], {"a"}, 12) == 0.5
    assert average_precision_at_k(["x"] * 12 + ["a"], {"a"}, 12) == 0.0
    # two targets, found at 1 and 3: (1/1 + 2/3) / min(12, 2)
    assert average_precision_at_k(["a", "x", "b"], {"a", "b"}, 12) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision_at_k(["a"], {}, 12) == 0.0
    assert average_precision_at_k(["a"], {"a": 0}, 12) == 0.0  # grade 0 is not a target


def test_decayed_counts_see_only_the_past_and_halve_with_each_half_life():
    rows = np.array([0, 0, 1, 2])
    ts = np.array([0.0, 10 * DAY, 10 * DAY, 30 * DAY])
    plain = decayed_counts(rows, ts, 20 * DAY, 3, half_life_days=None)
    assert plain.tolist() == [2.0, 1.0, 0.0]  # the event at day 30 is the future
    decayed = decayed_counts(rows, ts, 20 * DAY, 3, half_life_days=10)
    assert decayed == pytest.approx([0.25 + 0.5, 0.5, 0.0])
    assert top_rows(np.array([1.0, 3.0, 3.0, 0.0]), 3).tolist() == [1, 2, 0]  # ties by row


def test_popular_items_rank_recent_purchases_first():
    events = pd.DataFrame({
        "item_id": ["old", "old", "old", "new", "new", "undated"],
        "ts": pd.to_datetime(["2020-01-01"] * 3 + ["2020-06-01"] * 2 + [None]),
    })  # fmt: skip
    assert list(popular_items(events)) == ["new", "old"]
    assert popular_items(events, k=1).keys() == {"new"}
    assert popular_items(events.iloc[5:]) == {}


def test_best_score_takes_each_candidate_s_best_weighted_interest():
    scores = np.array([[0.9, 0.1, -np.inf], [0.2, 0.8, 0.5]], np.float32)
    now = 100 * DAY
    weights = interest_weights([now, now - 60 * DAY], now, half_life_days=60)
    assert weights == pytest.approx([1.0, 0.5])
    got = best_score(scores, weights)
    assert got == pytest.approx([0.9, 0.4, 0.25])
    assert interest_weights([now + 5 * DAY], now, 60) == pytest.approx([1.0])  # clock skew
    assert np.isneginf(best_score(np.zeros((0, 3)), np.zeros(0))).all()
    with pytest.raises(ValueError):
        best_score(scores, weights[:1])


@pytest.fixture()
def shop() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Items a..f; u1 buys a, b, then (test) c; u2 buys c, d; u3 buys e after u1's test."""
    items = pd.DataFrame({"item_id": list("abcdef")})
    events = pd.DataFrame({
        "user_id": ["u1", "u1", "u2", "u2", "u3", "u1", None],
        "item_id": ["a", "b", "c", "d", "e", "f", "a"],
        "ts": pd.to_datetime(["2020-01-01", "2020-01-05", "2020-01-02", "2020-01-03",
                              "2020-03-01", "2020-02-20", "2020-01-01"]),
        "event": ["purchase"] * 7,
    })  # fmt: skip
    queries = pd.DataFrame({"qid": ["q1", "q2"], "user_id": ["u1", None],
                            "ts": pd.to_datetime(["2020-02-01", "2020-02-01"])})  # fmt: skip
    qrels = pd.DataFrame({"qid": ["q1", "q1", "q2"], "item_id": ["c", "d", "a"],
                          "relevance": [2, 1, 2]})  # fmt: skip
    return items, events, queries, qrels


class _Data:
    def __init__(self, items, events, queries, qrels) -> None:
        self.items, self.events, self.queries, self.qrels = items, events, queries, qrels


def test_cases_need_a_shopper_and_a_time_and_want_the_top_grade(shop):
    (case,) = recommend_cases(_Data(*shop))  # q2 has no shopper
    assert case.user_id == "u1" and case.targets == {"c"} and case.history == 2


def test_fit_events_hide_everything_a_case_s_shopper_did_from_its_time_on(shop):
    items, events, *_ = shop
    cases = recommend_cases(_Data(*shop))
    fit = fit_events(events, cases)
    assert "f" not in set(fit["item_id"])  # u1's purchase after the case's time
    assert "e" in set(fit["item_id"])  # another shopper's later purchase stays
    assert fit["user_id"].notna().all()


def test_every_peer_ranks_the_catalog_and_falls_back_to_popularity(shop):
    items, events, *_ = shop
    cases = recommend_cases(_Data(*shop))
    inter = Interactions.build(fit_events(events, cases), items["item_id"])
    requests = [(c.user_id, c.ts) for c in cases] + [("stranger", cases[0].ts)]
    photos = np.random.default_rng(0).normal(size=(len(items), 8)).astype(np.float32)
    for name in RECOMMEND_PEERS:
        ranked = peer_rankings(name, inter, requests, k=4, photo_features=photos)
        assert [len(r) for r in ranked] == [4, 4], name
        assert all(len(set(r)) == 4 and set(r) <= set("abcdef") for r in ranked), name
    assert peer_rankings("repurchase", inter, requests, k=3)[0][:2] == ["b", "a"]  # latest first
    # a shopper with no history gets recent popularity: the newest purchases before the time
    # (b on Jan 5, d on Jan 3), never u3's later e
    assert peer_rankings("als", inter, requests, k=2)[1] == ["b", "d"]
    with pytest.raises(ValueError):
        peer_rankings("nope", inter, requests)
    assert fill([3, 3, 1], np.array([1, 2, 0]), 3).tolist() == [3, 1, 2]


def test_evaluation_scores_rankings_per_history_slice(shop):
    cases = recommend_cases(_Data(*shop))
    good = evaluate_recommend(cases, [["c", "a"]])
    assert good["metrics"] == {"map@12": 1.0, "hr@12": 1.0, "recall@100": 1.0}
    bad = evaluate_recommend(cases, [["a", "b"]])
    assert set(bad["metrics"]) == set(RECOMMEND_METRICS) and bad["metrics"]["hr@12"] == 0.0
    assert good["slices"]["1-4 events"]["cases"] == 1.0
    table = format_recommend({"bad": bad, "good": good})
    assert table.index("| good") < table.index("| bad")
    with pytest.raises(ValueError):
        evaluate_recommend(cases, [])


def test_a_guest_s_viewed_items_are_a_history():
    cold = empty_profile(4, 6)
    p = viewed_profile(cold, ["x", "y"], now=100.0)
    assert p.recent_items == ("x", "y") and p.count == 2 and p.recent_ts == (100.0, 100.0)
    assert p.text_weight == 0.0 and FEED_QUERY == ""


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"viewed_ids": ["a", ""]}, "empty id"),
        ({"viewed_ids": ["x"] * 65}, "at most 64"),
        ({"k": 5000}, "k must be"),
        ({"user_id": "u\x00"}, "NUL"),
    ],
)
def test_recommend_requests_say_what_to_fix(kwargs, words):
    with pytest.raises(InvalidRequest, match=words):
        validate_recommend(search_pb2.RecommendRequest(**kwargs))


def test_a_valid_recommend_request_keeps_the_viewed_items_in_time_order():
    req = validate_recommend(
        search_pb2.RecommendRequest(viewed_ids=["a", "b", "a", "c"], exclude_purchased=True)
    )
    assert req.feed and req.viewed == ("b", "a", "c") and req.exclude_seen and req.query == ""
    assert validate_recommend(search_pb2.RecommendRequest(user_id="u")).user_id == "u"


def test_interests_are_the_newest_distinct_items_and_merge_by_best_score():
    from mrse.index.base import Hit
    from mrse.index.examples import feed_interests, merge_best

    got = feed_interests(["a", "b", "a", "c"], [1.0, 2.0, 3.0, 4.0], n=2)
    assert got == [("c", 4.0), ("a", 3.0)]
    lists = [[Hit("x", 0.5), Hit("y", 0.4)], [Hit("y", 0.9), Hit("z", 0.1)]]
    merged = merge_best(lists, [1.0, 0.5])
    assert [(h.item_id, s, n) for h, s, n in merged] == [
        ("x", 0.5, 0), ("y", 0.45, 1), ("z", 0.05, 1)
    ]  # fmt: skip
    with pytest.raises(ValueError):
        merge_best(lists, [1.0])


def test_each_interest_searches_twice_its_share_of_the_feed():
    from mrse.index.examples import interest_depth

    assert interest_depth(100, 8) == 25
    assert interest_depth(100, 1) == 100  # one interest: exact
    assert interest_depth(10, 8) == 10  # never deeper than the feed
    assert interest_depth(100, 20) == 20  # at least 20
    assert interest_depth(5, 0) == 5
