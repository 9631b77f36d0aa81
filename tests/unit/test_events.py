from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
        (b"[1, 2]", "bad_json"),  # JSON, but not an object
        (b"hello, this is not an event", "bad_json"),  # plain text is not called protobuf
        (b"user=u1 item=i1 click", "bad_json"),
        (b"", "bad_json"),
        (b"   \n", "bad_json"),
        (b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}", "bad_json"),  # nesting bomb
        (_json(user_id="\ud800"), "invalid_text"),  # a lone surrogate (JavaScript strings)
        (_json(event_id="a\x00b"), "invalid_text"),
        (_json(ts_ms=10**400), "bad_timestamp"),  # too large for a float
        (_json(ts_ms=True), "bad_timestamp"),
        (_json(event_id=7), "missing_field"),
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


def test_plain_text_proto_bytes_still_parse_as_protobuf():
    """A real ClickEvent can be mostly printable: the text check must not steal it."""
    event = Event("e" * 32, "u" * 40, "i1", "click", 1_600_000_000.0, "a" * 32)
    assert parse_event(event.to_proto(), ITEMS, NOW) == event


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=2048),
        st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.recursive(
            st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
            lambda inner: st.one_of(
                st.lists(inner, max_size=4),
                st.dictionaries(st.text(max_size=10), inner, max_size=4),
            ),
            max_leaves=20,
        ).map(lambda v: json.dumps(v).encode()),
        st.fixed_dictionaries(
            {},
            optional={
                k: st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=30))
                for k in ("event_id", "user_id", "item_id", "type", "query", "ts_ms", "ts")
            },
        ).map(lambda d: json.dumps(d).encode()),
    )
)
def test_any_bytes_parse_to_an_event_or_a_reason(payload):
    """Arbitrary bytes in: a valid event or an EventError with a known reason, never another
    exception (one would stop the worker's batch)."""
    from typing import get_args

    from mrse.streaming.events import Reason

    try:
        event = parse_event(payload, ITEMS, NOW)
    except EventError as exc:
        assert exc.reason in get_args(Reason)
        return
    assert event.item_id in ITEMS and event.type in ("click", "purchase")
    event.to_json().decode("utf-8")  # every accepted field is encodable text
