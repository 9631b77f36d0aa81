"""`mrse index`: encode a catalog with a run's item tower and write it to a vector index.

One index per model version: an Edge shard directory ``<root>/<version>`` or a collection
``items_<version>`` on a Qdrant server. Payload: category, brand, price (for filtering).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm.auto import tqdm

from mrse.data import load_dataset
from mrse.encoders.cache import FeatureCache
from mrse.features.catalog import CatalogFeatures
from mrse.index.base import EdgeOptions, VectorIndex
from mrse.index.points import attribute_payload, item_points, lexical_terms
from mrse.settings import secret
from mrse.training.checkpoint import load_run

logger = logging.getLogger(__name__)


# where embedded server processes record how far into the catalog's index topic their shards
# are (mrse.catalog.follower); rebuilding an index removes it, so the whole log is replayed
FOLLOW_OFFSETS = "catalog-offsets.json"


@dataclass(frozen=True)
class IndexConfig:
    """Where indexes live: ``edge`` (embedded, one directory per version under ``root``) or
    ``qdrant`` (a server at ``url``)."""

    backend: Literal["edge", "qdrant"] = "edge"
    root: Path = Path(".mrse-index")
    url: str | None = None
    # the Qdrant server's API key: this file, else $MRSE_QDRANT_API_KEY_FILE, else the variable
    api_key_file: Path | None = None
    # Edge: HNSW, quantization and memory placement (mrse.index.base.EdgeOptions)
    edge: EdgeOptions = field(default_factory=EdgeOptions)

    def __post_init__(self) -> None:
        if self.backend not in ("edge", "qdrant"):
            raise ValueError("backend must be 'edge' or 'qdrant'")
        if self.backend == "qdrant" and not self.url:
            raise ValueError("the qdrant backend needs a url (e.g. http://qdrant:6333)")


def version_name(version: str) -> str:
    """A model version as a safe directory / collection name."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", version):
        raise ValueError(f"model version {version!r}: use letters, digits, '_', '.', '-' (max 64)")
    return version


def open_index(config: IndexConfig, version: str, dim: int) -> VectorIndex:
    version = version_name(version)
    if config.backend == "edge":
        from mrse.index.edge import EdgeIndex

        return EdgeIndex(config.root / version, dim, config.edge)
    from qdrant_client import QdrantClient

    from mrse.index.client import ClientIndex

    api_key = secret("MRSE_QDRANT_API_KEY", config.api_key_file)
    client = QdrantClient(url=config.url, api_key=api_key, check_compatibility=False)
    return ClientIndex(client, f"items_{version}", dim, config.edge)


def item_attributes(items) -> list[dict]:
    """Filterable payload per dataset item (a dataset's items are all in stock)."""
    return [
        attribute_payload(cat, brand, price)
        for cat, brand, price in zip(items["category"], items["brand"], items["price"], strict=True)
    ]


def build_index(
    data: Path,
    run_dir: Path,
    config: IndexConfig,
    version: str | None = None,
    cache_dir: Path | None = None,
) -> dict:
    """Encode every item of ``data`` with the run's item tower and upsert it (incremental:
    re-running after a catalog change rewrites changed items; ``delete_missing`` semantics are
    left to :func:`sync_index`)."""
    start = time.perf_counter()
    run = load_run(run_dir)
    version = version_name(version or run.name)
    dataset = load_dataset(data)
    with FeatureCache.open_default(cache_dir) as cache:
        catalog = run.featurizer.catalog(dataset, cache)
    index = open_index(config, version, run.config.model.dim)
    try:
        ids = list(dataset.items["item_id"])
        write_items(index, run.model, catalog, ids, item_attributes(dataset.items),
                    lexical_terms(dataset.items))  # fmt: skip
        del catalog  # the features are not needed to build the graph (5 GB at 1M items)
        # a rebuilt index replays the catalog's whole log (see mrse.catalog.follower)
        (config.root / FOLLOW_OFFSETS).unlink(missing_ok=True)
        removed = delete_departed(index, set(ids), config.root / f"{version}.items.txt")
        if hasattr(index, "optimize"):
            index.optimize()
        count = index.count()
    finally:
        index.close()
    summary = {
        "version": version,
        "backend": config.backend,
        "items": len(ids),
        "removed": removed,
        "count": count,
        "seconds": round(time.perf_counter() - start, 1),
    }
    logger.info("index %s: %s", version, summary)
    return summary


def write_items(
    index: VectorIndex,
    model,
    catalog: CatalogFeatures,
    ids: Sequence[str],
    attributes: Sequence[dict],
    terms: Sequence[Mapping[int, float]] | None = None,
    chunk: int = 20_000,
) -> None:
    """Encode ``catalog``'s items with ``model``'s item tower and upsert them with their
    lexical ``terms``, ``chunk`` at a time: memory stays flat in the catalog size (each item's
    points are ~2 KB of payload)."""
    with tqdm(total=len(ids), desc="index", unit="item", disable=len(ids) < 2 * chunk) as bar:
        for s in range(0, len(ids), chunk):
            rows = np.arange(s, min(s + chunk, len(ids)))
            vectors, payloads = item_points(model, catalog, attributes[s : s + chunk], rows)
            index.upsert(ids[s : s + chunk], vectors, payloads,
                         None if terms is None else terms[s : s + chunk])  # fmt: skip
            bar.update(len(rows))


def delete_departed(index: VectorIndex, keep: set[str], manifest: Path) -> int:
    """Delete the items indexed last time (listed in ``manifest``) that are not in ``keep``."""
    gone: list[str] = []
    if manifest.exists():
        gone = sorted(set(manifest.read_text().split("\n")) - {""} - keep)
        index.delete(gone)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text("\n".join(sorted(keep)))
    return len(gone)
