"""Who may talk to the search server: TLS (optionally mutual), bearer tokens, and which
identities may force an experiment arm.

The embedded default serves plaintext on 127.0.0.1 with no tokens; a server on anyone else's
network sets ``tls`` and ``auth`` in its config (``configs/serve.production.yaml``).

Tokens are never in the config itself: they come from a file (one ``identity token`` per line,
``#`` comments) and/or an environment variable (``identity=token,identity=token``). A request
carries ``authorization: Bearer <token>``; the token is compared with every known one in
constant time (``hmac.compare_digest``), so timing says nothing about how much of it matched.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import grpc

from mrse.metrics_http import MetricsTLS

logger = logging.getLogger(__name__)

HEALTH_PREFIX = "/grpc.health.v1.Health/"
REFLECTION_PREFIXES = (
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)


@dataclass(frozen=True)
class TLSConfig:
    """Server certificate and key (PEM files); ``client_ca``: require clients to present a
    certificate signed by this CA (mutual TLS)."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def metrics_tls(self, client_ca: Path | None) -> MetricsTLS:
        """HTTPS for the metrics endpoint with this certificate; ``client_ca``: only scrapers
        with a certificate it signed (Prometheus' ``tls_config``)."""
        return MetricsTLS(self.cert, self.key, client_ca)

    def credentials(self) -> grpc.ServerCredentials:
        ca = self.client_ca.read_bytes() if self.client_ca else None
        return grpc.ssl_server_credentials(
            [(self.key.read_bytes(), self.cert.read_bytes())],
            root_certificates=ca,
            require_client_auth=ca is not None,
        )


@dataclass(frozen=True)
class AuthConfig:
    """Bearer-token authentication. ``override_identities``: who may use ``arm_override``
    (QA); everyone else is refused PERMISSION_DENIED. ``health``/``reflection``: ``open``
    (no token: load balancers probe health), ``token``, or, for reflection, ``off``."""

    tokens_file: Path | None = None
    tokens_env: str = "MRSE_API_TOKENS"
    override_identities: tuple[str, ...] = ()
    health: Literal["open", "token"] = "open"
    reflection: Literal["open", "token", "off"] = "token"

    def __post_init__(self) -> None:
        if self.health not in ("open", "token"):
            raise ValueError("auth.health must be 'open' or 'token'")
        if self.reflection not in ("open", "token", "off"):
            raise ValueError("auth.reflection must be 'open', 'token' or 'off'")


def read_tokens(cfg: AuthConfig, environ=None) -> dict[str, bytes]:
    """identity -> token, from the file and the environment variable; at least one needed."""
    environ = os.environ if environ is None else environ
    tokens: dict[str, bytes] = {}
    if cfg.tokens_file is not None:
        for n, line in enumerate(cfg.tokens_file.read_text().splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) != 2:
                raise ValueError(f"{cfg.tokens_file}:{n}: expected `identity token`")
            tokens[parts[0]] = parts[1].encode()
    for item in filter(None, (environ.get(cfg.tokens_env) or "").split(",")):
        identity, sep, token = item.strip().partition("=")
        if not sep or not identity or not token:
            raise ValueError(f"{cfg.tokens_env}: expected identity=token[,identity=token]")
        tokens[identity] = token.encode()
    if not tokens:
        raise ValueError(
            f"auth is on but no token is configured (tokens_file, or ${cfg.tokens_env})"
        )
    short = [i for i, t in tokens.items() if len(t) < 16]
    if short:
        raise ValueError(f"tokens of {short} are shorter than 16 characters")
    return tokens


class Authenticator:
    """Maps a request's bearer token to an identity (None: not authenticated)."""

    def __init__(self, cfg: AuthConfig, environ=None) -> None:
        self.cfg = cfg
        self._tokens = list(read_tokens(cfg, environ).items())
        logger.info("auth: %d identities, %d may override arms", len(self._tokens),
                    len(cfg.override_identities))  # fmt: skip

    def identify(self, metadata) -> str | None:
        presented = b""
        for key, value in metadata or ():
            if key == "authorization":
                raw = value.encode() if isinstance(value, str) else value
                if raw[:7].lower() == b"bearer ":
                    presented = raw[7:].strip()
        found = None
        for identity, token in self._tokens:  # every token compared: constant time overall
            if hmac.compare_digest(presented, token) and presented:
                found = identity
        return found

    def may_override(self, identity: str | None) -> bool:
        return identity is not None and identity in self.cfg.override_identities

    def is_open(self, method: str) -> bool:
        if method.startswith(HEALTH_PREFIX):
            return self.cfg.health == "open"
        if method.startswith(REFLECTION_PREFIXES):
            return self.cfg.reflection == "open"
        return False


def _refusal(handler, code: grpc.StatusCode, message: str):
    """A handler of the same shape as ``handler`` that answers ``code``."""

    async def unary(request, context):
        await context.abort(code, message)

    async def streaming(request_iterator, context):
        await context.abort(code, message)
        yield  # pragma: no cover (makes this an async generator)

    if handler is None or not (handler.request_streaming or handler.response_streaming):
        return grpc.unary_unary_rpc_method_handler(unary)
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(streaming)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(unary)
    return grpc.unary_stream_rpc_method_handler(streaming)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Refuses every call without a valid bearer token (UNAUTHENTICATED), except the
    methods the config leaves open; ``on_refused(code)`` counts refusals."""

    def __init__(
        self, auth: Authenticator, on_refused: Callable[[str], None] | None = None
    ) -> None:
        self.auth = auth
        self.on_refused = on_refused

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if self.auth.is_open(details.method):
            return handler
        if self.auth.identify(details.invocation_metadata) is not None:
            return handler
        if self.on_refused is not None:
            self.on_refused(grpc.StatusCode.UNAUTHENTICATED.name)
        return _refusal(
            handler,
            grpc.StatusCode.UNAUTHENTICATED,
            "missing or invalid bearer token (metadata `authorization: Bearer <token>`)",
        )
