"""docker-compose.yml is valid and wires the production configuration (no engine runs here)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mrse.serving.app import load_serve_config

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def _compose(*args: str) -> str:
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose is not installed: run `bash scripts/install-services.sh`"
    proc = subprocess.run(
        [exe, "-f", str(REPO / "docker-compose.yml"), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_compose_file_is_valid_and_has_every_service():
    _compose("config", "-q")
    services = set(_compose("config", "--services").split())
    assert services == {
        "zookeeper",
        "kafka",
        "qdrant",
        "redis",
        "postgres",
        "server",
        "stream-worker",
        "catalog-worker",
    }


def test_server_entry_points_and_production_config_exist():
    text = (REPO / "docker-compose.yml").read_text()
    for entry in (
        "servers/search_server.py",
        "servers/stream_worker.py",
        "servers/catalog_worker.py",
        "configs/serve.production.yaml",
        "configs/catalog.production.yaml",
    ):
        assert entry in text and (REPO / entry).exists()
    cfg = load_serve_config(REPO / "configs" / "serve.production.yaml")
    assert cfg.index.backend == "qdrant" and cfg.feature_store.online == "redis"
    assert cfg.experiments_url.startswith("postgresql+psycopg://")
    assert {a.model_version for e in cfg.experiments for a in e.arms} == set(cfg.models)
    # strangers' networks: TLS and tokens on, arm overrides for QA only, secrets outside the repo
    assert cfg.tls is not None and cfg.auth is not None and cfg.auth.override_identities
    assert str(cfg.tls.key).startswith("/run/secrets/")
    assert str(cfg.auth.tokens_file).startswith("/run/secrets/")
    compose = (REPO / "docker-compose.yml").read_text()
    assert "mrse_api_tokens" in compose and "grpc.insecure_channel" not in compose
    tracked = subprocess.run(
        ["git", "ls-files", "secrets"], cwd=REPO, capture_output=True, text=True
    ).stdout.split()
    assert set(tracked) <= {"secrets/README.md", "secrets/api_tokens.example"}


def test_example_serving_config_parses():
    cfg = load_serve_config(REPO / "configs" / "serve.yaml")
    assert cfg.default_experiment == "search-v1" and len(cfg.experiments[0].arms) == 2


def test_compose_publishes_only_the_api_and_every_store_speaks_tls_with_credentials():
    """Nothing but the search API on a host port; Kafka SASL_SSL with SCRAM users and no JMX
    port, Qdrant over HTTPS, every worker's metrics over HTTPS with scrapers' certificates."""
    import yaml

    from mrse.catalog.service import CatalogServiceConfig
    from mrse.settings import load

    compose = yaml.safe_load(_compose("config"))
    published = {name: svc.get("ports", []) for name, svc in compose["services"].items()}
    assert {n: p for n, p in published.items() if p} == {"server": published["server"]}
    assert [(p["target"], p["published"]) for p in published["server"]] in (
        [(50051, 50051)],
        [(50051, "50051")],
    )
    kafka = compose["services"]["kafka"]["environment"]
    assert kafka["KAFKA_CFG_LISTENERS"].startswith("SASL_SSL://")
    assert kafka["KAFKA_CFG_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
    assert "jmxremote" not in kafka["KAFKA_JMX_OPTS"]
    assert compose["services"]["qdrant"]["environment"]["QDRANT__SERVICE__ENABLE_TLS"] == "true"
    for worker in ("server", "stream-worker", "catalog-worker"):
        env = compose["services"][worker]["environment"]
        assert env["MRSE_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert env["MRSE_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512" and env["MRSE_KAFKA_CA_FILE"]
    stream = compose["services"]["stream-worker"]["environment"]
    assert stream["MRSE_STREAM__METRICS_TLS__CLIENT_CA"].startswith("/run/secrets/")
    catalog = load(CatalogServiceConfig, REPO / "configs" / "catalog.production.yaml", "X_NONE")
    assert catalog.index.url.startswith("https://") and catalog.metrics_tls.client_ca
    assert load_serve_config(REPO / "configs" / "serve.production.yaml").index.url.startswith(
        "https://"
    )
