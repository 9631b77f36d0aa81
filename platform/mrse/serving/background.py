"""Run the async gRPC server on its own event loop in a background thread (the demo, the load
benchmark and tests talk to it over loopback while the calling thread does other work)."""

from __future__ import annotations

import asyncio
import threading

from mrse.serving.engine import SearchEngine
from mrse.serving.server import start_server


class BackgroundServer:
    """``with BackgroundServer(engine) as server: ... server.port ...``"""

    def __init__(
        self,
        engine: SearchEngine,
        address: str = "127.0.0.1:0",
        max_concurrency: int = 32,
        batch_workers: int = 1,
        tls=None,
        auth=None,
    ) -> None:
        """``tls`` / ``auth``: see :func:`mrse.serving.server.start_server`."""
        self.engine = engine
        self.tls = tls
        self.auth = auth
        self.address = address
        self.max_concurrency = max_concurrency
        self.batch_workers = batch_workers
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="grpc-server", daemon=True)

    def start(self, timeout: float = 30.0) -> BackgroundServer:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the search server did not start within {timeout:.0f}s")
        if self._error is not None:
            raise RuntimeError(f"the search server failed to start: {self._error}")
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.running = self.loop.run_until_complete(
                start_server(
                    self.engine,
                    self.address,
                    self.max_concurrency,
                    self.batch_workers,
                    self.tls,
                    self.auth,
                )  # fmt: skip
            )
        except BaseException as exc:  # reported to the caller of start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()

    @property
    def server(self):
        return self.running.server

    @property
    def port(self) -> int:
        return self.running.port

    @property
    def metrics(self):
        return self.running.metrics

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, grace: float = 2.0) -> None:
        """Drain in-flight requests, then stop the loop."""
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self.server.stop(grace), self.loop).result(grace + 10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
