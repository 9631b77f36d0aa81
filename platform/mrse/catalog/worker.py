"""The catalog worker: catalog events -> validated -> planned against the item state ->
encoded where content changed -> written to every model version's index -> state -> offsets.

Per batch: dead letters for bad events (with the reason; an item whose photo cannot be used is
still written, from its text); the index writes, retried with back-off until they land; the
item state; the dead letters; then the Kafka offsets. A kill at any point replays the batch,
and the item versions make the replay change nothing that had landed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from mrse.catalog.encoding import ItemEncoder
from mrse.catalog.events import CatalogEvent, CatalogEventError, parse_catalog_event
from mrse.catalog.follower import backfill_topic
from mrse.catalog.plan import plan_batch
from mrse.catalog.registry import ModelRegistry
from mrse.catalog.snapshots import Snapshotter
from mrse.catalog.state import CatalogState
from mrse.catalog.writes import TOPIC_CONFIGS, IndexWrites, item_partition, plan_writes
from mrse.index.base import VectorIndex
from mrse.index.build import IndexConfig, open_index
from mrse.streaming.backoff import keep_trying
from mrse.streaming.consumer import (
    batch_consumer,
    batches,
    commit,
    end_offsets,
    subscribe,
    topic_reader,
)
from mrse.streaming.dead_letters import (
    DeadLetterWriter,
    dead_letter_producer,
    parse_or_letter,
    record_letter,
)
from mrse.streaming.topics import CATALOG, CATALOG_DLQ, ensure_topics

logger = logging.getLogger(__name__)

CATALOG_INDEX = "mrse.catalog.index"


class IndexSink(Protocol):
    def write(self, writes: IndexWrites, backfill: str | None = None) -> None:
        """Make ``writes`` durable (raise if they may not be); ``backfill``: they fill that new
        model version's index in full."""
        ...

    def position(self) -> dict[int, int] | None:
        """Where the written log stands (a topic's end offsets), None when there is no log."""
        ...

    def close(self) -> None: ...


class DirectSink:
    """Writes to the indexes themselves (a Qdrant server: every server process reads it); a
    model version's index is opened (created) at its first write."""

    def __init__(self, config: IndexConfig) -> None:
        self.config = config
        self.indexes: dict[str, VectorIndex] = {}

    def write(self, writes: IndexWrites, backfill: str | None = None) -> None:
        for u in writes.upserts.values():
            for version, (vec, _) in u.vectors.items():
                if version not in self.indexes:
                    self.indexes[version] = open_index(self.config, version, len(vec))
        writes.apply(self.indexes)

    def position(self) -> dict[int, int] | None:
        return None

    def close(self) -> None:
        for index in self.indexes.values():
            index.close()
        self.indexes.clear()


class TopicSink:
    """Writes to the index topic, for embedded server processes to apply to their own Edge
    shards (an Edge shard opens in one process at a time). Every record acknowledged by all
    replicas, one request in flight (a retry cannot reorder an item's records)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self._producer = None
        self._topics: set[str] = set()

    def write(self, writes: IndexWrites, backfill: str | None = None) -> None:
        """A backfill goes to the version's own topic: servers that do not load it never
        fetch it (kafka-python decodes every fetched record in Python)."""
        topic = self.topic if backfill is None else backfill_topic(self.topic, backfill)
        if topic not in self._topics:
            ensure_topics(self.bootstrap, [topic], configs=TOPIC_CONFIGS)
            self._topics.add(topic)
        if self._producer is None:
            self._producer = dead_letter_producer(
                self.bootstrap, max_in_flight_requests_per_connection=1, max_request_size=4 << 20
            )
        try:
            parts = sorted(self._producer.partitions_for(topic))
            futures = [self._producer.send(topic, key=k, value=v, headers=h,
                                           partition=item_partition(item_id, parts))
                       for item_id, k, v, h in writes.to_records()]  # fmt: skip
            self._producer.flush(30)
            for f in futures:
                f.get(timeout=0)
        except Exception:
            self.close()  # a fresh producer for the retry
            raise

    def position(self) -> dict[int, int] | None:
        consumer, parts = topic_reader(self.bootstrap, self.topic, exists=True)
        try:
            return end_offsets(consumer, parts)
        finally:
            consumer.close()

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=5)
            self._producer = None


@dataclass(frozen=True)
class CatalogWorkerSettings:
    bootstrap: str
    topic: str = CATALOG
    dead_letter_topic: str = CATALOG_DLQ
    group_id: str = "mrse-catalog-worker"
    max_batch: int = 500
    poll_timeout_ms: int = 100
    fetch_max_wait_ms: int = 20
    session_timeout_ms: int = 10_000
    dead_letter_max_payload_bytes: int = 64 * 1024
    retry_max_s: float = 30.0  # back-off cap while the index or the DLQ cannot be written


@dataclass
class CatalogStats:
    consumed: int = 0
    encoded: int = 0
    patched: int = 0
    deleted: int = 0
    stale: int = 0
    batches: int = 0
    dead_lettered: Counter = field(default_factory=Counter)
    write_failures: int = 0
    blocked: bool = False
    backfilled: dict = field(default_factory=dict)  # model version -> items written


class CatalogWorker:
    def __init__(
        self,
        settings: CatalogWorkerSettings,
        state: CatalogState,
        encoder: ItemEncoder,
        sink: IndexSink,
        on_written: Callable[[list[CatalogEvent], float], None] | None = None,
        registry: ModelRegistry | None = None,
        snapshotter: Snapshotter | None = None,
    ) -> None:
        """``registry``: where new model versions are announced (``mrse rollout``); the worker
        writes each one's whole index, then marks it ready, then keeps it current.
        ``snapshotter`` (the Edge backend): publishes index snapshots for new replicas, one
        with each new version before it is marked ready."""
        self.registry = registry
        self.snapshotter = snapshotter
        self.settings = settings
        self.state = state
        self.encoder = encoder
        self.sink = sink
        self.on_written = on_written
        self.stats = CatalogStats()
        self.ready = threading.Event()

    def run(self, stop: threading.Event | None = None, idle_exit_s: float | None = None):
        s = self.settings
        self.encoder.warm_up()
        ensure_topics(s.bootstrap, [s.topic, s.dead_letter_topic])
        consumer = batch_consumer(
            s.bootstrap, s.group_id, s.max_batch, s.fetch_max_wait_ms, s.session_timeout_ms,
            max_poll_interval_ms=900_000,  # a batch of new photos is encoded between polls
        )  # fmt: skip
        dlq = DeadLetterWriter.to_topic(
            s.bootstrap, s.dead_letter_topic, s.dead_letter_max_payload_bytes, s.retry_max_s
        )
        stop = stop or threading.Event()
        logger.info("catalog worker consuming %s as %s from %s", s.topic, s.group_id, s.bootstrap)
        try:
            subscribe(consumer, [s.topic])  # in the try: a broker gone for good closes all
            if self.snapshotter is not None:
                self.snapshotter.start()
            if self.registry is not None and not self._adopt_new_versions(stop):
                return self.stats
            next_watch = time.monotonic() + (self.registry.watch_s if self.registry else 0)
            for records in batches(
                consumer, stop, self.ready, s.poll_timeout_ms, s.max_batch, idle_exit_s,
                idle_ticks=self.registry is not None,
            ):  # fmt: skip
                if records:
                    if not self._process(records, dlq, stop):
                        break  # stopped before the batch landed: nothing committed
                    commit(consumer)
                if self.registry is not None and time.monotonic() >= next_watch:
                    next_watch = time.monotonic() + self.registry.watch_s
                    if not self._adopt_new_versions(stop):
                        break
        finally:
            dlq.close()
            consumer.close()
            self.sink.close()
            if self.snapshotter is not None:
                self.snapshotter.close()
        logger.info("catalog worker stopped: %s", self.stats)
        return self.stats

    def _adopt_new_versions(self, stop: threading.Event) -> bool:
        """Write the whole index of every registered version not ready yet; False if stopped."""
        assert self.registry is not None
        for version, (run_dir, ready) in self.registry.pending(set(self.encoder.runs)).items():
            from mrse.training.checkpoint import load_run

            started = time.monotonic()
            self.encoder.runs[version] = load_run(run_dir)
            if ready:  # written before this worker started: kept current from now on
                continue
            written = 0
            start = self.sink.position()  # the backfill and everything after it lie past here
            for trusted, chunk in self.registry.catalog(self.state):
                upserts, _ = self.encoder.encode(chunk, [version], trusted=trusted)
                writes = IndexWrites()
                for item_id, u in upserts.items():
                    writes.add("upsert", item_id, upsert=u)
                if not self._write(writes, stop, backfill=version):
                    return False
                written += len(upserts)
            if self.snapshotter is not None:  # replicas load it from there, graph built
                self.snapshotter.add(version, self.encoder.runs[version].config.model.dim, start)
            self.registry.mark_ready(version, start)
            self.stats.backfilled[version] = written
            logger.info("model version %s: %d items written in %.1fs; ready", version, written,
                        time.monotonic() - started)  # fmt: skip
        return True

    def _process(self, records: list, dlq: DeadLetterWriter, stop: threading.Event) -> bool:
        now = time.time()
        max_payload = self.settings.dead_letter_max_payload_bytes
        parsed, letters = parse_or_letter(
            records, lambda v: parse_catalog_event(v, now), CatalogEventError, max_payload,
            self.stats.dead_lettered,
        )  # fmt: skip
        events = [e for e, _ in parsed]
        source = {id(e): r for e, r in parsed}  # for the dead letters of unusable photos
        plan = plan_batch(events, self.state.get_many([e.item_id for e in events]))
        to_encode = [c for c in plan.changes.values() if c.kind == "encode"]
        upserts: dict = {}
        if to_encode:
            upserts, problems = self.encoder.encode(to_encode)
            for item_id, exc in problems.items():
                last = plan.changes[item_id].events[-1]
                self.stats.dead_lettered[exc.reason] += 1
                letters.append(record_letter(source[id(last)], exc.reason, str(exc), max_payload))
        writes = plan_writes(plan, upserts)
        if not self._write(writes, stop):
            return False
        self.state.put_many(plan.states)
        if self.on_written is not None:
            self.on_written(events, time.time())
        if not dlq.write(letters, stop):
            return False
        st = self.stats
        st.consumed += len(records)
        st.encoded += len(writes.upserts)
        st.patched += len(writes.patches)
        st.deleted += len(writes.deletes)
        st.stale += len(plan.stale)
        st.batches += 1
        return True

    def _write(
        self, writes: IndexWrites, stop: threading.Event, backfill: str | None = None
    ) -> bool:
        if not len(writes):
            return True
        st = self.stats

        def failed() -> None:
            st.write_failures += 1
            st.blocked = True

        def recovered() -> None:
            st.blocked = False

        ok, _ = keep_trying(lambda: self.sink.write(writes, backfill), "index write", stop,
                            self.settings.retry_max_s, failed, recovered)  # fmt: skip
        return ok
