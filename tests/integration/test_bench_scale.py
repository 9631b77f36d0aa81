"""`mrse bench-scale` end to end on the bundled sample: every stage runs, in its own process,
and reports what the issue asks for (small sizes: cost curves need the full datasets)."""

from __future__ import annotations

import json

from mrse.cli import main
from mrse.data.dataset import load_dataset
from mrse.jobs.bench_scale import RUN_KEYS, ScaleBenchConfig, run_scale_benchmark
from mrse.jobs.plots import plot_scale


def test_bench_scale_runs_every_stage_on_grown_catalogs(sample_hm, small_run, tmp_path):
    # one size: every stage's spawned processes cost ~2 minutes a size here; how the catalog
    # and its events grow is tested on raw tables (tests/unit/test_synthetic.py)
    cfg = ScaleBenchConfig(
        sample_hm, small_run, tmp_path / "work", sizes=(1_000,), recall_queries=20,
        latency_requests=20, load_s=1.0, clients=(2,), train_steps=2, train_examples=300,
        cache_dir=None,
    )  # fmt: skip
    result = run_scale_benchmark(cfg)
    assert set(result["runs"]) == {"1000"}
    for n, row in result["runs"].items():
        assert set(RUN_KEYS) <= set(row), n
        assert row["items"] == int(n)
        # below the HNSW threshold the shard searches exactly: recall is exactly 1
        assert row["recall100"] == row["recall100_filter_10pct"] == 1.0
        assert row["index_disk_mb"] > 0 and row["server_rss_mb"] > 100
        assert 0 < row["p50_ms"] <= row["p99_ms"]
        assert row["qps_at_p99_50ms"] >= 0 and row["load_sweep"][0]["errors"] == 0
        assert row["train"]["memory"]["examples_per_s"] > 0
        assert row["train"]["index"]["refresh_s"] > 0
    real = len(load_dataset(sample_hm).events)
    assert result["runs"]["1000"]["events"] == 2 * real  # grown: two whole replicas of 380
    out = tmp_path / "scale.png"
    plot_scale(result, out)
    assert out.stat().st_size > 10_000


def test_bench_scale_command_writes_json(sample_hm, small_run, tmp_path):
    out = tmp_path / "b.json"
    argv = ["bench-scale", "--data", str(sample_hm), "--run", str(small_run), "--items", "500",
            "--stages", "build", "--edge", "{quantization: int8}", "--work-dir",
            str(tmp_path / "w"), "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert result["edge"] == {"quantization": "int8"}
    assert result["runs"]["500"]["recall100"] > 0.9
    table = (tmp_path / "b.md").read_text()
    assert "| 500 items |" in table and "ANN recall@100, no filter" in table


def test_bench_replica_starts_a_replica_and_rolls_out_from_snapshots(
    sample_hm, small_run, tmp_path
):
    """A replica with no index and no dataset serves from the published snapshot, caught up
    with the writes after it (the benchmark checks the re-priced items itself); a rollout from
    a snapshot fails no request (the old path, replayed from the version's topic, is the
    catalog rollout test's)."""
    out = tmp_path / "r.json"
    argv = ["bench-replica", "--data", str(sample_hm), "--run", str(small_run), "--items",
            "600", "--changes", "40", "--replay-max", "0", "--work-dir", str(tmp_path / "w"),
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    row = json.loads(out.read_text())["runs"]["600"]
    assert row["replica_repriced_found"] == "20/20"
    assert row["replica_start_s"] > 0 and row["rollout_s"] > 0 and "rollout_replay_s" not in row
    assert row["rollout_failed"] == 0 and row["rollout_requests"] > 0
