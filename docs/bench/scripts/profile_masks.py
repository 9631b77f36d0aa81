"""How much the shopper's history costs MRSE when every photo is hidden (docs/benchmarks.md,
"Every photo hidden on `hm`").

    .venv/bin/python docs/bench/scripts/profile_masks.py ../shared/benchmarks/hm runs/hm-mrse

Runs ``mrse eval --hide photo`` three times with the query tower's recent items (the profile's
input) as they are, without the history items left with no text and no photo, and with none
at all; prints nDCG@10 for each. Only the evaluation's query features change (the catalog, the
model and the metrics are ``mrse eval``'s own).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch

import mrse.retrieval.model as model_retrieval
from mrse.cli import main as mrse

MASK = {"mode": "as is"}
_queries = None


def _masked(self, texts, vectors, profiles, index):
    """The featurizer's query features with the recent items masked as ``MASK`` says."""
    qf = _queries(self, texts, vectors, profiles, index)
    recent = qf.recent.clone()
    if MASK["mode"] == "without empty items":
        content = (MASK["catalog"].has_text | MASK["catalog"].has_image).numpy()
        for i, row in enumerate(recent.tolist()):
            keep = [r for r in row if r >= 0 and content[r]]
            recent[i] = -1
            recent[i, : len(keep)] = torch.tensor(keep, dtype=recent.dtype)
    elif MASK["mode"] == "none":
        recent[:] = -1
    qf.recent = recent
    return qf


def main() -> None:
    global _queries
    data, run = sys.argv[1], sys.argv[2]
    original = model_retrieval.ModelRetriever.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        MASK["catalog"] = self.catalog
        global _queries
        if _queries is None:
            _queries = type(self.run.featurizer).queries
            type(self.run.featurizer).queries = _masked

    model_retrieval.ModelRetriever.__init__ = init
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("as is", "without empty items", "none"):
            MASK["mode"] = mode
            out = Path(tmp) / "out.json"
            mrse(["eval", "--data", data, "--run", run, "--hide", "photo", "--out", str(out)])
            ndcg = json.loads(out.read_text())["metrics"]["ndcg@10"]
            print(f"recent items {mode}: nDCG@10 {ndcg:.4f}")


if __name__ == "__main__":
    main()
