"""One-client search-engine latency, personalised shoppers: start-up, p50/p99, stages, memory.

    PYTHONPATH=<tree>/platform .venv/bin/python scripts/engine_latency.py DATA RUN WORK

Builds an Edge index and online profiles in WORK the first time; prints one JSON line. Run it
from two checkouts in alternation to compare them (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

from mrse.data import load_dataset
from mrse.experiments.assignment import Arm, Experiment
from mrse.features.store import FeatureStoreConfig, ProfileStore
from mrse.index.base import SearchFilter
from mrse.index.build import IndexConfig, build_index
from mrse.serving.app import ServeConfig, build_engine
from mrse.serving.validation import ValidRequest
from mrse.streaming.producer import dataset_events
from mrse.streaming.service import catalog_for_profiles
from mrse.streaming.updater import ProfileUpdater


def _pct(xs: list[float], q: float) -> float:
    return round(float(np.percentile(np.array(xs) * 1000, q)), 2)


def main(data: Path, run: Path, work: Path) -> dict:
    if not work.exists():
        work.mkdir(parents=True)
        build_index(data, run, IndexConfig(root=work / "index"), "v1")
        store = ProfileStore(FeatureStoreConfig(data_dir=work / "feast"))
        store.apply()
        catalog, profile = catalog_for_profiles(data, run, None)
        ProfileUpdater(store, catalog, profile).apply(dataset_events(load_dataset(data)))
    t0 = time.perf_counter()
    engine = build_engine(
        ServeConfig(
            data=data, models={"v1": run},
            experiments=(Experiment("e", (Arm("a", 1.0, "v1", "mrse_v1", "v1"),)),),
            default_experiment="e", index=IndexConfig(root=work / "index"),
            feature_store=FeatureStoreConfig(data_dir=work / "feast"),
        )
    )  # fmt: skip
    engine.warm_up()
    start_s = time.perf_counter() - t0
    queries = load_dataset(data).queries.dropna(subset=["user_id"]).head(300)
    lat: list[float] = []
    stages: dict[str, list[float]] = {}
    personalized = 0
    for _ in range(2):
        for text, user in zip(queries["query"], queries["user_id"], strict=True):
            t = time.perf_counter()
            out = engine.search(ValidRequest(text, user, 100, SearchFilter(), None, "r", None))
            lat.append(time.perf_counter() - t)
            personalized += out.personalized
            for k, v in out.timings.items():
                stages.setdefault(k, []).append(v)
    engine.close()
    return {
        "start_s": round(start_s, 1),
        "p50_ms": _pct(lat, 50),
        "p99_ms": _pct(lat, 99),
        "personalized": personalized,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "stages_p50_ms": {k: _pct(v, 50) for k, v in stages.items()},
    }


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))))
