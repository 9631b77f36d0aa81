"""The search engine behind the server: arm -> profile -> query encoding -> filtered ANN search.

Synchronous and thread-safe for reads; the gRPC layer runs it in a bounded thread pool and maps
its errors to status codes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mrse.data import load_dataset
from mrse.encoders.cache import FeatureCache
from mrse.experiments.assignment import Experiment, assign_arm
from mrse.experiments.report import Exposure
from mrse.features.catalog import CatalogFeatures, model_catalog
from mrse.features.profile import ProfileState, empty_profile
from mrse.features.queries import build_query_features
from mrse.features.store import ProfileStore
from mrse.index.base import SearchFilter, VectorIndex
from mrse.models.inference import encode_catalog, explain_rows
from mrse.serving.validation import ValidRequest
from mrse.training.checkpoint import Run, load_run

logger = logging.getLogger(__name__)


class NotFound(LookupError):
    """An experiment or arm that does not exist."""


class Unavailable(RuntimeError):
    """A dependency the answer needs (model, index) is not there."""


@dataclass
class ModelBundle:
    """One servable model version: weights, catalog features, item vectors, its index."""

    version: str
    run: Run
    catalog: CatalogFeatures
    item_vectors: torch.Tensor  # (N, D), the same vectors the index holds
    index: VectorIndex


def load_bundle(
    version: str, run_dir: Path, data: Path, index: VectorIndex, cache_dir: Path | None = None
) -> ModelBundle:
    run = load_run(run_dir)
    dataset = load_dataset(data)
    with FeatureCache.open_default(cache_dir) as cache:
        catalog, _ = model_catalog(dataset, cache, run.config.model, run.stats)
    return ModelBundle(version, run, catalog, encode_catalog(run.model, catalog), index)


class QueryVectors:
    """MiniLM query vectors with an LRU cache of frequent queries (shared by all arms)."""

    def __init__(self, encode: Callable[[list[str]], np.ndarray], size: int = 50_000) -> None:
        self.encode = encode
        self.size = size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def __call__(self, query: str) -> np.ndarray:
        key = query.lower()
        with self._lock:
            vec = self._cache.get(key)
            if vec is not None:
                self._cache.move_to_end(key)
                self.hits += 1
                return vec
        vec = self.encode([key])[0]
        with self._lock:
            self.misses += 1
            self._cache[key] = vec
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return vec


@dataclass
class ResultItem:
    item_id: str
    score: float
    payload: dict
    explanation: dict[str, float] | None


@dataclass
class SearchOutcome:
    results: list[ResultItem]
    request_id: str
    experiment: str
    arm: str
    model_version: str
    personalized: bool
    degraded: bool
    timings: dict[str, float] = field(default_factory=dict)


class SearchEngine:
    """Routes each request to an arm and answers it with that arm's model and index."""

    def __init__(
        self,
        bundles: dict[str, ModelBundle],
        experiments: dict[str, Experiment],
        default_experiment: str,
        query_vectors: QueryVectors,
        profiles: ProfileStore | None = None,
        log_exposure: Callable[[Exposure], None] | None = None,
    ) -> None:
        if default_experiment not in experiments:
            raise ValueError(f"default experiment {default_experiment!r} is not defined")
        self.bundles = bundles
        self.experiments = experiments
        self.default_experiment = default_experiment
        self.query_vectors = query_vectors
        self.profiles = profiles
        self.log_exposure = log_exposure
        self.degradations = 0

    def _profile(self, bundle: ModelBundle, user_id: str | None) -> tuple[ProfileState, bool, bool]:
        """(state, personalized, degraded). Store down -> cold start, never an error."""
        dims = (bundle.catalog.text.shape[1], bundle.catalog.image.shape[1])
        if user_id is None or self.profiles is None or not bundle.run.config.model.use_profile:
            return empty_profile(*dims), False, False
        try:
            stored = self.profiles.read([user_id]).get(user_id)
        except Exception:  # any store failure degrades to non-personalised results
            logger.warning("feature store unavailable; serving without profile", exc_info=True)
            self.degradations += 1
            return empty_profile(*dims), False, True
        if stored is None:
            return empty_profile(*dims), False, False
        return stored.state, True, False

    def search(self, req: ValidRequest) -> SearchOutcome:
        t = time.perf_counter()
        timings: dict[str, float] = {}
        name = req.experiment or self.default_experiment
        experiment = self.experiments.get(name)
        if experiment is None:
            raise NotFound(f"no experiment named {name!r}")
        try:
            arm = assign_arm(req.user_id or req.request_id, experiment, req.arm_override)
        except KeyError as exc:
            raise NotFound(str(exc)) from exc
        bundle = self.bundles.get(arm.model_version)
        if bundle is None:
            raise Unavailable(f"model version {arm.model_version!r} is not loaded")
        state, personalized, degraded = self._profile(bundle, req.user_id)
        timings["features"] = time.perf_counter() - t
        results = self._retrieve(bundle, req.query, state, req.k, req.filter, timings)
        if self.log_exposure is not None:
            self.log_exposure(
                Exposure(req.request_id, experiment.name, arm.name, req.user_id or "",
                         tuple(r.item_id for r in results), time.time(),
                         qa=req.arm_override is not None)
            )  # fmt: skip
        return SearchOutcome(
            results, req.request_id, experiment.name, arm.name, bundle.version,
            personalized, degraded, timings,
        )  # fmt: skip

    def _retrieve(
        self,
        bundle: ModelBundle,
        query: str,
        state: ProfileState,
        k: int,
        flt: SearchFilter | None,
        timings: dict[str, float],
    ) -> list[ResultItem]:
        """Encode the query with the bundle's query tower, search its index, explain the hits;
        adds the stage timings (seconds) to ``timings``."""
        t = time.perf_counter()
        cfg = bundle.run.config.model
        raw = self.query_vectors(query)[None, :]
        qf = build_query_features([query], raw, [state], bundle.catalog, bundle.run.stats, cfg)
        with torch.no_grad():
            q_out = bundle.run.model.encode_queries(qf.inputs(np.array([0])), bundle.item_vectors)
        vector = q_out.embedding[0].numpy()
        timings["encode"] = time.perf_counter() - t
        t = time.perf_counter()
        try:
            hits = bundle.index.search(vector, k, flt)
        except Exception as exc:
            raise Unavailable(f"index for {bundle.version!r} failed: {exc}") from exc
        timings["search"] = time.perf_counter() - t
        t = time.perf_counter()
        explanations = self._explain(bundle, q_out, [h.item_id for h in hits])
        timings["explain"] = time.perf_counter() - t
        return [
            ResultItem(h.item_id, h.score, h.payload, explanations.get(h.item_id)) for h in hits
        ]

    def warm_up(self) -> None:
        """One anonymous query through every loaded model and index (first calls load lazy
        kernels and encoders); the server reports SERVING only after this. Not logged as an
        exposure."""
        for bundle in self.bundles.values():
            dims = (bundle.catalog.text.shape[1], bundle.catalog.image.shape[1])
            self._retrieve(bundle, "warm up", empty_profile(*dims), 10, None, {})

    def close(self) -> None:
        """Flush the exposure log and close the indexes (after the server has drained)."""
        close = getattr(self.log_exposure, "close", None)
        if close is not None:
            close()
        for bundle in self.bundles.values():
            bundle.index.close()

    @staticmethod
    def _explain(bundle: ModelBundle, q_out, item_ids: list[str]) -> dict[str, dict[str, float]]:
        rows = [bundle.catalog.index[i] for i in item_ids if i in bundle.catalog.index]
        parts = explain_rows(bundle.run.model, bundle.catalog, q_out, 0, np.array(rows))
        if parts is None:
            return {}
        keys = ("text", "image", "profile")
        return {
            str(bundle.catalog.item_ids[r]): {k: float(parts[k][j]) for k in keys}
            for j, r in enumerate(rows)
        }
