"""The Prometheus endpoint every process serves, hardened against idle and slow clients.

``prometheus_client.start_http_server`` answers on one thread and, with TLS, does the handshake
inside ``accept()`` with no timeout: one client that opens a TCP connection and sends nothing
locks every scraper out (measured: curl with the right certificate timed out after 15 s). Here
one asyncio loop, on its own thread, owns every connection from the moment it is accepted:

- the TLS handshake runs on the connection's own task (``start_tls``, reading paused until then
  so an early ClientHello is not lost), never on the accept path;
- the handshake and the request line and headers must arrive within ``request_timeout_s``
  (a slow-loris client sending a byte a second is cut off), at most ``max_request_bytes``;
- at most ``max_connections`` are open at once; a new one evicts the oldest still in its TLS
  handshake, else the oldest that has not yet sent a whole request (idle sockets and half-open
  handshakes cannot crowd a scraper out: a scraper is past its handshake within milliseconds);
- one request per connection (``Connection: close``), ``GET``/``HEAD`` of ``/metrics`` (or
  ``/``); anything else is answered 404/405 and closed.

A scraper (Prometheus, or curl with its client certificate) is answered in milliseconds while
hundreds of such connections are open (``tests/integration/test_metrics_http.py``).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MetricsTLS:
    """HTTPS for a metrics endpoint: certificate and key (PEM); ``client_ca``: answer only
    scrapers presenting a certificate it signed (Prometheus' ``tls_config``)."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(self.cert), str(self.key))
        if self.client_ca is not None:
            ctx.load_verify_locations(str(self.client_ca))
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx


@dataclass(frozen=True)
class MetricsLimits:
    max_connections: int = 64
    request_timeout_s: float = 5.0  # accept -> whole request (TLS handshake included)
    max_request_bytes: int = 8192

    def __post_init__(self) -> None:
        if self.max_connections < 1 or self.request_timeout_s <= 0:
            raise ValueError("max_connections must be >= 1 and request_timeout_s > 0")


class _Connection(asyncio.Protocol):
    """One client connection. Reading stays paused until TLS is set up over it, so a
    ClientHello that arrives early waits in the socket for the handshake instead of being read
    as plain bytes."""

    def __init__(self, server: MetricsServer) -> None:
        self.server = server
        self.transport: asyncio.BaseTransport | None = None
        self.buffer = bytearray()
        self.head = asyncio.get_running_loop().create_future()  # the request line, or an error
        # a connection dropped during its handshake never awaits it: its error is retrieved here
        self.head.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.started = time.monotonic()
        self.secured = False  # TLS set up (or none needed): the client is past its handshake

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.pause_reading()
        self.server._admit(self)
        asyncio.get_running_loop().create_task(self.server._serve(self))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.head.done():
            return
        end = self.buffer.find(b"\r\n\r\n")
        if max(end, len(self.buffer) if end < 0 else 0) > self.server.limits.max_request_bytes:
            self.head.set_exception(ValueError("request headers too large"))
        elif end >= 0:
            self.head.set_result(bytes(self.buffer[: self.buffer.find(b"\r\n")]))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.head.done():
            self.head.set_exception(ConnectionError("closed before a whole request"))

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class MetricsServer:
    """``registry`` served on ``host:port`` (``port`` 0: any free port, see ``.port``) over
    HTTP, or HTTPS with ``tls``; ``close()`` stops it."""

    def __init__(
        self,
        registry: CollectorRegistry,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: MetricsTLS | None = None,
        limits: MetricsLimits | None = None,
    ) -> None:
        self.registry = registry
        self.limits = limits or MetricsLimits()
        self._ssl = tls.context() if tls is not None else None
        self._pending: set[_Connection] = set()  # not yet a whole request
        self._open: set[_Connection] = set()
        self.evicted = self.timed_out = self.answered = 0
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(host, port), daemon=True,
                                        name="metrics-http")  # fmt: skip
        self._thread.start()
        self._started.wait(30)
        if self._error is not None:
            raise self._error

    def _run(self, host: str, port: int) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._server = self._loop.run_until_complete(
                self._loop.create_server(lambda: _Connection(self), host, port, backlog=256)
            )
            self.port = self._server.sockets[0].getsockname()[1]
        except BaseException as exc:  # the caller raises it
            self._error = exc
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()

    def _admit(self, conn: _Connection) -> None:
        """Count a new connection in; at the limit, one unfinished connection goes: the oldest
        still in its TLS handshake, else the oldest that has not sent a whole request."""
        if len(self._open) >= self.limits.max_connections and self._pending:
            victim = min(self._pending, key=lambda c: (c.secured, c.started))
            self._drop(victim)
            self.evicted += 1
        self._open.add(conn)
        self._pending.add(conn)

    def _drop(self, conn: _Connection) -> None:
        self._pending.discard(conn)
        self._open.discard(conn)
        conn.abort()

    async def _serve(self, conn: _Connection) -> None:
        try:
            request = await asyncio.wait_for(self._request(conn), self.limits.request_timeout_s)
        except TimeoutError:
            self.timed_out += 1
            self._drop(conn)
            return
        except (OSError, ssl.SSLError, ValueError, ConnectionError, RuntimeError):
            self._drop(conn)
            return
        self._pending.discard(conn)
        assert conn.transport is not None
        conn.transport.write(self._response(request))  # type: ignore[attr-defined]
        conn.transport.close()  # flushes what is buffered first (abort would drop it)
        self._open.discard(conn)
        self.answered += 1

    async def _request(self, conn: _Connection) -> bytes:
        if self._ssl is not None:
            conn.transport = await self._loop.start_tls(
                conn.transport,
                conn,
                self._ssl,
                server_side=True,  # type: ignore[arg-type]
            )
        else:
            conn.transport.resume_reading()  # type: ignore[union-attr]
        conn.secured = True
        return await conn.head

    def _response(self, request_line: bytes) -> bytes:
        parts = request_line.split()
        method, path = (parts[0], parts[1].split(b"?")[0]) if len(parts) >= 2 else (b"", b"")
        if method not in (b"GET", b"HEAD"):
            return _http(405, b"method not allowed\n", b"text/plain")
        if path not in (b"/metrics", b"/"):
            return _http(404, b"not found\n", b"text/plain")
        body = generate_latest(self.registry)
        return _http(200, body if method == b"GET" else b"", CONTENT_TYPE_LATEST.encode(),
                     length=len(body))  # fmt: skip

    def close(self) -> None:
        if not self._loop.is_running():
            return

        async def stop() -> None:
            self._server.close()
            for c in list(self._open):
                self._drop(c)
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


_REASONS = {200: b"OK", 404: b"Not Found", 405: b"Method Not Allowed"}


def _http(status: int, body: bytes, content_type: bytes, length: int | None = None) -> bytes:
    head = (
        b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
        % (status, _REASONS[status], content_type, len(body) if length is None else length)
    )
    return head + body


def serve_metrics(
    registry: CollectorRegistry,
    port: int,
    host: str = "127.0.0.1",
    tls: MetricsTLS | None = None,
    limits: MetricsLimits | None = None,
) -> MetricsServer:
    """Start the metrics endpoint (see the module docstring); it runs until ``close()`` or the
    process ends."""
    server = MetricsServer(registry, host, port, tls, limits)
    logger.info("metrics on %s://%s:%d/metrics%s", "https" if tls else "http", host, server.port,
                " (client certificates required)" if tls and tls.client_ca else "")  # fmt: skip
    return server
