"""`mrse eval --task similar` on the bundled sample: a trained run and the frozen-encoder peers,
in the harness's JSON shape."""

from __future__ import annotations

import json

import pytest

from mrse.cli import main

pytestmark = pytest.mark.integration


def test_similar_task_measures_a_run_and_every_peer(sample_hm, small_run, tmp_path):
    got = {}
    for name, args in {
        "run": ["--run", str(small_run)],
        "run-photo-only": ["--run", str(small_run), "--hide", "judged-text"],
        "text-encoder": ["--model", "text-encoder"],
        "photo-encoder": ["--model", "photo-encoder"],
        "both-encoders": ["--model", "both-encoders"],
    }.items():
        out = tmp_path / f"{name}.json"
        assert main(["eval", "--task", "similar", "--data", str(sample_hm), *args,
                     "--out", str(out)]) == 0  # fmt: skip
        got[name] = json.loads(out.read_text())
    for result in got.values():
        assert result["task"] == "similar" and result["cases"] > 10
        assert set(result["metrics"]) == {"ndcg@10", "hr@10", "recall@100"}
        assert all(0.0 <= v <= 1.0 for v in result["metrics"].values())
    assert len({r["cases"] for r in got.values()}) == 1  # the same seeds for every model
    # a peer that cannot see what the seed is made of differs from one that can
    assert got["text-encoder"]["metrics"] != got["photo-encoder"]["metrics"]
    # a search baseline is no more-like-this peer: a usage error, exit code 2
    assert main(["eval", "--task", "similar", "--data", str(sample_hm), "--model", "bm25",
                 "--out", str(tmp_path / "x.json")]) == 2  # fmt: skip


def test_recommend_task_measures_a_run_beside_every_peer(sample_hm, sample_myntra, small_run,
                                                         tmp_path):  # fmt: skip
    out = tmp_path / "rec.json"
    assert main(["eval", "--task", "recommend", "--data", str(sample_hm), "--run",
                 str(small_run), "--out", str(out)]) == 0  # fmt: skip
    got = json.loads(out.read_text())
    assert got["task"] == "recommend" and got["cases"] > 10
    assert set(got["models"]) == {"mrse", "popularity", "recent-popularity", "repurchase",
                                  "item-knn", "als", "bpr", "vbpr"}  # fmt: skip
    for result in got["models"].values():
        assert set(result["metrics"]) == {"map@12", "hr@12", "recall@100"}
        assert all(0.0 <= v <= 1.0 for v in result["metrics"].values())
        assert sum(s["cases"] for s in result["slices"].values()) == got["cases"]
    assert got["metrics"] == got["models"]["mrse"]["metrics"]
    assert out.with_suffix(".png").stat().st_size > 0
    # the query tower's one vector, and a single peer
    assert main(["eval", "--task", "recommend", "--data", str(sample_hm), "--run",
                 str(small_run), "--feed", "vector", "--model", "repurchase",
                 "--out", str(out)]) == 0  # fmt: skip
    assert set(json.loads(out.read_text())["models"]) == {"mrse (vector)", "repurchase"}
    # a catalog whose test queries have no shopper has no feed to measure: a usage error
    assert main(["eval", "--task", "recommend", "--data", str(sample_myntra),
                 "--out", str(out)]) == 2  # fmt: skip
