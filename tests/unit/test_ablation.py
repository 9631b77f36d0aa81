from __future__ import annotations

import json

import yaml

from mrse.jobs.ablation import END, START, AblationConfig, run_ablation, write_doc_section

SMALL = {
    "model": {"dim": 32, "hidden": 64, "sparse_dim": 16, "ngram_buckets": 4096, "recent_items": 5},
    "loss": {"random_negatives": 64, "hard_negatives": 4, "hard_pool": 16},
    "batch_size": 64,
    "epochs": 1,
}


def test_doc_section_is_replaced_in_place(tmp_path):
    doc = tmp_path / "b.md"
    doc.write_text(f"# Bench\n\nintro\n\n{START}\nold\n{END}\n\n## After\n")
    write_doc_section(doc, "new table")
    text = doc.read_text()
    assert "old" not in text and "new table" in text and text.endswith("## After\n")
    fresh = tmp_path / "c.md"
    write_doc_section(fresh, "t")
    assert START in fresh.read_text()


def test_ablation_trains_evaluates_and_writes_table(sample_myntra, tmp_path):
    config = tmp_path / "small.yaml"
    config.write_text(yaml.safe_dump(SMALL))
    doc = tmp_path / "docs" / "benchmarks.md"
    doc.parent.mkdir()
    rows = run_ablation(
        AblationConfig(
            datasets=(sample_myntra,),
            variants=("text-tower", "no-lmoe"),
            baselines=("bm25",),
            runs_dir=tmp_path / "runs",
            out=tmp_path / "out",
            doc=doc,
            config=config,
            cache_dir=tmp_path / "cache",
            jobs=2,  # the two trainings in two processes
        )
    )
    assert [r["model"] for r in rows] == ["bm25", "text-tower", "no-lmoe"]
    assert rows[1]["train_seconds"] > 0
    text = doc.read_text()
    assert "| myntra | text-tower |" in text and "| 1.00 |" in text
    assert (doc.parent / "img" / "ablation.png").exists()
    assert len(json.loads((tmp_path / "out" / "ablation.json").read_text())) == 3
    # train nothing: the complete runs are evaluated again, a missing variant is named
    again = run_ablation(
        AblationConfig(
            datasets=(sample_myntra,), variants=("text-tower", "no-image"), baselines=(),
            runs_dir=tmp_path / "runs", out=tmp_path / "out2", doc=doc, config=config,
            cache_dir=tmp_path / "cache", train=False,
        )
    )  # fmt: skip
    assert [r["model"] for r in again] == ["text-tower"]
    assert not (tmp_path / "runs" / "myntra-no-image").exists()
    assert "left out here: myntra no-image" in doc.read_text()


def test_ablation_reports_slices_modality_and_missing_modalities(sample_hm, tmp_path):
    config = tmp_path / "small.yaml"
    config.write_text(yaml.safe_dump(SMALL))
    doc = tmp_path / "docs" / "benchmarks.md"
    doc.parent.mkdir()
    run_ablation(
        AblationConfig(
            datasets=(sample_hm,),
            variants=("text-tower", "mrse", "no-profile"),
            baselines=(),
            runs_dir=tmp_path / "runs",
            out=tmp_path / "out",
            doc=doc,
            config=config,
            cache_dir=tmp_path / "cache",
        )
    )
    text = doc.read_text()
    # every evaluated model, per history slice, with the bought item's MRR/HR
    for model in ("text-tower", "mrse", "no-profile"):
        assert f"| hm | {model} | 5+ events |" in text
        for hidden in ("every photo", "every text", "text of the judged items", "random mix"):
            assert f"| hm | {model} | {hidden} |" in text
    # every query: the classes hm's catalog can make, for each model and MRSE as served
    assert (
        "| dataset | class | queries | bm25 hr@10 | dense hr@10 | text-tower hr@10 | mrse hr@10 "
        "| mrse+lexical hr@10 |" in text
    )
    for cls in ("title", "fragment", "typo", "description", "test"):
        assert f"| hm | {cls} |" in text
    assert "| most photo-driven | " in text and "| most text-driven | " in text
    assert (doc.parent / "img" / "modality-hm.png").exists()
