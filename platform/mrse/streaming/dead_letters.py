"""Dead letters that always land: every rejected event leaves a durable record, or the worker
waits.

A bad event is forwarded to the dead-letter topic with why it was rejected and where it came
from (reason, message, source topic, partition, offset, original size). Its payload is cut to
``max_payload_bytes`` so the record fits under any broker's message limit, whatever the size of
what the source topic accepted; if the broker still refuses it as too large, the payload is
dropped and the headers alone are sent. Any other failure (broker down, topic not writable) is
retried with exponential back-off until it succeeds or the worker is asked to stop: the caller
then neither commits past the event nor exits on its own. The stream worker and the catalog
worker share this writer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from mrse.kafka_client import client_options
from mrse.streaming.backoff import Backoff

logger = logging.getLogger(__name__)
T = TypeVar("T")

MAX_ERROR_BYTES = 1000
MAX_KEY_BYTES = 1024  # a key is an id: anything longer is cut (a topic may take huge keys)


@dataclass(frozen=True)
class DeadLetterConfig:
    """``max_payload_bytes``: the most of a bad event's payload kept (default 64 KiB, far under
    Kafka's default 1 MB message limit); ``retry_*``: back-off between attempts while the
    dead-letter topic cannot be written; ``flush_timeout_s``: how long one attempt waits."""

    topic: str
    max_payload_bytes: int = 64 * 1024
    retry_initial_s: float = 0.5
    retry_max_s: float = 30.0
    flush_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_payload_bytes < 0:
            raise ValueError("max_payload_bytes must be >= 0")
        if not 0 < self.retry_initial_s <= self.retry_max_s:
            raise ValueError("need 0 < retry_initial_s <= retry_max_s")


@dataclass(frozen=True)
class DeadLetter:
    """One record for the dead-letter topic: the (cut) payload and its headers."""

    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]

    def without_payload(self) -> DeadLetter:
        return replace(self, value=b"", headers=(*self.headers, ("payload_dropped", b"too large")))


def dead_letter(
    value: bytes | None,
    key: bytes | None,
    reason: str,
    message: str,
    source: tuple[str, int, int],
    max_payload_bytes: int,
) -> DeadLetter:
    """The dead-letter record of one rejected event.

    Args:
        value: the event's payload as consumed (None for a tombstone).
        key: its key.
        reason: the short machine-readable reason (``EventError.reason``).
        message: what a person should know (cut to ``MAX_ERROR_BYTES``).
        source: (topic, partition, offset) it was consumed from.
        max_payload_bytes: the most of the payload kept.
    """
    payload = value or b""
    topic, partition, offset = source
    kept = payload[:max_payload_bytes]
    cut_key = key[:MAX_KEY_BYTES] if key is not None else None
    headers = (
        ("reason", reason.encode()),
        ("error", message.encode("utf-8", "replace")[:MAX_ERROR_BYTES]),
        ("source_topic", topic.encode()),
        ("source_partition", str(partition).encode()),
        ("source_offset", str(offset).encode()),
        ("original_size", str(len(payload)).encode()),
        ("truncated", b"1" if len(kept) < len(payload) else b"0"),
    )
    if key is not None and len(key) > MAX_KEY_BYTES:
        headers = (*headers, ("original_key_size", str(len(key)).encode()))
    return DeadLetter(cut_key, kept, headers)


def _too_large(exc: BaseException) -> bool:
    from kafka.errors import MessageSizeTooLargeError

    return isinstance(exc, MessageSizeTooLargeError) or "TooLarge" in type(exc).__name__


def dead_letter_producer(bootstrap: str, **kwargs):
    """A producer for dead letters: every record acknowledged by all replicas, and not
    idempotent (kafka-python's idempotent producer turns fatal for good after one refused
    record on brokers before 2.5; a retried dead letter may land twice, which is harmless)."""
    from kafka import KafkaProducer

    return KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=False,
        linger_ms=5,
        max_block_ms=10_000,
        **client_options(),
        **kwargs,
    )


class DeadLetterWriter:
    """Writes dead letters durably through a producer made by ``producer_factory`` (see
    :func:`dead_letter_producer`); the producer is rebuilt after a failed attempt, so a
    client left in a bad state by the failure does not outlive it."""

    def __init__(
        self,
        producer_factory: Callable[[], object],
        config: DeadLetterConfig,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        """``on_failure()`` is called after each failed attempt (for metrics)."""
        self.producer_factory = producer_factory
        self.producer = None
        self.config = config
        self.on_failure = on_failure

    @classmethod
    def to_topic(
        cls,
        bootstrap: str,
        topic: str,
        max_payload_bytes: int,
        retry_max_s: float,
        on_failure: Callable[[], None] | None = None,
    ) -> DeadLetterWriter:
        """A writer to ``topic`` on ``bootstrap`` (back-off from 0.5 s, or ``retry_max_s`` if
        lower, up to ``retry_max_s``): how both workers make theirs."""
        config = DeadLetterConfig(topic, max_payload_bytes, min(0.5, retry_max_s), retry_max_s)
        return cls(lambda: dead_letter_producer(bootstrap), config, on_failure)

    def close(self) -> None:
        if self.producer is not None:
            self.producer.close(timeout=self.config.flush_timeout_s)
            self.producer = None

    def _reset_producer(self) -> None:
        if self.producer is not None:
            try:
                self.producer.close(timeout=0)
            except Exception:  # already broken: that is why it is being replaced
                logger.debug("closing the failed dead-letter producer", exc_info=True)
            self.producer = None

    def write(self, letters: list[DeadLetter], stop: threading.Event | None = None) -> bool:
        """Send ``letters`` and wait until every one is acknowledged. Retries with back-off
        (logging each failure) while the topic cannot be written. Returns False only when
        ``stop`` was set before all were written: the caller must not commit past them."""
        pending = list(letters)
        backoff = Backoff(self.config.retry_initial_s, self.config.retry_max_s)
        blocked_since: float | None = None
        while pending:
            failed = self._attempt(pending)
            pending, blocking = [], None
            for letter, exc in failed:
                if _too_large(exc) and letter.value:
                    logger.warning(
                        "dead letter too large for %s (%d bytes): sending its headers only",
                        self.config.topic,
                        len(letter.value),
                    )
                    pending.append(letter.without_payload())
                else:
                    pending.append(letter)
                    blocking = exc
            if blocking is None:
                continue  # all written, or only payloads dropped: resend those at once
            self._reset_producer()
            if self.on_failure is not None:
                self.on_failure()
            blocked_since = blocked_since or time.monotonic()
            logger.error(
                "cannot write %d dead letter(s) to %s (%s: %s); not committing past them, "
                "retrying in %.1fs",
                len(pending),
                self.config.topic,
                type(blocking).__name__,
                blocking,
                backoff.delay,
            )
            if not backoff.wait(stop):
                return False
        if blocked_since is not None:
            logger.warning(
                "dead-letter topic %s writable again after %.1fs",
                self.config.topic,
                time.monotonic() - blocked_since,
            )
        return True

    def _attempt(self, letters: list[DeadLetter]) -> list[tuple[DeadLetter, BaseException]]:
        """One send of each letter; returns those that failed, with why."""
        from kafka.errors import KafkaTimeoutError

        failed: list[tuple[DeadLetter, BaseException]] = []
        if self.producer is None:
            try:
                self.producer = self.producer_factory()
            except Exception as exc:  # broker unreachable: NoBrokersAvailable
                return [(letter, exc) for letter in letters]
        futures = []
        for letter in letters:
            try:
                fut = self.producer.send(
                    self.config.topic,
                    value=letter.value,
                    key=letter.key,
                    headers=list(letter.headers),
                )
            except Exception as exc:  # too large for the client, metadata timeout, ...
                failed.append((letter, exc))
                continue
            futures.append((letter, fut))
        try:
            self.producer.flush(timeout=self.config.flush_timeout_s)
        except KafkaTimeoutError:
            pass  # the futures still pending are failures of this attempt
        for letter, fut in futures:
            if not fut.is_done:
                failed.append((letter, KafkaTimeoutError("not acknowledged in time")))
            elif fut.failed():
                failed.append((letter, fut.exception))
        return failed


def record_letter(record, reason: str, message: str, max_payload_bytes: int) -> DeadLetter:
    """The dead letter of a consumed Kafka record (its topic, partition and offset as source)."""
    source = (record.topic, record.partition, record.offset)
    return dead_letter(record.value, record.key, reason, message, source, max_payload_bytes)


def parse_or_letter(
    records: list,
    parse: Callable[[bytes], T],
    rejection: type[Exception],
    max_payload_bytes: int,
    counts: Counter,
) -> tuple[list[tuple[T, object]], list[DeadLetter]]:
    """Each record parsed, or its dead letter: ((parsed, record) pairs, letters).

    ``rejection`` is the parser's error with a ``reason``; any other exception is a parser bug,
    logged with its traceback and dead-lettered as ``invalid`` (it must not stop the stream).
    ``counts[reason]`` counts the letters."""
    parsed: list[tuple[T, object]] = []
    letters: list[DeadLetter] = []
    for r in records:
        try:
            parsed.append((parse(r.value or b""), r))
            continue
        except rejection as exc:
            reason, message = exc.reason, str(exc)  # type: ignore[attr-defined]
        except Exception as exc:
            logger.exception("unexpected error parsing the event at offset %d", r.offset)
            reason, message = "invalid", f"unexpected {type(exc).__name__}"
        counts[reason] += 1
        letters.append(record_letter(r, reason, message, max_payload_bytes))
    return parsed, letters
