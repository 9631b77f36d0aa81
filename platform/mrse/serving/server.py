"""The async gRPC server: validation, deadlines, bounded concurrency, health and reflection."""

from __future__ import annotations

import asyncio
import gc
import logging
import time

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from mrse.serving.batcher import Batcher
from mrse.serving.engine import NotFound, SearchEngine, SearchOutcome, Unavailable
from mrse.serving.metrics import ServerMetrics
from mrse.serving.validation import InvalidRequest, validate
from mrse.v1 import search_pb2, search_pb2_grpc

logger = logging.getLogger(__name__)
SERVICE = search_pb2.DESCRIPTOR.services_by_name["SearchService"].full_name
MAX_BATCH = 64


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
                else search_pb2.Explanation(text=e.text, image=e.image, profile=e.profile),
                category=r.payload.get("category", ""),
                brand=r.payload.get("brand", ""),
                price=r.payload.get("price"),
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


class SearchServicer(search_pb2_grpc.SearchServiceServicer):
    def __init__(
        self,
        engine: SearchEngine,
        metrics: ServerMetrics,
        max_concurrency: int = 32,
        batch_workers: int = 1,
    ) -> None:
        self.engine = engine
        self.metrics = metrics
        self.batcher = Batcher(
            engine, max_concurrency, batch_workers, on_batch=metrics.batch_size.observe
        )
        self.slots = asyncio.Semaphore(max_concurrency)

    async def _fail(self, context, code: grpc.StatusCode, message: str):
        self.metrics.errors.labels(code.name).inc()
        await context.abort(code, message)

    async def _run(self, request, context) -> search_pb2.SearchResponse:
        start = time.perf_counter()
        try:
            req = validate(request)
        except InvalidRequest as exc:
            await self._fail(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
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

    async def Search(self, request, context):  # noqa: N802 (gRPC method name)
        return await self._run(request, context)

    async def BatchSearch(self, request, context):  # noqa: N802
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


async def start_server(
    engine: SearchEngine,
    address: str = "127.0.0.1:0",
    max_concurrency: int = 32,
    batch_workers: int = 1,
) -> tuple[grpc.aio.Server, int, ServerMetrics]:
    """Start serving ``engine``; returns (server, bound port, metrics). Health is SERVING only
    here, after the engine (models, indexes, feature store client) is fully loaded and warmed
    up by one query per model."""
    metrics = ServerMetrics()
    server = grpc.aio.server(
        maximum_concurrent_rpcs=max_concurrency * 4,
        options=[("grpc.so_reuseport", 1)],  # several worker processes may share the port
    )
    search_pb2_grpc.add_SearchServiceServicer_to_server(
        SearchServicer(engine, metrics, max_concurrency, batch_workers), server
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
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
    return server, port, metrics
