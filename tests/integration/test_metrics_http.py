"""The metrics endpoint under idle and slow clients: hundreds of idle sockets, a slow-loris
client sending a byte a second and a flood of half-open TLS handshakes, while a real scraper
(curl with the scraper's client certificate, the way Prometheus scrapes) keeps its answers
within a second."""

from __future__ import annotations

import socket
import subprocess
import threading
import time

import pytest
from prometheus_client import CollectorRegistry, Counter

from mrse.metrics_http import MetricsLimits, MetricsTLS, serve_metrics

from .test_security import pki  # noqa: F401 (CA, server, client and rogue certificates)

pytestmark = pytest.mark.integration


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("mrse_probe", "a probe", registry=registry).inc()
    return registry


class Attack:
    """Idle sockets, half-open TLS handshakes and a slow-loris sender against ``port``."""

    def __init__(self, port: int, idle: int, half_open: int) -> None:
        self.port = port
        self.sockets: list[socket.socket] = []
        self.stop = threading.Event()
        for i in range(idle + half_open):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            if i >= idle:  # a TLS record header and the start of a ClientHello, then nothing
                s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
            self.sockets.append(s)
        self.loris = threading.Thread(target=self._slow_loris, daemon=True)
        self.loris.start()
        self.loris_cut_after: float | None = None

    def _slow_loris(self) -> None:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        start = time.monotonic()
        try:
            for byte in b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
                if self.stop.is_set():
                    return
                s.sendall(bytes([byte]))
                time.sleep(1.0)
        except OSError:  # the server cut it off
            self.loris_cut_after = time.monotonic() - start
        finally:
            s.close()

    def close(self) -> None:
        self.stop.set()
        for s in self.sockets:
            s.close()


def _curl(url: str, *extra: str) -> tuple[int, float, str]:
    t = time.monotonic()
    out = subprocess.run(["curl", "-sS", "-m", "5", *extra, url], capture_output=True,
                         text=True, timeout=30)  # fmt: skip
    return out.returncode, time.monotonic() - t, out.stdout


@pytest.mark.parametrize("tls", [True, False], ids=["https-mutual", "http"])
def test_a_scraper_is_answered_within_a_second_while_idle_and_slow_clients_hold_connections(
    pki,  # noqa: F811
    tls,
):
    limits = MetricsLimits(max_connections=32, request_timeout_s=3.0)
    cfg = MetricsTLS(pki / "server.pem", pki / "server.key", pki / "ca.pem") if tls else None
    server = serve_metrics(_registry(), 0, "127.0.0.1", cfg, limits)
    scheme = "https" if tls else "http"
    url = f"{scheme}://localhost:{server.port}/metrics"
    certs = ["--cacert", str(pki / "ca.pem"), "--cert", str(pki / "client.pem"), "--key",
             str(pki / "client.key")] if tls else []  # fmt: skip
    attack = Attack(server.port, idle=150, half_open=100 if tls else 0)
    time.sleep(1.0)  # the burst accepted: it now holds its connections, sending nothing
    try:
        times = []
        for _ in range(8):
            code, seconds, body = _curl(url, *certs)
            assert code == 0 and "mrse_probe_total 1.0" in body
            times.append(seconds)
            time.sleep(0.5)
        assert max(times) < 1.0, times
        assert server.evicted > 0  # more than 32 connections: the oldest unfinished went
        attack.loris.join(10)
        assert attack.loris_cut_after is not None and attack.loris_cut_after < 8
        if tls:  # no certificate, or one another CA signed: no answer
            assert _curl(url, "--cacert", str(pki / "ca.pem"))[0] != 0
            rogue = ["--cacert", str(pki / "ca.pem"), "--cert", str(pki / "rogue.pem"),
                     "--key", str(pki / "rogue.key")]  # fmt: skip
            assert _curl(url, *rogue)[0] != 0
    finally:
        attack.close()
        server.close()


def test_only_metrics_is_served_and_oversized_requests_are_refused():
    server = serve_metrics(_registry(), 0, "127.0.0.1", limits=MetricsLimits(max_request_bytes=512))
    base = f"http://127.0.0.1:{server.port}"
    try:
        assert "mrse_probe_total" in _curl(f"{base}/metrics")[2]
        assert "mrse_probe_total" in _curl(f"{base}/")[2]
        assert _curl(f"{base}/admin", "-o", "/dev/null", "-w", "%{http_code}")[2] == "404"
        status = _curl(f"{base}/metrics", "-X", "POST", "-o", "/dev/null", "-w", "%{http_code}")
        assert status[2] == "405"
        code, _, _ = _curl(f"{base}/metrics", "-H", "X-Big: " + "a" * 2000)
        assert code != 0  # closed without an answer
        assert "mrse_probe_total" in _curl(f"{base}/metrics")[2]  # and it goes on
    finally:
        server.close()
