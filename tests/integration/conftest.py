"""Session-scoped real services (Kafka + ZooKeeper, Redis, PostgreSQL) for integration tests."""

from __future__ import annotations

import pytest

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
