"""Online user profiles in Feast: the stream worker writes them, the server reads them.

The embedded default keeps everything in one directory (SQLite online store, file registry,
parquet offline store); production points the same code at Redis and a PostgreSQL registry.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd

from mrse.features.profile import ProfileState
from mrse.features.profile_schema import (
    ENTITY_KEY,
    MODEL_FIELDS,
    PROFILE_FIELDS,
    PUSH_SOURCE,
    TIMESTAMP,
    VIEW,
    arrow_schema,
    from_row,
    to_row,
)
from mrse.settings import secret, url_with_password

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureStoreConfig:
    """Where Feast keeps things. ``online``: sqlite (embedded) or redis; ``registry``: file or
    sql (a SQLAlchemy URL such as ``postgresql+psycopg://user@host:5432/feast``)."""

    data_dir: Path
    online: Literal["sqlite", "redis"] = "sqlite"
    redis: str = "localhost:6379"
    registry_url: str | None = None
    # socket timeouts added to the Redis connection string unless it sets its own: a Redis
    # that stops answering (a partition, not a refusal) must not hold a thread for good
    redis_timeout_s: float = 2.0
    # credentials never in the config itself: a secret file, else the environment variable
    redis_password_file: Path | None = None
    redis_password_env: str = "MRSE_REDIS_PASSWORD"
    redis_tls: bool = False
    # the SQL registry's password, when its URL names none: this file, else $<env>_FILE, $<env>
    registry_password_file: Path | None = None
    registry_password_env: str = "MRSE_REGISTRY_PASSWORD"
    definitions: str = "mrse.features.feast_definitions"  # the module with the Feast objects
    project: str = "mrse"


@dataclass
class StoredProfile:
    """A profile as kept online: the model state plus the idempotency window."""

    state: ProfileState
    applied_event_ids: list[str] = field(default_factory=list)


class StoreAuthError(RuntimeError):
    """The online store refused the credentials (or asked for some)."""


def redis_password(cfg: FeatureStoreConfig, environ=None) -> str | None:
    """The Redis password: the secret file if named, else ``$<env>_FILE``, else ``$<env>``."""
    password = secret(cfg.redis_password_env, cfg.redis_password_file, environ)
    if password and "," in password:  # Feast's connection string is comma-separated
        raise ValueError("the Redis password must not contain a comma")
    return password


def _repo_settings(cfg: FeatureStoreConfig, with_secrets: bool = True) -> dict:
    """Feast's repo settings for ``cfg`` (absolute paths), as in a ``feature_store.yaml``;
    ``with_secrets=False`` puts ``${<password env>}`` where the password goes (Feast expands
    environment variables when it reads the file), so no file holds it."""
    data_dir = cfg.data_dir.resolve()  # Feast resolves relative paths against repo_path
    data_dir.mkdir(parents=True, exist_ok=True)
    if cfg.registry_url:
        password = secret(cfg.registry_password_env, cfg.registry_password_file)
        path = (
            url_with_password(cfg.registry_url, password)
            if with_secrets or password is None
            else url_with_password(cfg.registry_url, None, f"${{{cfg.registry_password_env}}}")
        )
        registry = {"registry_type": "sql", "path": path, "cache_ttl_seconds": 60}
    else:
        registry = str(data_dir / "registry.db")
    if cfg.online == "redis":
        conn = cfg.redis
        if "socket_timeout" not in conn:
            t = cfg.redis_timeout_s
            conn += f",socket_timeout={t},socket_connect_timeout={t}"
        if cfg.redis_tls:
            conn += ",ssl=true"
        password = redis_password(cfg)
        if password:  # JSON-quoted: Feast JSON-decodes values ("true" must stay a string)
            value = json.dumps(password) if with_secrets else f'"${{{cfg.redis_password_env}}}"'
            conn += f",password={value}"
        online = {"type": "redis", "connection_string": conn}
    else:
        online = {"type": "sqlite", "path": str(data_dir / "online_store.db")}
    return {
        "project": cfg.project,
        "registry": registry,
        "provider": "local",
        "online_store": online,
        "offline_store": {"type": "file"},
        "entity_key_serialization_version": 3,
    }


def _repo_config(cfg: FeatureStoreConfig):
    from feast.repo_config import RepoConfig

    return RepoConfig(**_repo_settings(cfg), repo_path=str(cfg.data_dir.resolve()))


FEAST_YAML_NOTE = """\
# Written by mrse (ProfileStore.apply): this feature store, for Feast's own CLI and API, e.g.
#   feast -c THIS_DIR feature-services list
#   FeatureStore(repo_path=THIS_DIR).get_online_features(
#       features=store.get_feature_service("mrse_v1"), entity_rows=[{"user_id": ...}])
# Read-only use: the definitions live in mrse.features.feast_definitions (feature_repo/ for
# the CLI); `feast apply` here would find none.
"""


def write_feast_yaml(cfg: FeatureStoreConfig) -> Path:
    """``feature_store.yaml`` in ``cfg.data_dir`` describing this store; returns its path."""
    import yaml

    path = cfg.data_dir.resolve() / "feature_store.yaml"
    settings = _repo_settings(cfg, with_secrets=False)
    path.write_text(FEAST_YAML_NOTE + yaml.safe_dump(settings, sort_keys=False))
    return path


class ProfileStore:
    """Read and write user profiles through Feast. Call :meth:`apply` once per deployment."""

    def __init__(self, config: FeatureStoreConfig) -> None:
        from feast import FeatureStore

        self.config = config
        # Relative FileSource paths in the definitions resolve against data_dir (repo_path).
        self._defs = importlib.import_module(config.definitions)
        self.store = FeatureStore(config=_repo_config(config))

    def _ensure_offline_files(self) -> None:
        """Feast reads each file source's schema on apply: create the empty typed file once."""
        import pyarrow.parquet as pq

        root = self.config.data_dir / "data"
        root.mkdir(parents=True, exist_ok=True)
        path = root / "user_profiles.parquet"
        if not path.exists():
            pq.write_table(arrow_schema().empty_table(), path)

    def check(self) -> None:
        """Raise StoreAuthError if the online store (Redis) refuses our credentials. An
        unreachable store is only logged: readers degrade and the stream worker retries."""
        if self.config.online != "redis":
            return
        import redis

        cfg = self.config
        host, _, port = cfg.redis.split(",", 1)[0].rpartition(":")
        client = redis.Redis(
            host=host or "localhost", port=int(port or 6379), password=redis_password(cfg),
            ssl=cfg.redis_tls, socket_timeout=cfg.redis_timeout_s,
            socket_connect_timeout=cfg.redis_timeout_s,
        )  # fmt: skip
        try:
            client.ping()
        except redis.AuthenticationError as exc:
            raise StoreAuthError(
                f"Redis at {host}:{port} refused the credentials ({exc}); set "
                f"${cfg.redis_password_env} or feature_store.redis_password_file"
            ) from exc
        except redis.RedisError as exc:
            logger.warning("online store not reachable at start (%s: %s)", type(exc).__name__, exc)
        finally:
            client.close()

    def apply(self) -> None:
        self._ensure_offline_files()
        write_feast_yaml(self.config)
        d = self._defs
        objects = [d.user, d.user_profile_push, d.user_profile_fresh, d.mrse_v1, d.text_tower_v1]
        self.store.apply(objects)
        logger.info(
            "feast: applied %d definitions to project %s", len(objects), self.config.project
        )

    def write(self, profiles: Mapping[str, StoredProfile]) -> None:
        """Push profiles to the online store (one row per user, overwriting)."""
        if not profiles:
            return
        now = pd.Timestamp.now(tz="UTC")
        rows = [
            {ENTITY_KEY: user_id, TIMESTAMP: now, **to_row(p.state, p.applied_event_ids)}
            for user_id, p in profiles.items()
        ]
        from feast.data_source import PushMode

        self.store.push(PUSH_SOURCE, pd.DataFrame(rows), to=PushMode.ONLINE)

    def read(
        self, user_ids: Iterable[str], with_event_ids: bool = True
    ) -> dict[str, StoredProfile | None]:
        """The stored profile of each user (None for a user never written).

        ``with_event_ids=False`` (serving) skips the idempotency window, which only the stream
        worker needs: the returned ``applied_event_ids`` are then empty.
        """
        ids = list(dict.fromkeys(user_ids))
        if not ids:
            return {}
        fields = PROFILE_FIELDS if with_event_ids else MODEL_FIELDS
        resp = self.store.get_online_features(
            features=[f"{VIEW}:{f}" for f in fields],
            entity_rows=[{ENTITY_KEY: u} for u in ids],
        ).to_dict()
        out: dict[str, StoredProfile | None] = {}
        for i, user_id in enumerate(ids):
            if resp["history_length"][i] is None:
                out[user_id] = None
                continue
            state, applied = from_row({f: resp[f][i] for f in fields})
            out[user_id] = StoredProfile(state, applied)
        return out
