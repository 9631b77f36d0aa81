"""`make demo` end to end on the bundled sample: baselines, two trained arms, two indexes, the
live stack (broker, stream worker, gRPC server), example searches, A/B report, HTML page."""

from __future__ import annotations

import json
import re

import pytest

from mrse.cli import main

pytestmark = pytest.mark.integration


def ab_users(data) -> list:
    from mrse.data import load_dataset

    return list(load_dataset(data).queries["user_id"])


def test_demo_runs_end_to_end_on_a_bundled_sample(sample_hm, tmp_path, capsys):
    out = tmp_path / "demo"
    cache = tmp_path / "cache"
    argv = ["--cache-dir", str(cache), "demo", "--data", str(sample_hm), "--out", str(out)]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [r["model"] for r in summary["results"]] == ["bm25", "dense"]
    enc = summary["datasets"][0]["encoding"]
    assert enc["image"]["encoded"] == summary["datasets"][0]["items"] == 380

    serving = summary["serving"]
    assert set(serving["models"]) == {"control", "mrse"}
    assert [i["count"] for i in serving["indexes"]] == [380, 380]
    # the clickstream went through the embedded broker into the online feature store
    assert serving["streaming"]["events"] == 538
    assert serving["streaming"]["profiles_online"] == serving["streaming"]["users"]
    # every judged query was served by both arms through gRPC and scored
    n = serving["example_queries"]
    assert n == 36
    for m in serving["arms"].values():
        assert 0.0 < m["ndcg@10"] <= 1.0
    # A/B: one live exposure per query in the report; the two QA-override searches are not
    # searches by product name: both arms (QA overrides); the hybrid MRSE arm finds the named
    # product in its top 10, the new item's too (by the lexical channel)
    names = serving["name_searches"]
    assert len(names) >= 10 and {s["class"] for s in names} >= {"title", "typo", "new item"}
    assert sum(s["ranks"]["mrse"] is not None for s in names) >= 0.9 * len(names)
    (new,) = [s for s in names if s["class"] == "new item"]
    assert new["ranks"]["mrse"] == 1 and new["found_by"]["mrse"] in ("lexical", "both")
    # more like this and shop by photo through the MRSE arm; the text-only arm reads no photo
    looks = serving["looks"]
    # ... and an item with a photo and no text (the sample has such items), by its photo alone
    assert [x["kind"] for x in looks] == ["more like this", "photo"] * 2 + ["photo, no text"]
    assert all(len(x["results"]) == 10 and x["seed"] not in x["results"]
               for x in looks if x["kind"] == "more like this")  # fmt: skip
    photos_found = [x["rank"] for x in looks if x["kind"] == "photo"]
    assert sum(r is not None for r in photos_found) >= 1
    assert looks[-1]["rank"] is not None
    assert all(x["refused"] == {"control": "FAILED_PRECONDITION"} for x in looks
               if x["kind"] != "more like this")  # fmt: skip
    ab = serving["ab_report"]
    assert sum(a["exposures"] for a in ab["arms"]) == n
    feed = serving["feed"]
    assert feed["personalized"] and feed["seconds"] is not None and feed["seconds"] < 10
    assert len(feed["clicked"]) == 3 and feed["share_after"] > feed["share_before"]
    assert ab["qa_exposures"] == 2 * n + 2 * len(names) + len(looks) + feed["requests"]
    clicked = sum(a["clicked"] for a in ab["arms"])  # the interleaved step's clicks besides
    assert ab["clicks_read"] == clicked + serving["interleaved_clicks"] + len(feed["clicked"])
    assert clicked > 0
    for a in ab["arms"]:
        assert a["ci_low"] <= a["ctr"] <= a["ci_high"]
    # per shopper, with a decision line; and one interleaved experiment, credited by team
    assert ab["decision"] and {a["arm"] for a in ab["analysis"]["arms"]} <= {"control", "mrse"}
    il = serving["interleaved_report"]["analysis"]["interleaving"]
    shoppers = {u for u in ab_users(sample_hm) if isinstance(u, str)}
    assert il["units"] == len(shoppers) and il["wins"] + il["losses"] > 0
    assert serving["interleaved_report"]["decision"] and serving["interleaved_clicks"] > 0
    assert (out / "ab.html").read_text().count("<img") >= 1

    page = (out / "search.html").read_text()
    assert page.count('<div class="q">') == n
    photos = re.findall(r'src="(images/[^"]+)"', page)
    assert len(photos) >= 2 * 10 * n * 0.9  # both arms' top 10, nearly all with photos
    assert all((out / p).is_file() for p in set(photos))
    printed = capsys.readouterr().out
    assert "ndcg@10" in printed and "text-tower-v1" in printed and "search.html" in printed

    # a second run finds every feature in the cache
    assert main([*argv, "--no-serve"]) == 0
    enc = json.loads((out / "summary.json").read_text())["datasets"][0]["encoding"]
    assert enc["image"]["encoded"] == 0 and enc["text"]["encoded"] == 0
