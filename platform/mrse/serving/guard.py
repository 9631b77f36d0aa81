"""A time budget and a circuit breaker around a dependency the server can do without.

The online feature store is such a dependency: without it the server answers unpersonalised
(``degraded``). What must not happen is that a store which is down, or hanging, makes every
request wait for the client library's own connect retries (redis-py backs off for seconds).
So each read gets ``timeout_s``; a failed or late read opens the circuit for
``retry_after_s``, during which requests skip the store at once; then one read is tried
again, and a success closes the circuit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypeVar

logger = logging.getLogger(__name__)
T = TypeVar("T")


class CircuitOpen(RuntimeError):
    """The dependency failed recently; it is not tried until the retry time."""


class Guard:
    """``guard(fn, owner)`` runs ``fn()`` within the budget or raises (its error,
    ``TimeoutError`` or :class:`CircuitOpen`). ``owner``: the object ``fn`` talks to; a new
    owner (the store was replaced) starts with a closed circuit."""

    def __init__(self, name: str, timeout_s: float, retry_after_s: float) -> None:
        if timeout_s <= 0 or retry_after_s < 0:
            raise ValueError("need timeout_s > 0 and retry_after_s >= 0")
        self.name = name
        self.timeout_s = timeout_s
        self.retry_after_s = retry_after_s
        # a read that hangs keeps its thread until it returns: two threads bound that cost
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"guard-{name}")
        self._lock = threading.Lock()
        self._open_until = 0.0
        self._owner_id: int | None = None
        self.trips = 0

    @property
    def is_open(self) -> bool:
        return time.monotonic() < self._open_until

    def __call__(self, fn: Callable[[], T], owner: object = None) -> T:
        with self._lock:
            if id(owner) != self._owner_id:
                self._owner_id, self._open_until = id(owner), 0.0
            if time.monotonic() < self._open_until:
                raise CircuitOpen(f"{self.name} failed recently; retrying it later")
        future = self._pool.submit(fn)
        try:
            result = future.result(timeout=self.timeout_s)
        except FutureTimeout:
            self._trip(f"no answer in {self.timeout_s * 1000:.0f} ms")
            raise TimeoutError(f"{self.name}: no answer in {self.timeout_s:.3f}s") from None
        except Exception as exc:
            self._trip(f"{type(exc).__name__}: {exc}")
            raise
        with self._lock:
            if self._open_until:
                logger.warning("%s answers again; circuit closed", self.name)
            self._open_until = 0.0
        return result

    def _trip(self, why: str) -> None:
        with self._lock:
            self._open_until = time.monotonic() + self.retry_after_s
            self.trips += 1
        logger.warning(
            "%s unavailable (%s); skipping it for %.1fs", self.name, why, self.retry_after_s
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
