"""The async gRPC server: validation, deadlines, bounded concurrency, health and reflection.

Requests arrive as raw bytes and are decoded here, not by the gRPC library, so that a message
that is not a valid ``mrse.v1`` request (truncated, garbage, a string field that is not valid
UTF-8, such as a lone surrogate sent by a JavaScript client) is answered INVALID_ARGUMENT with
a message a client can act on, counted in ``mrse_errors_total``, and logged without a
traceback. Anything unexpected is answered INTERNAL with the request id, never with the
exception's class or text.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import uuid
from dataclasses import dataclass, replace

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from mrse.encoders.image import ImageDecodeError, ImageTooLarge, preprocess
from mrse.features.photo import QUERY_FRAME
from mrse.index.base import is_in_stock
from mrse.serving.batcher import Batcher
from mrse.serving.engine import NotFound, SearchEngine, SearchOutcome, Unavailable, Unsupported
from mrse.serving.metrics import ServerMetrics
from mrse.serving.security import AuthConfig, Authenticator, AuthInterceptor, TLSConfig
from mrse.serving.validation import (
    InvalidRequest,
    TooLarge,
    validate,
    validate_photo,
    validate_recommend,
    validate_similar,
)
from mrse.v1 import search_pb2

logger = logging.getLogger(__name__)
SERVICE = search_pb2.DESCRIPTOR.services_by_name["SearchService"].full_name
MAX_BATCH = 64
PHOTO_DECODES = 2  # photos decoded at the same time (SearchByPhoto)


def to_proto(o: SearchOutcome) -> search_pb2.SearchResponse:
    results = []
    for r in o.results:
        e = r.explanation
        results.append(
            search_pb2.SearchResult(
                item_id=r.item_id,
                score=r.score,
                explanation=None
                if e is None
                else search_pb2.Explanation(
                    text=e.text, image=e.image, profile=e.profile, lexical=e.lexical
                ),
                category=r.payload.get("category", ""),
                brand=r.payload.get("brand", ""),
                price=r.payload.get("price"),
                in_stock=is_in_stock(r.payload),
                found_by=r.found_by,
                team=r.team,
            )
        )
    return search_pb2.SearchResponse(
        results=results,
        request_id=o.request_id,
        experiment=o.experiment,
        arm=o.arm,
        model_version=o.model_version,
        personalized=o.personalized,
        degraded=o.degraded,
    )


def decode(message_type, raw: bytes):
    """Parse ``raw`` as ``message_type``; raises InvalidRequest saying what is wrong."""
    msg = message_type()
    try:
        msg.ParseFromString(raw)
    except (DecodeError, RecursionError, ValueError) as exc:
        raise InvalidRequest(
            f"the request is not a valid {msg.DESCRIPTOR.full_name}: it is truncated or "
            "corrupt, or a string field is not valid UTF-8 (strings must be UTF-8 encoded "
            "Unicode text; a lone UTF-16 surrogate is not)"
        ) from exc
    return msg


class SearchServicer:
    """``Search``, ``BatchSearch``, ``SimilarItems``, ``SearchByPhoto`` and ``Recommend`` over
    serialized requests (see the module docstring)."""

    def __init__(
        self,
        engine: SearchEngine,
        metrics: ServerMetrics,
        max_concurrency: int = 32,
        batch_workers: int = 1,
        auth: Authenticator | None = None,
    ) -> None:
        """``auth``: when set, ``arm_override`` is allowed only to its override identities."""
        self.engine = engine
        self.metrics = metrics
        self.auth = auth
        self.batcher = Batcher(
            engine, max_concurrency, batch_workers, on_batch=metrics.batch_size.observe
        )
        self.slots = asyncio.Semaphore(max_concurrency)
        # photos decoded at once: a 40-megapixel photo decodes to 120 MB of pixels, so a flood
        # of large photos waits here instead of holding gigabytes
        self.photo_slots = asyncio.Semaphore(PHOTO_DECODES)

    async def _fail(self, context, code: grpc.StatusCode, message: str):
        self.metrics.errors.labels(code.name).inc()
        await context.abort(code, message)

    async def _guarded(self, handler, raw: bytes, context):
        """Run ``handler``; an exception that is not an answer becomes INTERNAL."""
        try:
            return await handler(raw, context)
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception:
            ref = uuid.uuid4().hex[:12]
            logger.exception("internal error answering a request (ref %s)", ref)
            await self._fail(context, grpc.StatusCode.INTERNAL, f"internal error (ref {ref})")

    async def _run(self, request, context, check=validate) -> search_pb2.SearchResponse:
        """Validate ``request`` with ``check`` and answer it through the batcher."""
        start = time.perf_counter()
        try:
            req = check(request)
        except TooLarge as exc:
            await self._fail(context, grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        except InvalidRequest as exc:
            await self._fail(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if req.photo_bytes:  # decoded off the event loop, before it takes a batch's place
            try:
                async with self.photo_slots:
                    pixels = await asyncio.to_thread(preprocess, req.photo_bytes, (QUERY_FRAME,))
            except ImageTooLarge as exc:
                await self._fail(context, grpc.StatusCode.RESOURCE_EXHAUSTED, f"photo: {exc}")
            except ImageDecodeError:
                await self._fail(context, grpc.StatusCode.INVALID_ARGUMENT,
                                 "photo: not a decodable JPEG, PNG or WebP image")  # fmt: skip
            req = replace(req, photo_bytes=b"", photo=pixels)
        if req.arm_override is not None and self.auth is not None:
            identity = self.auth.identify(context.invocation_metadata())
            if not self.auth.may_override(identity):
                # refused before routing: never served, so never logged as an exposure
                await self._fail(
                    context,
                    grpc.StatusCode.PERMISSION_DENIED,
                    "arm_override is reserved for the QA identities of the server's config",
                )
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            await self._fail(context, grpc.StatusCode.DEADLINE_EXCEEDED, "deadline already passed")
        error: tuple[grpc.StatusCode, str] | None = None
        async with self.slots:
            try:
                fut = asyncio.wrap_future(self.batcher.submit(req))
                outcome = await asyncio.wait_for(fut, timeout=remaining)
            except TimeoutError:
                error = (grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded while searching")
            except NotFound as exc:
                error = (grpc.StatusCode.NOT_FOUND, str(exc))
            except Unavailable as exc:
                error = (grpc.StatusCode.UNAVAILABLE, str(exc))
            except Unsupported as exc:
                error = (grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        if error is not None:
            await self._fail(context, *error)
        for stage, seconds in outcome.timings.items():
            self.metrics.latency.labels(outcome.arm, stage).observe(seconds)
        if outcome.degraded:
            self.metrics.degraded.inc()
        response = to_proto(outcome)
        # total: validation, queueing for a batch, the batch, and building the response
        self.metrics.latency.labels(outcome.arm, "total").observe(time.perf_counter() - start)
        return response

    async def Search(self, raw: bytes, context):  # noqa: N802 (gRPC method name)
        return await self._guarded(self._search, raw, context)

    async def BatchSearch(self, raw: bytes, context):  # noqa: N802
        return await self._guarded(self._batch_search, raw, context)

    async def SimilarItems(self, raw: bytes, context):  # noqa: N802
        return await self._guarded(self._similar_items, raw, context)

    async def SearchByPhoto(self, raw: bytes, context):  # noqa: N802
        return await self._guarded(self._search_by_photo, raw, context)

    async def Recommend(self, raw: bytes, context):  # noqa: N802
        return await self._guarded(self._recommend, raw, context)

    async def _decode(self, message_type, raw: bytes, context):
        try:
            return decode(message_type, raw)
        except InvalidRequest as exc:
            await self._fail(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))

    async def _search(self, raw: bytes, context):
        request = await self._decode(search_pb2.SearchRequest, raw, context)
        return await self._run(request, context)

    async def _similar_items(self, raw: bytes, context):
        request = await self._decode(search_pb2.SimilarItemsRequest, raw, context)
        return await self._run(request, context, validate_similar)

    async def _search_by_photo(self, raw: bytes, context):
        request = await self._decode(search_pb2.SearchByPhotoRequest, raw, context)
        return await self._run(request, context, validate_photo)

    async def _recommend(self, raw: bytes, context):
        request = await self._decode(search_pb2.RecommendRequest, raw, context)
        return await self._run(request, context, validate_recommend)

    async def _batch_search(self, raw: bytes, context):
        request = await self._decode(search_pb2.BatchSearchRequest, raw, context)
        if len(request.requests) > MAX_BATCH:
            await self._fail(
                context, grpc.StatusCode.INVALID_ARGUMENT, f"at most {MAX_BATCH} requests per batch"
            )
        for i, r in enumerate(request.requests):
            try:
                validate(r)
            except InvalidRequest as exc:
                await self._fail(context, grpc.StatusCode.INVALID_ARGUMENT, f"request {i}: {exc}")
        # submitted together, so the batcher answers them in one engine call; the first
        # failure (already sent as the RPC's status) is re-raised once all have finished
        results = await asyncio.gather(
            *(self._run(r, context) for r in request.requests), return_exceptions=True
        )
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return search_pb2.BatchSearchResponse(responses=results)


def _serialize(message) -> bytes:
    return message.SerializeToString()


def add_search_service(servicer: SearchServicer, server: grpc.aio.Server) -> None:
    """Register ``mrse.v1.SearchService`` taking raw request bytes (decoded by the servicer)."""
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            getattr(servicer, name), request_deserializer=None, response_serializer=_serialize
        )
        for name in ("Search", "BatchSearch", "SimilarItems", "SearchByPhoto", "Recommend")
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))


@dataclass
class RunningServer:
    """A started server: the gRPC server, its bound port, metrics and health servicer."""

    server: grpc.aio.Server
    port: int
    metrics: ServerMetrics
    health: health.aio.HealthServicer

    async def drain(self, drain_s: float, grace_s: float, cut_short=None) -> None:
        """Stop gracefully: health NOT_SERVING at once (load balancers stop sending), keep
        answering for ``drain_s`` seconds (or until ``cut_short``, an asyncio.Event, is set),
        then refuse new requests and let those in flight finish within ``grace_s``."""
        await self.health.enter_graceful_shutdown()
        logger.info("draining: health NOT_SERVING, still answering for %.1fs", drain_s)
        try:
            await asyncio.wait_for((cut_short or asyncio.Event()).wait(), timeout=drain_s)
        except TimeoutError:
            pass  # the drain ran its course
        await self.server.stop(grace_s)


async def start_server(
    engine: SearchEngine,
    address: str = "127.0.0.1:0",
    max_concurrency: int = 32,
    batch_workers: int = 1,
    tls: TLSConfig | None = None,
    auth: AuthConfig | None = None,
    metrics: ServerMetrics | None = None,
) -> RunningServer:
    """Start serving ``engine`` (over TLS and with token authentication when ``tls`` and
    ``auth`` are given; see :mod:`mrse.serving.security`). Health is SERVING only
    here, after the engine (models, indexes, feature store client) is fully loaded and warmed
    up by one query per model. ``metrics``: where the server counts (default: new ones)."""
    metrics = metrics or ServerMetrics()
    authenticator = Authenticator(auth) if auth is not None else None
    interceptors = []
    if authenticator is not None:
        interceptors.append(
            AuthInterceptor(authenticator, lambda code: metrics.errors.labels(code).inc())
        )
    server = grpc.aio.server(
        maximum_concurrent_rpcs=max_concurrency * 4,
        options=[("grpc.so_reuseport", 1)],  # several worker processes may share the port
        interceptors=interceptors,
    )
    servicer = SearchServicer(engine, metrics, max_concurrency, batch_workers, authenticator)
    add_search_service(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if auth is None or auth.reflection != "off":
        reflection.enable_server_reflection(
            (SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
    if tls is not None:
        port = server.add_secure_port(address, tls.credentials())
    else:
        port = server.add_insecure_port(address)
    await health_servicer.set(SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING)
    await server.start()
    await asyncio.get_running_loop().run_in_executor(None, engine.warm_up)
    # Everything loaded so far (models, catalog tables, caches) lives as long as the server:
    # keep it out of the garbage collector's full passes, which otherwise walk millions of
    # long-lived objects and stall requests for hundreds of milliseconds.
    gc.collect()
    gc.freeze()
    await health_servicer.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    logger.info("search server listening on port %d", port)
    return RunningServer(server, port, metrics, health_servicer)
