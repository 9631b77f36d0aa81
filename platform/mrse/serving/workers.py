"""Several server processes on one port (``workers`` in the serving config).

One Python process serves from about one core: its gRPC layer and its engine share one GIL.
``workers: N`` starts N identical processes, each a whole server (engine, batcher, gRPC), bound
to the same address with SO_REUSEPORT; the kernel spreads client connections across them.
An embedded Qdrant Edge shard opens in one process at a time, so each worker serves a private
copy of the index directories (copied at start, then kept current by following the catalog
worker's index topic, see ``mrse.catalog.follower``). A
Qdrant server backend needs no copy. Worker i exposes its metrics on ``metrics_port + i``.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
import os
import shutil
import signal
import tempfile
from dataclasses import replace
from pathlib import Path

from mrse.catalog.follower import OFFSETS_FILE
from mrse.catalog.service import restore_replica
from mrse.catalog.snapshots import copy_shard
from mrse.serving.app import ServeConfig, serve

logger = logging.getLogger(__name__)


def worker_config(cfg: ServeConfig, i: int, scratch: Path) -> ServeConfig:
    """Worker ``i``'s configuration: its own index copy (Edge) and metrics port."""
    index = cfg.index
    if index.backend == "edge":
        root = scratch / f"worker-{i}"
        for version in cfg.models:
            src = cfg.index.root / version
            if not src.is_dir():
                raise FileNotFoundError(f"no index for {version!r} at {src}: run `mrse index`")
            copy_shard(src, root / version)
        offsets = cfg.index.root / OFFSETS_FILE  # where the copies are in the catalog's log
        if offsets.is_file():
            shutil.copy(offsets, root / OFFSETS_FILE)
        index = replace(index, root=root)
    port = cfg.metrics_port + i if cfg.metrics_port is not None else None
    return replace(cfg, index=index, metrics_port=port, workers=1)


def _worker_main(cfg: ServeConfig, i: int, ready) -> None:
    from mrse.logs import setup_logging

    setup_logging(False)
    asyncio.run(serve(cfg, on_ready=lambda: ready.put(i)))


def serve_workers(cfg: ServeConfig, all_ready=None, ready_timeout: float = 900.0) -> int:
    """Run ``cfg.workers`` server processes until SIGTERM/SIGINT (forwarded to each); returns
    0 when all stopped cleanly. ``all_ready`` (a multiprocessing Event), if given, is set once
    every process is serving."""
    if cfg.address.rsplit(":", 1)[-1] in ("", "0"):
        raise ValueError("several workers need a fixed port in `address`")
    ctx = mp.get_context("spawn")
    restore_replica(cfg.catalog, cfg.index, cfg.models)  # once, then copied per process
    with tempfile.TemporaryDirectory(prefix="mrse-workers-") as scratch:
        procs = []
        ready = ctx.Queue()
        for i in range(cfg.workers):
            wcfg = worker_config(cfg, i, Path(scratch))
            p = ctx.Process(target=_worker_main, args=(wcfg, i, ready), name=f"mrse-server-{i}")
            p.start()
            procs.append(p)
        _wait_ready(procs, ready, ready_timeout)
        logger.info("%d server processes serving on %s", len(procs), cfg.address)
        if all_ready is not None:
            all_ready.set()

        def forward(signum, _frame) -> None:
            for p in procs:
                if p.is_alive() and p.pid is not None:
                    os.kill(p.pid, signum)

        old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for p in procs:
                p.join()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        codes = [p.exitcode for p in procs]
    if any(codes):
        logger.error("server processes exited with %s", codes)
        return 1
    return 0


def _wait_ready(procs, ready, timeout: float) -> None:
    import queue
    import time

    deadline = time.monotonic() + timeout
    up: set[int] = set()
    while len(up) < len(procs):
        try:
            up.add(ready.get(timeout=1.0))
        except queue.Empty:
            dead = [p.name for p in procs if not p.is_alive()]
            if dead or time.monotonic() > deadline:
                for p in procs:
                    p.kill()
                raise RuntimeError(
                    f"server processes failed to start: {dead or 'timeout'}"
                ) from None
