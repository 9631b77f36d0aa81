"""The Prometheus endpoint every process serves, hardened against idle and slow clients.

``prometheus_client.start_http_server`` answers on one thread and, with TLS, does the handshake
inside ``accept()`` with no timeout: one client that opens a TCP connection and sends nothing
locks every scraper out (measured: curl with the right certificate timed out after 15 s). Here
one asyncio loop, on its own thread, owns every connection from the moment it is accepted:

- the TLS handshake runs on the connection's own task (``start_tls``), never on the accept path;
- the handshake and the request line and headers must arrive within ``request_timeout_s``
  (a slow-loris client sending a byte a second is cut off), at most ``max_request_bytes``;
- at most ``max_connections`` are open at once; a new one evicts the oldest that has not yet
  sent a whole request (idle sockets and half-open handshakes cannot crowd a scraper out: a
  scraper needs its connection for milliseconds, and only a burst of more than
  ``max_connections`` new connections within those milliseconds could evict it);
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
        self._pending: dict[asyncio.StreamWriter, float] = {}  # not yet a whole request
        self._open: set[asyncio.StreamWriter] = set()
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
                asyncio.start_server(self._handle, host, port, backlog=256)
            )
            self.port = self._server.sockets[0].getsockname()[1]
        except BaseException as exc:  # the caller raises it
            self._error = exc
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()

    def _admit(self, writer: asyncio.StreamWriter) -> None:
        """Count a new connection in; at the limit, the oldest unfinished one goes."""
        if len(self._open) >= self.limits.max_connections and self._pending:
            oldest = min(self._pending, key=self._pending.__getitem__)
            self._drop(oldest)
            self.evicted += 1
        self._open.add(writer)
        self._pending[writer] = time.monotonic()

    def _drop(self, writer: asyncio.StreamWriter) -> None:
        self._pending.pop(writer, None)
        self._open.discard(writer)
        if writer.transport is not None:
            writer.transport.abort()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._admit(writer)
        try:
            request = await asyncio.wait_for(self._request(reader, writer),
                                             self.limits.request_timeout_s)  # fmt: skip
        except TimeoutError:
            self.timed_out += 1
            self._drop(writer)
            return
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ValueError, AttributeError):  # fmt: skip
            # (AttributeError: asyncio's start_tls on a connection evicted mid-handshake)
            self._drop(writer)
            return
        self._pending.pop(writer, None)
        try:
            writer.write(self._response(request))
            await asyncio.wait_for(writer.drain(), self.limits.request_timeout_s)
            self.answered += 1
        except (OSError, TimeoutError):
            pass
        finally:
            self._drop(writer)

    async def _request(self, reader, writer) -> bytes:
        if self._ssl is not None:
            await writer.start_tls(self._ssl)
        head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > self.limits.max_request_bytes:
            raise ValueError("request headers too large")
        return head.split(b"\r\n", 1)[0]

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
            for w in list(self._open):
                self._drop(w)
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
