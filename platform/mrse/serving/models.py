"""Model versions and experiments that change while the server runs.

A watcher reads the experiments table every ``watch_s``: a model version that an arm names and
the model table marks ready (its index written by the catalog worker) is loaded beside the
others: run loaded, index opened (Edge: a new shard, filled by replaying the catalog's index
log), one warm-up query; then the experiment definitions that need it are swapped in, in one
assignment. Arm weights, arms added or removed take effect the same way. A version no arm names
any more is unloaded ``retire_grace_s`` later: requests already routed to it finish on it.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time

from mrse.catalog.snapshots import SnapshotStore
from mrse.experiments.assignment import Experiment
from mrse.experiments.store import ExperimentStore
from mrse.index.build import IndexConfig, open_index
from mrse.serving.engine import ModelBundle, SearchEngine
from mrse.training.checkpoint import load_run

logger = logging.getLogger(__name__)


class ModelWatcher:
    def __init__(
        self,
        engine: SearchEngine,
        experiments_url: str,
        index: IndexConfig,
        watch_s: float = 2.0,
        retire_grace_s: float = 10.0,
        snapshots: SnapshotStore | None = None,
    ) -> None:
        """``snapshots`` (Edge): a version's shard starts from the newest snapshot holding it,
        graph built, instead of replaying its whole index topic."""
        self.engine = engine
        self.snapshots = snapshots
        self.experiments_url = experiments_url
        self.store: ExperimentStore | None = None  # connected by the watcher, never at start
        self.index = index
        self.watch_s = watch_s
        self.retire_grace_s = retire_grace_s
        self.loaded: list[str] = []  # versions loaded while serving, in order
        self.retired: list[str] = []
        self._waiting: set[str] = set()
        self._failing = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> ModelWatcher:
        self._thread = threading.Thread(target=self._run, name="model-watcher", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.watch_s):
            try:
                self.refresh()
            except Exception as exc:  # the database or a run may be unreadable: try again
                if not self._failing:  # once per outage, not every watch_s
                    where = self.experiments_url.split("@")[-1]  # no credentials in the log
                    logger.warning("experiments table %s unreadable (%s: %.200s); serving the "
                                   "definitions loaded, retrying every %.0fs", where,
                                   type(exc).__name__, exc, self.watch_s)  # fmt: skip
                    self._failing = True
            else:
                if self._failing:
                    logger.info("experiments table readable again")
                    self._failing = False

    def _load(self, version: str, run_dir: str, start: dict[int, int] | None) -> ModelBundle:
        started = time.monotonic()
        run = load_run(run_dir)
        snap = None
        if self.index.backend == "edge":
            # a stale copy is replaced: by the newest snapshot holding it, or filled afresh
            shutil.rmtree(self.index.root / version, ignore_errors=True)
            snap = self.snapshots.latest([version]) if self.snapshots is not None else None
            if snap is not None:
                self.snapshots.restore(snap, version, self.index.root / version)
                start = snap.offsets
        index = open_index(self.index, version, run.config.model.dim)
        if self.engine.follower is not None:
            self.engine.follower.add(version, index, start, backfill=snap is None)
        bundle = ModelBundle(version, run, index)
        self.engine.warm(bundle)
        source = f"from snapshot {snap.path.name}" if snap else "from its index topic"
        logger.info("model version %s loaded in %.1fs (%s)", version,
                    time.monotonic() - started, source)  # fmt: skip
        self.loaded.append(version)
        return bundle

    def refresh(self) -> None:
        if self.store is None:
            self.store = ExperimentStore(self.experiments_url)
        table = {e.name: e for e in self.store.list()}
        models = self.store.models()
        bundles = dict(self.engine.bundles)
        added = False
        wanted = {a.model_version for e in table.values() for a in e.arms}
        for version in sorted(wanted - set(bundles)):
            m = models.get(version)
            if m is None or m.ready_at is None:
                if version not in self._waiting:
                    logger.info("model version %s named by an arm, index not ready yet", version)
                    self._waiting.add(version)
                continue
            bundles[version] = self._load(version, m.run, m.log_offsets)
            self._waiting.discard(version)
            added = True
        adopt: dict[str, Experiment] = {
            name: e for name, e in table.items()
            if all(a.model_version in bundles for a in e.arms)
        }  # fmt: skip
        experiments = {**self.engine.experiments, **adopt}
        if added:
            self.engine.bundles = bundles  # before the experiments that route to them
        if experiments != self.engine.experiments:
            self.engine.experiments = experiments
            logger.info("experiments updated: %s", sorted(adopt))
        in_use = {a.model_version for e in experiments.values() for a in e.arms}
        for version in sorted(set(bundles) - in_use):
            self._retire(version)

    def _retire(self, version: str) -> None:
        bundle = self.engine.bundles[version]
        self.engine.bundles = {v: b for v, b in self.engine.bundles.items() if v != version}
        if self.engine.follower is not None:
            self.engine.follower.remove(version)

        def unload() -> None:  # requests routed to it before now have finished by then
            bundle.index.close()
            logger.info("model version %s unloaded", version)

        threading.Timer(self.retire_grace_s, unload).start()
        self.retired.append(version)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        if self.store is not None:
            self.store.close()
