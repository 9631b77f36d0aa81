"""Index writes: what the catalog worker does to each model version's index, applied directly
(a Qdrant server) or carried as records on the index topic for embedded server processes to
apply to their own Qdrant Edge shards (:mod:`mrse.catalog.follower`).

One record per item and batch, JSON: ``{"op": "upsert", "item_id": ..., "payload": {...},
"terms": [[term id, weight], ...] (its lexical terms), "vectors": {version: [b64 float32, b64 _x
or null]}}``, ``{"op": "patch", "item_id": ..., "payload": {...}}`` or ``{"op": "delete",
"item_id": ...}``. A record written before the lexical channel has no ``terms``: the item is
written without any (found by the dense channel only).

The topic is compacted (Kafka keeps the newest record per key), so each record must stand for
the item's whole latest state of what it carries: upserts and deletes are keyed by the item id
(the newest is the item's content, or its absence); a patch carries every attribute changed
since the item's last content (the worker's item state, not just this event's) and is keyed
``<item id>`` + :data:`PATCH_KEY`, so compaction never drops an upsert for a later patch. Both
keys of an item go to the partition of its id: its records stay in order.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from mrse.catalog.plan import Plan
from mrse.index.base import VectorIndex
from mrse.index.points import EXPLAIN_KEY, attribute_patch

logger = logging.getLogger(__name__)
VERSIONS_HEADER = "versions"
PATCH_KEY = "\x00attributes"  # appended to a patch's key (an item id never holds a NUL)
# the index topics keep every item's latest state and drop what it replaced
TOPIC_CONFIGS = {"cleanup.policy": "compact"}


@dataclass
class Upsert:
    payload: dict  # attributes, without a version's own keys
    # version -> ((D,) vector, the version's own payload keys: ``_x``, ``_p`` where it has them)
    vectors: dict[str, tuple[np.ndarray, dict[str, str]]]
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
                    payloads.append(
                        {**self.upserts[i].payload, **self.upserts[i].vectors[version][1]}
                    )
                index.upsert(ids, vecs, payloads, [self.upserts[i].terms for i in ids])
            if self.patches:
                index.patch_payloads(self.patches)
            if self.deletes:
                index.delete(sorted(self.deletes))

    def to_records(self) -> Iterable[tuple[str, bytes, bytes, list[tuple[str, bytes]]]]:
        """(item id, key, value, headers) records for the index topic; an upsert's ``versions``
        header names the model versions it carries vectors for (a follower skips the others
        unread)."""
        for item_id, u in self.upserts.items():
            vectors = {
                v: [base64.b64encode(vec.astype("<f4").tobytes()).decode("ascii"), own]
                for v, (vec, own) in u.vectors.items()
            }
            value = {"op": "upsert", "item_id": item_id, "payload": u.payload,
                     "terms": [[t, w] for t, w in u.terms.items()], "vectors": vectors}  # fmt: skip
            headers = [(VERSIONS_HEADER, ",".join(vectors).encode())]
            yield item_id, item_id.encode(), _json(value), headers
        for item_id, p in self.patches.items():
            value = _json({"op": "patch", "item_id": item_id, "payload": p})
            yield item_id, (item_id + PATCH_KEY).encode(), value, []
        for item_id in sorted(self.deletes):
            yield item_id, item_id.encode(), _json({"op": "delete", "item_id": item_id}), []

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
                        v: (np.frombuffer(base64.b64decode(vec), dtype="<f4").copy(), _own(own))
                        for v, (vec, own) in r["vectors"].items()
                    },
                    _terms(r.get("terms", ())),
                )
            out.add(r["op"], r["item_id"], upsert, r.get("payload"))
        return out


def plan_writes(plan: Plan, upserts: Mapping[str, Upsert]) -> IndexWrites:
    """The index writes of a planned batch: ``upserts`` for its encoded items (the encoder's;
    an item it could not encode is left out), every patch with all the item's attributes since
    its content (``plan.states``), every delete."""
    writes = IndexWrites()
    for item_id, u in upserts.items():
        writes.add("upsert", item_id, upsert=u)
    for c in plan.changes.values():
        if c.kind == "patch":
            writes.add("patch", c.item_id, patch=attribute_patch(plan.states[c.item_id].attributes))
        elif c.kind == "delete":
            writes.add("delete", c.item_id)
    return writes


def item_partition(item_id: str, partitions: list[int]) -> int:
    """The partition of an item's records, whatever their key (``partitions`` sorted): Kafka's
    default choice for a record keyed by the item id alone (murmur2, as the Java client)."""
    from kafka.partitioner.default import murmur2

    return partitions[(murmur2(item_id.encode()) & 0x7FFFFFFF) % len(partitions)]


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


def _own(value: dict | str | None) -> dict[str, str]:
    """A version's own payload keys as a record carries them (records written before the
    photo sketch travelled carry the ``_x`` blob alone, or null)."""
    if isinstance(value, dict):
        return value
    return {} if value is None else {EXPLAIN_KEY: value}
