"""Wiring for the stream worker process: catalog features, feature store, updater, worker."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from mrse.data import load_dataset
from mrse.encoders.cache import FeatureCache
from mrse.features.catalog import CatalogFeatures
from mrse.features.featurizer import Featurizer
from mrse.features.profile import ProfileConfig
from mrse.features.store import FeatureStoreConfig, ProfileStore
from mrse.metrics_http import MetricsTLS
from mrse.models.config import ModelConfig
from mrse.streaming.updater import ProfileUpdater
from mrse.streaming.worker import StreamWorker, WorkerConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamServiceConfig:
    """The stream worker process (``mrse stream worker``): flags, ``--config FILE`` and
    ``MRSE_STREAM__*`` variables (``MRSE_STREAM__WORKER__BOOTSTRAP=kafka:9092``)."""

    data: Path  # the catalog
    worker: WorkerConfig
    store: FeatureStoreConfig = field(
        default_factory=lambda: FeatureStoreConfig(data_dir=Path(".mrse-features"))
    )
    run: Path | None = None  # the serving model's run (its feature statistics)
    cache_dir: Path | None = None  # the encoders' feature cache
    idle_exit_s: float | None = None  # exit after this many idle seconds
    metrics_port: int | None = None  # Prometheus metrics on metrics_host
    metrics_host: str = "127.0.0.1"  # 0.0.0.0 in a container its scraper reaches by network
    metrics_tls: MetricsTLS | None = None  # HTTPS (and client certificates) for them


def catalog_for_profiles(
    data: Path, run: Path | None, cache_dir: Path | None
) -> tuple[CatalogFeatures, ProfileConfig]:
    """Item vectors exactly as the model run centres them (its featurizer and profile config),
    photos always included."""
    dataset = load_dataset(data)
    with FeatureCache.open_default(cache_dir) as cache:
        if run is not None:
            from mrse.training.checkpoint import load_run

            loaded = load_run(run)
            return loaded.featurizer.catalog(dataset, cache, images=True), loaded.config.profile
        logger.warning(
            "no --run given: centring item vectors with this catalog's own statistics; "
            "pass the serving model's run so profiles match what it was trained on"
        )
        _, catalog = Featurizer.fit(dataset, cache, ModelConfig())
        return catalog, ProfileConfig()


def build_worker(config: StreamServiceConfig) -> StreamWorker:
    """The worker, its feature store checked first (wrong credentials fail here). To fold in
    clicks on items the catalog adds later, set its ``new_items`` to a
    ``mrse.catalog.listen.CatalogListener`` (the caller's: a layer above this one)."""
    store = ProfileStore(config.store)
    store.check()  # wrong credentials fail here, in one line, not at the first write
    store.apply()
    catalog, profile = catalog_for_profiles(config.data, config.run, config.cache_dir)
    return StreamWorker(config.worker, ProfileUpdater(store, catalog, profile))
