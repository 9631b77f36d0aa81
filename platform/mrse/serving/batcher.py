"""A request queue in front of the engine: worker threads take whatever has queued up (up to
``max_batch``) and answer it with one ``search_many`` call.

There is no waiting for a batch to fill: with one client a request is answered alone, as soon
as it arrives; under load, requests that arrive while a batch is being answered form the next
one. Requests whose caller has given up (deadline passed, cancelled) are dropped unanswered.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future

from mrse.serving.engine import SearchEngine, SearchOutcome
from mrse.serving.validation import ValidRequest

logger = logging.getLogger(__name__)


class Batcher:
    def __init__(
        self,
        engine: SearchEngine,
        max_batch: int = 32,
        workers: int = 1,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        """``on_batch(size)`` is called for every batch answered (for metrics)."""
        if max_batch < 1 or workers < 1:
            raise ValueError("max_batch and workers must be >= 1")
        self.engine = engine
        self.max_batch = max_batch
        self.on_batch = on_batch
        self._queue: queue.SimpleQueue[tuple[ValidRequest, Future] | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._loop, name=f"search-batcher-{i}", daemon=True)
            for i in range(workers)
        ]
        for t in self._threads:
            t.start()

    def submit(self, req: ValidRequest) -> Future:
        """A future of the request's SearchOutcome (or its NotFound / Unavailable)."""
        fut: Future = Future()
        self._queue.put((req, fut))
        return fut

    def _take(self) -> list[tuple[ValidRequest, Future]] | None:
        first = self._queue.get()
        if first is None:
            return None
        batch = [first]
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:  # put the stop marker back for _loop to see next time
                self._queue.put(None)
                break
            batch.append(item)
        return batch

    def _loop(self) -> None:
        while (batch := self._take()) is not None:
            live = [(r, f) for r, f in batch if f.set_running_or_notify_cancel()]
            if not live:
                continue
            try:
                outcomes: list[SearchOutcome | Exception] = self.engine.search_many(
                    [r for r, _ in live]
                )
            except Exception as exc:  # a bug, not a request error: fail this batch only
                logger.exception("search batch failed")
                outcomes = [exc] * len(live)
            if self.on_batch is not None:
                self.on_batch(len(live))
            for (_, fut), outcome in zip(live, outcomes, strict=True):
                if isinstance(outcome, Exception):
                    fut.set_exception(outcome)
                else:
                    fut.set_result(outcome)

    def close(self) -> None:
        self._queue.put(None)
        for t in self._threads:
            t.join(10)
