"""Exponential back-off between attempts at something that is down (a topic, a store)."""

from __future__ import annotations

import threading
import time


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
