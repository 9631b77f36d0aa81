from __future__ import annotations

import json

from mrse.cli import main


def test_demo_runs_end_to_end_on_a_bundled_sample(sample_hm, tmp_path, capsys):
    out = tmp_path / "demo"
    cache = tmp_path / "cache"
    assert (
        main(["--cache-dir", str(cache), "demo", "--data", str(sample_hm), "--out", str(out)]) == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    assert [r["model"] for r in summary["results"]] == ["bm25", "dense"]
    enc = summary["datasets"][0]["encoding"]
    assert enc["image"]["encoded"] == summary["datasets"][0]["items"]
    assert (out / "baselines.png").exists()
    printed = capsys.readouterr().out
    assert "ndcg@10" in printed and "bm25" in printed
    # the clickstream went through the embedded broker into the embedded feature store
    (streamed,) = summary["streaming"]
    assert streamed["events"] == 538 and streamed["profiles_online"] > 200
    # second run: everything comes from the cache
    assert (
        main(["--cache-dir", str(cache), "demo", "--data", str(sample_hm), "--out", str(out)]) == 0
    )
    enc = json.loads((out / "summary.json").read_text())["datasets"][0]["encoding"]
    assert enc["image"]["encoded"] == 0 and enc["text"]["encoded"] == 0
