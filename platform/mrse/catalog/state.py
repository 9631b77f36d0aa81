"""The catalog worker's memory of each item: the version last applied, its content and
attributes. It decides what an event changes (nothing, the payload, or the vectors) and makes
replayed and duplicated events no-ops. SQLite in a file: written in the same step that follows
the index writes, before the Kafka offsets move.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mrse.catalog.events import ItemContent


def content_hash(content: ItemContent) -> str:
    """What the vectors depend on (photo by the name given; the encoder cache keys its bytes)."""
    raw = json.dumps([content.title, content.description, content.brand, content.category,
                      content.photo])  # fmt: skip
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass
class ItemState:
    """``content`` None: not known here (only patched so far: the item's content is the
    catalog snapshot's); ``deleted``: a tombstone, so older events stay ignored."""

    version: int
    deleted: bool = False
    content: ItemContent | None = None
    attributes: dict = field(default_factory=dict)

    @property
    def content_hash(self) -> str | None:
        return None if self.content is None else content_hash(self.content)


class CatalogState:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS items (item_id TEXT PRIMARY KEY, version INTEGER NOT NULL,"
            " deleted INTEGER NOT NULL, content TEXT, attributes TEXT NOT NULL)"
        )
        self._db.commit()

    def get_many(self, item_ids: list[str]) -> dict[str, ItemState]:
        out: dict[str, ItemState] = {}
        ids = list(dict.fromkeys(item_ids))
        for s in range(0, len(ids), 500):
            chunk = ids[s : s + 500]
            rows = self._db.execute(
                "SELECT item_id, version, deleted, content, attributes FROM items "
                f"WHERE item_id IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            out.update((r[0], _state(*r[1:])) for r in rows)
        return out

    def items(self) -> dict[str, ItemState]:
        """Every item this worker has seen (tombstones included)."""
        rows = self._db.execute("SELECT item_id, version, deleted, content, attributes FROM items")
        return {r[0]: _state(*r[1:]) for r in rows}

    def put_many(self, states: dict[str, ItemState]) -> None:
        """Write all of ``states`` in one transaction."""
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO items VALUES (?, ?, ?, ?, ?)",
                [
                    (
                        i,
                        s.version,
                        int(s.deleted),
                        None if s.content is None else json.dumps(asdict(s.content)),
                        json.dumps(s.attributes),
                    )  # fmt: skip
                    for i, s in states.items()
                ],
            )

    def close(self) -> None:
        self._db.close()


def _state(version: int, deleted: int, content: str | None, attributes: str) -> ItemState:
    return ItemState(
        version,
        bool(deleted),
        None if content is None else ItemContent(**json.loads(content)),
        json.loads(attributes),
    )
