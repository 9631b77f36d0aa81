"""The online profile's schema, declared once.

Every other form follows from ``PROFILE_COLUMNS``: the Feast fields of the
``user_profile_fresh`` view (``feature_repo/definitions.py``), the Arrow schema of its offline
file, the row the stream worker pushes and the profile the server reads back, and the fields a
model's FeatureService serves (all but the worker's idempotency window). Light on purpose: Feast's
own CLI imports it through the definitions file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from mrse.features.profile import ProfileState

Kind = Literal["vector", "float", "int", "strings", "floats"]
ENTITY_KEY = "user_id"
TIMESTAMP = "event_timestamp"
VIEW = "user_profile_fresh"  # the feature view the worker pushes to and the server reads
PUSH_SOURCE = "user_profile_push"


@dataclass(frozen=True)
class Column:
    """One stored field. ``attr``: the :class:`ProfileState` attribute it holds (None for the
    worker's bookkeeping); ``kind``: how it is stored (``vector``: little-endian float64 bytes,
    exact and one value to encode instead of one per element)."""

    name: str
    kind: Kind
    attr: str | None
    description: str = ""

    @property
    def model_input(self) -> bool:
        return self.attr is not None


PROFILE_COLUMNS: tuple[Column, ...] = (
    Column("text_sum", "vector", "text_sum", "decayed sum of text vectors, <f8 bytes"),
    Column("text_weight", "float", "text_weight"),
    Column("image_sum", "vector", "image_sum", "decayed sum of photo vectors, <f8 bytes"),
    Column("image_weight", "float", "image_weight"),
    Column("ref_ts", "float", "ref_ts", "newest event time, unix seconds"),
    Column("history_length", "int", "count"),
    Column("recent_items", "strings", "recent_items"),
    Column("recent_ts", "floats", "recent_ts"),
    Column("recent_categories", "strings", "recent_categories"),
    Column("applied_event_ids", "strings", None, "idempotency window of the stream worker"),
)
PROFILE_FIELDS = tuple(c.name for c in PROFILE_COLUMNS)
MODEL_FIELDS = tuple(c.name for c in PROFILE_COLUMNS if c.model_input)


def feast_fields() -> list:
    """The Feast ``Field`` list of the profile view."""
    from feast import Field
    from feast.types import Array, Bytes, Float64, Int64, String

    dtype = {
        "vector": Bytes, "float": Float64, "int": Int64,
        "strings": Array(String), "floats": Array(Float64),
    }  # fmt: skip
    return [
        Field(name=c.name, dtype=dtype[c.kind], description=c.description) for c in PROFILE_COLUMNS
    ]


def arrow_schema():
    """The Arrow schema of the profile view's offline file (entity key and timestamp first)."""
    import pyarrow as pa

    arrow = {
        "vector": pa.binary(), "float": pa.float64(), "int": pa.int64(),
        "strings": pa.list_(pa.string()), "floats": pa.list_(pa.float64()),
    }  # fmt: skip
    return pa.schema(
        [(ENTITY_KEY, pa.string()), (TIMESTAMP, pa.timestamp("us", tz="UTC"))]
        + [(c.name, arrow[c.kind]) for c in PROFILE_COLUMNS]
    )


def _encode(kind: Kind, value: Any) -> Any:
    if kind == "vector":
        return np.ascontiguousarray(value, dtype="<f8").tobytes()
    if kind == "float":
        return float(value)
    if kind == "int":
        return int(value)
    if kind == "floats":
        return [float(v) for v in value]
    return list(value)


def _decode(kind: Kind, value: Any) -> Any:
    if kind == "vector":
        return np.frombuffer(value, dtype="<f8").astype(np.float64)  # a writable copy
    if kind == "float":
        return float(value)
    if kind == "int":
        return int(value)
    if kind == "floats":
        return tuple(float(v) for v in value or ())
    return tuple(value or ())


def to_row(state: ProfileState, applied_event_ids: list[str]) -> dict[str, Any]:
    """The stored values of one profile (without entity key and timestamp)."""
    return {
        c.name: _encode(c.kind, getattr(state, c.attr) if c.attr else applied_event_ids)
        for c in PROFILE_COLUMNS
    }


def from_row(values: Mapping[str, Any]) -> tuple[ProfileState, list[str]]:
    """(state, applied event ids) from one row of stored values; the ids are empty when the
    row does not carry them (a read of ``MODEL_FIELDS`` only)."""
    attrs = {c.attr: _decode(c.kind, values[c.name]) for c in PROFILE_COLUMNS if c.attr}
    applied = values.get("applied_event_ids")
    return ProfileState(**attrs), list(applied or ())
