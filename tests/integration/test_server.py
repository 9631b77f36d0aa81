"""The gRPC search server end to end: a trained model, an Edge index, Feast profiles."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mrse.cli import main
from mrse.experiments.assignment import Arm, Experiment
from mrse.features.store import FeatureStoreConfig, ProfileStore
from mrse.index.build import IndexConfig, build_index
from mrse.serving.background import BackgroundServer
from mrse.serving.engine import SearchEngine, load_bundle
from mrse.serving.query_encoding import build_query_vectors
from mrse.streaming.producer import dataset_events
from mrse.streaming.updater import ProfileUpdater
from mrse.v1 import search_pb2, search_pb2_grpc

pytestmark = pytest.mark.integration
SMALL = {
    "model": {"dim": 32, "hidden": 64, "sparse_dim": 16, "ngram_buckets": 4096, "recent_items": 5},
    "loss": {"random_negatives": 64, "hard_negatives": 4, "hard_pool": 16},
    "batch_size": 64,
    "epochs": 2,
}


_PATHS: dict = {}


def stack_paths() -> dict:
    return _PATHS


@pytest.fixture(scope="module")
def stack(sample_hm, tmp_path_factory):
    from mrse.streaming.service import catalog_for_profiles

    tmp = tmp_path_factory.mktemp("serving")
    config = tmp / "small.yaml"
    config.write_text(yaml.safe_dump(SMALL))
    run = tmp / "run"
    assert (
        main(["train", "--data", str(sample_hm), "--out", str(run), "--config", str(config)]) == 0
    )
    index_cfg = IndexConfig(root=tmp / "index")
    build_index(sample_hm, run, index_cfg, version="mrse-v1")
    bundle = load_bundle("mrse-v1", run, sample_hm, index_cfg)
    store = ProfileStore(FeatureStoreConfig(data_dir=tmp / "feast"))
    store.apply()
    catalog, profile = catalog_for_profiles(sample_hm, run, None)
    events = dataset_events(
        __import__("mrse.data", fromlist=["load_dataset"]).load_dataset(sample_hm)
    )
    ProfileUpdater(store, catalog, profile).apply(events)
    experiment = Experiment(
        "default",
        (
            Arm("a", 1.0, "mrse-v1", "mrse_v1", "mrse-v1"),
            Arm("b", 1.0, "mrse-v1", "mrse_v1", "mrse-v1"),
        ),
    )
    engine = SearchEngine(
        {"mrse-v1": bundle},
        {"default": experiment},
        "default",
        build_query_vectors("minilm-int8", 1000),
        store,
    )
    server = BackgroundServer(engine).start()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    _PATHS.update({"run": run, "index": tmp / "index", "feast": tmp / "feast"})
    yield engine, server, search_pb2_grpc.SearchServiceStub(channel), channel, events
    channel.close()
    server.stop()
    bundle.index.close()


def test_health_is_serving(stack):
    _, _, _, channel, _ = stack
    resp = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service="mrse.v1.SearchService")
    )
    assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_personalised_search_with_explanations(stack):
    _, _, stub, _, events = stack
    user = events[0].user_id
    resp = stub.Search(
        search_pb2.SearchRequest(query="black top", user_id=user, k=20, request_id="r1")
    )
    assert len(resp.results) == 20 and resp.request_id == "r1"
    assert resp.arm in ("a", "b") and resp.model_version == "mrse-v1"
    assert resp.personalized and not resp.degraded
    for r in resp.results:
        e = r.explanation
        assert e.text + e.image + e.profile == pytest.approx(r.score, abs=2e-3)
    scores = [r.score for r in resp.results]
    assert scores == sorted(scores, reverse=True)
    again = stub.Search(search_pb2.SearchRequest(query="black top", user_id=user, k=20))
    assert again.arm == resp.arm  # stable assignment
    anon = stub.Search(search_pb2.SearchRequest(query="black top", k=5))
    assert not anon.personalized and len(anon.results) == 5


def test_filters_are_applied(stack):
    _, _, stub, _, _ = stack
    f = [search_pb2.FieldFilter(field="price", gte=0.0, lte=0.02)]
    resp = stub.Search(search_pb2.SearchRequest(query="dress", k=50, filters=f))
    assert resp.results and all(r.HasField("price") and r.price <= 0.02 for r in resp.results)
    f = [search_pb2.FieldFilter(field="category", any=["Ladieswear > Underwear"])]
    resp = stub.Search(search_pb2.SearchRequest(query="bra", k=10, filters=f))
    assert resp.results and all(r.category == "Ladieswear > Underwear" for r in resp.results)


@pytest.mark.parametrize(
    ("request_kwargs", "code"),
    [
        ({"query": ""}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"query": "x" * 600}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"query": "top", "k": 5000}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"query": "top", "k": -1}, grpc.StatusCode.INVALID_ARGUMENT),
        (
            {"query": "top", "filters": [search_pb2.FieldFilter(field="colour", any=["red"])]},
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            {"query": "top", "filters": [search_pb2.FieldFilter(field="price", gte=10, lte=1)]},
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        ({"query": "top", "experiment": "nope"}, grpc.StatusCode.NOT_FOUND),
        ({"query": "top", "arm_override": "zzz"}, grpc.StatusCode.NOT_FOUND),
    ],
)
def test_errors_map_to_status_codes(stack, request_kwargs, code):
    _, server, stub, _, _ = stack
    with pytest.raises(grpc.RpcError) as err:
        stub.Search(search_pb2.SearchRequest(**request_kwargs))
    assert err.value.code() == code and err.value.details()


def test_deadline_exceeded(stack):
    _, _, stub, _, _ = stack
    with pytest.raises(grpc.RpcError) as err:
        stub.Search(search_pb2.SearchRequest(query="top", k=10), timeout=1e-4)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_feature_store_down_degrades_instead_of_failing(stack, tmp_path):
    engine, server, stub, _, events = stack
    healthy = engine.profiles
    # a real store client whose Redis is not there (nothing listens on the port)
    from mrse.streaming.broker import free_port

    engine.profiles = ProfileStore(
        FeatureStoreConfig(
            data_dir=tmp_path / "f", online="redis", redis=f"127.0.0.1:{free_port()}"
        )
    )
    try:
        resp = stub.Search(
            search_pb2.SearchRequest(query="black top", user_id=events[0].user_id, k=5)
        )
    finally:
        engine.profiles = healthy
    assert resp.degraded and not resp.personalized and len(resp.results) == 5


def test_batch_search(stack):
    _, _, stub, _, _ = stack
    batch = search_pb2.BatchSearchRequest(
        requests=[search_pb2.SearchRequest(query=q, k=3) for q in ("top", "jeans")]
    )
    assert [len(r.results) for r in stub.BatchSearch(batch).responses] == [3, 3]
    bad = search_pb2.BatchSearchRequest(
        requests=[search_pb2.SearchRequest(query="top"), search_pb2.SearchRequest(query="")]
    )
    with pytest.raises(grpc.RpcError) as err:
        stub.BatchSearch(bad)
    assert (
        err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "request 1" in err.value.details()
    )


ALLOWED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    query=st.text(max_size=700),
    k=st.integers(min_value=-(2**31), max_value=2**31 - 1),
    field=st.sampled_from(["category", "brand", "price", "colour", ""]),
    values=st.lists(st.text(max_size=30), max_size=3),
    gte=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
    lte=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
    experiment=st.sampled_from(["", "default", "nope"]),
    user=st.text(max_size=300),
)
def test_malformed_requests_never_crash_the_server(
    stack, query, k, field, values, gte, lte, experiment, user
):
    _, _, stub, _, _ = stack
    flt = search_pb2.FieldFilter(field=field, any=values)
    if gte is not None:
        flt.gte = gte
    if lte is not None:
        flt.lte = lte
    req = search_pb2.SearchRequest(
        query=query, k=k, filters=[flt], experiment=experiment, user_id=user
    )
    try:
        stub.Search(req, timeout=30)
        code = grpc.StatusCode.OK
    except grpc.RpcError as exc:
        code = exc.code()
    assert code in ALLOWED


def test_missing_model_or_index_is_unavailable(stack, tmp_path):
    engine, _, stub, _, _ = stack
    engine.experiments["broken"] = Experiment(
        "broken", (Arm("x", 1.0, "not-loaded", "mrse_v1", "none"),)
    )
    with pytest.raises(grpc.RpcError) as err:
        stub.Search(search_pb2.SearchRequest(query="top", experiment="broken"))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    # an index whose storage is gone
    from mrse.index.edge import EdgeIndex

    bundle = engine.bundles["mrse-v1"]
    broken = EdgeIndex(tmp_path / "gone", 32)
    broken.close()
    engine.bundles["closed"] = type(bundle)(
        "closed", bundle.run, bundle.catalog, bundle.item_vectors, broken
    )
    engine.experiments["closed"] = Experiment(
        "closed", (Arm("x", 1.0, "closed", "mrse_v1", "closed"),)
    )
    with pytest.raises(grpc.RpcError) as err:
        stub.Search(search_pb2.SearchRequest(query="top", experiment="closed"))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_serve_command_starts_answers_and_stops_gracefully(stack, sample_hm, tmp_path):
    """`mrse serve` in its own process, logging exposures to Kafka; `mrse ab report` joins them
    with clicks."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    from mrse.streaming.broker import EmbeddedBroker, free_port, wait_for_port
    from mrse.streaming.events import Event
    from mrse.streaming.producer import ReplayConfig, replay

    paths = stack_paths()
    # an Edge shard is opened by one process at a time: the server process gets its own copy
    build_index(sample_hm, paths["run"], IndexConfig(root=tmp_path / "index"), version="mrse-v1")
    port, metrics_port = free_port(), free_port()
    cfg = {
        "data": str(sample_hm),
        "models": [{"version": "mrse-v1", "run": str(paths["run"])}],
        "index": {"backend": "edge", "root": str(tmp_path / "index")},
        "feature_store": {"data_dir": str(paths["feast"])},
        "experiments_url": f"sqlite:///{tmp_path / 'exp.db'}",
        "default_experiment": "e1",
        "experiments": [
            {
                "name": "e1",
                "arms": [
                    {
                        "name": "only",
                        "weight": 1,
                        "model_version": "mrse-v1",
                        "feature_service": "mrse_v1",
                        "index": "mrse-v1",
                    }
                ],
            }
        ],
        "address": f"127.0.0.1:{port}",
        "metrics_port": metrics_port,
    }
    broker = EmbeddedBroker(log_path=tmp_path / "broker.log").start()
    cfg["exposures"] = {"bootstrap": broker.bootstrap}
    (tmp_path / "serve.yaml").write_text(yaml.safe_dump(cfg))
    repo = __import__("pathlib").Path(__file__).resolve().parents[2]
    log = tmp_path / "server.log"
    cmd = [
        sys.executable,
        str(repo / "servers" / "search_server.py"),
        "--config",
        str(tmp_path / "serve.yaml"),
    ]
    proc = subprocess.Popen(
        cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env={**os.environ}
    )
    try:
        wait_for_port(port, 120)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = search_pb2_grpc.SearchServiceStub(ch)
            resp = stub.Search(search_pb2.SearchRequest(query="top", k=3, user_id="u1"))
            stub.Search(search_pb2.SearchRequest(query="top", user_id="u2", arm_override="only"))
            stub.Search(search_pb2.SearchRequest(query="jeans", k=3, user_id="u3"))
        assert len(resp.results) == 3 and resp.arm == "only" and resp.experiment == "e1"
        import urllib.request

        body = (
            urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10)
            .read()
            .decode()
        )
        assert 'mrse_request_seconds_count{arm="only",stage="search"}' in body
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    try:
        assert proc.returncode == 0, log.read_text()[-2000:]
        # u1 clicks the second result it was shown; u3 clicks nothing it was shown
        clicks = [
            Event("c1", "u1", resp.results[1].item_id, "click", time.time()),
            Event("c2", "u3", "not-shown", "click", time.time()),
        ]
        replay(clicks, ReplayConfig(bootstrap=broker.bootstrap))
        out = tmp_path / "ab.json"
        argv = ["ab", "report", "--bootstrap", broker.bootstrap, "--experiment", "e1"]
        assert main([*argv, "--out", str(out)]) == 0
    finally:
        broker.stop()
    report = json.loads(out.read_text())
    # the exposures were flushed on SIGTERM; the QA-override search is logged but not counted
    assert report["exposures_read"] == 3 and report["qa_exposures"] == 1
    (arm,) = report["arms"]
    assert (arm["arm"], arm["exposures"], arm["clicked"]) == ("only", 2, 1)
    assert arm["ci_low"] < 0.5 < arm["ci_high"]


def test_batched_answers_equal_one_at_a_time(stack):
    from mrse.index.base import SearchFilter
    from mrse.serving.engine import NotFound
    from mrse.serving.validation import ValidRequest

    engine, _, _, _, events = stack
    users = [events[0].user_id, events[5].user_id, None, events[9].user_id]
    reqs = [
        ValidRequest("black top", users[0], 10, SearchFilter(), None, "b0", None),
        ValidRequest("dress", users[1], 25, SearchFilter(price_max=0.03), None, "b1", "b"),
        ValidRequest("top", None, 5, SearchFilter(), "nope", "b2", None),  # unknown experiment
        ValidRequest("jeans", users[2], 7, SearchFilter(), None, "b3", None),
        ValidRequest("Black  Top", users[3], 10, SearchFilter(), None, "b4", None),
    ]
    batched = engine.search_many(reqs)
    assert isinstance(batched[2], NotFound)
    for req, got in zip(reqs, batched, strict=True):
        if isinstance(got, Exception):
            continue
        alone = engine.search(req)
        assert [r.item_id for r in got.results] == [r.item_id for r in alone.results]
        np.testing.assert_allclose(
            [r.score for r in got.results], [r.score for r in alone.results], atol=1e-5
        )
        assert (got.arm, got.personalized) == (alone.arm, alone.personalized)
        for r in got.results:
            assert sum(r.explanation) == pytest.approx(r.score, abs=2e-3)
        assert len(got.results) == req.k or req.filter.price_max is not None


def test_concurrent_clients_are_answered_in_batches(stack):
    from concurrent.futures import ThreadPoolExecutor

    _, server, stub, _, events = stack
    users = [e.user_id for e in events[:40]]
    before = server.metrics.batch_size.collect()[0].samples

    def ask(i: int):
        return stub.Search(search_pb2.SearchRequest(query="top", user_id=users[i], k=10))

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, range(40)))
    assert all(len(a.results) == 10 for a in answers)
    after = {s.name: s.value for s in server.metrics.batch_size.collect()[0].samples}
    count = after["mrse_batch_size_count"] - {s.name: s.value for s in before}.get(
        "mrse_batch_size_count", 0
    )
    total = after["mrse_batch_size_sum"] - {s.name: s.value for s in before}.get(
        "mrse_batch_size_sum", 0
    )
    assert total == 40 and count < 40  # some requests shared a batch


def test_two_server_processes_share_one_port(stack, sample_hm, tmp_path):
    """`workers: 2`: two whole servers on one port, each on a private copy of the Edge index;
    connections are spread between them; SIGTERM stops both."""
    import os
    import signal
    import subprocess
    import sys
    import urllib.request

    from mrse.streaming.broker import free_port, wait_for_port

    paths = stack_paths()
    build_index(sample_hm, paths["run"], IndexConfig(root=tmp_path / "index"), version="mrse-v1")
    port, metrics_port = free_port(), free_port()
    while metrics_port + 1 == port:
        metrics_port = free_port()
    arm = {"name": "only", "weight": 1, "model_version": "mrse-v1",
           "feature_service": "mrse_v1", "index": "mrse-v1"}  # fmt: skip
    cfg = {
        "data": str(sample_hm),
        "models": [{"version": "mrse-v1", "run": str(paths["run"])}],
        "index": {"backend": "edge", "root": str(tmp_path / "index")},
        "feature_store": {"data_dir": str(paths["feast"])},
        "default_experiment": "e1",
        "experiments": [{"name": "e1", "arms": [arm]}],
        "address": f"127.0.0.1:{port}",
        "metrics_port": metrics_port,
        "workers": 2,
        "warm_queries": 50,
    }
    (tmp_path / "serve.yaml").write_text(yaml.safe_dump(cfg))
    log = tmp_path / "server.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mrse.cli", "serve", "--config", str(tmp_path / "serve.yaml")],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, env={**os.environ},
    )  # fmt: skip
    try:
        wait_for_port(metrics_port, 180)
        wait_for_port(metrics_port + 1, 180)  # each worker's metrics once it is serving
        for _ in range(24):  # a new connection each time
            with grpc.insecure_channel(
                f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
            ) as ch:
                resp = search_pb2_grpc.SearchServiceStub(ch).Search(
                    search_pb2.SearchRequest(query="top", k=3)
                )
                assert len(resp.results) == 3
        served = []
        for p in (metrics_port, metrics_port + 1):
            body = urllib.request.urlopen(f"http://127.0.0.1:{p}/metrics", timeout=10).read()
            line = next(
                ln for ln in body.decode().splitlines()
                if ln.startswith('mrse_request_seconds_count{arm="only",stage="total"}')
            )  # fmt: skip
            served.append(float(line.split()[-1]))
        assert sum(served) == 24 and min(served) > 0, served
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert proc.returncode == 0, log.read_text()[-3000:]


def test_batch_search_is_answered_in_one_engine_call(stack):
    _, server, stub, _, events = stack
    before = {s.name: s.value for s in server.metrics.batch_size.collect()[0].samples}
    batch = search_pb2.BatchSearchRequest(
        requests=[
            search_pb2.SearchRequest(query=q, k=4, user_id=events[i].user_id)
            for i, q in enumerate(("top", "jeans", "black dress", "bra", "shorts", "socks"))
        ]
    )
    responses = stub.BatchSearch(batch).responses
    assert [len(r.results) for r in responses] == [4] * 6
    alone = stub.Search(batch.requests[2])
    assert [r.item_id for r in responses[2].results] == [r.item_id for r in alone.results]
    after = {s.name: s.value for s in server.metrics.batch_size.collect()[0].samples}
    calls = after["mrse_batch_size_count"] - before.get("mrse_batch_size_count", 0)
    assert calls <= 3  # the six (mostly) together, plus the single search
    bad = search_pb2.BatchSearchRequest(
        requests=[search_pb2.SearchRequest(query="top"),
                  search_pb2.SearchRequest(query="top", experiment="nope")]
    )  # fmt: skip
    with pytest.raises(grpc.RpcError) as err:
        stub.BatchSearch(bad)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_serving_benchmark_runs_and_reports_every_design(stack, sample_hm, tmp_path):
    """`mrse bench-serving` end to end on the sample, in seconds (no timing asserted)."""
    from mrse.serving.benchmark import (
        DESIGNS,
        ServeBenchConfig,
        plot_serve_benchmark,
        run_serve_benchmark,
    )

    cfg = ServeBenchConfig(
        data=sample_hm, run=stack_paths()["run"], work_dir=tmp_path / "bench", k=20,
        duration_s=1.0, warmup_s=0.5, concurrency=(1, 3), workers=1, warm_queries=100,
    )  # fmt: skip
    result = run_serve_benchmark(cfg)
    assert [d["design"] for d in result["designs"]] == [d[0] for d in DESIGNS]
    for row in result["designs"]:
        assert row["requests"] > 0 and row["errors"] == 0
        assert set(row["server_stages"]) >= {"features", "encode", "search", "explain"}
    (sweep,) = result["concurrency"].values()
    assert [r["clients"] for r in sweep] == [1, 3] and all(r["errors"] == 0 for r in sweep)
    assert sweep[1]["server_stages"]["batch_size"]["mean"] >= 1.0
    plot_serve_benchmark(result, tmp_path / "bench.png")
    assert (tmp_path / "bench.png").stat().st_size > 0
