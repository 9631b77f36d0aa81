"""Back-off doubles to its cap; a stop event cuts a wait short and says so."""

from __future__ import annotations

import threading
import time

from mrse.streaming.backoff import Backoff


def test_delays_double_up_to_the_cap_and_stop_ends_a_wait():
    b = Backoff(0.01, 0.03)
    seen = []
    for _ in range(4):
        seen.append(b.delay)
        assert b.wait()
    assert seen == [0.01, 0.02, 0.03, 0.03]
    stop = threading.Event()
    stop.set()
    t = time.monotonic()
    assert not Backoff(5.0, 5.0).wait(stop)
    assert time.monotonic() - t < 1.0
