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
