"""Index writes: what the catalog worker does to each model version's index, applied directly
(a Qdrant server) or carried as records on the index topic for embedded server processes to
apply to their own Qdrant Edge shards (:mod:`mrse.catalog.follower`).

One record per item and batch, keyed by item id (an item's records stay in order), JSON:
``{"op": "upsert", "item_id": ..., "payload": {...}, "terms": [[term id, weight], ...] (its
lexical terms), "vectors": {version: [b64 float32, b64 _x or null]}}``, ``{"op": "patch",
"item_id": ..., "payload": {...}}`` or ``{"op": "delete", "item_id": ...}``. A record written
before the lexical channel has no ``terms``: the item is written without any (found by the dense
channel only).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from mrse.index.base import VectorIndex
from mrse.index.points import EXPLAIN_KEY

logger = logging.getLogger(__name__)
VERSIONS_HEADER = "versions"


@dataclass
class Upsert:
    payload: dict  # attributes, without _x
    vectors: dict[str, tuple[np.ndarray, str | None]]  # version -> ((D,) vector, _x)
    terms: dict[int, float] = field(default_factory=dict)  # lexical terms: id -> weight


@dataclass
class IndexWrites:
    """The net writes of a batch: at most one entry per item over the three maps."""

    upserts: dict[str, Upsert] = field(default_factory=dict)
    patches: dict[str, dict] = field(default_factory=dict)
    deletes: set[str] = field(default_factory=set)

    def __len__(self) -> int:
        return len(self.upserts) + len(self.patches) + len(self.deletes)

    def add(self, op: str, item_id: str, upsert: Upsert | None = None, patch: dict | None = None):
        """Fold one more write for ``item_id`` into the batch, after those already in it."""
        if op == "delete":
            self.upserts.pop(item_id, None)
            self.patches.pop(item_id, None)
            self.deletes.add(item_id)
        elif op == "upsert":
            assert upsert is not None
            self.patches.pop(item_id, None)
            self.deletes.discard(item_id)
            self.upserts[item_id] = upsert
        elif op == "patch":
            assert patch is not None
            if item_id in self.deletes:
                return  # the point is gone; a patch does not bring it back
            if item_id in self.upserts:
                self.upserts[item_id].payload.update(patch)
            else:
                self.patches.setdefault(item_id, {}).update(patch)
        else:
            raise ValueError(f"unknown index write {op!r}")

    def apply(self, indexes: Mapping[str, VectorIndex]) -> None:
        """Write the batch to every index (one upsert, one patch and one delete call each)."""
        for version, index in indexes.items():
            ids = [i for i, u in self.upserts.items() if version in u.vectors]
            missing = len(self.upserts) - len(ids)
            if missing:
                logger.warning("%d upsert(s) carry no vectors for %s; skipped", missing, version)
            if ids:
                vecs = np.stack([self.upserts[i].vectors[version][0] for i in ids])
                payloads = []
                for i in ids:
                    blob = self.upserts[i].vectors[version][1]
                    p = dict(self.upserts[i].payload)
                    if blob is not None:
                        p[EXPLAIN_KEY] = blob
                    payloads.append(p)
                index.upsert(ids, vecs, payloads, [self.upserts[i].terms for i in ids])
            if self.patches:
                index.patch_payloads(self.patches)
            if self.deletes:
                index.delete(sorted(self.deletes))

    def to_records(self) -> Iterable[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
        """(key, value, headers) records for the index topic; an upsert's ``versions`` header
        names the model versions it carries vectors for (a follower skips the others unread)."""
        for item_id, u in self.upserts.items():
            vectors = {
                v: [base64.b64encode(vec.astype("<f4").tobytes()).decode("ascii"), blob]
                for v, (vec, blob) in u.vectors.items()
            }
            value = {"op": "upsert", "item_id": item_id, "payload": u.payload,
                     "terms": [[t, w] for t, w in u.terms.items()], "vectors": vectors}  # fmt: skip
            yield item_id.encode(), _json(value), [(VERSIONS_HEADER, ",".join(vectors).encode())]
        for item_id, p in self.patches.items():
            yield item_id.encode(), _json({"op": "patch", "item_id": item_id, "payload": p}), []
        for item_id in sorted(self.deletes):
            yield item_id.encode(), _json({"op": "delete", "item_id": item_id}), []

    @classmethod
    def from_records(cls, values: Iterable[bytes]) -> IndexWrites:
        """Records of the index topic (in order) folded into one batch."""
        out = cls()
        for value in values:
            r = json.loads(value)
            upsert = None
            if r["op"] == "upsert":
                upsert = Upsert(
                    r["payload"],
                    {
                        v: (np.frombuffer(base64.b64decode(vec), dtype="<f4").copy(), blob)
                        for v, (vec, blob) in r["vectors"].items()
                    },
                    _terms(r.get("terms", ())),
                )
            out.add(r["op"], r["item_id"], upsert, r.get("payload"))
        return out


def for_versions(headers, versions: Iterable[str]) -> bool:
    """Whether a record with these Kafka headers concerns any of ``versions`` (records without
    a ``versions`` header, patches and deletes, concern every version)."""
    named = dict(headers or ()).get(VERSIONS_HEADER)
    return named is None or not set(named.decode().split(",")).isdisjoint(versions)


def _terms(raw) -> dict[int, float]:
    """A record's lexical terms: [[id, weight], ...] (or bare ids, weight 1)."""
    return {int(t[0]): float(t[1]) if isinstance(t, list) else 1.0 for t in raw} if raw else {}


def _json(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()
