"""Clickstream events: parsed from JSON or ``mrse.v1.ClickEvent`` protobuf, validated.

Every rejection carries a short machine-readable ``reason`` (for dead-letter routing and
counters) and a message a person can act on.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Container
from dataclasses import dataclass
from typing import Literal

from google.protobuf.message import DecodeError

from mrse.v1 import events_pb2

MAX_EVENT_BYTES = 16 * 1024
MAX_FIELD_CHARS = 512
MIN_TS = 631_152_000.0  # 1990-01-01
FUTURE_SLACK_S = 86_400.0  # clocks drift; a day ahead of now is the most we accept
EVENT_TYPES = ("click", "purchase")
Reason = Literal[
    "oversized",
    "bad_json",
    "bad_proto",
    "missing_field",
    "bad_type",
    "bad_timestamp",
    "oversized_field",
    "invalid_text",
    "unknown_item",
]


class EventError(ValueError):
    """An event that must go to the dead-letter topic. ``reason`` is one of ``Reason``."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


@dataclass(frozen=True)
class Event:
    """A validated event. ``ts``: Unix seconds; ``query``: None when unknown."""

    event_id: str
    user_id: str
    item_id: str
    type: str
    ts: float
    query: str | None = None

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "event_id": self.event_id,
                "user_id": self.user_id,
                "item_id": self.item_id,
                "type": self.type,
                "query": self.query,
                "ts_ms": int(round(self.ts * 1000)),
            }
        ).encode()

    def to_proto(self) -> bytes:
        msg = events_pb2.ClickEvent(
            event_id=self.event_id,
            user_id=self.user_id,
            item_id=self.item_id,
            type=events_pb2.PURCHASE if self.type == "purchase" else events_pb2.CLICK,
            query=self.query or "",
            ts_ms=int(round(self.ts * 1000)),
        )
        return msg.SerializeToString()


def looks_like_text(payload: bytes) -> bool:
    """UTF-8 with no control characters but whitespace: meant as JSON, not protobuf (a
    message with two or more fields always holds a control byte, the second tag)."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\t\r\n" for c in text)


def json_object(payload: bytes, message: str, error: type[ValueError]) -> dict:
    """``payload`` as a JSON object, else ``error("bad_json", why)`` (``message``: the protobuf
    message it could have been, for the error text)."""
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        if payload.lstrip()[:1] not in (b"{", b"["):
            raise error("bad_json", f"plain text, not a JSON object nor a {message}") from exc
        raise error("bad_json", f"not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise error("bad_json", "JSON nested too deeply") from exc
    if not isinstance(data, dict):
        raise error("bad_json", f"expected a JSON object, got {type(data).__name__}")
    return data


def _from_json(payload: bytes) -> dict:
    data = json_object(payload, "mrse.v1.ClickEvent", EventError)
    if "ts_ms" not in data and "ts" in data:
        # accept seconds (number) for convenience
        ts = data["ts"]
        data["ts_ms"] = (
            ts * 1000 if isinstance(ts, int | float) and not isinstance(ts, bool) else ts
        )
    return data


def _from_proto(payload: bytes) -> dict:
    msg = events_pb2.ClickEvent()
    try:
        msg.ParseFromString(payload)
    except (DecodeError, RecursionError, ValueError) as exc:  # invalid UTF-8 is a DecodeError
        raise EventError("bad_proto", "not a mrse.v1.ClickEvent protobuf") from exc
    kind = {events_pb2.CLICK: "click", events_pb2.PURCHASE: "purchase"}.get(msg.type, "")
    return {
        "event_id": msg.event_id,
        "user_id": msg.user_id,
        "item_id": msg.item_id,
        "type": kind,
        "query": msg.query or None,
        "ts_ms": msg.ts_ms or None,
    }


def text_field(
    data: dict,
    name: str,
    required: bool,
    error: type[ValueError] = EventError,
    max_chars: int = MAX_FIELD_CHARS,
) -> str | None:
    """A string field: None when absent or empty (``missing_field`` if ``required``); refused
    (``error(reason, message)``) when not a string, longer than ``max_chars``, not valid
    Unicode or holding a NUL."""
    value = data.get(name)
    if value is None or value == "":
        if required:
            raise error("missing_field", f"field {name!r} is required")
        return None
    if not isinstance(value, str):
        raise error("missing_field", f"field {name!r} must be a string")
    if len(value) > max_chars:
        raise error("oversized_field", f"field {name!r} longer than {max_chars}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate escaped in JSON ("\ud800")
        raise error("invalid_text", f"field {name!r} is not valid Unicode text") from exc
    if "\x00" in value:
        raise error("invalid_text", f"field {name!r} contains a NUL character")
    return value


def parse_event(
    payload: bytes,
    known_items: Container[str] | None = None,
    now: float | None = None,
) -> Event:
    """Decode and validate one message (JSON if it starts with ``{``, else protobuf).

    Raises:
        EventError: the message must be dead-lettered; ``.reason`` says why.
    """
    if len(payload) > MAX_EVENT_BYTES:
        raise EventError("oversized", f"{len(payload)} bytes > {MAX_EVENT_BYTES}")
    if not payload.strip():
        raise EventError("bad_json", "empty message")
    if payload.lstrip()[:1] == b"{" or looks_like_text(payload):
        data = _from_json(payload)
    else:
        data = _from_proto(payload)
    event_id = text_field(data, "event_id", required=True)
    user_id = text_field(data, "user_id", required=True)
    item_id = text_field(data, "item_id", required=True)
    kind = text_field(data, "type", required=True)
    query = text_field(data, "query", required=False)
    if kind not in EVENT_TYPES:
        raise EventError("bad_type", f"type must be one of {EVENT_TYPES}, got {kind!r}")
    ts_ms = data.get("ts_ms")
    if ts_ms is None:
        raise EventError("missing_field", "field 'ts_ms' is required")
    if isinstance(ts_ms, bool) or not isinstance(ts_ms, int | float):
        raise EventError("bad_timestamp", f"ts_ms must be a number, got {type(ts_ms).__name__}")
    try:
        ts = float(ts_ms) / 1000.0
    except OverflowError:
        ts = math.inf
    if not math.isfinite(ts):
        raise EventError("bad_timestamp", "ts_ms must be a finite number")
    now = time.time() if now is None else now
    if ts < MIN_TS or ts > now + FUTURE_SLACK_S:
        raise EventError("bad_timestamp", f"ts {ts:.0f} is before 1990 or more than a day ahead")
    if known_items is not None and item_id not in known_items:
        raise EventError("unknown_item", f"item {item_id!r} is not in the catalog")
    assert event_id and user_id and item_id  # narrowed by _text(required=True)
    return Event(event_id=event_id, user_id=user_id, item_id=item_id, type=kind, ts=ts, query=query)
