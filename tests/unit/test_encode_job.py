"""`mrse encode`: shards that together cover the catalog, and a killed run that resumes."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from mrse.jobs.encode import encode_shard, shard_from_env


def _rows(cache_dir) -> int:
    path = cache_dir / "features.sqlite"
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(path, timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM features").fetchone()[0]
    except sqlite3.OperationalError:  # the table is not created yet
        return 0


def test_shard_from_env(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert shard_from_env() == (0, 1)
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "2")
    assert shard_from_env() == (2, 3)
    monkeypatch.setenv("RANK", "3")
    with pytest.raises(ValueError, match="do not describe a shard"):
        shard_from_env()


def test_shards_cover_the_catalog_once_and_a_killed_run_resumes(sample_hm, tmp_path):
    cache = tmp_path / "cache"
    # two shards (as two torchrun processes would be): disjoint halves, together everything
    a = encode_shard(sample_hm, cache, images=False, shard=(0, 2))
    b = encode_shard(sample_hm, cache, images=False, shard=(1, 2))
    assert a["items"] + b["items"] == 380 and abs(a["items"] - b["items"]) <= 1
    whole = encode_shard(sample_hm, cache, images=False)
    assert a["text"]["encoded"] > 0 and b["text"]["encoded"] > 0
    assert whole["text"]["encoded"] == 0  # every item's text is cached by one shard or other
    assert (
        whole["text"]["cached"]
        == a["text"]["cached"] + a["text"]["encoded"] + b["text"]["cached"] + b["text"]["encoded"]
    )

    # photos: kill -9 part-way, then the rerun encodes only what the first run had not cached
    texts = _rows(cache)
    env = {**os.environ, "MRSE_CACHE_DIR": str(cache)}
    cmd = [sys.executable, "-m", "mrse.cli", "encode", "--data", str(sample_hm)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while _rows(cache) < texts + 64 and proc.poll() is None:
        assert time.monotonic() < deadline, "no photo batch was cached in 2 minutes"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = _rows(cache) - texts  # each photo is encoded twice: its centre, the whole photo
    assert 0 < done < 2 * 380, "the run was not killed part-way (the test needs a slower encoder?)"
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    summary = json.loads(out[out.index("{") :])
    photos = [summary["image"], summary["whole photo"]]
    assert sum(s["cached"] for s in photos) >= done
    assert all(s["cached"] + s["encoded"] == 380 for s in photos)
    assert sum(s["encoded"] for s in photos) <= 2 * 380 - done
    assert _rows(cache) == texts + 2 * 380
