"""`mrse catalog publish`: catalog events from a JSONL file or a whole dataset onto the catalog
topic, keyed by item id (one item's events stay in one partition, in order)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from pathlib import Path

from tqdm.auto import tqdm

from mrse.catalog.events import CatalogEvent, CatalogEventError, dataset_items, parse_catalog_event
from mrse.data.dataset import Dataset
from mrse.kafka_client import client_options

logger = logging.getLogger(__name__)


def dataset_upserts(dataset: Dataset, version: int | None = None) -> list[CatalogEvent]:
    """Every item of ``dataset`` as an upsert (in stock), at ``version`` (default: now, ms)."""
    now_ms = int(time.time() * 1000)
    version = version or now_ms
    out = [
        CatalogEvent(
            f"{item_id}@{version}", item_id, version, now_ms / 1000, "upsert", content, attributes
        )  # fmt: skip
        for item_id, content, attributes in dataset_items(dataset)
    ]
    return out


def read_jsonl(path: Path) -> tuple[list[CatalogEvent], list[str]]:
    """The valid events of a JSONL file, and one message per invalid line (not published)."""
    events, errors = [], []
    with path.open("rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                events.append(parse_catalog_event(line))
            except CatalogEventError as exc:
                errors.append(f"{path}:{n}: {exc}")
    return events, errors


def publish(bootstrap: str, topic: str, events: Iterable[CatalogEvent]) -> int:
    """Send ``events`` (JSON) and wait until the broker has every one; returns how many."""
    from kafka import KafkaProducer

    from mrse.streaming.topics import ensure_topics

    ensure_topics(bootstrap, [topic])
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, **client_options()
    )
    sent = 0
    try:
        futures = []
        for e in tqdm(events, desc="publish", unit="event"):
            futures.append(producer.send(topic, key=e.item_id.encode(), value=e.to_json()))
            sent += 1
        producer.flush()
        for f in futures:
            f.get(timeout=30)
    finally:
        producer.close()
    logger.info("published %d catalog event(s) to %s", sent, topic)
    return sent
