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
_PATHS: dict = {}


def stack_paths() -> dict:
    return _PATHS


@pytest.fixture(scope="module")
def stack(sample_hm, small_run, tmp_path_factory):
    from mrse.streaming.service import catalog_for_profiles

    tmp = tmp_path_factory.mktemp("serving")
    run = small_run
    index_cfg = IndexConfig(root=tmp / "index")
    build_index(sample_hm, run, index_cfg, version="mrse-v1")
    bundle = load_bundle("mrse-v1", run, index_cfg)
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
        ({"query": "top\x00"}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"query": "top", "user_id": "u\x001"}, grpc.StatusCode.INVALID_ARGUMENT),
        (
            {"query": "top", "filters": [search_pb2.FieldFilter(field="brand", any=["a\x00"])]},
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
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
    engine.bundles["closed"] = type(bundle)("closed", bundle.run, broken)
    engine.experiments["closed"] = Experiment(
        "closed", (Arm("x", 1.0, "closed", "mrse_v1", "closed"),)
    )
    with pytest.raises(grpc.RpcError) as err:
        stub.Search(search_pb2.SearchRequest(query="top", experiment="closed"))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_serve_command_starts_answers_and_stops_gracefully(stack, sample_hm, tmp_path):
    """`mrse serve` in its own process, from its config, models, index and stores alone (no
    dataset directory: the query cache warms from the run's query log), logging exposures to
    Kafka; `mrse ab report` joins them with clicks."""
    import json
    import os
    import re
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
        wait_for_port(metrics_port, 120)  # opened once the server is SERVING
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
        warmed = re.search(r"query cache warmed with the (\d+) most frequent", log.read_text())
        assert warmed and int(warmed.group(1)) > 0  # from the run's query_log.json
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
    import signal
    import urllib.request

    from mrse.streaming.broker import free_port, wait_for_port

    metrics_port = free_port()
    proc, port, log = _serve_process(
        sample_hm, tmp_path, metrics_port=metrics_port, workers=2, avoid_port=metrics_port + 1
    )
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
    from mrse.jobs.bench_serving import DESIGNS, ServeBenchConfig, run_serve_benchmark
    from mrse.jobs.plots import plot_serve_benchmark

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
    calls = {(r["call"], r["pass"]): r for r in result["calls"]["rows"]}
    assert set(calls) == {
        ("Search (dense)", 1),
        ("Search (hybrid)", 1),
        ("Search (dense)", 2),
        ("Search (hybrid)", 2),
        ("SimilarItems", 1),
        ("SearchByPhoto", 1),
        ("Recommend", 1),
    }
    assert all(r["requests"] > 0 and r["errors"] == 0 for r in calls.values())
    assert len(result["calls"]["hybrid_p99_ratio"]) == 2
    plot_serve_benchmark(result, tmp_path / "bench.png")
    assert (tmp_path / "bench.png").stat().st_size > 0


# ---- hostile clients: bytes that are not a request, oversized filters, unexpected errors ----


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field, written by hand (so it can hold invalid UTF-8)."""
    assert number < 16 and len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


def _raw_search(channel):
    return channel.unary_unary(
        "/mrse.v1.SearchService/Search",
        request_serializer=None,
        response_deserializer=search_pb2.SearchResponse.FromString,
    )


def _errors(server, code: str) -> float:
    samples = server.metrics.errors.collect()[0].samples
    return sum(s.value for s in samples if s.name.endswith("_total") and s.labels["code"] == code)


@pytest.mark.parametrize(
    "raw",
    [
        _field(1, b"black top")[:-3],  # truncated
        b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # garbage
        _field(1, b"black \xff top"),  # invalid UTF-8 in the query
        _field(1, b"top") + _field(2, b"\xc3\x28"),  # ... in user_id
        _field(1, b"top") + _field(5, b"\xed\xa0\x80"),  # a lone surrogate (JavaScript)
        _field(1, b"top") + _field(4, _field(1, b"category") + _field(2, b"\xe2\x82")),
        _field(1, b"top") + _field(7, b"\x80"),  # arm_override
    ],
)
def test_undecodable_requests_are_invalid_argument_and_counted(stack, raw, caplog):
    _, server, _, channel, _ = stack
    before = _errors(server, "INVALID_ARGUMENT")
    with pytest.raises(grpc.RpcError) as err:
        _raw_search(channel)(raw, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = err.value.details()
    assert "not a valid mrse.v1.SearchRequest" in details and "UTF-8" in details
    assert "Error" not in details and "Exception" not in details  # no internal class names
    assert _errors(server, "INVALID_ARGUMENT") == before + 1
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


def test_undecodable_batch_request_is_invalid_argument(stack):
    _, _, _, channel, _ = stack
    call = channel.unary_unary(
        "/mrse.v1.SearchService/BatchSearch",
        request_serializer=None,
        response_deserializer=search_pb2.BatchSearchResponse.FromString,
    )
    with pytest.raises(grpc.RpcError) as err:
        call(_field(1, _field(1, b"\xff")), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "mrse.v1.BatchSearchRequest" in err.value.details()


def test_filter_count_and_values_are_capped(stack):
    import time

    from mrse.serving.validation import MAX_FILTERS, MAX_TOTAL_FILTER_VALUES

    _, _, stub, _, _ = stack
    flood = [search_pb2.FieldFilter(field="category", any=["x"])] * 150_000
    t = time.perf_counter()
    with pytest.raises(grpc.RpcError) as err:
        stub.Search(search_pb2.SearchRequest(query="top", filters=flood), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"at most {MAX_FILTERS} filters" in err.value.details()
    assert time.perf_counter() - t < 2.0  # refused before any work (it took 2.6 s when accepted)
    many = [search_pb2.FieldFilter(field="brand", any=[f"b{i}"]) for i in range(MAX_FILTERS + 1)]
    with pytest.raises(grpc.RpcError) as err:
        stub.Search(search_pb2.SearchRequest(query="top", filters=many))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    wide = [
        search_pb2.FieldFilter(field=f, any=[f"v{i}" for i in range(100)])
        for f in ("brand", "category", "brand")
    ]
    with pytest.raises(grpc.RpcError) as err:
        stub.Search(search_pb2.SearchRequest(query="top", filters=wide))
    assert f"at most {MAX_TOTAL_FILTER_VALUES} filter values" in err.value.details()
    ok = [search_pb2.FieldFilter(field="brand", any=[f"b{i}"]) for i in range(MAX_FILTERS)]
    stub.Search(search_pb2.SearchRequest(query="top", filters=ok))  # at the cap: accepted


def test_unknown_arm_message_is_plain(stack):
    _, _, stub, _, _ = stack
    with pytest.raises(grpc.RpcError) as err:
        stub.Search(search_pb2.SearchRequest(query="top", arm_override="zzz"))
    assert err.value.details() == "experiment 'default' has no arm 'zzz'"


def test_unexpected_engine_error_is_internal_without_internals(stack, monkeypatch):
    engine, server, stub, _, _ = stack

    def broken(reqs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(engine, "search_many", broken)
    before = _errors(server, "INTERNAL")
    with pytest.raises(grpc.RpcError) as err:
        stub.Search(search_pb2.SearchRequest(query="top"), timeout=10)
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in err.value.details() and "RuntimeError" not in err.value.details()
    assert err.value.details().startswith("internal error (ref ")
    assert _errors(server, "INTERNAL") == before + 1


def test_grpcurl_calls_the_api_through_reflection(stack):
    """A client in another language (grpcurl, Go) that knows nothing but the server's
    reflection: lists the service, searches, and gets INVALID_ARGUMENT for a bad request."""
    import json
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    _, server, _, _, events = stack
    grpcurl = shutil.which("grpcurl", path=str(Path(sys.executable).parent))
    assert grpcurl, "grpcurl is not installed: it comes with requirements-dev.txt"
    target = f"127.0.0.1:{server.port}"

    def call(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [grpcurl, "-plaintext", *args], capture_output=True, text=True, timeout=60
        )

    listed = call(target, "list")
    assert listed.returncode == 0 and "mrse.v1.SearchService" in listed.stdout.split()
    body = json.dumps({"query": "black top", "k": 3, "userId": events[0].user_id})
    found = call("-d", body, target, "mrse.v1.SearchService/Search")
    assert found.returncode == 0, found.stderr
    resp = json.loads(found.stdout)
    assert len(resp["results"]) == 3 and resp["personalized"] is True
    bad = call("-d", json.dumps({"query": "", "k": 3}), target, "mrse.v1.SearchService/Search")
    assert (
        bad.returncode != 0 and "InvalidArgument" in bad.stderr and "query is empty" in bad.stderr
    )
    health = call(target, "grpc.health.v1.Health/Check")
    assert health.returncode == 0 and "SERVING" in health.stdout


# ---- graceful stop: NOT_SERVING at once, answering through the drain, no failed request ----


def _serve_process(sample_hm, tmp_path, avoid_port: int | None = None, **extra):
    """`mrse serve` in its own process on a private index copy; returns (proc, port, log).
    ``extra``: more config keys; ``avoid_port``: a port the server's must not be."""
    import os
    import subprocess
    import sys

    from mrse.streaming.broker import free_port

    paths = stack_paths()
    build_index(sample_hm, paths["run"], IndexConfig(root=tmp_path / "index"), version="mrse-v1")
    port = free_port()
    while port == avoid_port:
        port = free_port()
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
        "warm_queries": 50,
        **extra,
    }
    (tmp_path / "serve.yaml").write_text(yaml.safe_dump(cfg))
    log = tmp_path / "server.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mrse.cli", "serve", "--config", str(tmp_path / "serve.yaml")],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, env={**os.environ},
    )  # fmt: skip
    return proc, port, log


def _wait_serving(port: int, timeout: float = 180.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
                status = health_pb2_grpc.HealthStub(ch).Check(
                    health_pb2.HealthCheckRequest(service="mrse.v1.SearchService"), timeout=2
                )
                if status.status == health_pb2.HealthCheckResponse.SERVING:
                    return
        except grpc.RpcError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"no server SERVING on {port}")


def _children(pid: int) -> list[int]:
    from pathlib import Path

    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def test_sigterm_drains_health_first_then_exits_zero(stack, sample_hm, tmp_path):
    import signal
    import time

    proc, port, log = _serve_process(sample_hm, tmp_path, drain_s=3.0, shutdown_grace_s=5.0)
    try:
        _wait_serving(port)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub, health = search_pb2_grpc.SearchServiceStub(ch), health_pb2_grpc.HealthStub(ch)
            stub.Search(search_pb2.SearchRequest(query="top", k=3))
            proc.send_signal(signal.SIGTERM)
            t0 = time.monotonic()
            status = None
            while time.monotonic() - t0 < 2.0:
                status = health.Check(health_pb2.HealthCheckRequest(service="")).status
                if status == health_pb2.HealthCheckResponse.NOT_SERVING:
                    break
                time.sleep(0.02)
            flipped = time.monotonic() - t0
            assert status == health_pb2.HealthCheckResponse.NOT_SERVING
            assert flipped < 1.0
            answered = 0
            while time.monotonic() - t0 < 2.5:  # inside the drain: still answered
                resp = stub.Search(search_pb2.SearchRequest(query="jeans", k=3), timeout=5)
                answered += len(resp.results) == 3
            assert answered > 5
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
        assert time.monotonic() - t0 >= 3.0  # it answered for the whole drain
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_graceful_stop_of_one_of_two_processes_fails_no_request(stack, sample_hm, tmp_path):
    """Closed-loop clients on two server processes (one port); one process gets SIGTERM
    mid-load: every request is answered, the stopped process exits 0, the other serves on."""
    import signal
    import threading
    import time

    proc, port, log = _serve_process(
        sample_hm, tmp_path, workers=2, drain_s=1.5, shutdown_grace_s=5.0
    )
    failures: list[str] = []
    answered = [0]
    stop = threading.Event()

    def client(i: int) -> None:
        with grpc.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
        ) as ch:
            stub = search_pb2_grpc.SearchServiceStub(ch)
            while not stop.is_set():
                try:
                    stub.Search(search_pb2.SearchRequest(query=f"top {i}", k=5), timeout=10)
                    answered[0] += 1
                except grpc.RpcError as exc:
                    failures.append(f"{exc.code()}: {exc.details()}")

    try:
        _wait_serving(port)
        deadline = time.monotonic() + 180
        while len(_children(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        workers = [p for p in _children(proc.pid) if p != proc.pid]
        time.sleep(3.0)  # both have warmed up and serve
        threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        before = answered[0]
        victim = workers[0]
        import os

        os.kill(victim, signal.SIGTERM)
        gone = time.monotonic() + 30
        while os.path.exists(f"/proc/{victim}") and time.monotonic() < gone:
            if open(f"/proc/{victim}/stat").read().rsplit(")", 1)[1].split()[0] == "Z":
                break  # exited, not yet reaped
            time.sleep(0.1)
        time.sleep(2.0)  # load keeps running on the survivor
        stop.set()
        for t in threads:
            t.join(30)
        assert not failures, failures[:5]
        assert answered[0] > before + 20
        assert proc.poll() is None  # the parent and the other worker still run
    finally:
        stop.set()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert proc.returncode == 0, log.read_text()[-3000:]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    raw=st.one_of(
        st.binary(max_size=300),
        st.builds(
            lambda q, tail: _field(1, q) + tail,
            st.binary(min_size=1, max_size=40),
            st.binary(max_size=60),
        ),
    ),
    method=st.sampled_from(["Search", "BatchSearch", "SimilarItems", "SearchByPhoto", "Recommend"]),
)
def test_arbitrary_bytes_never_get_unknown_or_internal(stack, raw, method):
    """Whatever bytes a client sends as a request: an answer, INVALID_ARGUMENT or NOT_FOUND."""
    _, _, _, channel, _ = stack
    reply = search_pb2.BatchSearchResponse if method == "BatchSearch" else search_pb2.SearchResponse
    call = channel.unary_unary(
        f"/mrse.v1.SearchService/{method}",
        request_serializer=None,
        response_deserializer=reply.FromString,
    )
    try:
        call(raw, timeout=30)
        code = grpc.StatusCode.OK
    except grpc.RpcError as exc:
        code = exc.code()
    assert code in ALLOWED, (code, raw)


def test_a_message_over_the_size_limit_is_refused_and_the_server_goes_on(stack):
    _, _, stub, channel, _ = stack
    huge = _field(1, b"top") + bytes([0x12]) + (5 << 20).to_bytes(4, "little")  # header only
    big = search_pb2.SearchRequest(query="top", user_id="u" * 250)
    big.filters.add(field="brand", any=["x" * (5 << 20)])  # 5 MB: over gRPC's 4 MB default
    with pytest.raises(grpc.RpcError) as err:
        stub.Search(big, timeout=30)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _code_of(_raw_search(channel), huge) == grpc.StatusCode.INVALID_ARGUMENT
    assert len(stub.Search(search_pb2.SearchRequest(query="top", k=2)).results) == 2


def _code_of(call, raw: bytes) -> grpc.StatusCode:
    try:
        call(raw, timeout=10)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


# ---- hybrid retrieval: an arm that fuses the lexical channel ----


def test_a_hybrid_arm_finds_products_by_name_and_says_which_channel_found_them(stack, sample_hm):
    """The same model served by a dense arm and a hybrid arm: a product's own title, a part of
    it and a misspelling of it put the product first on the hybrid arm (found by the lexical
    channel, its share in the explanation); explanations still add up to the score; grpcurl
    sees the new fields through reflection."""
    import json
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from mrse.data import load_dataset
    from mrse.data.products import normal_title

    engine, server, stub, _, _ = stack
    engine.experiments = {
        **engine.experiments,
        "names": Experiment("names", (
            Arm("dense", 1.0, "mrse-v1", "mrse_v1", "mrse-v1", "dense"),
            Arm("hybrid", 1.0, "mrse-v1", "mrse_v1", "mrse-v1", "hybrid"),
        )),
    }  # fmt: skip
    items = load_dataset(sample_hm).items
    titles = items.assign(t=items["title"].map(normal_title))
    counts = titles["t"].value_counts()
    unique = titles[titles["t"].map(counts).eq(1) & titles["t"].str.count(" ").ge(2)]
    hits_first = 0
    for item_id, title in list(zip(unique["item_id"], unique["t"], strict=True))[:8]:
        words = title.split()
        long = max(words, key=len)
        typo = title.replace(long, long[0] + long[2] + long[1] + long[3:], 1)
        for query in (title, " ".join(words[1:]), typo):
            req = search_pb2.SearchRequest(query=query, k=10, experiment="names",
                                           arm_override="hybrid")  # fmt: skip
            resp = stub.Search(req)
            assert resp.arm == "hybrid"
            for r in resp.results:
                e = r.explanation
                assert e.text + e.image + e.profile + e.lexical == pytest.approx(r.score, abs=2e-3)
                assert r.found_by in ("dense", "lexical", "both")
                assert (e.lexical > 0) == (r.found_by != "dense")
            top = resp.results[0]
            hits_first += top.item_id == item_id and top.found_by in ("lexical", "both")
        dense = stub.Search(search_pb2.SearchRequest(query=title, k=10, experiment="names",
                                                     arm_override="dense"))  # fmt: skip
        assert all(r.found_by == "dense" and r.explanation.lexical == 0 for r in dense.results)
    assert hits_first >= 20  # of 24: a title, its tail and a misspelling, for 8 products
    grpcurl = shutil.which("grpcurl", path=str(Path(sys.executable).parent))
    title = unique["t"].iloc[0]
    body = json.dumps({"query": title, "k": 3, "experiment": "names", "armOverride": "hybrid"})
    out = subprocess.run([grpcurl, "-plaintext", "-d", body, f"127.0.0.1:{server.port}",
                          "mrse.v1.SearchService/Search"], capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    first = json.loads(out.stdout)["results"][0]  # grpcurl prints the proto's field names
    assert first["item_id"] == unique["item_id"].iloc[0]
    assert first["found_by"] in ("lexical", "both")
    assert first["explanation"]["lexical"] > 0


# ---- experiments that decide: units, sessions, interleaving ----


def test_a_guest_keeps_one_arm_for_the_session_and_interleaving_merges_both_arms(stack):
    """Randomised by session: a guest's twenty requests in one session see one arm (and
    another session may see the other); grpcurl sends a session_id. An interleaved
    experiment answers with both arms' items, each credited to its team, logged with the
    exposure; its serving cost is two retrievals."""
    import json
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    engine, server, stub, _, _ = stack
    logged: list = []
    engine.experiments = {
        **engine.experiments,
        "sessions": Experiment("sessions", (
            Arm("a", 1.0, "mrse-v1", "mrse_v1", "mrse-v1"),
            Arm("b", 1.0, "mrse-v1", "mrse_v1", "mrse-v1", "hybrid"),
        ), unit="session"),
        "il": Experiment("il", (
            Arm("dense", 1.0, "mrse-v1", "mrse_v1", "mrse-v1"),
            Arm("hybrid", 1.0, "mrse-v1", "mrse_v1", "mrse-v1", "hybrid"),
        ), kind="interleave"),
    }  # fmt: skip
    old, engine.log_exposure = engine.log_exposure, logged.append
    try:
        arms = {}
        for session in ("s-1", "s-2", "s-3", "s-4", "s-5", "s-6"):
            seen = {stub.Search(search_pb2.SearchRequest(
                query="black top", k=5, experiment="sessions", session_id=session,
                request_id=f"{session}-{i}")).arm for i in range(20)}  # fmt: skip
            assert len(seen) == 1, (session, seen)
            arms[session] = seen.pop()
        assert set(arms.values()) == {"a", "b"}  # sessions, not requests, were split
        assert all(e.unit == "session" and e.unit_id == e.session_id for e in logged)
        logged.clear()
        il = search_pb2.SearchRequest(query="cool blair hoop", k=10, experiment="il",
                                      request_id="il-1")  # fmt: skip
        resp = stub.Search(il)
        assert resp.arm == "interleaved" and len(resp.results) == 10
        assert {"dense", "hybrid"} <= {r.team for r in resp.results} <= {"dense", "hybrid", ""}
        (e,) = logged
        assert e.arm == "interleaved" and e.teams == tuple(r.team for r in resp.results)
        again = stub.Search(il)
        assert [r.item_id for r in again.results] == [r.item_id for r in resp.results]
    finally:
        engine.log_exposure = old
    grpcurl = shutil.which("grpcurl", path=str(Path(sys.executable).parent))
    body = json.dumps({"query": "black top", "k": 3, "experiment": "sessions",
                       "sessionId": "s-1"})  # fmt: skip
    out = subprocess.run([grpcurl, "-plaintext", "-d", body, f"127.0.0.1:{server.port}",
                          "mrse.v1.SearchService/Search"], capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["arm"] == arms["s-1"]


# ---- more like this ----


def test_similar_items_answers_like_search_and_refuses_what_it_cannot_answer(stack, sample_hm):
    """SimilarItems over gRPC and grpcurl: the examples are never results, explanations add up
    to the score, negatives move the answer, filters apply, an exposure is logged; an unknown
    id is NOT_FOUND naming it, an empty or contradictory request INVALID_ARGUMENT."""
    import json
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from mrse.data import load_dataset

    engine, server, stub, _, _ = stack
    items = load_dataset(sample_hm).items
    seed, other = items["item_id"].iloc[0], items["item_id"].iloc[1]
    logged: list = []
    old, engine.log_exposure = engine.log_exposure, logged.append
    try:
        resp = stub.SimilarItems(
            search_pb2.SimilarItemsRequest(positive_ids=[seed], k=10, user_id="u-1")
        )
    finally:
        engine.log_exposure = old
    assert len(resp.results) == 10 and not resp.personalized and resp.arm in ("a", "b")
    ids = [r.item_id for r in resp.results]
    assert seed not in ids and len(set(ids)) == 10
    scores = [r.score for r in resp.results]
    assert scores == sorted(scores, reverse=True)
    for r in resp.results:
        e = r.explanation
        assert e.text + e.image == pytest.approx(r.score, abs=2e-3) and e.profile == 0
    (e,) = logged
    assert e.item_ids == tuple(ids) and e.user_id == "u-1"
    # the nearest item as a negative example: it is gone, and the answer moved away from it
    away = stub.SimilarItems(
        search_pb2.SimilarItemsRequest(positive_ids=[seed], negative_ids=[ids[0]], k=10)
    )
    assert ids[0] not in [r.item_id for r in away.results]
    two = stub.SimilarItems(search_pb2.SimilarItemsRequest(positive_ids=[seed, other], k=5))
    assert not {seed, other} & {r.item_id for r in two.results}
    category = items.loc[items["item_id"] == seed, "category"].iloc[0]
    f = [search_pb2.FieldFilter(field="category", any=[category])]
    same = stub.SimilarItems(search_pb2.SimilarItemsRequest(positive_ids=[seed], k=5, filters=f))
    assert same.results and all(r.category == category for r in same.results)
    bad = [
        ({}, grpc.StatusCode.INVALID_ARGUMENT, "positive_ids is empty"),
        ({"positive_ids": [""]}, grpc.StatusCode.INVALID_ARGUMENT, "empty id"),
        ({"positive_ids": [seed], "negative_ids": [seed]}, grpc.StatusCode.INVALID_ARGUMENT,
         "in both"),
        ({"positive_ids": [str(i) for i in range(65)]}, grpc.StatusCode.INVALID_ARGUMENT,
         "at most 64"),
        ({"positive_ids": [seed], "k": 5000}, grpc.StatusCode.INVALID_ARGUMENT, "k must be"),
        ({"positive_ids": ["no-such-item"]}, grpc.StatusCode.NOT_FOUND, "'no-such-item'"),
        ({"positive_ids": [seed], "negative_ids": ["nope-1", "nope-2"]},
         grpc.StatusCode.NOT_FOUND, "and 1 more"),
        ({"positive_ids": [seed], "experiment": "nope"}, grpc.StatusCode.NOT_FOUND, "nope"),
    ]  # fmt: skip
    for kwargs, code, words in bad:
        with pytest.raises(grpc.RpcError) as err:
            stub.SimilarItems(search_pb2.SimilarItemsRequest(**kwargs))
        assert err.value.code() == code and words in err.value.details(), kwargs
    assert len(stub.SimilarItems(search_pb2.SimilarItemsRequest(positive_ids=[seed])).results)
    grpcurl = shutil.which("grpcurl", path=str(Path(sys.executable).parent))
    body = json.dumps({"positiveIds": [seed], "k": 3})
    out = subprocess.run([grpcurl, "-plaintext", "-d", body, f"127.0.0.1:{server.port}",
                          "mrse.v1.SearchService/SimilarItems"], capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)["results"]
    assert [r.get("itemId", r.get("item_id")) for r in got] == ids[:3], got


# ---- shop by photo ----


def test_search_by_photo_finds_the_item_in_any_format_and_refuses_bad_photos(stack, sample_hm):
    """A catalog item's photo sent as JPEG, PNG and WebP (and cropped, as a shopper's photo)
    finds that item; explanations add up; empty, undecodable, oversized and bomb photos get
    INVALID_ARGUMENT / RESOURCE_EXHAUSTED with a message, and the server goes on."""
    import io
    import random

    from PIL import Image

    from mrse.data import load_dataset
    from mrse.evaluation.photo import alter_photo

    engine, _, stub, _, _ = stack
    items = load_dataset(sample_hm).items
    found = 0
    for n in range(5):
        item, path = items["item_id"].iloc[n * 7], items["image"].iloc[n * 7]
        with Image.open(path) as im:
            im = im.convert("RGB")
            for fmt in ("JPEG", "PNG", "WEBP"):
                buf = io.BytesIO()
                im.save(buf, format=fmt)
                resp = stub.SearchByPhoto(search_pb2.SearchByPhotoRequest(photo=buf.getvalue(),
                                                                           k=10))  # fmt: skip
                assert resp.results[0].item_id == item, (item, fmt)
                assert resp.results[0].found_by == "both"  # the photo channel found it too
                assert {r.found_by for r in resp.results} <= {"dense", "photo", "both"}
                assert not resp.personalized
        shot = alter_photo(path, random.Random(n))
        resp = stub.SearchByPhoto(search_pb2.SearchByPhotoRequest(photo=shot, k=10))
        found += item in [r.item_id for r in resp.results]
        for r in resp.results:
            e = r.explanation
            assert e.text + e.image == pytest.approx(r.score, abs=2e-3) and e.profile == 0
    assert found >= 4  # a cropped, mirrored, recompressed shot of the item
    # a filter that keeps no item: an empty answer, not an error (both channels find nothing)
    nothing = [search_pb2.FieldFilter(field="category", any=["no such category"])]
    resp = stub.SearchByPhoto(search_pb2.SearchByPhotoRequest(photo=shot, k=10, filters=nothing))
    assert len(resp.results) == 0
    bomb = io.BytesIO()
    Image.new("1", (20_000, 20_000)).save(bomb, format="PNG")
    bad = [
        (b"", grpc.StatusCode.INVALID_ARGUMENT, "photo is empty"),
        (b"\xff\xd8 not a JPEG at all", grpc.StatusCode.INVALID_ARGUMENT, "not a decodable"),
        (bomb.getvalue(), grpc.StatusCode.RESOURCE_EXHAUSTED, "pixels"),
        (b"\0" * (3 * 1024 * 1024 + 1), grpc.StatusCode.RESOURCE_EXHAUSTED, "at most"),
    ]
    for photo, code, words in bad:
        with pytest.raises(grpc.RpcError) as err:
            stub.SearchByPhoto(search_pb2.SearchByPhotoRequest(photo=photo, k=5), timeout=60)
        assert err.value.code() == code and words in err.value.details(), words
    assert len(stub.Search(search_pb2.SearchRequest(query="top", k=2)).results) == 2


def test_photos_are_decoded_two_at_a_time_whatever_the_clients_send(stack, monkeypatch):
    """Eight clients sending photos at once: at most PHOTO_DECODES photos are decoded at the
    same time (a decoded 40-megapixel photo is 120 MB), and every request is answered."""
    import io
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    import mrse.serving.server as server_module

    _, _, stub, _, _ = stack
    real, lock = server_module.preprocess, threading.Lock()
    now, most = [0], [0]

    def slow(data, frames):
        with lock:
            now[0] += 1
            most[0] = max(most[0], now[0])
        try:
            time.sleep(0.2)
            return real(data, frames)
        finally:
            with lock:
                now[0] -= 1

    monkeypatch.setattr(server_module, "preprocess", slow)
    buf = io.BytesIO()
    Image.new("RGB", (300, 400), (200, 30, 30)).save(buf, format="JPEG")
    req = search_pb2.SearchByPhotoRequest(photo=buf.getvalue(), k=5)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: stub.SearchByPhoto(req, timeout=60), range(8)))
    assert all(len(a.results) == 5 for a in answers)
    assert most[0] == server_module.PHOTO_DECODES


# ---- the home feed ----


def test_recommend_answers_shoppers_guests_and_strangers(stack, sample_hm):
    """Recommend over gRPC and grpcurl: a shopper's feed is personal and can leave out what
    they bought, a guest's follows the items viewed, a stranger gets the run's popular items
    (personalized false); filters apply, explanations add up to the score, an exposure is
    logged; bad input gets the right code."""
    import json
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from mrse.data import load_dataset

    engine, server, stub, _, events = stack
    items = load_dataset(sample_hm).items
    shopper = max({e.user_id for e in events}, key=lambda u: sum(e.user_id == u for e in events))
    bought = set(engine.profiles.read([shopper])[shopper].state.recent_items)
    logged: list = []
    old, engine.log_exposure = engine.log_exposure, logged.append
    try:
        feed = stub.Recommend(search_pb2.RecommendRequest(user_id=shopper, k=20))
    finally:
        engine.log_exposure = old
    assert feed.personalized and len(feed.results) == 20 and not feed.degraded
    scores = [r.score for r in feed.results]
    assert scores == sorted(scores, reverse=True)
    for r in feed.results:
        e = r.explanation
        assert e.text + e.image + e.profile == pytest.approx(r.score, abs=2e-3)
    (exposure,) = logged
    assert exposure.user_id == shopper and exposure.item_ids == tuple(
        r.item_id for r in feed.results
    )
    fresh = stub.Recommend(search_pb2.RecommendRequest(user_id=shopper, k=20,
                                                       exclude_purchased=True))  # fmt: skip
    assert len(fresh.results) == 20 and not bought & {r.item_id for r in fresh.results}
    # a guest: the items viewed shape the feed, and two different sessions differ
    ids = list(items["item_id"])
    guest_a = stub.Recommend(search_pb2.RecommendRequest(viewed_ids=ids[:2], k=10))
    guest_b = stub.Recommend(search_pb2.RecommendRequest(viewed_ids=ids[-2:], k=10))
    assert guest_a.personalized and guest_b.personalized
    assert [r.item_id for r in guest_a.results] != [r.item_id for r in guest_b.results]
    # a stranger: the run's recent popularity, most popular first
    cold = stub.Recommend(search_pb2.RecommendRequest(user_id="never-seen", k=5))
    popular = [i for i in engine.bundles["mrse-v1"].run.popular if i in set(ids)]
    assert not cold.personalized and [r.item_id for r in cold.results] == popular[:5]
    category = items["category"].value_counts().index[0]
    f = [search_pb2.FieldFilter(field="category", any=[category])]
    for req in (search_pb2.RecommendRequest(user_id=shopper, k=5, filters=f),
                search_pb2.RecommendRequest(user_id="never-seen", k=5, filters=f)):  # fmt: skip
        got = stub.Recommend(req).results
        assert got and all(r.category == category for r in got)
    bad = [
        ({"viewed_ids": [""]}, grpc.StatusCode.INVALID_ARGUMENT, "empty id"),
        ({"viewed_ids": [str(i) for i in range(65)]}, grpc.StatusCode.INVALID_ARGUMENT,
         "at most 64"),
        ({"user_id": shopper, "k": -1}, grpc.StatusCode.INVALID_ARGUMENT, "k must be"),
        ({"viewed_ids": ["no-such-item"]}, grpc.StatusCode.NOT_FOUND, "'no-such-item'"),
        ({"user_id": shopper, "experiment": "nope"}, grpc.StatusCode.NOT_FOUND, "nope"),
    ]  # fmt: skip
    for kwargs, code, words in bad:
        with pytest.raises(grpc.RpcError) as err:
            stub.Recommend(search_pb2.RecommendRequest(**kwargs))
        assert err.value.code() == code and words in err.value.details(), kwargs
    # an interleaving experiment merges two arms' feeds; two arms that agree (the same model
    # here) put the same item next every time, so each is shared and credits neither arm
    experiments = engine.experiments
    engine.experiments = {**experiments, "il-feed": Experiment("il-feed", (
        Arm("x", 1.0, "mrse-v1", "mrse_v1", "mrse-v1"),
        Arm("y", 1.0, "mrse-v1", "mrse_v1", "mrse-v1"),
    ), kind="interleave")}  # fmt: skip
    try:
        il = stub.Recommend(search_pb2.RecommendRequest(user_id=shopper, k=10,
                                                        experiment="il-feed"))  # fmt: skip
    finally:
        engine.experiments = experiments
    assert il.arm == "interleaved" and len(il.results) == 10 and il.personalized
    assert {r.team for r in il.results} == {""}
    plain = stub.Recommend(search_pb2.RecommendRequest(user_id=shopper, k=10))
    assert [r.item_id for r in il.results] == [r.item_id for r in plain.results]
    grpcurl = shutil.which("grpcurl", path=str(Path(sys.executable).parent))
    body = json.dumps({"userId": shopper, "k": 3})
    out = subprocess.run([grpcurl, "-plaintext", "-d", body, f"127.0.0.1:{server.port}",
                          "mrse.v1.SearchService/Recommend"], capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["personalized"] and len(got["results"]) == 3
