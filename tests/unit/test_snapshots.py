"""Index snapshots: published whole or not at all, the newest kept, a copy of an open flushed
Edge shard that loads as the shard it was, a new replica's shards and log position restored."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mrse.catalog.follower import OFFSETS_FILE
from mrse.catalog.snapshots import SnapshotConfig, SnapshotStore, restore_missing
from mrse.index.edge import EdgeIndex


def _shard(path, n: int, seed: int = 0, dim: int = 8) -> EdgeIndex:
    rng = np.random.default_rng(seed)
    index = EdgeIndex(path, dim)
    ids = [f"i{k}" for k in range(n)]
    index.upsert(ids, rng.normal(size=(n, dim)).astype(np.float32),
                 [{"category": "c", "price": float(k)} for k in range(n)])  # fmt: skip
    return index


def test_a_published_snapshot_of_an_open_shard_loads_as_that_shard(tmp_path):
    live = _shard(tmp_path / "work" / "v1", 3000, dim=128)  # above the HNSW threshold
    live.optimize()
    live.flush()
    assert live.indexed_vectors() > 0
    store = SnapshotStore(tmp_path / "snaps", "t.index")
    snap = store.write({"v1": live.path}, {0: 42}, {"v1": live.count()})
    query = np.ones(128, np.float32)
    expected = [h.item_id for h in live.search(query, 20)]
    live.upsert(["late"], query[None], [{"category": "c"}])  # the live shard moves on
    assert store.latest(["v1"]) == snap and snap.offsets == {0: 42}
    store.restore(snap, "v1", tmp_path / "replica" / "v1")
    copy = EdgeIndex(tmp_path / "replica" / "v1", 128)
    try:
        assert copy.count() == 3000 and copy.indexed_vectors() > 0  # the graph came with it
        assert [h.item_id for h in copy.search(query, 20)] == expected
    finally:
        copy.close()
        live.close()


def test_only_whole_snapshots_of_the_topic_count_and_the_newest_are_kept(tmp_path):
    src = _shard(tmp_path / "v1", 10)
    src.flush()
    store = SnapshotStore(tmp_path / "snaps", "t.index", keep=2)
    first = store.write({"v1": src.path}, {0: 1}, {"v1": 10})
    (tmp_path / "snaps" / ".123.tmp" / "v1").mkdir(parents=True)  # a writer killed mid-copy
    (tmp_path / "snaps" / "99").mkdir()  # no manifest: not a snapshot
    other = SnapshotStore(tmp_path / "snaps", "other.topic")
    assert other.latest() is None  # another topic's position means nothing here
    second = store.write({"v1": src.path}, {0: 5}, {"v1": 10})
    third = store.write({"v1": src.path}, {0: 9}, {"v1": 10})
    src.close()
    assert [s.offsets for s in store.all()] == [{0: 9}, {0: 5}]
    assert not first.path.exists() and second.path.exists() and third.path.exists()
    assert not list((tmp_path / "snaps").glob(".*.tmp"))  # the leftover was cleared
    assert store.latest(["v1", "v2"]) is None  # no snapshot holds v2


def test_a_new_replica_gets_every_shard_and_the_log_position_from_one_snapshot(tmp_path):
    a, b = _shard(tmp_path / "w" / "v1", 10), _shard(tmp_path / "w" / "v2", 12, seed=1)
    for s in (a, b):
        s.flush()
    store = SnapshotStore(tmp_path / "snaps", "t.index")
    store.write({"v1": a.path, "v2": b.path}, {0: 7, 1: 3}, {"v1": 10, "v2": 12})
    a.close()
    b.close()
    root = tmp_path / "replica"
    (root / "v1").mkdir(parents=True)  # a stale half: replaced, one position for both
    snap = restore_missing(root, ["v1", "v2"], store)
    assert snap is not None and snap.versions == {"v1": 10, "v2": 12}
    assert json.loads((root / OFFSETS_FILE).read_text()) == {"t.index": {"0": 7, "1": 3}}
    for v, n in (("v1", 10), ("v2", 12)):
        index = EdgeIndex(root / v, 8)
        assert index.count() == n
        index.close()
    # shards all present: used as they are (a rebuilt index replays the log itself)
    (root / OFFSETS_FILE).unlink()
    assert restore_missing(root, ["v1", "v2"], store) is None
    assert not (root / OFFSETS_FILE).exists()
    assert restore_missing(tmp_path / "none", ["v3"], store) is None  # nothing holds v3


def test_snapshot_settings_are_checked():
    with pytest.raises(ValueError, match="every_s"):
        SnapshotConfig(root=".", every_s=0)
    with pytest.raises(ValueError, match="keep"):
        SnapshotConfig(root=".", keep=0)


def test_a_shard_is_copied_without_writing_its_holes(tmp_path):
    from mrse.catalog.snapshots import copy_sparse

    src = tmp_path / "sparse.bin"
    with open(src, "wb") as f:
        f.write(b"head")
        f.seek(64 << 20)  # a 64 MB hole
        f.write(b"tail")
    dst = copy_sparse(src, tmp_path / "copy.bin")
    assert dst.read_bytes() == src.read_bytes()
    assert dst.stat().st_blocks * 512 < 1 << 20  # the hole stayed a hole
