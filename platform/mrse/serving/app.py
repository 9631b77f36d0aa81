"""`mrse serve`: build the engine from a YAML config and run the gRPC server until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mrse.catalog.service import CatalogFollow, follow_catalog, restore_replica
from mrse.experiments.assignment import Experiment
from mrse.features.store import FeatureStoreConfig, ProfileStore
from mrse.index.build import IndexConfig
from mrse.index.hybrid import HybridOptions
from mrse.serving.engine import SearchEngine, load_bundle
from mrse.serving.query_encoding import QUERY_ENCODERS, build_query_vectors
from mrse.serving.security import AuthConfig, TLSConfig
from mrse.serving.server import start_server
from mrse.settings import load, model_versions

logger = logging.getLogger(__name__)
ENV_PREFIX = "MRSE_SERVE"


@dataclass(frozen=True)
class ServeConfig:
    """See ``configs/serve.yaml`` for a commented example."""

    models: dict[str, Path]  # model version -> run directory
    experiments: tuple[Experiment, ...]
    default_experiment: str
    # a dataset directory whose event log also warms the query cache; not needed: the runs keep
    # their logs' most frequent queries (query_log.json)
    data: Path | None = None
    index: IndexConfig = field(default_factory=IndexConfig)
    # how arms with `retrieval: hybrid` fuse the lexical channel (mrse.index.hybrid)
    hybrid: HybridOptions = field(default_factory=HybridOptions)
    feature_store: FeatureStoreConfig | None = None
    experiments_url: str | None = None
    address: str = "127.0.0.1:50051"
    metrics_port: int | None = None  # with tls: HTTPS, the API's certificate
    metrics_client_ca: Path | None = None  # with tls: scrapers must present a cert it signed
    max_concurrency: int = 32  # requests in flight (queued or in a batch); also the max batch
    batch_workers: int = 1  # threads answering batches
    workers: int = 1  # server processes on the same port (see mrse.serving.workers)
    exposures_bootstrap: str | None = None
    exposures_topic: str = "mrse.exposures"
    query_encoder: str = "minilm-int8"  # or minilm (fp32 PyTorch); see docs/benchmarks.md
    query_cache: int = 50_000  # LRU entries; 0: no cache
    warm_queries: int = 10_000  # the most frequent logged queries, encoded at start
    torch_threads: int = 1  # per request; concurrency comes from max_concurrency (0: as is)
    feature_cache: Path | None = None  # the encoders' feature cache (default $MRSE_CACHE_DIR)
    profile_timeout_ms: float = 250.0  # the most a batch waits for the feature store (p50 ~1 ms)
    profile_retry_s: float = 1.0  # after a failure, the store is skipped this long
    catalog: CatalogFollow | None = None  # Edge: follow the catalog worker's index topic
    watch_s: float | None = 2.0  # read the experiments table this often (None: at start only)
    retire_grace_s: float = 10.0  # a version no arm names is unloaded this long after
    tls: TLSConfig | None = None  # certificate and key; client_ca for mutual TLS
    auth: AuthConfig | None = None  # bearer tokens (from a file or the environment)
    drain_s: float = 5.0  # after SIGTERM: NOT_SERVING, still answering (load balancers notice)
    shutdown_grace_s: float = 10.0  # then: new requests refused, in-flight ones finish

    @classmethod
    def from_raw(cls, values: dict[str, Any]) -> dict[str, Any]:
        """The YAML's shapes: ``models`` as a list of ``{version, run}``; ``exposures`` as
        ``{bootstrap, topic}``."""
        model_versions(values, "ServeConfig")
        exposures = values.pop("exposures", None)
        if exposures is not None:
            if not isinstance(exposures, dict) or set(exposures) - {"bootstrap", "topic"}:
                raise ValueError("ServeConfig.exposures: a mapping of `bootstrap` and `topic`")
            values["exposures_bootstrap"] = exposures.get("bootstrap")
            if "topic" in exposures:
                values["exposures_topic"] = exposures["topic"]
        return values

    def __post_init__(self) -> None:
        if self.drain_s < 0 or self.shutdown_grace_s < 0:
            raise ValueError("drain_s and shutdown_grace_s must be >= 0")
        if self.query_encoder not in QUERY_ENCODERS:
            raise ValueError(f"query_encoder must be one of {', '.join(QUERY_ENCODERS)}")
        names = {e.name for e in self.experiments}
        if self.default_experiment not in names and not self.experiments_url:
            raise ValueError(f"default_experiment {self.default_experiment!r} is not defined")
        for e in self.experiments:
            for a in e.arms:
                if a.model_version not in self.models:
                    raise ValueError(
                        f"arm {e.name}/{a.name}: model {a.model_version!r} not in models"
                    )


def load_serve_config(path: str | Path | None) -> ServeConfig:
    """The serving config: the YAML file, then ``MRSE_SERVE__*`` environment variables
    (``MRSE_SERVE__ADDRESS=0.0.0.0:50051``, ``MRSE_SERVE__FEATURE_STORE__REDIS=redis:6379``)."""
    return load(ServeConfig, path, ENV_PREFIX)


def load_experiments(cfg: ServeConfig) -> dict[str, Experiment]:
    """The experiments to serve: the config's, written to the experiments table, plus those
    defined only in the table. Read here at start; then `serving.models.ModelWatcher` follows it
    every ``watch_s``. If the database cannot be
    reached the server still starts on the config's experiments (logged loudly), unless the
    default experiment is defined only in the table: then it refuses to start, saying why."""
    experiments = {e.name: e for e in cfg.experiments}
    if not cfg.experiments_url:
        return experiments
    from sqlalchemy.exc import SQLAlchemyError

    from mrse.experiments.store import ExperimentStore

    try:
        store = ExperimentStore(cfg.experiments_url)
        try:
            for e in cfg.experiments:  # the config's definitions win (deploys are the truth)
                store.put(e)
            return {e.name: e for e in store.list()}
        finally:
            store.close()
    except SQLAlchemyError as exc:
        where = cfg.experiments_url.split("@")[-1]  # no credentials in the log
        if cfg.default_experiment not in experiments:
            raise RuntimeError(
                f"experiments database unreachable ({where}) and the default experiment "
                f"{cfg.default_experiment!r} is defined only there: cannot start"
            ) from exc
        logger.error(
            "experiments database unreachable (%s: %s); serving the %d experiment(s) of the "
            "config only",
            where,
            type(exc).__name__,
            len(experiments),
        )
        return experiments


def build_engine(cfg: ServeConfig) -> SearchEngine:
    """The one place a search engine is wired from its configuration (the server, the demo
    and the serving benchmark all come through here)."""
    import torch

    from mrse.data.dataset import load_query_log
    from mrse.training.checkpoint import run_query_log

    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    experiments = load_experiments(cfg)
    restore_replica(cfg.catalog, cfg.index, cfg.models)
    bundles = {}
    for version, run in cfg.models.items():
        bundles[version] = load_bundle(version, run, cfg.index)
    profiles = None
    if cfg.feature_store is not None:
        profiles = ProfileStore(cfg.feature_store)
    log_exposure = None
    if cfg.exposures_bootstrap:
        from mrse.experiments.exposures import ExposureLogger

        log_exposure = ExposureLogger(cfg.exposures_bootstrap, cfg.exposures_topic)
    follower = None
    if cfg.catalog is not None:
        follower = follow_catalog(cfg.catalog, cfg.index, {v: b.index for v, b in bundles.items()})
    logs = [run_query_log(run) for run in cfg.models.values()]
    if cfg.data is not None:
        logs.append(load_query_log(cfg.data))
    warm_from: dict[str, int] = {}
    for log in logs:  # the runs' logs and the dataset's, counted together
        for query, n in log.items():
            warm_from[query] = warm_from.get(query, 0) + n
    engine = SearchEngine(
        bundles,
        experiments,
        cfg.default_experiment,
        build_query_vectors(cfg.query_encoder, cfg.query_cache, warm_from, cfg.warm_queries),
        profiles,
        log_exposure,
        profile_timeout_s=cfg.profile_timeout_ms / 1000,
        profile_retry_s=cfg.profile_retry_s,
        hybrid=cfg.hybrid,
    )
    engine.follower = follower
    if cfg.experiments_url and cfg.watch_s:
        from mrse.serving.models import ModelWatcher

        snapshots = cfg.catalog.snapshot_store() if cfg.catalog is not None else None
        engine.watcher = ModelWatcher(
            engine, cfg.experiments_url, cfg.index, cfg.watch_s, cfg.retire_grace_s, snapshots
        ).start()
    return engine


async def serve(cfg: ServeConfig, on_ready: Callable[[], None] | None = None) -> None:
    """Serve until SIGTERM/SIGINT; ``on_ready`` is called once health says SERVING."""
    # from the start: a signal while loading or warming up stops the server once it is up
    stop, again = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        (again if stop.is_set() else stop).set()  # a second signal cuts the drain short

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    engine = build_engine(cfg)
    running = await start_server(
        engine, cfg.address, cfg.max_concurrency, cfg.batch_workers, cfg.tls, cfg.auth
    )
    port, metrics = running.port, running.metrics
    metrics_server = None
    if cfg.metrics_port is not None:  # once SERVING (a worker's metrics port says it is up)
        from mrse.metrics_http import serve_metrics

        host = cfg.address.rsplit(":", 1)[0] or "127.0.0.1"  # where the API listens
        # with TLS: the API's certificate; scrapers need one if metrics_client_ca
        tls = cfg.tls.metrics_tls(cfg.metrics_client_ca) if cfg.tls is not None else None
        metrics_server = serve_metrics(metrics.registry, cfg.metrics_port, host, tls)
    print(f"serving mrse.v1.SearchService on port {port}", flush=True)
    if on_ready is not None:
        on_ready()
    try:
        await stop.wait()
    finally:
        await running.drain(cfg.drain_s, cfg.shutdown_grace_s, cut_short=again)
        engine.close()
        if metrics_server is not None:
            metrics_server.close()
        logger.info("server stopped")
