"""The exposure log on a real Kafka-protocol broker (the embedded one)."""

from __future__ import annotations

import time

import pytest

from mrse.experiments.exposures import ExposureLogger, read_exposures
from mrse.experiments.report import Exposure
from mrse.streaming.broker import EmbeddedBroker

pytestmark = pytest.mark.integration


def test_exposures_round_trip_and_junk_is_skipped(tmp_path):
    sent = [
        Exposure("r1", "e", "a", "u1", ("i1", "i2"), 1.5e9),
        Exposure("r2", "e", "b", "", (), 1.5e9 + 1, qa=True),
    ]
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker:
        log = ExposureLogger(broker.bootstrap, topic="exp")
        for e in sent:
            log(e)
        log._producer.send("exp", value=b"not json")
        log.close()
        got, bad = read_exposures(broker.bootstrap, topic="exp")
        assert got == sent and bad == 1
        with pytest.raises(LookupError):
            read_exposures(broker.bootstrap, topic="no-such-topic")


def test_a_broker_outage_never_blocks_or_fails_a_search(tmp_path):
    broker = EmbeddedBroker(log_path=tmp_path / "broker.log").start()
    log = ExposureLogger(broker.bootstrap, topic="exp", max_block_ms=200)
    log(Exposure("r0", "e", "a", "u", ("i",), 1.5e9))
    log.flush()
    broker.stop()
    t = time.perf_counter()
    for i in range(200):
        log(Exposure(f"r{i + 1}", "e", "a", "u", ("i",), 1.5e9))
    assert (time.perf_counter() - t) / 200 < 0.25  # at most max_block_ms per search, no raise
    t = time.perf_counter()
    log.close(timeout=1.0)  # the pending exposures are lost, logged; shutdown is not held up
    assert time.perf_counter() - t < 5.0
