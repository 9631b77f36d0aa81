from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from mrse.cli import main
from mrse.training.checkpoint import RunError, load_run
from mrse.training.config import PRESETS, load_config

SMALL = {
    "model": {"dim": 32, "hidden": 64, "sparse_dim": 16, "ngram_buckets": 4096, "recent_items": 5},
    "loss": {"random_negatives": 64, "hard_negatives": 4, "hard_pool": 16},
    "batch_size": 64,
    "epochs": 2,
}


@pytest.fixture
def small_config(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(SMALL))
    return path


def _train(sample, out, config, cache, *extra):
    argv = ["--cache-dir", str(cache), "train", "--data", str(sample), "--out", str(out)]
    return main([*argv, "--config", str(config), *extra])


def test_train_eval_resume_roundtrip(sample_hm, tmp_path, small_config):
    cache = tmp_path / "cache"
    run = tmp_path / "run"
    assert _train(sample_hm, run, small_config, cache) == 0
    info = json.loads((run / "run.json").read_text())
    assert info["training"]["examples"]["validation"] > 0
    assert info["training"]["examples_per_s"] > 0
    assert len(info["training"]["history"]) == 2
    # weights load without unpickling arbitrary objects
    state = torch.load(run / "model.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    loaded = load_run(run)
    assert loaded.config.model.dim == 32 and not loaded.model.training

    out = tmp_path / "eval.json"
    argv = ["--cache-dir", str(cache), "eval", "--data", str(sample_hm), "--run", str(run)]
    assert main([*argv, "--out", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert payload["model"] == "mrse" and payload["queries"] > 0
    assert set(payload["metrics"]) >= {"ndcg@10", "recall@100", "mrr@10", "hr@10"}
    first = next(iter(payload["explanations"].values()))[0]
    assert first["text"] + first["image"] + first["profile"] == pytest.approx(
        first["score"], abs=1e-3
    )

    # resume: two more epochs continue the same history
    assert _train(sample_hm, run, small_config, cache, "--resume", "--epochs", "4") == 0
    history = json.loads((run / "run.json").read_text())["training"]["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]

    # the run's item tower fills a vector index; re-indexing a changed catalog is incremental
    from mrse.index.build import IndexConfig, build_index, open_index

    cfg = IndexConfig(root=tmp_path / "index")
    summary = build_index(sample_hm, run, cfg, version="v1", cache_dir=cache)
    assert summary["count"] == summary["items"] == 380
    smaller = tmp_path / "smaller"
    shutil.copytree(sample_hm, smaller)
    items = pd.read_parquet(smaller / "items.parquet")
    gone = items["item_id"].iloc[-1]
    kept = items.iloc[:-1]
    kept.to_parquet(smaller / "items.parquet", index=False)
    for name in ("events", "qrels"):
        t = pd.read_parquet(smaller / f"{name}.parquet")
        t[t["item_id"].isin(set(kept["item_id"]))].to_parquet(
            smaller / f"{name}.parquet", index=False
        )
    again = build_index(smaller, run, cfg, version="v1", cache_dir=cache)
    assert again["removed"] == 1 and again["count"] == 379
    index = open_index(cfg, "v1", 32)
    assert gone not in {h.item_id for h in index.search(np.ones(32, np.float32), 379)}
    index.close()


def test_training_is_deterministic(sample_myntra, tmp_path, small_config):
    cache = tmp_path / "cache"
    vals = []
    for name in ("a", "b"):
        assert _train(sample_myntra, tmp_path / name, small_config, cache, "--epochs", "1") == 0
        vals.append(json.loads((tmp_path / name / "run.json").read_text())["val"])
    assert vals[0] == vals[1]


def test_config_errors_are_actionable(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"model": {"dimension": 8}}))
    with pytest.raises(ValueError, match="unknown ModelConfig option.*dimension"):
        load_config("mrse", bad)
    with pytest.raises(ValueError, match="unknown model"):
        load_config("bert")
    with pytest.raises(ValueError, match="at least one"):
        load_config("mrse", _yaml(tmp_path, {"loss": {"softmax_weight": 0, "triplet_weight": 0}}))
    assert not load_config("text-tower").model.use_image
    assert set(PRESETS) >= {
        "mrse",
        "text-tower",
        "no-image",
        "no-profile",
        "no-lmoe",
        "no-hard-negatives",
    }


def test_eval_of_missing_run_is_a_clear_error(sample_hm, tmp_path, caplog):
    argv = [
        "eval",
        "--data",
        str(sample_hm),
        "--run",
        str(tmp_path),
        "--out",
        str(tmp_path / "o.json"),
    ]
    assert main(argv) == 2
    assert "not a complete run directory" in caplog.text
    with pytest.raises(RunError):
        load_run(tmp_path)


def _yaml(tmp_path, values):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(values))
    return p


def test_documented_config_file_matches_the_defaults():
    from ..conftest import REPO

    assert load_config("mrse", REPO / "configs" / "mrse.yaml") == load_config("mrse")


def test_memory_mining_trains_and_resumes_to_the_same_model(sample_hm, tmp_path):
    """Hard negatives from the cross-batch memory (loss.mining: memory): a run stopped after
    one epoch and resumed ends with the same weights as one that ran straight through (the
    memory is saved with the run's state)."""
    cfg = tmp_path / "memory.yaml"
    memory = {"mining": "memory", "memory_size": 512}
    cfg.write_text(yaml.safe_dump({**SMALL, "loss": {**SMALL["loss"], **memory}, "patience": 9}))
    cache = tmp_path / "cache"
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert _train(sample_hm, straight, cfg, cache) == 0
    assert _train(sample_hm, stopped, cfg, cache, "--epochs", "1") == 0
    assert _train(sample_hm, stopped, cfg, cache, "--resume", "--epochs", "2") == 0
    state = torch.load(stopped / "train_state.pt", weights_only=True)
    assert state["memory"]["rows"].ge(0).sum() == 512  # filled: mined from, not empty
    a = torch.load(straight / "train_state.pt", weights_only=True)["model"]
    for key, value in state["model"].items():
        assert torch.equal(value, a[key]), key


def test_cold_and_warm_cache_train_the_same_model(sample_hm, tmp_path, monkeypatch):
    """Encoding a cold feature cache is not training time: with a wall-clock cap shorter than
    the encoding, a cold-cache run and a warm-cache run train the same epochs to the same
    validation metrics (before, the cold run's cap fired during encoding, after one epoch).

    The cold run really encodes; its trainer's clock then jumps ten minutes, as on a slow
    machine, so neither the encoder's speed nor the machine's load decides the outcome."""
    from types import SimpleNamespace

    from mrse.training import trainer

    encoding_takes_s, clock_offset = [600.0], [0.0]
    real_prepare = trainer.prepare

    def slow_prepare(*args, **kwargs):
        prep = real_prepare(*args, **kwargs)
        clock_offset[0] += encoding_takes_s[0]
        return prep

    real_clock = trainer.time.perf_counter
    monkeypatch.setattr(trainer, "prepare", slow_prepare)
    monkeypatch.setattr(
        trainer, "time", SimpleNamespace(perf_counter=lambda: real_clock() + clock_offset[0])
    )
    cfg = tmp_path / "capped.yaml"
    cfg.write_text(yaml.safe_dump({**SMALL, "epochs": 3, "patience": 9, "max_minutes": 1.0}))
    cache = tmp_path / "cache"  # empty: the first run encodes every text and photo
    cold, warm = tmp_path / "cold", tmp_path / "warm"
    assert _train(sample_hm, cold, cfg, cache) == 0
    encoding_takes_s[0] = 0.0  # the warm cache encodes nothing
    assert _train(sample_hm, warm, cfg, cache) == 0
    a = json.loads((cold / "run.json").read_text())["training"]
    b = json.loads((warm / "run.json").read_text())["training"]
    assert a["prepare_seconds"] > 60.0 > b["prepare_seconds"]  # the cap, 1 min, fits between
    assert a["stopped_by"] == b["stopped_by"] == "epochs"
    assert [h["epoch"] for h in a["history"]] == [h["epoch"] for h in b["history"]] == [1, 2, 3]
    for x, y in zip(a["history"], b["history"], strict=True):
        assert x["val_ndcg@10"] == y["val_ndcg@10"] and x["loss"] == y["loss"]


def test_runs_saved_before_late_fusion_load_with_the_gate_they_were_trained_with():
    from mrse.training.config import config_from_dict

    old = load_config("mrse").to_dict()
    del old["model"]["profile_fusion"]  # a run.json written before the setting existed
    assert config_from_dict(old).model.profile_fusion == "gate"
    assert config_from_dict(load_config("mrse").to_dict()).model.profile_fusion == "late"


def test_runs_saved_before_the_product_identity_load_without_one():
    from mrse.training.config import config_from_dict

    old = load_config("mrse").to_dict()
    del old["model"]["identity_dim"]  # a late-fusion run.json written before the setting
    assert not config_from_dict(old).model.uses_identity
    new = config_from_dict(load_config("mrse").to_dict()).model
    assert new.uses_identity and (new.main_dim, new.identity_size) == (96, 32)
    # models that cannot read it leave it out
    assert load_config("no-profile").model.identity_size == 0
    assert load_config("gated-profile").model.identity_size == 0
