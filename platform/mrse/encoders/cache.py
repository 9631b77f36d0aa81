"""On-disk feature cache keyed by content: (model id, exact input bytes) -> vector.

A second run over the same catalog encodes nothing; an edited title or a replaced photo is a new
key, so the cache never serves a stale vector. Stored in one SQLite file (safe for concurrent
readers, one writer; survives crashes mid-run because every batch is its own transaction).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

DEFAULT_CACHE_DIR = Path("~/.cache/mrse").expanduser()


def default_cache_dir() -> Path:
    """``$MRSE_CACHE_DIR`` if set, else ``~/.cache/mrse``."""
    env = os.environ.get("MRSE_CACHE_DIR")
    return Path(env).expanduser() if env else DEFAULT_CACHE_DIR


def content_key(model_id: str, content: bytes) -> str:
    """Hex SHA-256 of the model id and the raw input bytes."""
    h = hashlib.sha256(model_id.encode())
    h.update(b"\0")
    h.update(content)
    return h.hexdigest()


class FeatureCache:
    """A key -> float32 vector store. Use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60)
        # WAL is a property of the file, set once; switching needs exclusive access and does
        # not wait on the busy timeout, so several processes opening the cache at once (the
        # ranks of a sharded run) failed with "database is locked". Switch only when needed.
        mode = self._db.execute("PRAGMA journal_mode").fetchone()[0]
        if mode.lower() != "wal":
            self._set_wal()
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS features (key TEXT PRIMARY KEY, dim INTEGER, vec BLOB)"
        )
        self._db.commit()

    def _set_wal(self, attempts: int = 50) -> None:
        for attempt in range(attempts):
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == attempts - 1:
                    raise
                time.sleep(0.1)

    @classmethod
    def open_default(cls, cache_dir: str | Path | None = None) -> FeatureCache:
        root = Path(cache_dir) if cache_dir else default_cache_dir()
        return cls(root / "features.sqlite")

    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """The cached vectors among ``keys`` (absent keys are simply missing from the result)."""
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT key, vec FROM features WHERE key IN ({marks})", chunk
            ).fetchall()
            for key, blob in rows:
                found[key] = np.frombuffer(blob, dtype=np.float32).copy()
        return found

    def put_many(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Store ``vectors`` (N, D) under ``keys`` (N,) in one transaction."""
        if len(keys) != len(vectors):
            raise ValueError(f"{len(keys)} keys for {len(vectors)} vectors")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO features (key, dim, vec) VALUES (?, ?, ?)",
                [(k, int(v.shape[0]), v.tobytes()) for k, v in zip(keys, vectors, strict=True)],
            )

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM features").fetchone()[0])

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> FeatureCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
