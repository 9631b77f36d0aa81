"""Wiring for the catalog worker process (``mrse catalog worker``) and for the server processes
that follow it (``ServeConfig.catalog``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mrse.catalog.encoding import ItemEncoder
from mrse.catalog.follower import OFFSETS_FILE, IndexFollower
from mrse.catalog.registry import ModelRegistry
from mrse.catalog.snapshots import SnapshotConfig, SnapshotStore, Snapshotter, restore_missing
from mrse.catalog.state import CatalogState
from mrse.catalog.worker import (
    CATALOG_INDEX,
    CatalogWorker,
    CatalogWorkerSettings,
    DirectSink,
    IndexSink,
    TopicSink,
)
from mrse.index.base import VectorIndex
from mrse.index.build import IndexConfig
from mrse.metrics_http import MetricsTLS
from mrse.settings import model_versions
from mrse.training.checkpoint import load_run

logger = logging.getLogger(__name__)
ENV_PREFIX = "MRSE_CATALOG"


@dataclass(frozen=True)
class CatalogFollow:
    """How embedded (Edge) server processes follow the catalog worker's index topic."""

    bootstrap: str
    topic: str = CATALOG_INDEX
    catch_up_s: float = 60.0  # at start: wait this long for the backlog before serving
    # the catalog worker's published snapshots (its `snapshots.root`): a shard missing here
    # at start, and a model version loaded while serving, start from the newest one
    snapshots: Path | None = None

    def snapshot_store(self) -> SnapshotStore | None:
        return None if self.snapshots is None else SnapshotStore(self.snapshots, self.topic)


@dataclass(frozen=True)
class CatalogServiceConfig:
    """``mrse catalog worker --config FILE`` (``configs/catalog.yaml``), then
    ``MRSE_CATALOG__*`` variables, then flags. ``models``/``index`` as in the serving config:
    the worker keeps every served version's index current."""

    worker: CatalogWorkerSettings
    models: dict[str, Path]
    index: IndexConfig = field(default_factory=IndexConfig)
    index_topic: str = CATALOG_INDEX  # the Edge backend: where server processes read writes
    state: Path = Path(".mrse-catalog/state.sqlite")
    photo_roots: tuple[Path, ...] = ()  # photos are read only from under these directories
    cache_dir: Path | None = None
    idle_exit_s: float | None = None
    metrics_port: int | None = None  # Prometheus metrics on metrics_host
    metrics_host: str = "127.0.0.1"  # 0.0.0.0 in a container its scraper reaches by network
    metrics_tls: MetricsTLS | None = None  # HTTPS (and client certificates) for them
    experiments_url: str | None = None  # where `mrse rollout` announces new model versions
    data: Path | None = None  # the catalog snapshot the indexes were built from (`mrse index`)
    watch_s: float = 2.0  # how often the model table is read
    # the Edge backend: publish index snapshots here for new replicas and rollouts
    snapshots: SnapshotConfig | None = None

    @classmethod
    def from_raw(cls, values: dict[str, Any]) -> dict[str, Any]:
        model_versions(values, "CatalogServiceConfig")
        return values

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError("models: name at least one model version and its run")
        if self.snapshots is not None and self.index.backend != "edge":
            raise ValueError("snapshots: only for the edge backend (a Qdrant server is shared)")


def build_catalog_worker(cfg: CatalogServiceConfig) -> CatalogWorker:
    runs = {v: load_run(p) for v, p in cfg.models.items()}
    sink: IndexSink
    if cfg.index.backend == "edge":
        sink = TopicSink(cfg.worker.bootstrap, cfg.index_topic)
    else:
        sink = DirectSink(cfg.index)
    encoder = ItemEncoder(runs, cfg.cache_dir, tuple(Path(r) for r in cfg.photo_roots))
    registry = None
    if cfg.experiments_url:
        registry = ModelRegistry(cfg.experiments_url, cfg.data, cfg.watch_s)
    snapshotter = None
    if cfg.snapshots is not None:
        dims = {v: r.config.model.dim for v, r in runs.items()}
        snapshotter = Snapshotter(cfg.snapshots, cfg.worker.bootstrap, cfg.index_topic, dims,
                                  seed=cfg.index.root, edge=cfg.index.edge)  # fmt: skip
    return CatalogWorker(cfg.worker, CatalogState(cfg.state), encoder, sink, registry=registry,
                         snapshotter=snapshotter)  # fmt: skip


def follow_catalog(
    follow: CatalogFollow, index: IndexConfig, indexes: dict[str, VectorIndex]
) -> IndexFollower | None:
    """Start following the index topic into ``indexes`` (the Edge backend only: a Qdrant
    server is written by the catalog worker itself)."""
    if index.backend != "edge":
        return None
    path = index.root / OFFSETS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    return IndexFollower(follow.bootstrap, follow.topic, indexes, path).start(follow.catch_up_s)


def restore_replica(follow: CatalogFollow | None, index: IndexConfig, versions) -> None:
    """A server process about to open its Edge shards: any that are missing (a new replica)
    come from the catalog worker's newest snapshot, with where they stand in the log."""
    if follow is None or index.backend != "edge":
        return
    store = follow.snapshot_store()
    if store is not None:
        restore_missing(index.root, versions, store)
