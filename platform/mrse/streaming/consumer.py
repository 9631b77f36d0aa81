"""The consume loop the stream worker and the catalog worker share: poll micro-batches until
stopped or idle, commit after each batch's writes (at-least-once; the workers make redelivery a
no-op)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

from mrse.kafka_client import client_options

logger = logging.getLogger(__name__)

UNASSIGNED_WARNING_S = 30.0


def batch_consumer(bootstrap: str, group_id: str, max_batch: int, fetch_max_wait_ms: int,
                   session_timeout_ms: int, **kwargs):  # fmt: skip
    """A consumer with manual commits that starts from the earliest offset of a new group."""
    from kafka import KafkaConsumer

    return KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=max_batch,
        fetch_max_wait_ms=fetch_max_wait_ms,
        session_timeout_ms=session_timeout_ms,
        heartbeat_interval_ms=max(100, session_timeout_ms // 3),
        **client_options(),
        **kwargs,
    )


def subscribe(consumer, topics: list[str], listener=None, timeout_s: float = 60.0) -> None:
    """Join the consumer's group for ``topics`` once the consumer's metadata holds each topic's
    partitions. kafka-python joins on whatever metadata it has: a join that races the first
    metadata answer for a topic created moments before is assigned nothing, and when the
    re-join that should follow is missed the consumer sits idle until the next metadata
    refresh (``metadata.max.age.ms``, 5 minutes). A broker that is down or restarting is
    waited for too (every retriable Kafka error; the others, such as a refused authorisation,
    are raised at once). ``TimeoutError`` when a topic still has no partitions after
    ``timeout_s``."""
    from kafka.errors import KafkaError

    deadline = time.monotonic() + timeout_s
    while True:
        error: Exception | None = None
        try:
            consumer.topics()  # a metadata request to the cluster, every topic
            missing = [t for t in topics if not consumer.partitions_for_topic(t)]
        except KafkaError as exc:  # broker down or restarting: retried; refusals are not
            if not exc.retriable:
                raise
            missing, error = list(topics), exc
        if not missing:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"topics {missing} have no partitions after {timeout_s:.0f}s"
                + (f" (last error: {type(error).__name__}: {error})" if error else "")
            ) from error
        time.sleep(0.2)
    consumer.subscribe(topics, listener=listener)


def batches(
    consumer,
    stop: threading.Event,
    ready: threading.Event,
    poll_timeout_ms: int,
    max_batch: int,
    idle_exit_s: float | None = None,
    idle_ticks: bool = False,
) -> Iterator[list]:
    """Non-empty lists of records until ``stop`` is set or, once partitions are assigned
    (``ready`` then set), ``idle_exit_s`` pass without data. ``idle_ticks``: an empty list
    after each poll that brought nothing (for work between batches)."""
    last_data = time.monotonic()
    warn_at = last_data + UNASSIGNED_WARNING_S
    while not stop.is_set():
        polled = consumer.poll(timeout_ms=poll_timeout_ms, max_records=max_batch)
        records = [r for batch in polled.values() for r in batch]
        if not ready.is_set():
            if not consumer.assignment():
                if time.monotonic() > warn_at:  # once: it may be meant (a standby consumer)
                    warn_at = float("inf")
                    logger.warning(
                        "no partition assigned after %.0fs to this consumer of %s: the group "
                        "already has a consumer for every partition, or the broker is not "
                        "answering",
                        UNASSIGNED_WARNING_S, sorted(consumer.subscription() or ()),
                    )  # fmt: skip
                continue  # still joining the group: not idle yet, however long it takes
            ready.set()
            last_data = time.monotonic()  # idle time counts from the assignment
        if not records:
            if idle_exit_s is not None and time.monotonic() - last_data > idle_exit_s:
                return
            if idle_ticks:
                yield []
            continue
        last_data = time.monotonic()
        yield records


def commit(consumer) -> bool:
    """Commit the consumed offsets; False when the group refused: after this worker waited
    past ``max.poll.interval``, or while the group rebalances (kafka-python 3 raises
    ``RebalanceInProgressError`` then, and the next poll re-joins). Nothing is lost: a worker
    that takes the partition over gets the batch again; this one, if it keeps the partition,
    goes on after it, and its next commit covers both."""
    from kafka.errors import CommitFailedError, RebalanceInProgressError

    try:
        consumer.commit()
        return True
    except (CommitFailedError, RebalanceInProgressError) as exc:
        logger.warning("offset commit refused (%s); the batch will be redelivered", exc)
        return False


def topic_reader(
    bootstrap: str,
    topic: str,
    start: Mapping[int, int] | None = None,
    exists: bool = False,
    **kwargs,
) -> tuple[Any, list]:
    """A consumer with no group (reading moves nothing and is seen by no one) assigned every
    partition of ``topic``, each at ``start[partition]`` or its beginning; and those partitions
    (none when the topic does not exist; ``exists``: just created, so partition 0 at least,
    whatever stale metadata says)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        **client_options(), **kwargs,
    )  # fmt: skip
    known = consumer.partitions_for_topic(topic) or ({0} if exists else ())
    parts = [TopicPartition(topic, p) for p in sorted(known)]
    if parts:
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        for tp in parts:
            if start and tp.partition in start:
                consumer.seek(tp, start[tp.partition])
    return consumer, parts


def end_offsets(consumer, parts: list) -> dict[int, int]:
    """partition -> the offset the next record will take."""
    return {tp.partition: o for tp, o in consumer.end_offsets(parts).items()} if parts else {}
