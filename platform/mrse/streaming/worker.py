"""The stream worker: Kafka clickstream -> validated events -> profiles -> Feast.

Feast's StreamProcessor shape: ingest (poll a micro-batch), transform (validate, fold into
profiles), write (push to the online store), then commit the consumer offsets. Offsets are
committed only after the push and after dead letters are flushed: at-least-once delivery, made
exactly-once in effect by the updater's event-id idempotency. Memory is bounded by one batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from kafka import ConsumerRebalanceListener

from mrse.streaming.backoff import keep_trying
from mrse.streaming.consumer import batch_consumer, batches, commit, subscribe
from mrse.streaming.dead_letters import (
    DeadLetterWriter,
    parse_or_letter,
)
from mrse.streaming.events import Event, EventError, parse_event
from mrse.streaming.topics import CLICKS, DEAD_LETTER, ensure_topics
from mrse.streaming.updater import ApplyResult, ProfileUpdater

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerConfig:
    bootstrap: str
    topic: str = CLICKS
    dead_letter_topic: str = DEAD_LETTER
    group_id: str = "mrse-profile-worker"
    max_batch: int = 1000
    poll_timeout_ms: int = 100
    fetch_max_wait_ms: int = 20  # low: a fetch that waits for more data delays freshness
    session_timeout_ms: int = 6000
    dead_letter_max_payload_bytes: int = 64 * 1024  # a bad event's payload kept in its DLQ copy
    dead_letter_retry_max_s: float = 30.0  # back-off cap while the DLQ cannot be written
    store_retry_max_s: float = 30.0  # back-off cap while the feature store cannot be written

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError("max_batch must be >= 1")


@dataclass
class WorkerStats:
    consumed: int = 0
    applied: int = 0
    duplicates: int = 0
    batches: int = 0
    dead_lettered: Counter = field(default_factory=Counter)
    dead_letter_failures: int = 0  # attempts to write the DLQ that failed (retried)
    dead_letter_blocked: bool = False  # True while the DLQ cannot be written
    store_failures: int = 0  # failed writes to the feature store (retried)
    store_blocked: bool = False  # True while the feature store cannot be written
    commit_failures: int = 0  # commits refused after a rebalance (the batch is redelivered)


class _ClearCacheOnRebalance(ConsumerRebalanceListener):
    """Partitions moved: cached profiles may now be written by another worker."""

    def __init__(self, updater: ProfileUpdater) -> None:
        self.updater = updater

    def on_partitions_revoked(self, revoked) -> None:
        self.updater.clear_cache()

    def on_partitions_assigned(self, assigned) -> None:
        self.updater.clear_cache()


class _KnownItems:
    """The items a batch's events may name: the updater's, and, on the first miss of a batch,
    the items the catalog added meanwhile (one wait of ``NEW_ITEM_WAIT_S`` at most per batch:
    a click may overtake its item's catalog event)."""

    def __init__(
        self, updater: ProfileUpdater, new_items: Callable[[float], Mapping[str, str]] | None
    ) -> None:
        self.updater = updater
        self.new_items = new_items
        if new_items is not None:
            updater.add_items(new_items(0.0))

    def __contains__(self, item_id: object) -> bool:
        if not isinstance(item_id, str):
            return False
        if self.updater.knows(item_id):
            return True
        if self.new_items is not None:
            self.updater.add_items(self.new_items(NEW_ITEM_WAIT_S))
            self.new_items = None  # waited once this batch
        return self.updater.knows(item_id)


NEW_ITEM_WAIT_S = 1.0


class StreamWorker:
    """Consumes ``config.topic`` until ``stop`` is set (or ``idle_exit_s`` pass with no data)."""

    def __init__(
        self,
        config: WorkerConfig,
        updater: ProfileUpdater,
        on_written: Callable[[list[Event], float], None] | None = None,
        new_items: Callable[[float], Mapping[str, str]] | None = None,
    ) -> None:
        """``on_written(events, t)`` is called after each batch's push (for freshness metrics);
        ``new_items(wait_s)``: the items the catalog added since the last call (item id ->
        category, waiting at most ``wait_s`` for them; ``mrse.catalog.listen``), so a click on
        a new item is folded in, not dead-lettered as ``unknown_item``."""
        self.config = config
        self.updater = updater
        self.on_written = on_written
        self.new_items = new_items
        self.stats = WorkerStats()
        self.ready = threading.Event()  # set once partitions are assigned

    def run(
        self, stop: threading.Event | None = None, idle_exit_s: float | None = None
    ) -> WorkerStats:
        c = self.config
        ensure_topics(c.bootstrap, [c.topic, c.dead_letter_topic])
        consumer = batch_consumer(
            c.bootstrap, c.group_id, c.max_batch, c.fetch_max_wait_ms, c.session_timeout_ms
        )
        dlq = DeadLetterWriter.to_topic(
            c.bootstrap, c.dead_letter_topic, c.dead_letter_max_payload_bytes,
            c.dead_letter_retry_max_s, on_failure=self._on_dead_letter_failure,
        )  # fmt: skip
        stop = stop or threading.Event()
        logger.info("stream worker consuming %s as %s from %s", c.topic, c.group_id, c.bootstrap)
        try:
            # in the try: a broker gone for good closes the consumer and the DLQ writer
            subscribe(consumer, [c.topic], listener=_ClearCacheOnRebalance(self.updater))
            for records in batches(
                consumer, stop, self.ready, c.poll_timeout_ms, c.max_batch, idle_exit_s
            ):
                if not self._process(records, dlq, stop):
                    break  # stopped while the DLQ was not writable: nothing past it committed
                if not commit(consumer):
                    self.stats.commit_failures += 1
        finally:
            dlq.close()
            consumer.close()
        logger.info("stream worker stopped: %s", self.stats)
        return self.stats

    def _apply(self, events: list[Event], stop: threading.Event) -> ApplyResult | None:
        """Apply ``events``; while the feature store fails, retry with back-off (re-applying
        is safe: profiles are re-read and event ids already written are skipped). None when
        stopped first."""
        st = self.stats

        def failed() -> None:
            st.store_failures += 1
            st.store_blocked = True

        def recovered() -> None:
            st.store_blocked = False

        ok, result = keep_trying(lambda: self.updater.apply(events), "feature store write", stop,
                                 self.config.store_retry_max_s, failed, recovered)  # fmt: skip
        return result if ok else None

    def _on_dead_letter_failure(self) -> None:
        self.stats.dead_letter_failures += 1
        self.stats.dead_letter_blocked = True

    def _process(self, records: list, dlq: DeadLetterWriter, stop: threading.Event) -> bool:
        """Validate, apply, dead-letter; False when stopped before the dead letters landed."""
        now = time.time()
        known = _KnownItems(self.updater, self.new_items)
        parsed, letters = parse_or_letter(
            records, lambda v: parse_event(v, known, now), EventError,
            self.config.dead_letter_max_payload_bytes, self.stats.dead_lettered,
        )  # fmt: skip
        events = [e for e, _ in parsed]
        result = self._apply(events, stop)
        if result is None:
            return False  # stopped while the store was down: nothing committed
        if self.on_written is not None:
            self.on_written(events, time.time())
        durable = dlq.write(letters, stop)  # dead letters land before the offsets move on
        self.stats.dead_letter_blocked = not durable
        self.stats.consumed += len(records)
        self.stats.applied += result.applied
        self.stats.duplicates += result.duplicates
        self.stats.batches += 1
        return durable
