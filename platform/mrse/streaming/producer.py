"""Replay a dataset's events into Kafka in time order (a stand-in clickstream, or a backfill)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import pandas as pd
from tqdm.auto import tqdm

from mrse.data.dataset import Dataset
from mrse.kafka_client import client_options
from mrse.streaming.events import Event
from mrse.streaming.topics import CLICKS, ensure_topics

logger = logging.getLogger(__name__)


def dataset_events(dataset: Dataset) -> list[Event]:
    """The dataset's user events in time order, with stable ids ``<dataset>:<row>``.

    Rows without a user or a time cannot update a profile and are left out (counted in the log).
    """
    ev = dataset.events
    keep = ev["user_id"].notna() & ev["ts"].notna()
    if (~keep).any():
        logger.info(
            "%s: %d event(s) without user or time are not replayed",
            dataset.name,
            int((~keep).sum()),
        )
    ev = ev[keep].sort_values("ts", kind="stable")
    return [
        Event(
            event_id=f"{dataset.name}:{row}",
            user_id=user,
            item_id=item,
            type=kind,
            ts=pd.Timestamp(ts).value / 1e9,
            query=query if isinstance(query, str) and query else None,
        )
        for row, user, item, kind, ts, query in zip(
            ev.index, ev["user_id"], ev["item_id"], ev["event"], ev["ts"], ev["query"], strict=True
        )
    ]


@dataclass(frozen=True)
class ReplayConfig:
    bootstrap: str
    topic: str = CLICKS
    rate: float = 0.0  # events per second; 0 = as fast as possible
    limit: int | None = None
    encoding: str = "json"  # or "proto"


def replay(events: list[Event], config: ReplayConfig) -> int:
    """Publish ``events`` keyed by user (so one user's events stay ordered in one partition)."""
    from kafka import KafkaProducer

    if config.encoding not in ("json", "proto"):
        raise ValueError("encoding must be 'json' or 'proto'")
    ensure_topics(config.bootstrap, [config.topic])
    producer = KafkaProducer(
        bootstrap_servers=config.bootstrap, acks="all", linger_ms=5, **client_options()
    )
    events = events[: config.limit] if config.limit else events
    start = time.monotonic()
    try:
        for i, e in enumerate(tqdm(events, desc=f"replay to {config.topic}", unit="event")):
            if config.rate > 0:
                wait = start + i / config.rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            value = e.to_json() if config.encoding == "json" else e.to_proto()
            producer.send(config.topic, key=e.user_id.encode(), value=value)
        producer.flush()
    finally:
        producer.close()
    logger.info("replayed %d events in %.1fs", len(events), time.monotonic() - start)
    return len(events)
