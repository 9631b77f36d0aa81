"""The catalog's new items, for the processes that must know them but keep no index: the stream
worker (a click on an item added after its catalog snapshot is folded into the profile, not
dead-lettered as ``unknown_item``).

Reads the catalog topic with no consumer group, from its beginning at start (what it learns is
held in memory only), and answers each poll with the items upserted since the last one. Bad
events are skipped: the catalog worker dead-letters them.
"""

from __future__ import annotations

import logging

from mrse.catalog.events import CatalogEventError, parse_catalog_event
from mrse.streaming.consumer import topic_reader
from mrse.streaming.topics import CATALOG, ensure_topics

logger = logging.getLogger(__name__)


class CatalogListener:
    """``listener(wait_s)`` -> {item id: category} of the items upserted since the last call."""

    def __init__(self, bootstrap: str, topic: str = CATALOG) -> None:
        ensure_topics(bootstrap, [topic])
        self._consumer, self._parts = topic_reader(bootstrap, topic, exists=True,
                                                   fetch_max_wait_ms=20)  # fmt: skip
        self.items = 0  # items learnt

    def __call__(self, wait_s: float = 0.0) -> dict[str, str]:
        polled = self._consumer.poll(timeout_ms=int(wait_s * 1000))
        found: dict[str, str] = {}
        for batch in polled.values():
            for record in batch:
                try:
                    event = parse_catalog_event(record.value)
                except CatalogEventError:
                    continue
                if event.kind == "upsert" and event.content is not None:
                    found[event.item_id] = event.content.category
        self.items += len(found)
        return found

    def close(self) -> None:
        self._consumer.close()
