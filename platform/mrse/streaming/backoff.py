"""Exponential back-off between attempts at something that is down (a topic, a store)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

logger = logging.getLogger(__name__)
T = TypeVar("T")


class Backoff:
    """Waits ``initial`` seconds, doubling each time up to ``maximum``; a set ``stop`` event
    cuts a wait short."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.delay = initial  # the next wait, for logging before it starts
        self.maximum = maximum

    def wait(self, stop: threading.Event | None = None) -> bool:
        """Wait the current delay and double it; False when ``stop`` was set (give up)."""
        delay, self.delay = self.delay, min(self.delay * 2, self.maximum)
        if stop is None:
            time.sleep(delay)
            return True
        return not stop.wait(delay)


def keep_trying(
    action: Callable[[], T],
    what: str,
    stop: threading.Event,
    retry_max_s: float,
    on_failure: Callable[[], None] | None = None,
    on_recovered: Callable[[], None] | None = None,
) -> tuple[bool, T | None]:
    """Call ``action`` until it succeeds: (True, its result); (False, None) when ``stop`` is
    set during a wait. Each failure is logged as an ERROR saying that nothing is committed
    meanwhile, then ``on_failure()``; a success after failures is logged, then
    ``on_recovered()``. The workers use it for writes that must land before offsets move."""
    backoff = Backoff(min(0.5, retry_max_s), retry_max_s)
    failed = False
    while True:
        try:
            result = action()
        except Exception as exc:
            failed = True
            if on_failure is not None:
                on_failure()
            logger.error("%s failed (%s: %s); not committing, retrying in %.1fs",
                         what, type(exc).__name__, exc, backoff.delay)  # fmt: skip
            if not backoff.wait(stop):
                return False, None
            continue
        if failed:
            logger.warning("%s works again", what)
            if on_recovered is not None:
                on_recovered()
        return True, result
