"""Index snapshots for embedded (Qdrant Edge) servers: a new replica or a newly rolled-out model
version starts from the newest snapshot and catches up from the index topic, instead of
replaying the whole log and building the HNSW graph again.

The catalog worker keeps its own copy of every version's shard, following the index topic as a
server process does (:class:`Snapshotter`), and publishes it to a directory every replica can
read (a shared volume): one directory per snapshot, named by its creation time in ms, holding
one shard directory per model version (HNSW graph built) and ``manifest.json``::

    {"format": 1, "created": <unix s>, "topic": <index topic>,
     "offsets": {<partition>: <next offset>}, "versions": {<version>: <items>}}

``offsets`` says where in the index topic the shards stand: a replica applies the topic from
there. A snapshot is written under a hidden temporary name and renamed into place, so a reader
sees whole snapshots or none; the newest ``keep`` are kept.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from mrse.catalog.follower import OFFSETS_FILE, IndexFollower, save_offsets
from mrse.index.build import version_name
from mrse.index.edge import EdgeIndex

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = 1


def copy_sparse(src: str | Path, dst: str | Path, **_) -> Path:
    """Copy a file's data but not its holes: an Edge shard preallocates its files sparsely
    (about 10x their data), and a plain copy would write every hole out as zeros."""
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        fd, size, pos = fi.fileno(), os.fstat(fi.fileno()).st_size, 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # only a hole after pos
                    break
                raise  # (a file system without SEEK_DATA: caught below)
            end = os.lseek(fd, start, os.SEEK_HOLE)
            fi.seek(start)
            fo.seek(start)
            while start < end:
                chunk = fi.read(min(end - start, 8 << 20))
                if not chunk:
                    break
                fo.write(chunk)
                start += len(chunk)
            pos = end
        fo.truncate(size)
    shutil.copystat(src, dst)
    return Path(dst)


def copy_shard(src: Path, dst: Path) -> None:
    """A shard directory copied without its files' holes (plainly where holes are unknown)."""
    try:
        shutil.copytree(src, dst, copy_function=copy_sparse)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
            raise
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(src, dst)


@dataclass(frozen=True)
class SnapshotConfig:
    """Where the catalog worker publishes snapshots (``root``, read by every replica), where it
    keeps its own following shards (``work``), and how often it publishes."""

    root: Path
    work: Path = Path(".mrse-catalog/shards")
    every_s: float = 300.0  # publish at most this often, and only when the shards changed
    keep: int = 2

    def __post_init__(self) -> None:
        if self.every_s <= 0:
            raise ValueError("snapshots.every_s must be > 0")
        if self.keep < 1:
            raise ValueError("snapshots.keep must be >= 1")


@dataclass(frozen=True)
class Snapshot:
    path: Path
    created: float
    topic: str
    offsets: dict[int, int]  # partition -> the next offset of the index topic to apply
    versions: dict[str, int]  # model version -> items in its shard


class SnapshotStore:
    """The published snapshots of one index topic under ``root``."""

    def __init__(self, root: Path, topic: str, keep: int = 2) -> None:
        self.root, self.topic, self.keep = Path(root), topic, keep

    def all(self) -> list[Snapshot]:
        """Whole snapshots of this topic, newest first (a directory without a readable
        manifest is one being written, or a crashed writer's leftover: not a snapshot)."""
        out = []
        for d in self.root.glob("[0-9]*"):
            try:
                m = json.loads((d / MANIFEST).read_text())
            except (OSError, ValueError):
                continue
            if m.get("format") != FORMAT or m.get("topic") != self.topic:
                continue
            out.append(Snapshot(d, float(m["created"]), m["topic"],
                                {int(p): int(o) for p, o in m["offsets"].items()},
                                {str(v): int(n) for v, n in m["versions"].items()}))  # fmt: skip
        return sorted(out, key=lambda s: s.created, reverse=True)

    def latest(self, versions: Iterable[str] = ()) -> Snapshot | None:
        """The newest snapshot holding every one of ``versions``."""
        wanted = set(versions)
        return next((s for s in self.all() if wanted <= set(s.versions)), None)

    def write(
        self, shards: Mapping[str, Path], offsets: Mapping[int, int], counts: Mapping[str, int]
    ) -> Snapshot:
        """Publish copies of ``shards`` (version -> a flushed shard directory nobody writes
        meanwhile) standing at ``offsets`` of the topic; older snapshots beyond ``keep`` go."""
        self.root.mkdir(parents=True, exist_ok=True)
        for leftover in self.root.glob(".*.tmp"):  # a writer killed mid-copy (one writer)
            shutil.rmtree(leftover, ignore_errors=True)
        created = time.time()
        name = str(int(created * 1000))
        tmp = self.root / f".{name}.tmp"
        for version, src in shards.items():
            copy_shard(src, tmp / version_name(version))
        manifest = {"format": FORMAT, "created": created, "topic": self.topic,
                    "offsets": {str(p): int(o) for p, o in offsets.items()},
                    "versions": {v: int(counts[v]) for v in shards}}  # fmt: skip
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        tmp.rename(self.root / name)
        snap = Snapshot(self.root / name, created, self.topic, dict(offsets),
                        dict(manifest["versions"]))  # fmt: skip
        for old in self.all()[self.keep :]:
            shutil.rmtree(old.path, ignore_errors=True)
        return snap

    def restore(self, snap: Snapshot, version: str, dest: Path) -> None:
        """Copy ``version``'s shard of ``snap`` to ``dest`` (replaced; whole or not at all)."""
        tmp = dest.with_name(f".{dest.name}.restoring")
        shutil.rmtree(tmp, ignore_errors=True)
        copy_shard(snap.path / version_name(version), tmp)
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)


def restore_missing(root: Path, versions: Iterable[str], store: SnapshotStore) -> Snapshot | None:
    """A new replica: when a shard of ``versions`` is missing under ``root``, every version's
    shard and the record of where they stand in the log come from the newest snapshot that
    holds them all (one position for every shard of a process). Shards that are all present
    are used as they are (a rebuilt index with no record replays the log from its start).
    Returns the snapshot used, if any."""
    versions = list(versions)
    missing = [v for v in versions if not (root / version_name(v)).is_dir()]
    if not missing:
        return None
    started = time.monotonic()
    snap = store.latest(versions)
    if snap is None:
        logger.warning("no index for %s under %s and no snapshot in %s holds %s", missing,
                       root, store.root, versions)  # fmt: skip
        return None
    root.mkdir(parents=True, exist_ok=True)
    for v in versions:
        store.restore(snap, v, root / version_name(v))
    save_offsets(root / OFFSETS_FILE, store.topic, snap.offsets)
    logger.info("index %s restored from snapshot %s (%s items) in %.1fs; the log from %s",
                versions, snap.path.name, snap.versions, time.monotonic() - started,
                snap.offsets)  # fmt: skip
    return snap


class Snapshotter:
    """The catalog worker's own copy of every served version's shard, following the index
    topic as a server process does, published to ``store`` every ``every_s`` when it changed
    and whenever a new version is added (before that version is marked ready).

    Its shards start from the newest snapshot, else from a copy of the shards ``mrse index``
    wrote under ``seed`` (with their record of the log, if any: none after a rebuild, so the
    whole log is applied)."""

    def __init__(
        self,
        cfg: SnapshotConfig,
        bootstrap: str,
        topic: str,
        dims: Mapping[str, int],
        seed: Path | None = None,
        edge=None,
    ) -> None:
        self.cfg, self.edge = cfg, edge
        self.store = SnapshotStore(cfg.root, topic, cfg.keep)
        work = cfg.work
        work.mkdir(parents=True, exist_ok=True)
        missing = [v for v in dims if not (work / v).is_dir()]
        if missing and self.store.latest(dims) is not None:
            restore_missing(work, dims, self.store)
        elif missing and seed is not None:
            logger.info("snapshotter: %s copied from %s (no snapshot yet)", missing, seed)
            for v in missing:
                if (seed / v).is_dir():
                    copy_shard(seed / v, work / v)
            if (seed / OFFSETS_FILE).is_file() and not (work / OFFSETS_FILE).exists():
                shutil.copy(seed / OFFSETS_FILE, work / OFFSETS_FILE)
        indexes = {v: EdgeIndex(work / v, d, edge) for v, d in dims.items()}
        # the worker's copy goes as fast as it can: no serving shares this process's GIL
        self.follower = IndexFollower(bootstrap, topic, indexes, work / OFFSETS_FILE,
                                      replay_pause_s=0.0, replay_duty=1.0)  # fmt: skip
        self.last: Snapshot | None = self.store.latest()
        self._published_at = -1  # follower.applied when last published
        self._one_writer = threading.Lock()  # the period's thread and a new version's add
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, catch_up_s: float = 600.0) -> Snapshotter:
        self.follower.start(catch_up_s)
        self._thread = threading.Thread(target=self._run, name="snapshotter", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(min(self.cfg.every_s, 5.0)):
            due = self.last is None or time.time() - self.last.created >= self.cfg.every_s
            if due and self.follower.caught_up.is_set() and self.changed():
                try:
                    self.take()
                except Exception:  # a full disk: the next period tries again
                    logger.exception("snapshot not written")

    def changed(self) -> bool:
        return self.last is None or self.follower.applied != self._published_at

    def add(self, version: str, dim: int, start: dict[int, int] | None) -> None:
        """Follow one more version (its index written in full to its own topic, the main log
        from ``start`` on), then publish a snapshot with it."""
        path = self.cfg.work / version_name(version)
        shutil.rmtree(path, ignore_errors=True)
        self.follower.add(version, EdgeIndex(path, dim, self.edge), start)
        self.take()

    def take(self) -> Snapshot:
        """Publish the shards as they stand: no batch is applied while they are copied."""
        started = time.monotonic()
        with self._one_writer, self.follower.held() as offsets:
            applied = self.follower.applied
            indexes = dict(self.follower.indexes)
            counts = {}
            for v, index in indexes.items():
                index.optimize()  # the graph is built once, here, not by every replica
                index.flush()
                counts[v] = index.count()
            snap = self.store.write({v: i.path for v, i in indexes.items()}, offsets, counts)
        self.last, self._published_at = snap, applied
        logger.info("snapshot %s published: %s at %s in %.1fs", snap.path.name, counts, offsets,
                    time.monotonic() - started)  # fmt: skip
        return snap

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        self.follower.close()
        for index in self.follower.indexes.values():
            index.close()
