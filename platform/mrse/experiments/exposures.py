"""The exposure log on Kafka: the server appends one record per served search; the A/B report
reads it back, with the click topic, to join exposures with clicks."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict

from mrse.experiments.report import Exposure
from mrse.kafka_client import client_options
from mrse.streaming.consumer import topic_reader
from mrse.streaming.events import EventError, parse_event
from mrse.streaming.topics import CLICKS, EXPOSURES, ensure_topics

logger = logging.getLogger(__name__)


def exposure_to_json(e: Exposure) -> bytes:
    return json.dumps(asdict(e)).encode()


def exposure_from_json(payload: bytes) -> Exposure:
    """Raises ValueError on a record that is not an exposure."""
    try:
        d = json.loads(payload)
        return Exposure(
            request_id=str(d["request_id"]),
            experiment=str(d["experiment"]),
            arm=str(d["arm"]),
            user_id=str(d["user_id"]),
            item_ids=tuple(str(i) for i in d["item_ids"]),
            ts=float(d["ts"]),
            qa=bool(d.get("qa", False)),
            session_id=str(d.get("session_id", "")),
            unit=str(d.get("unit", "user")),
            # records from before units carry no unit_id: they were assigned by user id
            unit_id=str(d["unit_id"]) if "unit_id" in d else str(d["user_id"]),
            unit_fallback=str(d.get("unit_fallback", "")),
            teams=tuple(str(t) for t in d.get("teams", ())),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"not an exposure record: {exc}") from exc


class ExposureLogger:
    """Appends exposures to ``topic``, keyed by user. Sending is asynchronous (batched by the
    producer), so it costs the request path microseconds; ``close`` flushes what is pending.

    A broker outage never fails or stalls a search: a send blocks at most ``max_block_ms`` (for
    metadata or buffer space), and lost exposures are counted in ``failed`` and logged.
    """

    def __init__(self, bootstrap: str, topic: str = EXPOSURES, max_block_ms: int = 200) -> None:
        from kafka import KafkaProducer

        ensure_topics(bootstrap, [topic])
        self.topic = topic
        self.sent = 0
        self.failed = 0
        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap, acks=1, linger_ms=20, max_block_ms=max_block_ms,
            **client_options(),
        )  # fmt: skip

    def __call__(self, e: Exposure) -> None:
        try:
            future = self._producer.send(
                self.topic, key=e.user_id.encode(), value=exposure_to_json(e)
            )
        except Exception as exc:  # KafkaTimeoutError, buffer full: never the request's problem
            self._on_error(exc)
            return
        future.add_errback(self._on_error)
        self.sent += 1

    def _on_error(self, exc: Exception) -> None:
        self.failed += 1
        logger.warning("exposure not logged: %s", exc)

    def flush(self, timeout: float | None = 10.0) -> None:
        self._producer.flush(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Flush what is pending (up to ``timeout`` seconds), then close. With the broker gone,
        the exposures still pending are lost: counted in ``failed`` and logged, not raised."""
        try:
            self._producer.close(timeout=timeout)
        except Exception as exc:  # KafkaTimeoutError: the broker did not come back in time
            logger.warning("exposure log closed with undelivered exposures: %s", exc)


def read_topic(bootstrap: str, topic: str, timeout_s: float = 30.0) -> list[bytes]:
    """Every record of ``topic`` from the beginning up to its end as of now (no consumer group,
    no committed offsets: reading is side-effect free)."""
    import time

    consumer, tps = topic_reader(bootstrap, topic)
    try:
        if not tps:
            raise LookupError(f"topic {topic!r} does not exist on {bootstrap}")
        end = consumer.end_offsets(tps)
        values: list[bytes] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic!r} took more than {timeout_s:.0f}s")
            for batch in consumer.poll(timeout_ms=500).values():
                values.extend(r.value for r in batch)
        return values
    finally:
        consumer.close()


def read_exposures(bootstrap: str, topic: str = EXPOSURES) -> tuple[list[Exposure], int]:
    """(exposures, number of unreadable records skipped)."""
    out, bad = [], 0
    for value in read_topic(bootstrap, topic):
        try:
            out.append(exposure_from_json(value))
        except ValueError:
            bad += 1
    return out, bad


def read_clicks(bootstrap: str, topic: str = CLICKS) -> tuple[list[tuple[str, str, float]], int]:
    """(clicks as (user_id, item_id, ts), number of invalid events skipped)."""
    out, bad = [], 0
    for value in read_topic(bootstrap, topic):
        try:
            e = parse_event(value)
        except EventError:
            bad += 1
            continue
        if e.type == "click":
            out.append((e.user_id, e.item_id, e.ts))
    return out, bad


def ab_report(
    bootstrap: str,
    experiment: str,
    exposures_topic: str = EXPOSURES,
    clicks_topic: str = CLICKS,
    window_s: float = 3600.0,
    weights: dict[str, float] | None = None,
    control: str | None = None,
) -> dict:
    """Per-arm click-through of ``experiment`` from the exposure and click topics: per
    exposure (``arms``, Wilson intervals: what the report showed before units) and per unit
    (``analysis``: ``mrse.experiments.analysis.experiment_report``, with its ``decision``)."""
    from mrse.experiments.analysis import experiment_report
    from mrse.experiments.report import ctr_by_arm

    exposures, bad_exposures = read_exposures(bootstrap, exposures_topic)
    clicks, bad_clicks = read_clicks(bootstrap, clicks_topic)
    arms = ctr_by_arm(exposures, clicks, experiment, window_s)
    analysis = experiment_report(exposures, clicks, experiment, weights, control, window_s)
    return {
        "decision": analysis["decision"],
        "analysis": analysis,
        "experiment": experiment,
        "window_s": window_s,
        "exposures_read": len(exposures),
        "qa_exposures": sum(e.qa for e in exposures if e.experiment == experiment),
        "clicks_read": len(clicks),
        "skipped_records": bad_exposures + bad_clicks,
        "arms": [asdict(a) for a in arms],
    }
