"""Every service the test suite, the demo and the benchmarks start listens on loopback only:
Kafka and ZooKeeper (whose JVMs open a JMX/RMI port on every interface unless told not to),
Redis, PostgreSQL, the embedded Kafka-protocol broker, the gRPC server and the metrics
endpoints. Checked on every listening socket of every one of those processes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from mrse.metrics_http import serve_metrics
from mrse.serving.background import BackgroundServer
from mrse.streaming.broker import EmbeddedBroker

from .listening import descendants, listeners
from .test_server import stack  # noqa: F401 (the trained model, index and engine)

pytestmark = pytest.mark.integration


def _postmaster(postgres) -> int:
    return int((postgres.data / "postmaster.pid").read_text().split()[0])


def test_every_service_started_listens_on_loopback_only(kafka, redis_server, postgres, stack):  # noqa: F811
    engine = stack[0]
    with EmbeddedBroker() as broker, BackgroundServer(engine) as server:
        metrics = serve_metrics(CollectorRegistry(), 0)
        try:
            pids = descendants(os.getpid()) | descendants(_postmaster(postgres))
            found = listeners(pids)
            ports = {x.port for x in found}
            expected = {kafka.port, kafka.sasl_port, kafka.zk_port, redis_server.port,
                        postgres.port, broker.port, server.port, metrics.port}  # fmt: skip
            assert expected <= ports, f"not seen listening: {expected - ports}"
            java = {x.port for x in found if x.command == "java"}
            assert java >= {kafka.port, kafka.zk_port}  # Kafka and ZooKeeper were looked at
            open_ = [x for x in found if not x.loopback]
            assert not open_, f"listening beyond loopback: {open_}"
        finally:
            metrics.close()
    assert Path("/proc/net/tcp").exists()
