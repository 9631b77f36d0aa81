"""Closed-loop gRPC load: ``concurrency`` clients, each sending its next request as soon as the
last one is answered, for ``duration_s`` after a warm-up. Runs in its own process (spawned), so
the clients' Python does not share a GIL with the server's."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from dataclasses import dataclass
from queue import Empty


@dataclass(frozen=True)
class LoadResult:
    """Latencies (ms) of the requests answered inside the window, and the window's wall times."""

    latencies_ms: list[float]
    errors: int
    window_start: float  # time.time()
    window_end: float


# the calls the load can make: method -> its request message's name in mrse.v1.search_pb2
METHODS = {"Search": "SearchRequest", "SimilarItems": "SimilarItemsRequest",
           "SearchByPhoto": "SearchByPhotoRequest", "Recommend": "RecommendRequest"}  # fmt: skip


async def _load(
    target: str,
    requests: list[bytes],
    concurrency: int,
    warmup_s: float,
    duration_s: float,
    method: str = "Search",
):
    import grpc

    from mrse.v1 import search_pb2, search_pb2_grpc

    message = getattr(search_pb2, METHODS[method])
    reqs = [message.FromString(r) for r in requests]
    latencies: list[float] = []
    errors = 0
    # one connection per client (as many backend instances would have): a private subchannel
    # pool, or grpc would share one TCP connection between identical channels
    channels = [
        grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(concurrency)
    ]
    try:
        calls = [getattr(search_pb2_grpc.SearchServiceStub(c), method) for c in channels]
        loop_start = time.perf_counter()
        start = loop_start + warmup_s
        end = start + duration_s

        async def client(i: int) -> None:
            nonlocal errors
            n = i
            call = calls[i]
            while True:
                t = time.perf_counter()
                if t >= end:
                    return
                try:
                    await call(reqs[n % len(reqs)], timeout=10)
                except grpc.RpcError:
                    if t >= start:
                        errors += 1
                    continue
                finally:
                    n += concurrency
                done = time.perf_counter()
                if t >= start and done <= end:
                    latencies.append((done - t) * 1e3)

        wall0 = time.time() - (time.perf_counter() - loop_start)
        await asyncio.gather(*(client(i) for i in range(concurrency)))
    finally:
        for c in channels:
            await c.close()
    return LoadResult(latencies, errors, wall0 + warmup_s, wall0 + warmup_s + duration_s)


def _child(target, requests, concurrency, warmup_s, duration_s, method, queue) -> None:
    queue.put(asyncio.run(_load(target, requests, concurrency, warmup_s, duration_s, method)))


def run_load(
    target: str,
    requests: list[bytes],
    concurrency: int,
    duration_s: float,
    warmup_s: float = 2.0,
    method: str = "Search",
) -> LoadResult:
    """``requests``: serialized request messages of ``method`` (``METHODS``), cycled."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; one of {', '.join(METHODS)}")
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(
        target=_child,
        args=(target, requests, concurrency, warmup_s, duration_s, method, queue),
    )
    proc.start()
    deadline = time.monotonic() + warmup_s + duration_s + 120
    try:
        while True:
            try:
                return queue.get(timeout=1.0)
            except Empty:
                if not proc.is_alive():
                    raise RuntimeError(
                        f"the load process exited with code {proc.exitcode} before reporting"
                    ) from None
                if time.monotonic() > deadline:
                    raise TimeoutError("the load process did not report in time") from None
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.kill()
