"""Catalog events, the batch planner, index-write folding and photo roots, on raw values."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mrse.catalog.encoding import resolve_photo
from mrse.catalog.events import (
    MAX_EVENT_BYTES,
    CatalogEvent,
    CatalogEventError,
    ItemContent,
    parse_catalog_event,
)
from mrse.catalog.plan import plan_batch
from mrse.catalog.state import CatalogState, ItemState
from mrse.catalog.writes import IndexWrites, Upsert, for_versions

NOW = time.time()
TS = int(NOW * 1000)


def _j(**fields) -> bytes:
    return json.dumps({"event_id": "e", "item_id": "i", "ts_ms": TS, **fields}).encode()


def test_round_trips_through_protobuf_and_json():
    content = ItemContent("Red dress", "Long", "Acme", "Dresses", "images/1.jpg")
    for e in [
        CatalogEvent(
            "e1", "i1", 7, TS / 1000, "upsert", content, {"price": 9.5, "in_stock": False}
        ),
        CatalogEvent(
            "e2", "i1", 8, TS / 1000, "upsert", content, {"price": None, "in_stock": True}
        ),
        CatalogEvent("e3", "i1", 9, TS / 1000, "patch", None, {"price": 0.0}),
        CatalogEvent("e4", "i1", 10, TS / 1000, "patch", None, {"in_stock": True}),
        CatalogEvent("e5", "i1", 11, TS / 1000, "delete"),
    ]:
        assert parse_catalog_event(e.to_proto(), NOW) == e
        assert parse_catalog_event(e.to_json(), NOW) == e


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{", "bad_json"),
        (b"hello", "bad_json"),
        (b"\x0a\xff\xff", "bad_proto"),
        (_j(item_id=""), "missing_field"),
        (_j(), "unknown_type"),
        (_j(patch={}, delete={}), "unknown_type"),
        (_j(rename={}), "unknown_type"),
        (_j(patch={}), "missing_field"),
        (_j(patch={"price": -1}), "bad_price"),
        (_j(patch={"price": True}), "bad_price"),
        (_j(patch={"price": "NaN"}), "bad_price"),
        (_j(patch={"price": 1e300}), "bad_price"),
        (_j(patch={"in_stock": "no"}), "bad_stock"),
        (_j(upsert={"brand": "x"}), "missing_field"),
        (_j(upsert={"title": "x" * 600}), "oversized_field"),
        (_j(upsert={"title": "a\x00b"}), "invalid_text"),
        (_j(ts_ms=5, delete={}), "bad_timestamp"),
        (_j(ts_ms="soon", delete={}), "bad_timestamp"),
        (_j(version=-3, delete={}), "bad_version"),
        (b"{" + b" " * MAX_EVENT_BYTES + b"}", "oversized"),
        (b'{"event_id": "e", "item_id": "\\ud800", "ts_ms": 1, "delete": {}}', "invalid_text"),
    ],
)
def test_bad_events_name_their_reason(payload, reason):
    with pytest.raises(CatalogEventError) as err:
        parse_catalog_event(payload, NOW)
    assert err.value.reason == reason


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_parse_or_are_refused_with_a_reason(payload):
    try:
        parse_catalog_event(payload, NOW)
    except CatalogEventError as exc:
        assert exc.reason


def _ev(item, version, kind, content=None, **attrs):
    return CatalogEvent(f"{item}{version}", item, version, NOW, kind, content, attrs)


A = ItemContent("a", "", "b", "c", "")
B = ItemContent("a2", "", "b", "c", "")


def test_plan_encodes_content_patches_attributes_and_ignores_stale_events():
    known = {"x": ItemState(5, content=A, attributes={"price": 1.0, "in_stock": True})}
    plan = plan_batch(
        [
            _ev("x", 4, "patch", price=9.0),  # older than what was applied: stale
            _ev("x", 6, "upsert", A, price=2.0, in_stock=True),  # same content: a patch
            _ev("y", 1, "upsert", A, price=3.0, in_stock=True),  # new: encode
            _ev("y", 2, "patch", in_stock=False),  # folded into the encode
            _ev("z", 1, "patch", price=4.0),  # unknown here: a patch of the snapshot's item
            _ev("w", 1, "upsert", A, price=1.0, in_stock=True),
            _ev("w", 2, "delete"),  # net: a delete
            _ev("w", 1, "upsert", B, price=1.0, in_stock=True),  # after the delete: stale
        ],
        known,
    )
    c = plan.changes
    assert c["x"].kind == "patch" and c["x"].attributes == {"price": 2.0, "in_stock": True}
    assert c["y"].kind == "encode" and c["y"].attributes == {"price": 3.0, "in_stock": False}
    assert c["z"].kind == "patch" and c["z"].attributes == {"price": 4.0}
    assert c["w"].kind == "delete"
    assert [e.version for e in plan.stale] == [4, 1]
    assert plan.states["w"].deleted and plan.states["x"].version == 6
    # content changed: re-encoded; price that became unknown: re-encoded (a patch cannot unset)
    again = plan_batch([_ev("x", 7, "upsert", B, price=2.0, in_stock=True)], plan.states)
    assert again.changes["x"].kind == "encode"
    unknown = plan_batch([_ev("x", 7, "upsert", A, price=None, in_stock=True)], known)
    assert unknown.changes["x"].kind == "encode"


def test_state_survives_reopening(tmp_path):
    state = CatalogState(tmp_path / "s.sqlite")
    state.put_many({"a": ItemState(3, False, A, {"price": 1.5}), "b": ItemState(4, True)})
    state.close()
    again = CatalogState(tmp_path / "s.sqlite")
    assert again.get_many(["a", "b", "c"]) == {
        "a": ItemState(3, False, A, {"price": 1.5}),
        "b": ItemState(4, True),
    }
    assert set(again.items()) == {"a", "b"}


def test_index_writes_fold_in_order_and_survive_the_topic_encoding():
    vec = np.arange(4, dtype=np.float32)
    w = IndexWrites()
    w.add("patch", "a", patch={"price": 1.0})
    w.add("upsert", "a", upsert=Upsert({"category": "c"}, {"v1": (vec, {"_x": "xx"})}))
    w.add("patch", "a", patch={"price": 2.0})  # merged into the upsert
    w.add("upsert", "b", upsert=Upsert({}, {"v1": (vec, {})}))
    w.add("delete", "b")
    w.add("patch", "b", patch={"price": 3.0})  # deleted: stays deleted
    w.add("patch", "c", patch={"price": 4.0})
    w.add("patch", "c", patch={"stock": "out"})
    assert w.upserts["a"].payload == {"category": "c", "price": 2.0}
    assert w.deletes == {"b"} and w.patches == {"c": {"price": 4.0, "stock": "out"}}
    records = list(w.to_records())
    back = IndexWrites.from_records(v for _, _, v, _ in records)
    headers = {i: h for i, _, _, h in records}
    assert for_versions(headers["a"], ["v1"]) and not for_versions(headers["a"], ["v2"])
    assert for_versions(headers["c"], ["v2"])  # a patch concerns every version
    assert back.deletes == w.deletes and back.patches == w.patches
    assert back.upserts["a"].payload == w.upserts["a"].payload
    np.testing.assert_array_equal(back.upserts["a"].vectors["v1"][0], vec)
    assert back.upserts["a"].vectors["v1"][1] == {"_x": "xx"}
    # a record written before the photo sketch travelled: the explanation blob alone, or null
    old = [json.dumps({"op": "upsert", "item_id": i, "payload": {}, "vectors": {"v1": ["", b]}})
           for i, b in (("x", "xx"), ("y", None))]  # fmt: skip
    again = IndexWrites.from_records(v.encode() for v in old)
    assert again.upserts["x"].vectors["v1"][1] == {"_x": "xx"}
    assert again.upserts["y"].vectors["v1"][1] == {}


def test_photos_are_read_only_under_the_photo_roots(tmp_path):
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "p.jpg").write_bytes(b"x")
    (tmp_path / "secret.jpg").write_bytes(b"x")
    (root / "link.jpg").symlink_to(tmp_path / "secret.jpg")
    assert resolve_photo("sub/p.jpg", (root,)) == str(root / "sub" / "p.jpg")
    assert resolve_photo(f"file://{root}/sub/p.jpg", (root,)) == str(root / "sub" / "p.jpg")
    assert resolve_photo("", (root,)) == ""
    for bad in ["../secret.jpg", str(tmp_path / "secret.jpg"), "link.jpg",
                "http://example.com/p.jpg", "/etc/passwd"]:  # fmt: skip
        with pytest.raises(CatalogEventError) as err:
            resolve_photo(bad, (root,))
        assert err.value.reason == "photo_not_allowed"
    with pytest.raises(CatalogEventError):
        resolve_photo("sub/p.jpg", ())
    with (root / "huge.jpg").open("wb") as f:  # sparse: 30 MiB without writing them
        f.truncate(30 * 1024 * 1024)
    with pytest.raises(CatalogEventError) as err:
        resolve_photo("huge.jpg", (root,))
    assert err.value.reason == "photo_too_large"


def test_a_decompression_bomb_is_refused_from_its_header():
    import io

    from PIL import Image

    from mrse.encoders.image import ImageDecodeError, preprocess

    buf = io.BytesIO()
    Image.new("1", (20_000, 20_000)).save(buf, format="PNG")  # 400 M pixels in a small file
    assert len(buf.getvalue()) < 1_000_000
    with pytest.raises(ImageDecodeError, match="pixels"):
        preprocess(buf.getvalue())


def _apply_changes(index: dict, plan) -> None:
    """A stand-in index: item -> (content, payload attributes)."""
    for item, c in plan.changes.items():
        if c.kind == "delete":
            index.pop(item, None)
        elif c.kind == "encode":
            index[item] = (c.content, dict(c.attributes))
        elif item in index:  # a patch of a point that is not there changes nothing
            index[item][1].update(c.attributes)


_EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.integers(1, 12),
        st.sampled_from(["upsert-A", "upsert-B", "price", "stock", "delete"]),
        st.sampled_from([1.0, 2.0, None]),
    ),
    max_size=25,
)


def _to_events(raw):
    out = []
    for item, version, kind, price in raw:
        if kind.startswith("upsert"):
            content = A if kind.endswith("A") else B
            out.append(_ev(item, version, "upsert", content, price=price, in_stock=price != 2.0))
        elif kind == "price":
            out.append(_ev(item, version, "patch", price=price or 3.0))
        elif kind == "stock":
            out.append(_ev(item, version, "patch", in_stock=price is None))
        else:
            out.append(_ev(item, version, "delete"))
    return out


@settings(max_examples=300, deadline=None)
@given(_EVENTS, st.integers(1, 5))
def test_batch_boundaries_and_replays_do_not_change_the_outcome(raw, size):
    """Whatever the batches (a crash redelivers from any point), the index ends the same; the
    whole stream replayed afterwards changes nothing."""
    events = _to_events(raw)
    snapshot = {"a": (None, {"price": 9.0}), "c": (None, {"price": 9.0})}  # indexed by `mrse index`

    def run(batch_size: int) -> tuple[dict, dict]:
        index = {k: (c, dict(a)) for k, (c, a) in snapshot.items()}
        state: dict = {}
        for s in range(0, len(events), batch_size):
            plan = plan_batch(events[s : s + batch_size], state)
            _apply_changes(index, plan)
            state.update(plan.states)
        return index, state

    one_by_one, state = run(1)
    batched, _ = run(size)
    assert batched == one_by_one
    replay = plan_batch(events, state)
    assert not replay.changes and len(replay.stale) == len(events)


def _compacted(log: list[tuple[bytes, bytes]]) -> list[bytes]:
    """What Kafka's log compaction may leave: the newest record of each key, in log order."""
    newest = {key: offset for offset, (key, _) in enumerate(log)}
    return [value for offset, (key, value) in enumerate(log) if newest[key] == offset]


def _replayed(values: list[bytes], where) -> dict:
    """The index topic's records applied to a new Edge shard: item -> (vector, payload)."""
    from mrse.index.base import SearchFilter
    from mrse.index.edge import EdgeIndex

    index = EdgeIndex(where, 4)
    try:
        for value in values:  # one record per batch: the follower's most interleaved case
            IndexWrites.from_records([value]).apply({"v": index})
        hits = index.among(["a", "b", "c"], SearchFilter(in_stock=(True, False)))
        vectors = index.vectors(["a", "b", "c"])
        return {h.item_id: (vectors[h.item_id].round(4).tolist(), h.payload) for h in hits}
    finally:
        index.close()


@settings(max_examples=40, deadline=None)
@given(_EVENTS, st.integers(1, 5))
@example([("a", 1, "upsert-A", 1.0), ("a", 2, "price", 2.0), ("a", 3, "stock", None)], 1)
def test_a_compacted_index_topic_keeps_every_items_latest_state(raw, size):
    """The worker's records for any events, in any batches: replaying only what compaction
    keeps (the newest record per key) gives the index that the whole log gives."""
    import tempfile

    from mrse.catalog.writes import plan_writes
    from mrse.index.points import attribute_patch

    events = _to_events(raw)
    state: dict = {}
    log: list[tuple[bytes, bytes]] = []
    for s in range(0, len(events), size):
        plan = plan_batch(events[s : s + size], state)
        upserts = {}
        for c in plan.changes.values():
            if c.kind == "encode":  # the vector says which content it was encoded from
                vec = np.array([1.0, 0.0, 0.0, 0.0] if c.content == A else [0.0, 1.0, 0.0, 0.0])
                upserts[c.item_id] = Upsert(attribute_patch(c.attributes), {"v": (vec, {})})
        log += [(key, value) for _, key, value, _ in plan_writes(plan, upserts).to_records()]
        state.update(plan.states)
    with tempfile.TemporaryDirectory() as tmp:
        whole = _replayed([v for _, v in log], f"{tmp}/whole")
        kept = _compacted(log)
        assert _replayed(kept, f"{tmp}/compacted") == whole
    assert len(kept) <= 2 * len({e.item_id for e in events})  # bounded by the items
