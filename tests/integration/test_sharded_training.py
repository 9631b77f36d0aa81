"""Two-process TorchRec training (gloo, table-wise sharding) produces a servable model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from mrse.cli import main
from mrse.training.checkpoint import load_run

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration

SMALL = {
    "model": {"dim": 32, "hidden": 64, "sparse_dim": 16, "ngram_buckets": 4096, "recent_items": 5},
    "loss": {"random_negatives": 64, "hard_negatives": 4, "hard_pool": 16},
    "batch_size": 64,
    "epochs": 3,
    "patience": 10,
}


def test_two_process_table_wise_training(sample_hm, tmp_path):
    config = tmp_path / "small.yaml"
    config.write_text(yaml.safe_dump(SMALL))
    run = tmp_path / "run"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MRSE_CACHE_DIR": str(tmp_path / "cache"),
        "HF_HUB_OFFLINE": "1",
    }
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(REPO / "trainers" / "train.py"),
        "--data", str(sample_hm), "--out", str(run), "--config", str(config),
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    training = json.loads((run / "run.json").read_text())["training"]
    assert training["world_size"] == 2
    # every table placed whole on one rank, and both ranks hold tables
    assert set(training["sharding"]) == {
        "item_ngram", "category", "brand", "query_ngram", "profile_category"
    }  # fmt: skip
    assert set(training["sharding"].values()) == {0, 1}
    losses = [h["loss"] for h in training["history"]]
    assert losses[-1] < losses[0]
    # the checkpoint is a plain state dict of the single-process model: it loads and serves
    state = torch.load(run / "model.pt", weights_only=True)
    assert state["item_tower.ebc.embedding_bags.item_ngram.weight"].shape == (4096, 16)
    assert state["item_tower.ebc.embedding_bags.item_ngram.weight"].abs().sum() > 0
    load_run(run)
    out = tmp_path / "eval.json"
    argv = ["--cache-dir", str(tmp_path / "cache"), "eval", "--data", str(sample_hm)]
    assert main([*argv, "--run", str(run), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["metrics"]["recall@500"] > 0
