"""The live catalog against a real Kafka 2.3: the catalog worker's exactness, dead letters and
crash recovery; a running engine serving its writes with no restart."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from mrse.catalog.service import CatalogFollow, CatalogServiceConfig, build_catalog_worker
from mrse.catalog.worker import CatalogWorkerSettings
from mrse.data import load_dataset
from mrse.experiments.assignment import Arm, Experiment
from mrse.index.base import SearchFilter
from mrse.index.build import IndexConfig, build_index
from mrse.serving.app import ServeConfig, build_engine
from mrse.serving.validation import ValidRequest

from .conftest import SMALL
from .services import KAFKA_HOME

REPO = Path(__file__).resolve().parents[2]
NOW_MS = int(time.time() * 1000)


def _event(item_id: str, version: int, **change) -> bytes:
    return json.dumps(
        {"event_id": f"{item_id}-{version}", "item_id": item_id, "version": version,
         "ts_ms": NOW_MS, **change}
    ).encode()  # fmt: skip


def _send(bootstrap: str, topic: str, records: list[tuple[str | None, bytes]]) -> None:
    from kafka import KafkaProducer

    from mrse.streaming.topics import ensure_topics

    ensure_topics(bootstrap, [topic])
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=4 << 20)
    for key, value in records:
        producer.send(topic, key=key.encode() if key else None, value=value)
    producer.flush()
    producer.close()


def _console_send(kafka, topic: str, key: str, value: bytes) -> None:
    """One keyed record through Kafka's own console producer (a client that is not ours)."""
    tool = KAFKA_HOME / "bin" / "kafka-console-producer.sh"
    subprocess.run(
        [str(tool), "--broker-list", kafka.bootstrap, "--topic", topic,
         "--property", "parse.key=true", "--property", "key.separator=|"],
        input=key.encode() + b"|" + value + b"\n", check=True, capture_output=True,
        env=kafka.env, timeout=120,
    )  # fmt: skip


def _read(bootstrap: str, topic: str) -> list:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=3000)  # fmt: skip
    out = list(consumer)
    consumer.close()
    return out


def _new_photo(src: str, dst: Path) -> None:
    """A photo no encoder has seen (new bytes): a real item's photo, mirrored."""
    img = Image.open(src).convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    buf = io.BytesIO()
    img.save(buf, format="JPEG")
    dst.write_bytes(buf.getvalue())


def _search(engine, query: str, stock=(True,), k: int = 380) -> dict:
    req = ValidRequest(query, None, k, SearchFilter(in_stock=stock), None, "t", None)
    return {r.item_id: r for r in engine.search(req).results}


def _until(check, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("not visible in time")
        time.sleep(0.1)


def test_catalog_changes_are_served_without_restart(kafka, sample_hm, small_run, tmp_path):
    ds = load_dataset(sample_hm)
    items = ds.items.set_index("item_id")
    a, b, c = items.index[:3]
    index = IndexConfig(root=tmp_path / "index")
    build_index(sample_hm, small_run, index, version="v1")
    topics = {"topic": "cat-live", "dead_letter_topic": "cat-live.dlq"}
    engine = build_engine(
        ServeConfig(
            data=sample_hm, models={"v1": small_run},
            experiments=(Experiment("e", (Arm("a", 1.0, "v1", "mrse_v1", "v1"),)),),
            default_experiment="e", index=index, torch_threads=0,
            catalog=CatalogFollow(kafka.bootstrap, "cat-live.index"),
        )
    )  # fmt: skip
    worker = build_catalog_worker(
        CatalogServiceConfig(
            worker=CatalogWorkerSettings(kafka.bootstrap, group_id="live", **topics),
            models={"v1": small_run}, index=index, index_topic="cat-live.index",
            state=tmp_path / "state.sqlite", photo_roots=(tmp_path / "photos", sample_hm),
        )
    )  # fmt: skip
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert worker.ready.wait(60)
        before = _search(engine, items.loc[a, "title"])
        assert {a, b, c} <= set(before)
        (tmp_path / "photos").mkdir()
        _new_photo(items.loc[a, "image"], tmp_path / "photos" / "new.jpg")
        (tmp_path / "photos" / "broken.jpg").write_bytes(b"\xff\xd8 not a JPEG after all")
        new = {"title": "Zebra-striped velvet opera cloak", "description": "A long cloak.",
               "brand": "Atelier", "category": "Ladieswear > Outerwear", "price": 0.5,
               "photo": "new.jpg"}  # fmt: skip
        _console_send(kafka, "cat-live", a, _event(a, 10, patch={"price": 0.123}))
        good = [
            (b, _event(b, 10, patch={"in_stock": False})),
            (c, _event(c, 10, delete={})),
            ("new-1", _event("new-1", 10, upsert=new)),
            (
                "new-2",
                _event(
                    "new-2", 10, upsert={**new, "title": "Walnut desk lamp", "photo": "/etc/passwd"}
                ),
            ),  # fmt: skip
            (
                "new-3",
                _event(
                    "new-3",
                    10,
                    upsert={**new, "title": "Broken photo frame", "photo": "broken.jpg"},
                ),
            ),  # fmt: skip
            (a, _event(a, 5, patch={"price": 99.0})),  # older than what was applied: stale
            (a, _event(a, 10, patch={"price": 0.123})),  # the console's event again: stale
        ]
        bad = [
            (None, b"{"),
            (
                "x",
                json.dumps({"event_id": "e", "version": 3, "ts_ms": NOW_MS, "delete": {}}).encode(),
            ),  # fmt: skip
            ("y", _event("y", 3, patch={"price": -4})),
            ("z", _event("z", 3, upsert={**new, "price": "cheap"})),
            ("w", _event("w", 3, rename={"to": "v"})),
            ("v", b"{" + b" " * (70 * 1024) + b"}"),
        ]
        t0 = time.monotonic()
        _send(kafka.bootstrap, "cat-live", good + bad)
        _until(lambda: "new-1" in _search(engine, "zebra striped velvet cloak"))
        seen = time.monotonic() - t0
        now = _search(engine, items.loc[a, "title"])
        assert now[a].payload["price"] == pytest.approx(0.123)
        assert b not in now and c not in now
        sold_out = _search(engine, items.loc[a, "title"], stock=(False,))
        assert set(sold_out) == {b}
        assert b in _search(engine, items.loc[a, "title"], stock=(True, False))
        # photos that could not be used: served from their text, and dead-lettered
        assert "new-2" in _search(engine, "walnut desk lamp")
        assert "new-3" in _search(engine, "broken photo frame")
        # a new item's explanation comes from its payload like every other item's
        assert now.get("new-1") is None or now["new-1"].explanation is not None
        # the batch's dead letters land after its index writes: wait for the whole batch
        _until(lambda: worker.stats.consumed >= 1 + len(good) + len(bad))
        letters = _read(kafka.bootstrap, "cat-live.dlq")
        reasons = sorted(dict(h for h in r.headers)["reason"].decode() for r in letters)
        assert reasons == sorted(["bad_json", "missing_field", "bad_price", "bad_price",
                                  "unknown_type", "oversized", "photo_not_allowed",
                                  "photo_unreadable"])  # fmt: skip
        assert worker.stats.stale == 2  # the older price and the console's event again
        # the same events again (a replay): nothing changes
        applied = engine.follower.applied
        _send(kafka.bootstrap, "cat-live", good)
        _until(lambda: worker.stats.stale == 2 + len(good))
        time.sleep(1)
        assert engine.follower.applied == applied  # no index write at all
        assert _search(engine, items.loc[a, "title"])[a].payload["price"] == pytest.approx(0.123)
        # the item served from its text alone gets a readable photo later: encoded again, with
        # it, it moves in the index
        frame = "broken photo frame"
        alone = _search(engine, frame)["new-3"].score
        fixed = {**new, "title": "Broken photo frame", "photo": "new.jpg"}
        _send(kafka.bootstrap, "cat-live", [("new-3", _event("new-3", 11, upsert=fixed))])
        _until(lambda: abs(_search(engine, frame)["new-3"].score - alone) > 1e-4)
        # with its photo sketch, as `mrse index` writes one: shop by photo can find it
        stored = engine.bundles["v1"].index.payloads(["new-1", "new-2", "new-3"])
        assert "_p" in stored["new-1"] and "_p" in stored["new-3"] and "_p" not in stored["new-2"]
        from mrse.index.base import sketch_of  # ... and the photo channel searches it

        (near,) = engine.bundles["v1"].index.search_photos(  # the two share a photo
            sketch_of(stored["new-3"])[None], [2], [None]
        )
        assert {h.item_id for h in near} == {"new-1", "new-3"}
        print(f"changes visible after {seen:.2f}s")
    finally:
        stop.set()
        thread.join(30)
        engine.close()


def _worker(kafka, run: Path, index: Path, tmp: Path, log: Path) -> subprocess.Popen:
    cmd = [
        sys.executable, str(REPO / "servers" / "catalog_worker.py"), "--bootstrap", kafka.bootstrap,
        "--topic", "cat-crash", "--group-id", "crashy", "--max-batch", "25",
        "--model", f"v1={run}", "--index-root", str(index), "--state", str(tmp / "state.sqlite"),
        "--idle-exit", "8",
    ]  # fmt: skip
    return subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            env={**os.environ})  # fmt: skip


def test_sigkill_and_broker_restart_lose_nothing(kafka, sample_hm, small_run, tmp_path):
    """Many changes; the worker SIGKILLed mid-stream, the broker restarted, the worker started
    again: the index a server follows equals what the events describe."""
    ds = load_dataset(sample_hm)
    ids = list(ds.items["item_id"])
    index = IndexConfig(root=tmp_path / "index")
    build_index(sample_hm, small_run, index, version="v1")
    records, want_price, want_stock, gone = [], {}, {}, set()
    for n in range(1500):
        item = ids[n % len(ids)]
        version = 100 + n
        if n % 97 == 0:
            records.append((item, _event(item, version, delete={})))
            gone.add(item)
            continue
        if item in gone:
            continue
        if n % 3 == 0:
            stock = n % 2 == 0
            records.append((item, _event(item, version, patch={"in_stock": stock})))
            want_stock[item] = stock
        else:
            records.append((item, _event(item, version, patch={"price": n / 1000})))
            want_price[item] = n / 1000
    added = {}
    for n in range(40):  # new items (encoded by the worker), the first ten deleted again later
        item = f"new-{n}"
        records.insert(30 * n + 7, (item, _event(item, 5000 + n, upsert={
            "title": f"Linen shirt number {n}", "category": f"Menswear {n % 3}"})))  # fmt: skip
        added[item] = f"Menswear {n % 3}"
    for n in range(10):
        records.insert(1300 + n, (f"new-{n}", _event(f"new-{n}", 9000 + n, delete={})))
        added.pop(f"new-{n}")
    _send(kafka.bootstrap, "cat-crash", records)
    log = tmp_path / "worker.log"
    proc = _worker(kafka, small_run, index.root, tmp_path, log)
    from kafka import KafkaConsumer, TopicPartition

    def committed() -> int:
        c = KafkaConsumer(bootstrap_servers=kafka.bootstrap, group_id="crashy")
        off = c.committed(TopicPartition("cat-crash", 0)) or 0
        c.close()
        return off

    deadline = time.monotonic() + 120
    while committed() < 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert 0 < committed() < len(records), log.read_text()[-3000:]
    kafka.restart_broker()
    proc = _worker(kafka, small_run, index.root, tmp_path, log)
    assert proc.wait(240) == 0, log.read_text()[-3000:]
    assert committed() == len(records)
    from mrse.catalog.follower import IndexFollower
    from mrse.index.edge import EdgeIndex

    shard = EdgeIndex(index.root / "v1", SMALL["model"]["dim"])
    follower = IndexFollower(kafka.bootstrap, "mrse.catalog.index", {"v1": shard},
                             index.root / "catalog-offsets.json").start(60)  # fmt: skip
    try:
        assert follower.caught_up.is_set() and follower.error is None
        hits = {h.item_id: h.payload for h in shard.search(
            shard.vectors([ids[1]])[ids[1]], 1000, SearchFilter(in_stock=(True, False)),
            exact=True)}  # fmt: skip
        assert set(hits) == (set(ids) - gone) | set(added)
        assert all(hits[i]["category"] == c for i, c in added.items())
        for item, payload in hits.items():
            if item in want_price:
                assert payload["price"] == pytest.approx(want_price[item]), item
            if item in want_stock:
                assert (payload["stock"] == "in") == want_stock[item], item
    finally:
        follower.close()
        shard.close()


def test_rollout_under_load_fails_no_request(kafka, sample_hm, small_run, tmp_path):
    """A new model version shipped while searches run: its index is written by the catalog
    worker (with an item deleted and one added before it existed), the server loads it, routes
    to it, retires the old one; no request fails."""
    from mrse.experiments.store import ExperimentStore
    from mrse.jobs.rollout import register_version, set_arm

    ds = load_dataset(sample_hm)
    gone, kept = ds.items["item_id"].iloc[0], ds.items["item_id"].iloc[1]
    url = f"sqlite:///{tmp_path / 'experiments.db'}"
    index = IndexConfig(root=tmp_path / "index")
    build_index(sample_hm, small_run, index, version="v1")
    exp = Experiment("e", (Arm("a", 1.0, "v1", "mrse_v1", "v1"),))
    engine = build_engine(
        ServeConfig(
            data=sample_hm, models={"v1": small_run}, experiments=(exp,), default_experiment="e",
            index=index, torch_threads=0, experiments_url=url, watch_s=0.3, retire_grace_s=1.0,
            catalog=CatalogFollow(kafka.bootstrap, "roll.index"),
        )
    )  # fmt: skip
    worker = build_catalog_worker(
        CatalogServiceConfig(
            worker=CatalogWorkerSettings(kafka.bootstrap, "roll", "roll.dlq", "roll"),
            models={"v1": small_run}, index=index, index_topic="roll.index",
            state=tmp_path / "state.sqlite", photo_roots=(sample_hm,), experiments_url=url,
            data=sample_hm, watch_s=0.3,
        )
    )  # fmt: skip
    stop, load_stop = threading.Event(), threading.Event()
    threads = [threading.Thread(target=worker.run, args=(stop,), daemon=True)]
    served: list[str] = []
    failures: list[BaseException] = []

    def load() -> None:
        queries = list(ds.queries["query"])
        n = 0
        while not load_stop.is_set():
            req = ValidRequest(queries[n % len(queries)], None, 20, SearchFilter(), None,
                               f"r{n}", None)  # fmt: skip
            try:
                served.append(engine.search(req).model_version)
            except BaseException as exc:  # noqa: BLE001 - every failure counts
                failures.append(exc)
            n += 1

    threads += [threading.Thread(target=load, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        assert worker.ready.wait(60)
        new = {"title": "Tartan wool scarf rollout edition", "category": "Accessories"}
        _send(kafka.bootstrap, "roll", [(gone, _event(gone, 10, delete={})),
                                        ("late", _event("late", 10, upsert=new))])  # fmt: skip
        _until(lambda: "late" in _search(engine, "tartan wool scarf"))
        store = ExperimentStore(url)
        register_version(store, "v2", small_run, timeout_s=120)
        set_arm(store, "e", "a", version="v2")
        _until(lambda: served[-20:].count("v2") == 20)
        _until(lambda: "v1" in engine.watcher.retired)
        v2 = engine.bundles["v2"].index
        assert set(v2.vectors([gone, kept, "late"])) == {kept, "late"}
        assert "v1" not in engine.bundles
        time.sleep(1.5)  # past the retire grace: v1's index closed under load
        _send(kafka.bootstrap, "roll", [(kept, _event(kept, 20, patch={"price": 7.5}))])
        _until(
            lambda: (
                _search(engine, ds.items["title"].iloc[1]).get(kept) is not None
                and _search(engine, ds.items["title"].iloc[1])[kept].payload["price"] == 7.5
            )
        )
        store.close()
    finally:
        load_stop.set()
        stop.set()
        for t in threads:
            t.join(30)
        engine.close()
    assert not failures, failures[:3]
    assert served.count("v1") > 0 and served.count("v2") > 0


def _offsets_end(bootstrap: str, topic: str) -> dict[int, int]:
    from mrse.streaming.consumer import end_offsets, topic_reader

    consumer, parts = topic_reader(bootstrap, topic)
    try:
        return end_offsets(consumer, parts)
    finally:
        consumer.close()


def test_a_new_replica_and_a_rollout_start_from_the_workers_snapshot(
    kafka, sample_hm, small_run, tmp_path, caplog
):
    """The catalog worker publishes snapshots of its own following shards; a replica with no
    index and no dataset starts from the newest one and catches up from the (compacted) index
    topic; a rolled-out version is loaded from a snapshot, not replayed from its topic."""
    import logging

    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    from mrse.catalog.snapshots import SnapshotConfig, SnapshotStore
    from mrse.experiments.store import ExperimentStore
    from mrse.jobs.rollout import register_version, set_arm

    ds = load_dataset(sample_hm)
    gone, kept = ds.items["item_id"].iloc[0], ds.items["item_id"].iloc[1]
    url = f"sqlite:///{tmp_path / 'experiments.db'}"
    built = IndexConfig(root=tmp_path / "built")  # what `mrse index` wrote: the worker's seed
    build_index(sample_hm, small_run, built, version="v1")
    snaps = tmp_path / "snaps"
    worker = build_catalog_worker(
        CatalogServiceConfig(
            worker=CatalogWorkerSettings(kafka.bootstrap, "snap", "snap.dlq", "snap"),
            models={"v1": small_run}, index=built, index_topic="snap.index",
            state=tmp_path / "state.sqlite", photo_roots=(sample_hm,), experiments_url=url,
            data=sample_hm, watch_s=0.3,
            snapshots=SnapshotConfig(root=snaps, work=tmp_path / "shards", every_s=0.5),
        )
    )  # fmt: skip
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    engine = None
    try:
        assert worker.ready.wait(60)
        new = {"title": "Tartan wool scarf snapshot edition", "category": "Accessories"}
        _send(kafka.bootstrap, "snap", [
            (gone, _event(gone, 10, delete={})), ("late", _event("late", 10, upsert=new)),
            (kept, _event(kept, 10, patch={"price": 7.5})),
            (kept, _event(kept, 11, patch={"in_stock": False})),
        ])  # fmt: skip
        store = SnapshotStore(snaps, "snap.index")
        _until(lambda: worker.stats.consumed == 4)
        end = _offsets_end(kafka.bootstrap, "snap.index")
        _until(lambda: (s := store.latest(["v1"])) is not None and s.offsets == end)
        assert store.latest().versions["v1"] == len(ds.items)  # one deleted, one added
        later = {"title": "Corduroy bucket hat after the snapshot", "category": "Accessories"}
        _send(kafka.bootstrap, "snap", [("later", _event("later", 10, upsert=later))])
        _until(lambda: _offsets_end(kafka.bootstrap, "snap.index")[0] > end[0])

        exp = Experiment("e", (Arm("a", 1.0, "v1", "mrse_v1", "v1"),))
        caplog.set_level(logging.INFO, logger="mrse")
        engine = build_engine(
            ServeConfig(
                data=None, models={"v1": small_run}, experiments=(exp,), default_experiment="e",
                index=IndexConfig(root=tmp_path / "replica"), torch_threads=0,
                experiments_url=url, watch_s=0.3, retire_grace_s=1.0,
                catalog=CatalogFollow(kafka.bootstrap, "snap.index", snapshots=snaps),
            )
        )  # fmt: skip
        assert "restored from snapshot" in caplog.text
        v1 = engine.bundles["v1"].index
        assert set(v1.vectors([gone, kept, "late", "later"])) == {kept, "late", "later"}
        (hit,) = v1.among([kept], SearchFilter(in_stock=(True, False)))
        assert hit.payload["price"] == 7.5 and hit.payload["stock"] == "out"

        experiments = ExperimentStore(url)
        register_version(experiments, "v2", small_run, timeout_s=120)
        assert store.latest(["v2"]) is not None  # published before the version was ready
        set_arm(experiments, "e", "a", version="v2")
        _until(lambda: "v2" in engine.bundles)
        assert "model version v2 loaded" in caplog.text
        assert "from snapshot" in caplog.text.split("model version v2 loaded")[1].split("\n")[0]
        v2 = engine.bundles["v2"].index
        assert set(v2.vectors([gone, kept, "late", "later"])) == {kept, "late", "later"}
        experiments.close()

        admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap)
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC,
                                                           "snap.index")])  # fmt: skip
        admin.close()
        (configs,) = [c for by_name in described.values() for c in by_name.values()]
        assert configs["cleanup.policy"]["value"] == "compact"
    finally:
        stop.set()
        thread.join(60)
        if engine is not None:
            engine.close()


def test_compaction_of_the_index_topic_keeps_every_items_latest_state(kafka, small_run, tmp_path):
    """Real Kafka compacts the index topic (newest record per key); a follower replaying it
    from the start still gets every item's latest content and attributes."""
    from mrse.catalog.follower import IndexFollower
    from mrse.index.edge import EdgeIndex
    from mrse.streaming.topics import ensure_topics

    topic = "compacted.index"
    ensure_topics(kafka.bootstrap, [topic], configs={
        "cleanup.policy": "compact", "segment.ms": "200", "min.cleanable.dirty.ratio": "0.01",
        "delete.retention.ms": "100",
    })  # fmt: skip
    worker = build_catalog_worker(
        CatalogServiceConfig(
            worker=CatalogWorkerSettings(kafka.bootstrap, "compact", "compact.dlq", "compact",
                                         max_batch=1),
            models={"v1": small_run}, index=IndexConfig(root=tmp_path / "unused"),
            index_topic=topic, state=tmp_path / "state.sqlite", photo_roots=(tmp_path,),
        )
    )  # fmt: skip
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    hats = {"title": "Felt hat", "category": "Accessories"}
    events = [("a", _event("a", 1, upsert=hats)), ("b", _event("b", 1, upsert=hats))]
    for v in range(2, 40):  # many patches of "a", each one event and one batch
        events.append(("a", _event("a", v, patch={"price": float(v)})))
    events += [("a", _event("a", 40, patch={"in_stock": False})),  # the price stays 39
               ("b", _event("b", 2, delete={}))]  # fmt: skip
    try:
        assert worker.ready.wait(60)
        for key, value in events:
            _send(kafka.bootstrap, "compact", [(key, value)])
        _until(lambda: worker.stats.consumed == len(events), 60)
        written = _offsets_end(kafka.bootstrap, topic)[0]
        _send(kafka.bootstrap, "compact", [("c", _event("c", 1, upsert=hats))])  # rolls it
        _until(lambda: len(_read(kafka.bootstrap, topic)) < written, 90)
    finally:
        stop.set()
        thread.join(60)
    index = EdgeIndex(tmp_path / "replayed", _dim(small_run))
    follower = IndexFollower(kafka.bootstrap, topic, {"v1": index}, tmp_path / "offsets.json")
    follower.start(60)
    follower.close()
    try:
        assert set(index.vectors(["a", "b", "c"])) == {"a", "c"}
        (hit,) = index.among(["a"], SearchFilter(in_stock=(True, False)))
        assert hit.payload["price"] == 39.0 and hit.payload["stock"] == "out"
    finally:
        index.close()


def _dim(run: Path) -> int:
    from mrse.training.checkpoint import load_run

    return load_run(run).config.model.dim
