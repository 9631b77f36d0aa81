"""Session-scoped real services (Kafka + ZooKeeper, Redis, PostgreSQL) for integration tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from .services import Kafka, Postgres, Redis


@pytest.fixture(scope="session")
def kafka(tmp_path_factory):
    k = Kafka(tmp_path_factory.mktemp("kafka")).start()
    yield k
    k.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    r = Redis(tmp_path_factory.mktemp("redis"))
    yield r
    r.stop()


@pytest.fixture(scope="session")
def postgres():
    p = Postgres()
    yield p
    p.stop()


# A small MRSE model that trains in seconds on the bundled hm sample.
SMALL = {
    "model": {"dim": 32, "hidden": 64, "sparse_dim": 16, "ngram_buckets": 4096, "recent_items": 5},
    "loss": {"random_negatives": 64, "hard_negatives": 4, "hard_pool": 16},
    "batch_size": 64,
    "epochs": 2,
}


@pytest.fixture(scope="session")
def small_run(sample_hm, tmp_path_factory) -> Path:
    """A run of ``SMALL`` trained once per session on the hm sample; tests only read it."""
    from mrse.cli import main

    tmp = tmp_path_factory.mktemp("small-run")
    config = tmp / "small.yaml"
    config.write_text(yaml.safe_dump(SMALL))
    run = tmp / "run"
    assert (
        main(["train", "--data", str(sample_hm), "--out", str(run), "--config", str(config)]) == 0
    )
    return run
