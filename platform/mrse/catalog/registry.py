"""New model versions for the catalog worker: announced in the experiments database's model
table (``mrse rollout``), written in full by the worker from the catalog as the events describe
it (the snapshot dataset overlaid with the worker's item state), then marked ready."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

from mrse.catalog.events import dataset_items
from mrse.catalog.plan import ItemChange
from mrse.catalog.state import CatalogState
from mrse.data import load_dataset
from mrse.experiments.store import ExperimentStore

logger = logging.getLogger(__name__)


class ModelRegistry:
    def __init__(self, url: str, snapshot: Path | None, watch_s: float = 2.0, chunk: int = 512):
        """``snapshot``: the dataset the catalog started from (its items, before any event)."""
        self.url = url
        self._store: ExperimentStore | None = None  # connected on first use, not at start
        self.snapshot = snapshot
        self.watch_s = watch_s
        self.chunk = chunk

    def pending(self, loaded: set[str]) -> dict[str, tuple[Path, bool]]:
        """Registered versions whose index is not ready, or that this worker has not loaded:
        version -> (run directory, ready)."""
        try:
            models = self.store.models()  # connects on first use
        except Exception as exc:  # the database is down: look again later
            logger.warning("model registry unreadable (%s); retrying", type(exc).__name__)
            return {}
        return {
            m.version: (Path(m.run), m.ready_at is not None)
            for m in models.values()
            if m.ready_at is None or m.version not in loaded
        }

    @property
    def store(self) -> ExperimentStore:
        if self._store is None:
            self._store = ExperimentStore(self.url)
        return self._store

    def mark_ready(self, version: str, log_offsets: dict[int, int] | None) -> None:
        self.store.mark_ready(version, time.time(), log_offsets)

    def catalog(self, state: CatalogState) -> Iterator[tuple[bool, list[ItemChange]]]:
        """Every live item as an ``encode`` change, in chunks: (trusted, changes); snapshot
        items are trusted (their photos come from the dataset), event items are not."""
        items: dict[str, ItemChange] = {}
        if self.snapshot is not None:
            for item_id, content, attributes in dataset_items(load_dataset(self.snapshot)):
                items[item_id] = ItemChange("encode", item_id, content, attributes)
        from_events: dict[str, ItemChange] = {}
        for item_id, st in state.items().items():
            if st.deleted:
                items.pop(item_id, None)
            elif st.content is not None:
                items.pop(item_id, None)
                from_events[item_id] = ItemChange("encode", item_id, st.content,
                                                  dict(st.attributes))  # fmt: skip
            elif item_id in items:
                items[item_id].attributes.update(st.attributes)
        for trusted, group in ((True, list(items.values())), (False, list(from_events.values()))):
            for s in range(0, len(group), self.chunk):
                yield trusted, group[s : s + self.chunk]

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
