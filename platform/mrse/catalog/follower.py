"""Embedded server processes follow the catalog worker: each applies the index topic to its own
Qdrant Edge shards (a shard opens in one process at a time, so they cannot share one).

The follower reads every partition of the index topic (no consumer group: each process needs
every record) from where its shards left off, recorded next to them after each applied batch;
with no record it starts from the beginning, which converges to the same state (an item's
records are in order and each is its whole net change).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from mrse.catalog.writes import TOPIC_CONFIGS, IndexWrites, for_versions
from mrse.index.base import VectorIndex
from mrse.index.build import FOLLOW_OFFSETS
from mrse.streaming.backoff import keep_trying
from mrse.streaming.consumer import end_offsets, topic_reader
from mrse.streaming.topics import ensure_topics

logger = logging.getLogger(__name__)

OFFSETS_FILE = FOLLOW_OFFSETS


def save_offsets(path: Path, topic: str, offsets: Mapping[int, int]) -> None:
    """Record where the shards next to ``path`` stand in ``topic`` (what a follower starts
    from), replacing the record whole."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({topic: {str(p): int(o) for p, o in offsets.items()}}))
    tmp.replace(path)


def backfill_topic(topic: str, version: str) -> str:
    """Where the catalog worker writes a new model version's index in full."""
    return f"{topic}.{version}"


class IndexFollower:
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        indexes: dict[str, VectorIndex],
        offsets_path: Path,
        poll_timeout_ms: int = 50,
        replay_batch: int = 256,
        replay_pause_s: float = 0.01,
        replay_duty: float = 0.25,
    ) -> None:
        """A new index is filled in batches of ``replay_batch`` records, taking at most
        ``replay_duty`` of the time (at least ``replay_pause_s`` between batches), so a loaded
        server keeps its latency meanwhile."""
        if not 0 < replay_duty <= 1:
            raise ValueError("replay_duty must be in (0, 1]")
        self.replay_batch, self.replay_pause_s = replay_batch, replay_pause_s
        self.replay_duty = replay_duty
        self.bootstrap, self.topic = bootstrap, topic
        self.indexes = indexes
        self.offsets_path = offsets_path
        self.poll_timeout_ms = poll_timeout_ms
        self.applied = 0  # records applied
        self.caught_up = threading.Event()  # set once the records present at start are applied
        self.last_applied = 0.0  # wall time of the last applied batch
        self._stop = threading.Event()
        self._lock = threading.Lock()  # held while a batch is applied and offsets move
        self._offsets: dict[int, int] = {}
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def _saved(self) -> dict[int, int]:
        try:
            raw = json.loads(self.offsets_path.read_text())
            return {int(p): int(o) for p, o in raw.get(self.topic, {}).items()}
        except FileNotFoundError:
            return {}

    def _save(self, offsets: dict[int, int]) -> None:
        save_offsets(self.offsets_path, self.topic, offsets)

    def start(self, catch_up_s: float = 60.0) -> IndexFollower:
        """Start following; returns once the records present now are applied (or after
        ``catch_up_s``, logged; the server then serves while it catches up)."""
        self._thread = threading.Thread(target=self._run, name="index-follower", daemon=True)
        self._thread.start()
        if not self.caught_up.wait(catch_up_s):
            logger.warning(
                "index follower not caught up after %.0fs; serving meanwhile", catch_up_s
            )
        return self

    def _run(self) -> None:
        try:
            ensure_topics(self.bootstrap, [self.topic], configs=TOPIC_CONFIGS)
            consumer, parts = topic_reader(self.bootstrap, self.topic, self._saved(), True,
                                           fetch_max_wait_ms=20,
                                           max_partition_fetch_bytes=8 << 20)  # fmt: skip
        except BaseException as exc:
            self.error = exc
            logger.error("index follower cannot start: %s", exc)
            self.caught_up.set()
            return
        try:
            end = end_offsets(consumer, parts)
            offsets = {tp.partition: consumer.position(tp) for tp in parts}
            self._offsets = dict(offsets)
            logger.info("index follower on %s from %s (end %s)", self.topic, offsets, end)
            while not self._stop.is_set():
                if not self.caught_up.is_set() and all(offsets[p] >= o for p, o in end.items()):
                    self.caught_up.set()
                polled = consumer.poll(timeout_ms=self.poll_timeout_ms, max_records=2000)
                records = sorted(
                    (r for batch in polled.values() for r in batch),
                    key=lambda r: (r.partition, r.offset),
                )
                if not records:
                    continue
                with self._lock:
                    mine = [r.value for r in records if for_versions(r.headers, self.indexes)]
                    writes = IndexWrites.from_records(mine)
                    # a shard that fails a write (disk full) is retried, never skipped: the
                    # offsets do not move past what it holds
                    ok, _ = keep_trying(lambda w=writes: w.apply(self.indexes),
                                        "index follower write", self._stop, 30.0)  # fmt: skip
                    if not ok:
                        break
                    for r in records:
                        offsets[r.partition] = max(offsets[r.partition], r.offset + 1)
                    self._save(offsets)
                    self._offsets = dict(offsets)
                self.applied += len(records)
                self.last_applied = time.time()
        except BaseException as exc:
            self.error = exc
            logger.exception("index follower stopped")
        finally:
            self.caught_up.set()
            consumer.close()

    @contextmanager
    def held(self) -> Iterator[dict[int, int]]:
        """No batch is applied meanwhile; yields where the indexes stand in the log."""
        with self._lock:
            yield dict(self._offsets)

    def add(
        self,
        version: str,
        index: VectorIndex,
        start: dict[int, int] | None = None,
        backfill: bool = True,
    ) -> None:
        """Follow into one more index (a model version loaded while serving): its full
        contents are replayed from its own topic (``<topic>.<version>``, written by the catalog
        worker when the version was announced; ``backfill`` False: ``index`` holds them already,
        restored from a snapshot), then the main log from ``start`` (where it stood then;
        default the beginning), its last stretch while the follower waits; then it is followed
        with the others. Blocks until then."""
        only = {version: index}
        if backfill:
            self._replay(backfill_topic(self.topic, version), only, None, until_end=True)
        with self._lock:  # the follower waits while the new index catches up with it
            self._replay(self.topic, only, start or {}, until=dict(self._offsets))
            self.indexes = {**self.indexes, version: index}
        logger.info("index follower: %s added", version)

    def _replay(
        self,
        topic: str,
        indexes: dict[str, VectorIndex],
        start: dict[int, int] | None,
        until: dict[int, int] | None = None,
        until_end: bool = False,
    ) -> None:
        """Apply ``topic`` from ``start`` (None: the beginning) to ``until`` (or its end) to
        ``indexes``, in batches taking at most ``replay_duty`` of the time (serving goes first:
        the GIL is shared, and kafka-python decodes records in Python)."""
        consumer, parts = topic_reader(self.bootstrap, topic, start, fetch_max_wait_ms=20,
                                       max_partition_fetch_bytes=1 << 20)  # fmt: skip
        try:
            if not parts:
                return
            if until_end:
                until = end_offsets(consumer, parts)
            assert until is not None
            while any(consumer.position(tp) < until.get(tp.partition, 0) for tp in parts):
                t = time.perf_counter()
                polled = consumer.poll(timeout_ms=200, max_records=self.replay_batch)
                records = []
                for tp, batch in polled.items():
                    stop_at = until.get(tp.partition, 0)
                    records += [r for r in batch if r.offset < stop_at]
                    if batch and batch[-1].offset >= stop_at:
                        consumer.seek(tp, stop_at)
                records.sort(key=lambda r: (r.partition, r.offset))
                mine = [r.value for r in records if for_versions(r.headers, indexes)]
                IndexWrites.from_records(mine).apply(indexes)
                busy = time.perf_counter() - t
                time.sleep(max(self.replay_pause_s, busy * (1 / self.replay_duty - 1)))
        finally:
            consumer.close()

    def remove(self, version: str) -> None:
        with self._lock:
            self.indexes = {v: i for v, i in self.indexes.items() if v != version}

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
