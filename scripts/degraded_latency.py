"""Latency of searches after the online feature store (Redis) dies while serving.

    .venv/bin/python scripts/degraded_latency.py --config configs/serve.yaml --requests 30

Starts a throwaway redis-server, writes a profile for every shopper of the config's dataset,
serves the default experiment's last arm straight from the engine (after the server's
warm-up and a few personalised answers), SIGKILLs Redis, then times each request and counts
the answers marked degraded. Needs `redis-server` and what `make demo` leaves.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=Path("configs/serve.yaml"))
    p.add_argument("--requests", type=int, default=30)
    p.add_argument("--gap", type=float, default=0.1, help="seconds between requests")
    args = p.parse_args()

    from mrse.data import load_dataset
    from mrse.features.profile import empty_profile
    from mrse.features.store import FeatureStoreConfig, ProfileStore, StoredProfile
    from mrse.serving.app import build_engine, load_serve_config
    from mrse.streaming.broker import free_port, wait_for_port

    cfg = load_serve_config(args.config)
    port = free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    wait_for_port(port)
    with tempfile.TemporaryDirectory() as tmp:
        store_cfg = FeatureStoreConfig(
            data_dir=Path(tmp), online="redis", redis=f"127.0.0.1:{port}"
        )
        store = ProfileStore(store_cfg)
        store.apply()
        users = [u for u in load_dataset(cfg.data).queries["user_id"] if isinstance(u, str)]
        store.write({u: StoredProfile(empty_profile(384, 1280)) for u in users})
        engine = build_engine(replace(cfg, feature_store=store_cfg, experiments_url=None))
        engine.warm_up()
        arm = engine.experiments[cfg.default_experiment].arms[-1].name
        rows = _requests(engine, users, arm, 3, args.gap)  # served from Redis
        redis.kill()
        redis.wait()
        rows = _requests(engine, users, arm, args.requests, args.gap)
        engine.close()
    ms = sorted(r[0] for r in rows)
    print(json.dumps({"arm": arm, "latency_ms": [r[0] for r in rows],
                      "degraded": sum(bool(r[1]) for r in rows), "p50_ms": ms[len(ms) // 2],
                      "max_ms": ms[-1]}))  # fmt: skip


def _requests(engine, users: list[str], arm: str, n: int, gap: float) -> list[tuple]:
    from mrse.index.base import SearchFilter
    from mrse.serving.validation import ValidRequest

    rows = []
    for i in range(n):
        req = ValidRequest(
            "black top", users[i % len(users)], 10, SearchFilter(), None, f"d{i}", arm
        )
        t = time.perf_counter()
        (out,) = engine.search_many([req])
        rows.append((round((time.perf_counter() - t) * 1000, 1), getattr(out, "degraded", None)))
        time.sleep(gap)
    return rows


if __name__ == "__main__":
    main()
