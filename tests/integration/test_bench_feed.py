"""`mrse bench-feed` on the bundled sample: a click through the embedded broker and the stream
worker changes the shopper's feed, and the benchmark times it."""

from __future__ import annotations

import json

import pytest

from mrse.cli import main

pytestmark = pytest.mark.integration


def test_a_click_changes_the_feed_and_is_timed(sample_hm, small_run, tmp_path):
    out = tmp_path / "feed.json"
    assert main(["bench-feed", "--data", str(sample_hm), "--run", str(small_run), "--shoppers",
                 "4", "--work-dir", str(tmp_path / "work"), "--out", str(out)]) == 0  # fmt: skip
    got = json.loads(out.read_text())
    assert got["shoppers"] == 4 and got["changed"] == 4 and got["misses"] == 0
    assert 0 < got["p50_ms"] <= got["p99_ms"] < 10_000
