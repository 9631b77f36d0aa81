"""Catalog events (``mrse.v1.CatalogEvent``): parsed from protobuf or its JSON form, validated.

The JSON form is protobuf's own JSON mapping: ``{"event_id": ..., "item_id": ..., "version":
..., "ts_ms": ..., "upsert": {"title": ..., "price": 9.5, "photo": "images/x.jpg"}}``, with
``"patch": {"price": 7.0, "in_stock": false}`` or ``"delete": {}`` in place of ``upsert``.
Every rejection has a short ``reason`` (dead-letter header, counter label) and a message.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from google.protobuf import json_format
from google.protobuf.message import DecodeError

from mrse.data.dataset import Dataset
from mrse.streaming.events import MIN_TS, json_object, looks_like_text, text_field
from mrse.v1 import catalog_pb2

MAX_EVENT_BYTES = 64 * 1024
MAX_PRICE = 1e9
FUTURE_SLACK_S = 86_400.0
TEXT_LIMITS = {"title": 512, "description": 8192, "brand": 256, "category": 256, "photo": 1024}
MAX_ID_CHARS = 256
KINDS = ("upsert", "patch", "delete")
Reason = Literal[
    "oversized",
    "bad_json",
    "bad_proto",
    "missing_field",
    "unknown_type",
    "bad_timestamp",
    "bad_version",
    "bad_price",
    "bad_stock",
    "oversized_field",
    "invalid_text",
    "photo_not_allowed",
    "photo_too_large",
    "photo_unreadable",
]


class CatalogEventError(ValueError):
    """A catalog event that must go to the dead-letter topic; ``reason`` is one of ``Reason``."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


@dataclass(frozen=True)
class ItemContent:
    """What an item's vectors are computed from: a change here means re-encoding."""

    title: str = ""
    description: str = ""
    brand: str = ""
    category: str = ""
    photo: str = ""  # as given in the event; the worker resolves it under its photo roots


@dataclass(frozen=True)
class CatalogEvent:
    """A validated event. ``attributes``: the payload fields it sets (``price``: float or None
    for unknown; ``in_stock``: bool); an upsert sets both, a patch only those it names."""

    event_id: str
    item_id: str
    version: int
    ts: float
    kind: Literal["upsert", "patch", "delete"]
    content: ItemContent | None = None
    attributes: dict = field(default_factory=dict)

    def to_proto(self) -> bytes:
        msg = catalog_pb2.CatalogEvent(
            event_id=self.event_id,
            item_id=self.item_id,
            version=self.version,
            ts_ms=int(round(self.ts * 1000)),
        )
        if self.kind == "delete":
            msg.delete.SetInParent()
        elif self.kind == "patch":
            msg.patch.SetInParent()
            _set_attributes(msg.patch, self.attributes)
        else:
            assert self.content is not None
            c = self.content
            msg.upsert.title, msg.upsert.description = c.title, c.description
            msg.upsert.brand, msg.upsert.category, msg.upsert.photo = c.brand, c.category, c.photo
            _set_attributes(msg.upsert, self.attributes)
        return msg.SerializeToString()

    def to_json(self) -> bytes:
        msg = catalog_pb2.CatalogEvent()
        msg.ParseFromString(self.to_proto())
        return json_format.MessageToJson(
            msg, indent=None, preserving_proto_field_name=True
        ).encode()


def dataset_items(dataset: Dataset) -> Iterator[tuple[str, ItemContent, dict]]:
    """(item id, content, attributes) of every item of a dataset, as an upsert would carry
    them: a dataset's items are in stock; an unknown (NaN) price is None."""
    for r in dataset.items.itertuples(index=False):
        price = None if r.price is None or math.isnan(r.price) else float(r.price)
        content = ItemContent(r.title, r.description, r.brand, r.category, r.image)
        yield r.item_id, content, {"price": price, "in_stock": True}


def _set_attributes(msg, attributes: dict) -> None:
    if attributes.get("price") is not None:
        msg.price = attributes["price"]
    if "in_stock" in attributes:
        msg.in_stock = attributes["in_stock"]


def _from_proto(payload: bytes) -> dict:
    msg = catalog_pb2.CatalogEvent()
    try:
        msg.ParseFromString(payload)
    except (DecodeError, RecursionError, ValueError) as exc:
        raise CatalogEventError("bad_proto", "not a mrse.v1.CatalogEvent protobuf") from exc
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


# protobuf's JSON mapping writes lowerCamelCase names by default; both spellings are accepted
_CAMEL = {"eventId": "event_id", "itemId": "item_id", "tsMs": "ts_ms", "inStock": "in_stock"}


def _snake_case(data: dict) -> dict:
    out = {_CAMEL.get(k, k): v for k, v in data.items()}
    for kind in KINDS:
        if isinstance(out.get(kind), dict):
            out[kind] = {_CAMEL.get(k, k): v for k, v in out[kind].items()}
    return out


def _integer(data: dict, name: str, reason: Reason) -> int | None:
    """An int64 field: a JSON number or, as protobuf's JSON writes int64, a decimal string."""
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise CatalogEventError(reason, f"{name} must be an integer, got {value!r:.40}")
    if not 0 <= value < 2**63:
        raise CatalogEventError(reason, f"{name} must be between 0 and 2^63")
    return value


def _attributes(body: dict, upsert: bool) -> dict:
    out: dict = {}
    if "price" in body and body["price"] is not None:
        price = body["price"]
        if isinstance(price, str):  # protobuf's JSON writes NaN and Infinity as strings
            price = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}.get(price)
        if isinstance(price, bool) or not isinstance(price, int | float):
            raise CatalogEventError(
                "bad_price", f"price must be a number, got {body['price']!r:.40}"
            )
        if not (math.isfinite(price) and 0 <= price <= MAX_PRICE):
            raise CatalogEventError("bad_price", f"price must be between 0 and {MAX_PRICE:g}")
        out["price"] = float(price)
    elif upsert:
        out["price"] = None
    if "in_stock" in body and body["in_stock"] is not None:
        if not isinstance(body["in_stock"], bool):
            raise CatalogEventError("bad_stock", "in_stock must be true or false")
        out["in_stock"] = body["in_stock"]
    elif upsert:
        out["in_stock"] = True
    return out


def parse_catalog_event(payload: bytes, now: float | None = None) -> CatalogEvent:
    """Decode and validate one message (JSON if it reads as text, else protobuf).

    Raises:
        CatalogEventError: the message must be dead-lettered; ``.reason`` says why.
    """
    if len(payload) > MAX_EVENT_BYTES:
        raise CatalogEventError("oversized", f"{len(payload)} bytes > {MAX_EVENT_BYTES}")
    if not payload.strip():
        raise CatalogEventError("bad_json", "empty message")
    if payload.lstrip()[:1] == b"{" or looks_like_text(payload):
        data = _snake_case(json_object(payload, "mrse.v1.CatalogEvent", CatalogEventError))
    else:
        data = _from_proto(payload)
    event_id = text_field(data, "event_id", True, CatalogEventError, MAX_ID_CHARS)
    item_id = text_field(data, "item_id", True, CatalogEventError, MAX_ID_CHARS)
    assert event_id and item_id
    kinds = [k for k in KINDS if k in data]
    if len(kinds) != 1:
        raise CatalogEventError(
            "unknown_type", f"exactly one of {', '.join(KINDS)} is needed, got {kinds or 'none'}"
        )
    kind = kinds[0]
    body = data[kind] if data[kind] is not None else {}
    if not isinstance(body, dict):
        raise CatalogEventError("bad_json", f"{kind} must be an object")
    ts_ms = _integer(data, "ts_ms", "bad_timestamp")
    version = _integer(data, "version", "bad_version") or ts_ms
    if ts_ms is None:
        raise CatalogEventError("missing_field", "field 'ts_ms' is required")
    ts = ts_ms / 1000.0
    now = time.time() if now is None else now
    if ts < MIN_TS or ts > now + FUTURE_SLACK_S:
        raise CatalogEventError(
            "bad_timestamp", f"ts {ts:.0f} is before 1990 or more than a day ahead"
        )
    if not version:
        raise CatalogEventError("bad_version", "version must be > 0 (or leave it out: ts_ms)")
    content = None
    if kind == "upsert":
        texts = {
            name: text_field(body, name, False, CatalogEventError, limit) or ""
            for name, limit in TEXT_LIMITS.items()
        }
        content = ItemContent(**texts)
        if not (content.title or content.description or content.photo):
            raise CatalogEventError(
                "missing_field", "an upsert needs a title, description or photo"
            )
    attributes = _attributes(body, upsert=kind == "upsert") if kind != "delete" else {}
    if kind == "patch" and not attributes:
        raise CatalogEventError("missing_field", "a patch needs price or in_stock")
    return CatalogEvent(event_id, item_id, version, ts, kind, content, attributes)  # type: ignore[arg-type]
