"""More like this: the example-made query, its explanation, the evaluation's cases and ranking,
and the request's validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from mrse.evaluation.similar import evaluate_similar, rank_similar, similar_cases
from mrse.index.examples import average_vector
from mrse.models.towers import ITEM_EXPERTS, TowerOutput
from mrse.models.two_tower import explain_items
from mrse.serving.validation import InvalidRequest, validate_similar
from mrse.v1 import search_pb2


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_average_vector_is_the_positives_mean_moved_away_from_the_negatives():
    rng = np.random.default_rng(0)
    pos, neg = _unit(rng.normal(size=(3, 8))), _unit(rng.normal(size=(2, 8)))
    q = average_vector(pos)
    assert np.allclose(q, _unit(pos.mean(0))) and np.isclose(np.linalg.norm(q), 1)
    q = average_vector(pos, neg)
    assert np.allclose(q, _unit(2 * pos.mean(0) - neg.mean(0)))
    # a negative example ranks lower than it would without it
    assert q @ neg.mean(0) < average_vector(pos) @ neg.mean(0)
    assert np.allclose(average_vector(pos, neg[:0]), average_vector(pos))
    with pytest.raises(ValueError):
        average_vector(pos[:0])


def test_explain_items_splits_the_score_by_the_item_s_own_experts():
    torch.manual_seed(0)
    b, e, d = 5, len(ITEM_EXPERTS), 16
    experts = torch.nn.functional.normalize(torch.randn(b, e, d), dim=-1)
    gates = torch.softmax(torch.randn(b, e), dim=1)
    mixed = (gates.unsqueeze(-1) * experts).sum(1)
    norm = mixed.norm(dim=1)
    items = TowerOutput(mixed / norm[:, None], experts, gates=gates, norm=norm)
    q = torch.nn.functional.normalize(torch.randn(b, d), dim=-1)
    parts = explain_items(q, items)
    score = (q * items.embedding).sum(1)
    assert torch.allclose(parts["text"] + parts["image"], score, atol=1e-5)
    img = ITEM_EXPERTS.index("image")
    assert torch.allclose(parts["image"], (q * experts[:, img]).sum(1) * gates[:, img] / norm)


def test_cases_draw_a_top_grade_seed_and_want_the_others():
    qrels = pd.DataFrame({
        "qid": ["q1", "q1", "q1", "q2", "q3", "q3", "q4", "q4"],
        "item_id": ["a", "b", "c", "a", "d", "gone", "e", "f"],
        "relevance": [2, 1, 1, 2, 1, 1, 1, 0],
    })  # fmt: skip
    cases = similar_cases(qrels, ["a", "b", "c", "d", "e", "f"], seed=3)
    # q2 has one relevant item, q3's other one is not in the catalog, q4's other is grade 0
    assert [c.query_id for c in cases] == ["q1"]
    (c,) = cases
    assert c.seed == "a" and c.targets == {"b": 1, "c": 1}
    assert similar_cases(qrels, list("abcdef"), seed=3) == cases  # seeded
    many = pd.DataFrame({"qid": ["q"] * 4, "item_id": list("wxyz"), "relevance": [1] * 4})
    seeds = {similar_cases(many, list("wxyz"), seed=s)[0].seed for s in range(20)}
    assert len(seeds) > 1  # the draw is among all items of the top grade
    assert len(similar_cases(pd.concat([qrels, many]), list("abcdefwxyz"), max_cases=1)) == 1


def test_ranking_leaves_the_seed_out_and_breaks_ties_by_row():
    v = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.6, 0.8]], np.float32)
    ranked = rank_similar(v, np.array([0, 2]), k=4)
    assert ranked[0].tolist() == [1, 3, 4, 2]
    assert ranked[1].tolist() == [4, 0, 1, 3]
    assert rank_similar(v, np.array([0]), k=99).shape == (1, 4)


def test_evaluation_rewards_vectors_that_put_the_targets_first():
    ids = ["s", "t1", "t2", "x1", "x2", "x3"]
    good = np.array([[1, 0], [0.99, 0.1], [0.98, 0.2], [0, 1], [0.1, 0.99], [0.2, 0.98]])
    bad = good[:, ::-1].copy()
    bad[0] = [1, 0]  # the seed is unchanged, its targets now look like the others
    cases = similar_cases(
        pd.DataFrame({"qid": ["q"] * 3, "item_id": ["s", "t1", "t2"], "relevance": [2, 1, 1]}),
        ids,
    )
    assert cases[0].seed == "s"
    top = evaluate_similar(cases, ids, _unit(good))
    assert top == {"ndcg@10": pytest.approx(1.0), "hr@10": 1.0, "recall@100": 1.0}
    worse = evaluate_similar(cases, ids, _unit(bad))
    assert worse["ndcg@10"] < top["ndcg@10"]
    with pytest.raises(ValueError):
        evaluate_similar([], ids, good)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({}, "positive_ids is empty"),
        ({"positive_ids": ["  "]}, "empty id"),
        ({"positive_ids": ["a\x00"]}, "NUL"),
        ({"positive_ids": ["a" * 300]}, "longer than"),
        ({"positive_ids": ["a"], "negative_ids": ["a"]}, "in both"),
        ({"positive_ids": ["a"], "negative_ids": [str(i) for i in range(65)]}, "at most 64"),
        ({"positive_ids": ["a"], "k": 1001}, "k must be"),
        ({"positive_ids": ["a"], "filters": [search_pb2.FieldFilter(field="colour")]}, "unknown"),
    ],
)
def test_similar_requests_say_what_to_fix(kwargs, words):
    with pytest.raises(InvalidRequest, match=words):
        validate_similar(search_pb2.SimilarItemsRequest(**kwargs))


def test_a_valid_similar_request_keeps_its_examples_once_each():
    req = validate_similar(
        search_pb2.SimilarItemsRequest(positive_ids=[" a", "b", "a"], negative_ids=["c"], k=0)
    )
    assert req.positives == ("a", "b") and req.negatives == ("c",) and req.query == ""
    assert req.k == 100 and req.request_id
