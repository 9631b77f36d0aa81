"""Failing parts while serving, against the real services: the online store (Redis) killed and
restarted, the Kafka broker restarted under exposure logging, the experiments database down at
start and while serving. The server degrades as documented (docs/serving.md) and never crashes.
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import replace

import grpc
import pytest

from mrse.experiments.assignment import Arm, Experiment
from mrse.features.store import FeatureStoreConfig, ProfileStore
from mrse.index.build import IndexConfig, build_index
from mrse.serving.background import BackgroundServer
from mrse.streaming.updater import ProfileUpdater
from mrse.v1 import search_pb2, search_pb2_grpc

from .services import Postgres, Redis
from .test_server import stack, stack_paths  # noqa: F401 (the trained model, index and server)

pytestmark = pytest.mark.integration


def test_redis_killed_and_restarted_while_serving(stack, sample_hm, tmp_path):  # noqa: F811
    """Online store gone: answers keep coming, marked degraded and not personalised; back:
    personalised again, with no restart of the server."""
    from mrse.streaming.service import catalog_for_profiles

    engine, _, stub, _, events = stack
    redis = Redis(tmp_path / "redis", persist=True)
    healthy = engine.profiles
    try:
        store = ProfileStore(
            FeatureStoreConfig(data_dir=tmp_path / "feast", online="redis", redis=redis.address)
        )
        store.apply()
        catalog, profile = catalog_for_profiles(sample_hm, stack_paths()["run"], None)
        ProfileUpdater(store, catalog, profile).apply(events)
        engine.profiles = store
        request = search_pb2.SearchRequest(query="black top", user_id=events[0].user_id, k=5)
        first = stub.Search(request, timeout=10)
        assert first.personalized and not first.degraded
        redis.proc.send_signal(signal.SIGKILL)
        redis.proc.wait()
        for _ in range(3):
            t = time.perf_counter()
            down = stub.Search(request, timeout=10)
            assert down.degraded and not down.personalized and len(down.results) == 5
            assert time.perf_counter() - t < 5.0  # refused connections fail fast
        redis.start()
        deadline = time.monotonic() + 30
        back = down
        while not back.personalized and time.monotonic() < deadline:
            back = stub.Search(request, timeout=10)
            time.sleep(0.2)
        assert back.personalized and not back.degraded
        assert [r.item_id for r in back.results] == [r.item_id for r in first.results]
    finally:
        engine.profiles = healthy
        redis.stop()


def test_broker_restart_while_logging_exposures(stack, kafka):  # noqa: F811
    """Requests are unaffected by a broker restart; every exposure is either in the topic or
    counted as lost by the logger."""
    from mrse.experiments.exposures import ExposureLogger, read_exposures

    engine, _, stub, _, _ = stack
    topic = "exposures-restart"
    exposures = ExposureLogger(kafka.bootstrap, topic)
    engine.log_exposure = exposures
    asked: list[str] = []
    failures: list[str] = []
    slowest = [0.0]
    done = threading.Event()

    def load() -> None:
        i = 0
        while not done.is_set():
            rid = f"restart-{i}"
            i += 1
            t = time.perf_counter()
            try:
                stub.Search(search_pb2.SearchRequest(query="top", k=3, request_id=rid), timeout=10)
                asked.append(rid)
            except grpc.RpcError as exc:
                failures.append(f"{exc.code()}: {exc.details()}")
            slowest[0] = max(slowest[0], time.perf_counter() - t)
            time.sleep(0.01)

    thread = threading.Thread(target=load)
    thread.start()
    try:
        time.sleep(1.0)
        kafka.restart_broker()
        time.sleep(2.0)
    finally:
        done.set()
        thread.join(60)
        engine.log_exposure = None
    exposures.close()
    assert not failures, failures[:5]
    assert slowest[0] < 3.0  # a send blocks at most max_block_ms, never the broker's downtime
    logged = {e.request_id for e in read_exposures(kafka.bootstrap, topic)[0]}
    assert logged <= set(asked)
    assert len(logged) + exposures.failed >= len(asked)  # kept, or counted as lost
    assert len(logged) > len(asked) // 2


def test_experiments_database_down_at_start_and_while_serving(stack, sample_hm, tmp_path):  # noqa: F811
    from mrse.experiments.store import ExperimentStore
    from mrse.serving.app import ServeConfig, build_engine

    build_index(sample_hm, stack_paths()["run"], IndexConfig(root=tmp_path / "index"), "mrse-v1")
    arm = Arm("only", 1.0, "mrse-v1", "mrse_v1", "mrse-v1")
    pg = Postgres()
    running = True
    try:
        cfg = ServeConfig(
            data=sample_hm,
            models={"mrse-v1": stack_paths()["run"]},
            experiments=(Experiment("e1", (arm,)),),
            default_experiment="e1",
            index=IndexConfig(root=tmp_path / "index"),
            experiments_url=pg.url,
            warm_queries=10,
        )
        pg.stop()
        running = False
        # down at start: the server starts on the config's experiments
        engine = build_engine(cfg)
        assert set(engine.experiments) == {"e1"}
        with BackgroundServer(engine) as server, grpc.insecure_channel(server.target) as ch:
            resp = search_pb2_grpc.SearchServiceStub(ch).Search(
                search_pb2.SearchRequest(query="top", k=3)
            )
            assert resp.experiment == "e1" and len(resp.results) == 3
        engine.close()
        # ... unless the default experiment exists only in the database: a clear refusal
        only_in_db = replace(cfg, experiments=(), default_experiment="db-only")
        with pytest.raises(RuntimeError, match="defined only there"):
            build_engine(only_in_db)
        # up at start, then down while serving: experiments were read at start, answers go on
        pg.start()
        running = True
        store = ExperimentStore(pg.url)
        store.put(Experiment("db-only", (arm,)))
        store.close()
        engine = build_engine(cfg)
        assert set(engine.experiments) == {"e1", "db-only"}
        with BackgroundServer(engine) as server, grpc.insecure_channel(server.target) as ch:
            pg.stop()
            running = False
            stub = search_pb2_grpc.SearchServiceStub(ch)
            for name in ("db-only", "e1", ""):
                resp = stub.Search(search_pb2.SearchRequest(query="top", k=3, experiment=name))
                assert len(resp.results) == 3
        engine.close()
    finally:
        if running:
            pg.stop()
