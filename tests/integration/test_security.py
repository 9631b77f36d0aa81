"""The search server on a stranger's network: bearer tokens, QA-only arm overrides, TLS and
mutual TLS, with real certificates (made here by openssl) and real gRPC clients."""

from __future__ import annotations

import subprocess
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from mrse.serving.background import BackgroundServer
from mrse.serving.security import AuthConfig, TLSConfig, read_tokens
from mrse.v1 import search_pb2, search_pb2_grpc

from .test_server import stack  # noqa: F401 (the trained model, index and engine)

pytestmark = pytest.mark.integration
ALICE, QA, BOB = "alice-token-0123456789", "qa-token-0123456789ab", "bob-token-0123456789ab"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(d: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
             "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}", cwd=d)  # fmt: skip


def _signed(d: Path, name: str, ca: str, san: str | None = None) -> None:
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
             f"{name}.csr", "-subj", f"/CN={name}", cwd=d)  # fmt: skip
    ext = []
    if san:
        (d / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        ext = ["-extfile", f"{name}.ext"]
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", *ext, cwd=d)  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    _ca(d, "ca")
    _signed(d, "server", "ca", "DNS:localhost,IP:127.0.0.1")
    _signed(d, "client", "ca")
    _ca(d, "rogue-ca")
    _signed(d, "rogue", "rogue-ca")
    return d


@pytest.fixture
def auth(tmp_path, monkeypatch) -> AuthConfig:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# identity token\nalice {ALICE}\nqa {QA}\n")
    monkeypatch.setenv("MRSE_API_TOKENS", f"bob={BOB}")
    return AuthConfig(tokens_file=tokens, override_identities=("qa",))


def _bearer(token: str) -> tuple:
    return (("authorization", f"Bearer {token}"),)


def _code(call, *args, **kwargs) -> grpc.StatusCode:
    try:
        call(*args, **kwargs)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def test_tokens_are_required_and_checked(stack, auth):  # noqa: F811
    engine = stack[0]
    with BackgroundServer(engine, auth=auth) as server, grpc.insecure_channel(server.target) as ch:
        stub = search_pb2_grpc.SearchServiceStub(ch)
        req = search_pb2.SearchRequest(query="black top", k=3)
        assert _code(stub.Search, req) == grpc.StatusCode.UNAUTHENTICATED
        assert (
            _code(stub.Search, req, metadata=_bearer("x" * 22)) == grpc.StatusCode.UNAUTHENTICATED
        )
        assert (
            _code(stub.Search, req, metadata=_bearer(ALICE[:-1])) == grpc.StatusCode.UNAUTHENTICATED
        )
        assert _code(stub.Search, req, metadata=(("authorization", ALICE),)) != grpc.StatusCode.OK
        for token in (ALICE, BOB):  # from the file, from the environment
            assert len(stub.Search(req, metadata=_bearer(token)).results) == 3
        refused = sum(
            s.value for s in server.metrics.errors.collect()[0].samples
            if s.name.endswith("_total") and s.labels["code"] == "UNAUTHENTICATED"
        )  # fmt: skip
        assert refused == 4
        # health stays open for load balancers; reflection needs a token
        health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""))
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(ch)
        ask = reflection_pb2.ServerReflectionRequest(list_services="")
        with pytest.raises(grpc.RpcError) as err:
            list(refl.ServerReflectionInfo(iter([ask])))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        (answer,) = refl.ServerReflectionInfo(iter([ask]), metadata=_bearer(ALICE))
        names = {s.name for s in answer.list_services_response.service}
        assert "mrse.v1.SearchService" in names


def test_arm_override_needs_a_qa_identity_and_refusals_are_not_exposures(stack, auth):  # noqa: F811
    engine = stack[0]
    logged = []
    engine.log_exposure = logged.append
    try:
        with (
            BackgroundServer(engine, auth=auth) as server,
            grpc.insecure_channel(server.target) as ch,
        ):
            stub = search_pb2_grpc.SearchServiceStub(ch)
            forced = search_pb2.SearchRequest(query="top", k=3, user_id="u1", arm_override="b")
            with pytest.raises(grpc.RpcError) as err:
                stub.Search(forced, metadata=_bearer(ALICE))
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert logged == []  # refused: never served, never an exposure
            batch = search_pb2.BatchSearchRequest(requests=[forced])
            assert _code(stub.BatchSearch, batch, metadata=_bearer(BOB)) == (
                grpc.StatusCode.PERMISSION_DENIED
            )
            resp = stub.Search(forced, metadata=_bearer(QA))
            assert resp.arm == "b"
            assert len(logged) == 1 and logged[0].qa  # a QA exposure, left out of A/B reports
    finally:
        engine.log_exposure = None


def test_tls_and_mutual_tls(stack, auth, pki):  # noqa: F811
    engine = stack[0]
    ca = (pki / "ca.pem").read_bytes()
    req = search_pb2.SearchRequest(query="top", k=2)
    tls = TLSConfig(cert=pki / "server.pem", key=pki / "server.key")
    with BackgroundServer(engine, tls=tls, auth=auth) as server:
        with grpc.secure_channel(server.target, grpc.ssl_channel_credentials(ca)) as ch:
            stub = search_pb2_grpc.SearchServiceStub(ch)
            assert len(stub.Search(req, metadata=_bearer(ALICE), timeout=10).results) == 2
        with grpc.insecure_channel(server.target) as ch:  # plaintext to a TLS port
            stub = search_pb2_grpc.SearchServiceStub(ch)
            assert _code(stub.Search, req, metadata=_bearer(ALICE), timeout=5) == (
                grpc.StatusCode.UNAVAILABLE
            )
    mtls = TLSConfig(cert=pki / "server.pem", key=pki / "server.key", client_ca=pki / "ca.pem")
    with BackgroundServer(engine, tls=mtls, auth=auth) as server:

        def call(client: str | None) -> grpc.StatusCode:
            creds = grpc.ssl_channel_credentials(
                ca,
                private_key=(pki / f"{client}.key").read_bytes() if client else None,
                certificate_chain=(pki / f"{client}.pem").read_bytes() if client else None,
            )
            with grpc.secure_channel(server.target, creds) as ch:
                stub = search_pb2_grpc.SearchServiceStub(ch)
                return _code(stub.Search, req, metadata=_bearer(ALICE), timeout=5)

        assert call(None) == grpc.StatusCode.UNAVAILABLE  # no client certificate
        assert call("rogue") == grpc.StatusCode.UNAVAILABLE  # signed by another CA
        assert call("client") == grpc.StatusCode.OK


def test_token_configuration_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="no token is configured"):
        read_tokens(AuthConfig(), environ={})
    with pytest.raises(ValueError, match="shorter than 16"):
        read_tokens(AuthConfig(), environ={"MRSE_API_TOKENS": "a=short"})
    bad = tmp_path / "tokens"
    bad.write_text("alice\n")
    with pytest.raises(ValueError, match="expected `identity token`"):
        read_tokens(AuthConfig(tokens_file=bad), environ={})
    with pytest.raises(ValueError, match="identity=token"):
        read_tokens(AuthConfig(), environ={"MRSE_API_TOKENS": "no-equals-sign-here-at-all"})


def test_redis_password_from_the_environment_or_a_secret_file(tmp_path, monkeypatch, caplog):
    """Redis with `requirepass`: works end to end with the password from the environment or a
    secret file, never writes it to disk, and without it fails at start in one clear line."""
    from dataclasses import replace

    import numpy as np
    from feast import FeatureStore

    from mrse.cli import main
    from mrse.features.profile import ProfileConfig, ProfileEvent, profile_from_events
    from mrse.features.store import FeatureStoreConfig, ProfileStore, StoreAuthError, StoredProfile

    from .services import Redis

    password = "12345678901234567890"  # JSON-decodes to a number unless quoted
    redis = Redis(tmp_path / "redis", password=password)
    try:
        cfg = FeatureStoreConfig(data_dir=tmp_path / "feast", online="redis", redis=redis.address)
        monkeypatch.delenv("MRSE_REDIS_PASSWORD", raising=False)
        with pytest.raises(StoreAuthError, match="MRSE_REDIS_PASSWORD"):
            ProfileStore(cfg).check()
        monkeypatch.setenv("MRSE_REDIS_PASSWORD", password)
        store = ProfileStore(cfg)
        store.apply()
        store.check()
        ev = [ProfileEvent("i1", 1.6e9, "c", np.ones(384), np.ones(1280))]
        state = profile_from_events(ev, ProfileConfig(), 384, 1280)
        store.write({"u1": StoredProfile(state, ["e1"])})
        assert store.read(["u1"])["u1"].state.count == 1
        written = (tmp_path / "feast" / "feature_store.yaml").read_text()
        assert password not in written and "${MRSE_REDIS_PASSWORD}" in written
        feast = FeatureStore(repo_path=str(tmp_path / "feast"))  # Feast's own API, same env
        rows = feast.get_online_features(
            features=feast.get_feature_service("mrse_v1"), entity_rows=[{"user_id": "u1"}]
        ).to_dict()
        assert rows["history_length"] == [1]
        monkeypatch.delenv("MRSE_REDIS_PASSWORD")
        secret = tmp_path / "redis_password"
        secret.write_text(password + "\n")
        from_file = ProfileStore(replace(cfg, redis_password_file=secret))
        assert from_file.read(["u1"])["u1"].state.count == 1
        # the stream worker without the password: exit 2 and one line saying what to set
        argv = ["stream", "worker", "--data", "unused", "--bootstrap", "127.0.0.1:1",
                "--feature-dir", str(tmp_path / "feast2"), "--online", "redis",
                "--redis", redis.address]  # fmt: skip
        assert main(argv) == 2
        assert "refused the credentials" in caplog.text and "MRSE_REDIS_PASSWORD" in caplog.text
    finally:
        redis.stop()


def test_postgres_password_from_the_environment_or_a_secret_file(tmp_path, monkeypatch):
    """The experiments database and Feast's SQL registry behind a password (SCRAM): URLs carry
    no password; it comes from $MRSE_*_PASSWORD, a file named by $MRSE_*_PASSWORD_FILE or the
    config's secret file; without it the connection is refused; no file mrse writes holds it."""
    from sqlalchemy.exc import OperationalError

    from mrse.experiments.assignment import Arm, Experiment
    from mrse.experiments.store import ExperimentStore
    from mrse.features.store import FeatureStoreConfig, ProfileStore, write_feast_yaml

    from .services import Postgres

    password = "pg-s3cret-p@ss/word"
    pg = Postgres(password=password)
    try:
        assert ":" not in pg.url.split("@")[0].split("//")[1]  # no password in the URL
        for env in ("MRSE_EXPERIMENTS_PASSWORD", "MRSE_EXPERIMENTS_PASSWORD_FILE"):
            monkeypatch.delenv(env, raising=False)
        with pytest.raises(OperationalError, match="password"):
            ExperimentStore(pg.url)
        monkeypatch.setenv("MRSE_EXPERIMENTS_PASSWORD", "wrong")
        with pytest.raises(OperationalError, match="password authentication failed"):
            ExperimentStore(pg.url)
        monkeypatch.setenv("MRSE_EXPERIMENTS_PASSWORD", password)
        store = ExperimentStore(pg.url)
        store.put(Experiment("e", (Arm("a", 1.0, "v1", "s", "v1"),)))
        store.close()
        monkeypatch.delenv("MRSE_EXPERIMENTS_PASSWORD")
        secret_file = tmp_path / "pg_password"
        secret_file.write_text(password + "\n")
        monkeypatch.setenv("MRSE_EXPERIMENTS_PASSWORD_FILE", str(secret_file))
        store = ExperimentStore(pg.url)
        assert [e.name for e in store.list()] == ["e"]
        store.close()
        cfg = FeatureStoreConfig(data_dir=tmp_path / "feast", registry_url=pg.url,
                                 registry_password_file=secret_file)  # fmt: skip
        profiles = ProfileStore(cfg)
        profiles.apply()  # Feast's SQL registry, through the password
        text = write_feast_yaml(cfg).read_text()
        assert password not in text and "${MRSE_REGISTRY_PASSWORD}" in text
    finally:
        pg.stop()


def test_kafka_sasl_for_producers_consumers_and_topic_creation(kafka, tmp_path, monkeypatch):
    """Every Kafka client mrse makes takes its credentials from MRSE_KAFKA_* (password from a
    secret file): topic creation, the catalog publisher, a dead-letter producer and a worker's
    group consumer work on a SASL listener; a wrong password is refused."""
    import time

    from mrse.catalog.events import CatalogEvent
    from mrse.catalog.publish import publish
    from mrse.kafka_client import client_options
    from mrse.streaming.consumer import batch_consumer, commit
    from mrse.streaming.dead_letters import dead_letter_producer

    secret_file = tmp_path / "kafka_password"
    secret_file.write_text(kafka.SASL_PASSWORD + "\n")
    monkeypatch.setenv("MRSE_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("MRSE_KAFKA_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("MRSE_KAFKA_USERNAME", "mrse")
    with pytest.raises(ValueError, match="MRSE_KAFKA_PASSWORD"):
        client_options()
    monkeypatch.setenv("MRSE_KAFKA_PASSWORD_FILE", str(secret_file))
    now = time.time()
    events = [CatalogEvent(f"e{i}", f"item-{i}", i + 1, now, "delete") for i in range(5)]
    assert publish(kafka.sasl_bootstrap, "sasl-catalog", events) == 5
    producer = dead_letter_producer(kafka.sasl_bootstrap)
    producer.send("sasl-catalog", key=b"item-9", value=events[0].to_json()).get(timeout=30)
    producer.close()
    consumer = batch_consumer(kafka.sasl_bootstrap, "sasl-group", 100, 20, 6000)
    consumer.subscribe(["sasl-catalog"])
    got: list = []
    deadline = time.monotonic() + 60
    while len(got) < 6 and time.monotonic() < deadline:
        got += [r for batch in consumer.poll(timeout_ms=500).values() for r in batch]
    assert len(got) == 6 and commit(consumer)
    consumer.close()
    monkeypatch.delenv("MRSE_KAFKA_PASSWORD_FILE")
    monkeypatch.setenv("MRSE_KAFKA_PASSWORD", "wrong-password")
    from kafka import KafkaProducer

    with pytest.raises(Exception) as err:  # noqa: B017 - kafka-python's error class varies
        KafkaProducer(bootstrap_servers=kafka.sasl_bootstrap, max_block_ms=5000,
                      **client_options()).send("sasl-catalog", b"x").get(timeout=10)  # fmt: skip
    # the same listener took the right password above: this is the refusal (kafka-python
    # reports a failed SASL handshake as a bootstrap that never succeeds)
    assert any(w in repr(err.value).lower() for w in ("auth", "bootstrap"))
    # a worker says so in one line at start (topic creation is its first call), exit code 2
    from mrse.cli import main

    (tmp_path / "none.jsonl").write_text("")
    args = ["catalog", "publish", "--bootstrap", kafka.sasl_bootstrap, "--file"]
    code = main([*args, str(tmp_path / "none.jsonl")])
    assert code == 2


def test_metrics_over_tls_for_scrapers_with_a_certificate(pki):
    """With TLS, the Prometheus endpoint is HTTPS with the API's certificate and, given a client
    CA, answers only scrapers that present a certificate it signed."""
    import ssl
    import urllib.request

    from prometheus_client import CollectorRegistry, Counter

    from mrse.metrics_http import serve_metrics
    from mrse.streaming.broker import free_port

    registry = CollectorRegistry()
    Counter("mrse_probe", "a probe", registry=registry).inc()
    tls = TLSConfig(cert=pki / "server.pem", key=pki / "server.key")
    port = free_port()
    server = serve_metrics(registry, port, "127.0.0.1", tls.metrics_tls(pki / "ca.pem"))
    url = f"https://localhost:{port}/metrics"

    def scrape(cert: str | None) -> str:
        ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        if cert:
            ctx.load_cert_chain(str(pki / f"{cert}.pem"), str(pki / f"{cert}.key"))
        with urllib.request.urlopen(url, context=ctx, timeout=10) as resp:
            return resp.read().decode()

    assert "mrse_probe_total 1.0" in scrape("client")
    for cert in (None, "rogue"):
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            scrape(cert)
    with pytest.raises(OSError):  # plain HTTP is not answered
        urllib.request.urlopen(f"http://localhost:{port}/metrics", timeout=5).read()
    server.close()
