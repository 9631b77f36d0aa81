"""The live stack the demo runs in one process: embedded Kafka-protocol broker, stream worker
(thread), catalog worker (thread), gRPC search server (thread) with exposure logging and
following the catalog worker's index writes, all on the embedded defaults."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from mrse.catalog.listen import CatalogListener
from mrse.catalog.service import CatalogFollow, CatalogServiceConfig, build_catalog_worker
from mrse.catalog.worker import CatalogWorkerSettings
from mrse.experiments.assignment import Arm, Experiment
from mrse.features.store import FeatureStoreConfig
from mrse.index.build import IndexConfig
from mrse.serving.app import ServeConfig, build_engine
from mrse.serving.background import BackgroundServer
from mrse.serving.engine import SearchEngine
from mrse.streaming.broker import EmbeddedBroker
from mrse.streaming.service import StreamServiceConfig, build_worker
from mrse.streaming.worker import StreamWorker, WorkerConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArmModel:
    """One experiment arm: its name, the model version it serves, the run behind it."""

    arm: str
    version: str
    feature_service: str
    run: Path
    retrieval: str = "dense"  # or hybrid: fused with the lexical channel


class LiveStack:
    """Start with ``with LiveStack(...) as stack``; everything stops (flushed) on exit.

    State lives under ``work``: the broker log, the Feast online store and the indexes' copies
    are created fresh on every start so that a demo run does not inherit the last one's clicks.
    """

    def __init__(
        self,
        data: Path,
        arms: tuple[ArmModel, ...],
        experiment: str,
        index: IndexConfig,
        work: Path,
        profile_run: Path,
        cache_dir: Path | None = None,
    ) -> None:
        self.data = data
        self.arms = arms
        arm_defs = tuple(
            Arm(a.arm, 1.0, a.version, a.feature_service, a.version, a.retrieval) for a in arms
        )
        self.experiment = Experiment(experiment, arm_defs)
        # the same two arms, interleaved for every shopper (team draft)
        self.interleaved = Experiment(f"{experiment}-interleaved", arm_defs, kind="interleave")
        self.index = index
        self.work = work
        self.profile_run = profile_run
        self.cache_dir = cache_dir
        self._stop = threading.Event()

    def start(self) -> LiveStack:
        for sub in ("feast", "broker.log", "catalog"):
            path = self.work / sub
            if path.is_dir():
                shutil.rmtree(path)
        self.work.mkdir(parents=True, exist_ok=True)
        self.broker = EmbeddedBroker(log_path=self.work / "broker.log").start()
        store = FeatureStoreConfig(data_dir=self.work / "feast")
        self.worker: StreamWorker = build_worker(
            StreamServiceConfig(
                data=self.data,
                worker=WorkerConfig(
                    bootstrap=self.broker.bootstrap, group_id="demo-worker", session_timeout_ms=2000
                ),
                store=store,
                run=self.profile_run,
                cache_dir=self.cache_dir,
            )
        )
        self.worker.new_items = CatalogListener(self.broker.bootstrap)
        self._worker_thread = threading.Thread(
            target=self.worker.run, args=(self._stop,), name="stream-worker", daemon=True
        )
        self._worker_thread.start()
        if not self.worker.ready.wait(60):
            raise TimeoutError("the stream worker did not join its consumer group within 60s")
        self.catalog = build_catalog_worker(
            CatalogServiceConfig(
                worker=CatalogWorkerSettings(self.broker.bootstrap, group_id="demo-catalog",
                                             session_timeout_ms=2000),
                models={a.version: a.run for a in self.arms},
                index=self.index,
                state=self.work / "catalog" / "state.sqlite",
                photo_roots=(self.work / "catalog" / "photos", self.data),
                cache_dir=self.cache_dir,
            )
        )  # fmt: skip
        self._catalog_thread = threading.Thread(
            target=self.catalog.run, args=(self._stop,), name="catalog-worker", daemon=True
        )
        self._catalog_thread.start()
        if not self.catalog.ready.wait(60):
            raise TimeoutError("the catalog worker did not join its consumer group within 60s")
        self.engine = self._engine(store)
        self.exposures = self.engine.log_exposure
        self.server = BackgroundServer(self.engine).start()
        logger.info(
            "live: broker %s, stream worker, search server on %s",
            self.broker.bootstrap,
            self.server.target,
        )
        return self

    def _engine(self, store: FeatureStoreConfig) -> SearchEngine:
        """The serving defaults, on the embedded stores, with exposures to the broker."""
        return build_engine(
            ServeConfig(
                data=self.data,
                models={a.version: a.run for a in self.arms},
                experiments=(self.experiment, self.interleaved),
                default_experiment=self.experiment.name,
                index=self.index,
                feature_store=store,
                exposures_bootstrap=self.broker.bootstrap,
                torch_threads=0,  # the demo's process: leave torch's threads as they are
                feature_cache=self.cache_dir,
                catalog=CatalogFollow(self.broker.bootstrap),
            )
        )

    def wait_applied(self, n: int, timeout: float = 120.0) -> None:
        """Block until the worker has taken ``n`` events off the topic (applied, duplicate or
        dead-lettered)."""
        deadline = time.monotonic() + timeout
        while True:
            s = self.worker.stats
            done = s.applied + s.duplicates + sum(s.dead_lettered.values())
            if done >= n:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the stream worker took {done}/{n} events in {timeout:.0f}s")
            time.sleep(0.1)

    def stop(self) -> None:
        """Server (drains), exposure log (flushes), worker, broker: in that order. Safe after a
        partial start."""
        steps = []
        if hasattr(self, "server"):
            steps.append(self.server.stop)
        if hasattr(self, "engine"):
            steps.append(self.engine.close)  # flushes the exposure log too
        steps.append(self._stop.set)
        if hasattr(self, "_worker_thread"):
            steps.append(lambda: self._worker_thread.join(30))
        if hasattr(self, "_catalog_thread"):
            steps.append(lambda: self._catalog_thread.join(30))
        if hasattr(self, "broker"):
            steps.append(self.broker.stop)
        for step in steps:
            try:
                step()
            except Exception:  # keep stopping the rest
                logger.warning("error while stopping the live stack", exc_info=True)

    def __enter__(self) -> LiveStack:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
