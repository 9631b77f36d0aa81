from __future__ import annotations

import json

import numpy as np
import pytest

from mrse.cli import main
from mrse.data import load_dataset
from mrse.encoders.cache import FeatureCache
from mrse.evaluation.harness import EvaluationError, build_query_contexts, evaluate
from mrse.metrics.ranking import METRIC_NAMES
from mrse.retrieval.base import top_k
from mrse.retrieval.bm25 import BM25Retriever
from mrse.retrieval.dense import NO_TEXT_SCORE, DenseRetriever


def test_top_k_orders_by_score_then_catalog_order():
    scores = np.array([[0.1, 0.9, 0.5, 0.9]], dtype=np.float32)
    r = top_k(scores, np.array(["a", "b", "c", "d"], dtype=object), 3)[0]
    assert list(r.item_ids) == ["b", "d", "c"]
    assert top_k(scores, np.array(["a", "b", "c", "d"], dtype=object), 10)[0].item_ids.size == 4


def test_bm25_stems_and_ignores_textless_items(make_dataset):
    ds = load_dataset(make_dataset())
    bm25 = BM25Retriever(ds.items["item_id"], ds.item_texts)
    contexts = build_query_contexts(ds)
    rankings = bm25.search(contexts, 2)
    assert rankings[1].item_ids[0] == "i2"  # "jeans" matches "Blue jeans"
    assert bm25.scores("vests")[0] > 0  # stemming: vests -> vest
    assert bm25.scores("vests")[2] == 0  # image-only item


def test_dense_never_ranks_textless_item_above_text_items(make_dataset, text_encoder):
    ds = load_dataset(make_dataset())
    vecs = text_encoder.encode([t or " " for t in ds.item_texts])
    has_text = np.array([bool(t) for t in ds.item_texts])
    dense = DenseRetriever(ds.items["item_id"], vecs, has_text, text_encoder.encode)
    r = dense.search(build_query_contexts(ds), 3)
    assert r[0].item_ids[0] == "i1" and r[0].item_ids[-1] == "i3"
    assert r[0].scores[-1] == NO_TEXT_SCORE


def test_query_contexts_carry_point_in_time_history(make_dataset):
    ds = load_dataset(make_dataset())
    ctx = {c.qid: c for c in build_query_contexts(ds)}
    assert list(ctx["q1"].history.item_ids) == ["i1", "i3"]
    assert len(ctx["q2"].history) == 0


def test_evaluate_skips_unjudged_queries_and_rejects_empty(make_dataset):
    ds = load_dataset(make_dataset(qrels=[{"qid": "q2", "item_id": "i2", "relevance": 1}]))
    result = evaluate(ds, BM25Retriever(ds.items["item_id"], ds.item_texts))
    assert result.queries == 1 and result.skipped_queries == 1
    assert result.metrics["recall@10"] == 1.0
    ds = load_dataset(make_dataset(qrels=None))
    with pytest.raises(EvaluationError, match="nothing to evaluate"):
        evaluate(ds, BM25Retriever(ds.items["item_id"], ds.item_texts))


@pytest.mark.parametrize("model", ["bm25", "dense"])
def test_cli_eval_writes_the_json_contract(sample_myntra, tmp_path, model):
    out = tmp_path / f"{model}.json"
    assert (
        main(
            [
                "--cache-dir",
                str(tmp_path / "cache"),
                "eval",
                "--data",
                str(sample_myntra),
                "--model",
                model,
                "--out",
                str(out),
            ]
        )
        == 0
    )
    payload = json.loads(out.read_text())
    assert payload["dataset"] == "myntra" and payload["model"] == model
    assert payload["queries"] >= 30
    assert set(METRIC_NAMES) <= set(payload["metrics"])
    assert all(0.0 <= v <= 1.0 for v in payload["metrics"].values())
    # a text query over a text-rich catalog finds relevant items far above chance
    assert payload["metrics"]["recall@100"] > 0.5
    assert out.with_suffix(".png").stat().st_size > 1000


def test_cli_reports_validation_errors_with_exit_code_2(tmp_path, caplog):
    assert (
        main(
            [
                "eval",
                "--data",
                str(tmp_path / "missing"),
                "--model",
                "bm25",
                "--out",
                str(tmp_path / "o.json"),
            ]
        )
        == 2
    )
    assert "not a directory" in caplog.text


def test_feature_cache_is_shared_by_dense_baseline(sample_myntra, tmp_path):
    from mrse.retrieval.baselines import build_baseline

    ds = load_dataset(sample_myntra)
    with FeatureCache(tmp_path / "c.sqlite") as cache:
        build_baseline("dense", ds, cache)
        assert len(cache) == len(set(ds.item_texts))
        with pytest.raises(ValueError, match="unknown baseline"):
            build_baseline("nope", ds, cache)
