"""Run directories: weights, config and feature statistics, loadable without unpickling.

Layout: ``run.json`` (config, dataset, metrics), ``model.pt`` (a plain state dict, loaded with
``weights_only=True``), ``stats.npz`` (feature means, loaded with ``allow_pickle=False``),
``taught.npy`` (the term ids of the query log the run learnt from: the hybrid search leaves
queries of only those words to the towers, ``mrse.index.hybrid``; absent in runs saved before),
``query_log.json`` (the log's most frequent queries and their counts: a server warms its query
cache from them, with no dataset directory), ``popular.json`` (the items of the training data
with the highest recent popularity, item id -> score: the feed of a shopper with no history),
``train_state.pt`` (optimizer and progress, for ``--resume``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mrse.features.catalog import FeatureStats
from mrse.features.featurizer import Featurizer
from mrse.models.two_tower import MRSEModel
from mrse.training.config import TrainConfig, config_from_dict

QUERY_LOG = "query_log.json"
QUERY_LOG_SIZE = 50_000  # the most frequent queries a run keeps for serving's query cache
POPULAR = "popular.json"


def run_query_log(path: str | Path) -> dict[str, int]:
    """The query log a run directory keeps (query -> count; empty for runs saved before)."""
    file = Path(path) / QUERY_LOG
    return json.loads(file.read_text()) if file.exists() else {}


class RunError(ValueError):
    """A run directory is missing or incomplete."""


@dataclass
class Run:
    """A trained model, ready to encode."""

    path: Path
    name: str
    config: TrainConfig
    model: MRSEModel
    stats: FeatureStats
    info: dict[str, Any]
    taught: frozenset[int] = frozenset()  # the words of the query log it learnt from
    # the feed of a shopper with no history: item ids, most popular first (empty: none kept)
    popular: tuple[str, ...] = ()

    @property
    def featurizer(self) -> Featurizer:
        """How this run turns a catalog and its shoppers into model inputs."""
        return Featurizer(self.config.model, self.stats)


def save_run(
    path: Path,
    name: str,
    config: TrainConfig,
    state: dict[str, torch.Tensor],
    stats: FeatureStats,
    info: dict[str, Any],
    taught: np.ndarray | None = None,
    query_log: dict[str, int] | None = None,
    popular: dict[str, float] | None = None,
) -> None:
    """Write (atomically per file) everything needed to reload the model; ``taught``: the
    term ids of its training query log (``mrse.features.lexical.vocabulary``); ``query_log``:
    its most frequent queries, query -> count; ``popular``: item id -> recent popularity."""
    path.mkdir(parents=True, exist_ok=True)
    for file, value in ((QUERY_LOG, query_log), (POPULAR, popular)):
        if value is not None:
            (path / f"{file}.tmp").write_text(json.dumps(value))
            (path / f"{file}.tmp").replace(path / file)
    if taught is not None:
        with (path / "taught.npy.tmp").open("wb") as f:
            np.save(f, np.asarray(taught, dtype=np.uint32), allow_pickle=False)
        (path / "taught.npy.tmp").replace(path / "taught.npy")
    tmp = path / "model.pt.tmp"
    torch.save(state, tmp)
    tmp.replace(path / "model.pt")
    np.savez(path / "stats.npz", text_mean=stats.text_mean, image_mean=stats.image_mean)
    payload = {"name": name, "config": config.to_dict(), **info}
    (path / "run.json.tmp").write_text(json.dumps(payload, indent=2, default=str))
    (path / "run.json.tmp").replace(path / "run.json")


def load_run(path: str | Path) -> Run:
    """Load a run directory written by ``save_run`` (model in eval mode)."""
    path = Path(path)
    for f in ("run.json", "model.pt", "stats.npz"):
        if not (path / f).exists():
            raise RunError(
                f"{path}: not a complete run directory ({f} is missing); "
                "train one with `mrse train`"
            )
    info = json.loads((path / "run.json").read_text())
    config = config_from_dict(info["config"])
    model = MRSEModel(config.model)
    state = torch.load(path / "model.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    model.eval()
    with np.load(path / "stats.npz", allow_pickle=False) as z:
        stats = FeatureStats(text_mean=z["text_mean"], image_mean=z["image_mean"])
    taught: frozenset[int] = frozenset()
    if (path / "taught.npy").exists():
        taught = frozenset(int(t) for t in np.load(path / "taught.npy", allow_pickle=False))
    popular = json.loads((path / POPULAR).read_text()) if (path / POPULAR).exists() else {}
    return Run(
        path=path,
        name=info.get("name", path.name),
        config=config,
        model=model,
        stats=stats,
        info=info,
        taught=taught,
        popular=tuple(popular),
    )
