"""One configuration system: YAML, then environment, then flags; strict; logged with secrets
masked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mrse.settings import ConfigError, describe, env_values, load

REPO = Path(__file__).resolve().parents[2]


def test_environment_names_nested_fields_and_reads_yaml_scalars():
    env = {
        "MRSE_X__A": "3", "MRSE_X__B__C": "true", "MRSE_X__D": "[1, 2]", "MRSE_X__E": "",
        "OTHER": "1", "MRSE_XY__A": "9",
    }  # fmt: skip
    assert env_values("MRSE_X", env) == {"a": 3, "b": {"c": True}, "d": [1, 2], "e": ""}


def test_stream_config_precedence_yaml_then_environment_then_flags(tmp_path):
    from mrse.streaming.service import StreamServiceConfig

    path = tmp_path / "stream.yaml"
    path.write_text(
        yaml.safe_dump(
            {"data": "d1", "worker": {"bootstrap": "yaml:9092", "max_batch": 10},
             "store": {"data_dir": "f1", "online": "redis"}}
        )
    )  # fmt: skip
    env = {"MRSE_STREAM__WORKER__BOOTSTRAP": "env:9092", "MRSE_STREAM__STORE__REDIS": "r:1"}
    cfg = load(StreamServiceConfig, path, "MRSE_STREAM", environ=env)
    assert cfg.data == Path("d1") and cfg.worker.bootstrap == "env:9092"
    assert cfg.worker.max_batch == 10 and cfg.worker.topic == "mrse.clicks"  # YAML, default
    assert (cfg.store.data_dir, cfg.store.online, cfg.store.redis) == (Path("f1"), "redis", "r:1")
    flags = {"worker": {"bootstrap": "flag:9092"}}
    cfg = load(StreamServiceConfig, path, "MRSE_STREAM", overrides=flags, environ=env)
    assert cfg.worker.bootstrap == "flag:9092" and cfg.worker.max_batch == 10


def test_errors_name_the_option_and_where_it_came_from(tmp_path):
    from mrse.streaming.service import StreamServiceConfig

    with pytest.raises(ConfigError, match=r"missing required option\(s\) \['data'\]"):
        load(
            StreamServiceConfig,
            None,
            "MRSE_STREAM",
            environ={"MRSE_STREAM__WORKER__BOOTSTRAP": "b"},
        )
    env = {"MRSE_STREAM__DATA": "d", "MRSE_STREAM__WORKER__BOOTSTRAP": "b",
           "MRSE_STREAM__WORKER__BATCH": "5"}  # fmt: skip
    with pytest.raises(ConfigError) as err:
        load(StreamServiceConfig, None, "MRSE_STREAM", environ=env)
    msg = str(err.value)
    assert "StreamServiceConfig.worker: unknown WorkerConfig option(s) ['batch']" in msg
    assert "max_batch" in msg and "MRSE_STREAM__* variables" in msg
    env["MRSE_STREAM__WORKER__BATCH"] = ""
    del env["MRSE_STREAM__WORKER__BATCH"]
    env["MRSE_STREAM__WORKER__MAX_BATCH"] = "many"
    with pytest.raises(ConfigError, match="max_batch: expected int"):
        load(StreamServiceConfig, None, "MRSE_STREAM", environ=env)


def test_shipped_serving_configs_load_and_take_environment_overrides(monkeypatch):
    from mrse.serving.app import load_serve_config

    for name in ("serve.yaml", "serve.production.yaml"):
        cfg = load_serve_config(REPO / "configs" / name)
        assert set(cfg.models) == {"text-tower-v1", "mrse-v1"}
        assert [a.name for a in cfg.experiments[0].arms] == ["control", "mrse"]
    monkeypatch.setenv("MRSE_SERVE__FEATURE_STORE__REDIS", "cache.internal:6380")
    monkeypatch.setenv("MRSE_SERVE__WORKERS", "4")
    monkeypatch.setenv("MRSE_SERVE__EXPOSURES__TOPIC", "exp.v2")
    cfg = load_serve_config(REPO / "configs" / "serve.production.yaml")
    assert cfg.feature_store.redis == "cache.internal:6380" and cfg.workers == 4
    assert (cfg.exposures_bootstrap, cfg.exposures_topic) == ("kafka:9092", "exp.v2")
    logged = json.loads(describe(cfg))
    assert logged["workers"] == 4
    assert "mrse@postgres" in logged["experiments_url"]  # no password in the config at all
    monkeypatch.setenv("MRSE_SERVE__EXPERIMENTS_URL", "postgresql+psycopg://u:pw-1@db/x")
    masked = json.loads(describe(load_serve_config(REPO / "configs" / "serve.production.yaml")))
    assert masked["experiments_url"] == "postgresql+psycopg://u:***@db/x"
    assert logged["auth"]["tokens_file"] == "/run/secrets/mrse_api_tokens"  # a path, shown
    from mrse.settings import describe as show

    assert json.loads(show({"api_token": "s3cret", "password": "p"})) == {
        "api_token": "***",
        "password": "***",
    }


def test_training_config_takes_environment_overrides(monkeypatch, tmp_path):
    from mrse.training.config import load_config

    monkeypatch.setenv("MRSE_TRAIN__EPOCHS", "3")
    monkeypatch.setenv("MRSE_TRAIN__MODEL__DIM", "64")
    cfg = load_config("text-tower")
    assert cfg.epochs == 3 and cfg.model.dim == 64 and not cfg.model.use_image  # preset kept
    monkeypatch.setenv("MRSE_TRAIN__MODEL__DIMENSION", "64")
    with pytest.raises(ConfigError, match="unknown ModelConfig option.*dimension"):
        load_config("mrse")


def test_cli_reports_a_bad_config_in_one_line(tmp_path, caplog):
    from mrse.cli import main

    assert main(["stream", "worker", "--bootstrap", "127.0.0.1:1"]) == 2
    assert "missing required option(s) ['data']" in caplog.text


def test_shipped_catalog_worker_configs_load_and_match_the_serving_ones(monkeypatch):
    from mrse.catalog.service import ENV_PREFIX, CatalogServiceConfig
    from mrse.serving.app import load_serve_config

    for name, serve in (("catalog.yaml", "serve.yaml"),
                        ("catalog.production.yaml", "serve.production.yaml")):  # fmt: skip
        cfg = load(CatalogServiceConfig, REPO / "configs" / name, ENV_PREFIX)
        served = load_serve_config(REPO / "configs" / serve)
        assert cfg.models == served.models and cfg.index == served.index
        assert cfg.experiments_url == served.experiments_url and cfg.photo_roots
    monkeypatch.setenv("MRSE_CATALOG__WORKER__BOOTSTRAP", "kafka.internal:9093")
    cfg = load(CatalogServiceConfig, REPO / "configs" / "catalog.production.yaml", ENV_PREFIX)
    assert cfg.worker.bootstrap == "kafka.internal:9093"
    assert "mrse:mrse@" not in describe(cfg)


def test_kafka_client_options_from_the_environment(tmp_path):
    from mrse.kafka_client import client_options

    assert client_options({}) == {}
    secret_file = tmp_path / "pw"
    secret_file.write_text("s3cret\n")
    env = {
        "MRSE_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
        "MRSE_KAFKA_USERNAME": "mrse",
        "MRSE_KAFKA_PASSWORD_FILE": str(secret_file),
        "MRSE_KAFKA_CA_FILE": "/ca.pem",
    }
    assert client_options(env) == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "mrse", "sasl_plain_password": "s3cret", "ssl_cafile": "/ca.pem",
    }  # fmt: skip
    for bad in ({"MRSE_KAFKA_SECURITY_PROTOCOL": "TLS"},
                {"MRSE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "MRSE_KAFKA_USERNAME": "u"},
                {**env, "MRSE_KAFKA_SASL_MECHANISM": "GSSAPI"}):  # fmt: skip
        with pytest.raises(ValueError):
            client_options(bad)
