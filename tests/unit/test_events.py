from __future__ import annotations

import json

import pytest

from mrse.streaming.events import MAX_EVENT_BYTES, Event, EventError, parse_event

NOW = 1_700_000_000.0
ITEMS = {"i1", "i2"}


def _json(**fields) -> bytes:
    base = {
        "event_id": "e1",
        "user_id": "u1",
        "item_id": "i1",
        "type": "click",
        "ts_ms": 1_600_000_000_000,
    }
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...}).encode()


def test_json_and_proto_round_trip_to_the_same_event():
    event = Event("e1", "u1", "i2", "purchase", 1_600_000_000.5, "black top")
    assert parse_event(event.to_json(), ITEMS, NOW) == event
    assert parse_event(event.to_proto(), ITEMS, NOW) == event


def test_query_is_optional_and_seconds_are_accepted():
    e = parse_event(_json(ts_ms=..., ts=1_600_000_000), ITEMS, NOW)
    assert e.query is None and e.ts == 1_600_000_000.0


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "bad_json"),
        (b"[1, 2]", "bad_proto"),  # not JSON-object-shaped: tried as protobuf
        (_json(user_id=...), "missing_field"),
        (_json(item_id=""), "missing_field"),
        (_json(ts_ms=...), "missing_field"),
        (_json(type="hover"), "bad_type"),
        (_json(ts_ms=0), "bad_timestamp"),
        (_json(ts_ms=(NOW + 10 * 86_400) * 1000), "bad_timestamp"),
        (_json(ts_ms="yesterday"), "bad_timestamp"),
        (_json(item_id="zz"), "unknown_item"),
        (_json(query="x" * 600), "oversized_field"),
        (b"{" + b" " * MAX_EVENT_BYTES + b"}", "oversized"),
        (b"\xff\xfe\x00garbage", "bad_proto"),
    ],
)
def test_malformed_events_are_rejected_with_a_reason(payload, reason):
    with pytest.raises(EventError) as err:
        parse_event(payload, ITEMS, NOW)
    assert err.value.reason == reason
