"""The training loop: hybrid loss, mixed and hard negatives, validation-based early stopping."""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from mrse.data.dataset import Dataset, load_dataset
from mrse.encoders.cache import FeatureCache
from mrse.encoders.features import encode_items, encode_texts
from mrse.evaluation.metrics import mean_metrics, query_metrics
from mrse.features.catalog import CatalogFeatures, FeatureStats, build_catalog_features
from mrse.features.queries import QueryFeatures, build_query_features, snapshot_profiles
from mrse.losses import consistency, sampled_softmax, triplet
from mrse.models.inference import encode_catalog, encode_queries
from mrse.models.two_tower import MRSEModel
from mrse.sampling.hard_negatives import mine_hard_negatives
from mrse.sampling.negatives import popularity_log_q, uniform_negatives
from mrse.training.checkpoint import save_run
from mrse.training.config import TrainConfig
from mrse.training.examples import Examples, build_examples, split_examples, validation_qrels

logger = logging.getLogger(__name__)


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def query_text_vectors(texts: list[str], cache: FeatureCache) -> np.ndarray:
    """Raw MiniLM vectors (Q, 384) of query strings, through the feature cache."""
    from mrse.encoders.text import TextEncoder

    encoder: TextEncoder | None = None

    def encode(batch: list[str]) -> np.ndarray:
        nonlocal encoder
        if encoder is None:
            encoder = TextEncoder()
        return encoder.encode(batch)

    unique = sorted(set(texts))
    vecs, _ = encode_texts(unique, encode, cache, desc="queries")
    pos = {t: i for i, t in enumerate(unique)}
    return vecs[[pos[t] for t in texts]]


@dataclass
class PreparedData:
    """Everything the loop needs, built once."""

    dataset: Dataset
    stats: FeatureStats
    catalog: CatalogFeatures
    examples: Examples
    queries: QueryFeatures


def prepare(
    dataset: Dataset, config: TrainConfig, cache: FeatureCache, stats: FeatureStats | None = None
) -> PreparedData:
    feats, _ = encode_items(
        dataset, cache, images=config.model.use_image or config.model.use_profile
    )
    stats = stats or FeatureStats.fit(feats)
    catalog = build_catalog_features(dataset, feats, stats, config.model)
    examples = build_examples(dataset)
    profiles = snapshot_profiles(dataset.events, catalog, examples.requests(), config.profile)
    vecs = query_text_vectors(list(examples.texts), cache)
    queries = build_query_features(
        list(examples.texts), vecs, profiles, catalog, stats, config.model
    )
    return PreparedData(dataset, stats, catalog, examples, queries)


def validate(
    model: MRSEModel, data: PreparedData, reps: list[int], rels: list[dict[int, int]]
) -> dict[str, float]:
    """Retrieval metrics of the validation queries over the whole catalog."""
    items = encode_catalog(model, data.catalog)
    outs = encode_queries(model, data.queries, items, np.array(reps))
    q = torch.cat([o.embedding for o in outs])
    top = (q @ items.T).topk(min(500, items.shape[0]), dim=1).indices.tolist()
    per_query = [
        query_metrics([str(r) for r in t], {str(k): v for k, v in rel.items()})
        for t, rel in zip(top, rels, strict=True)
    ]
    return mean_metrics(per_query)


def train(
    config: TrainConfig,
    data: Path,
    out: Path,
    name: str,
    resume: bool = False,
    cache_dir: Path | None = None,
) -> dict:
    """Train on the events of ``data``; write the best (validation nDCG@10) model to ``out``.

    Returns the run summary (also in ``out/run.json``).
    """
    start = time.perf_counter()
    if config.threads:
        torch.set_num_threads(config.threads)
    logger.info("training %s with config %s", name, json.dumps(config.to_dict()))
    dataset = load_dataset(data)
    with FeatureCache.open_default(cache_dir) as cache:
        prep = prepare(dataset, config, cache)
    # Seed after preparing: loading an encoder (only on a cold cache) draws random numbers.
    gen = seed_everything(config.seed)
    ex = prep.examples
    train_idx, val_idx = split_examples(ex, config.val_fraction, config.seed)
    reps, rels = validation_qrels(ex, val_idx)
    n_items = len(prep.catalog)
    known: dict[str, set[int]] = {}
    for i in train_idx:
        known.setdefault(ex.texts[i], set()).add(int(ex.item_rows[i]))
    log_q = popularity_log_q(ex.item_rows[train_idx], n_items)

    model = MRSEModel(config.model)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    lc = config.loss
    state_path = out / "train_state.pt"
    first_epoch, best, best_epoch, history = 0, -1.0, -1, []
    if resume and state_path.exists():
        st = torch.load(state_path, map_location="cpu", weights_only=True)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        first_epoch, best, best_epoch = (
            int(st["epoch"]) + 1,
            float(st["best"]),
            int(st["best_epoch"]),
        )
        history = json.loads(st["history"])
        gen.set_state(st["generator"])
        logger.info("resumed from epoch %d (best val nDCG@10 %.4f)", first_epoch, best)
    steps_per_epoch = math.ceil(len(train_idx) / config.batch_size)
    examples_seen, train_seconds = 0, 0.0
    stopped = "epochs"
    for epoch in range(first_epoch, config.epochs):
        model.train()
        t0 = time.perf_counter()
        perm = train_idx[torch.randperm(len(train_idx), generator=gen).numpy()]
        index = encode_catalog(model, prep.catalog)
        losses = []
        bar = tqdm(
            range(steps_per_epoch),
            desc=f"{name} epoch {epoch + 1}/{config.epochs}",
            unit="step",
            leave=False,
        )
        for step in bar:
            rows = perm[step * config.batch_size : (step + 1) * config.batch_size]
            if len(rows) < 2:
                continue
            if step and step % config.refresh_every == 0:
                index = encode_catalog(model, prep.catalog)
            pos = ex.item_rows[rows]
            q = model.encode_queries(prep.queries.inputs(rows), index).embedding  # (B, D)
            rand_rows, rand_log_q = uniform_negatives(n_items, lc.random_negatives, gen)
            hard_rows = valid = None
            if lc.triplet_weight > 0:
                exclude = [
                    known.get(ex.texts[r], set()) | {int(p)} for r, p in zip(rows, pos, strict=True)
                ]
                hard_rows, valid = mine_hard_negatives(
                    q.detach(), index, exclude, lc.hard_negatives, lc.hard_pool
                )
            parts = [torch.from_numpy(pos), rand_rows] + (
                [hard_rows[valid]] if hard_rows is not None else []
            )
            uniq, inverse = torch.unique(torch.cat(parts), return_inverse=True)
            item_out = model.encode_items(prep.catalog.inputs(uniq.numpy())).embedding  # (U, D)
            b, m = len(rows), len(rand_rows)
            pos_emb = item_out[inverse[:b]]
            loss = q.new_zeros(())
            if lc.softmax_weight > 0:
                loss = loss + lc.softmax_weight * sampled_softmax.compute_loss_from_embeddings(
                    q,
                    pos_emb,
                    log_q[pos],
                    torch.from_numpy(pos),
                    item_out[inverse[b : b + m]],
                    rand_log_q,
                    rand_rows,
                    lc.temperature,
                )
            if hard_rows is not None:
                neg = q.new_zeros(b, lc.hard_negatives, q.shape[1])
                neg[valid] = item_out[inverse[b + m :]]
                loss = loss + lc.triplet_weight * triplet.compute_loss_from_embeddings(
                    q, pos_emb, neg, valid, lc.margin
                )
            if lc.consistency_weight > 0 and config.model.use_image:
                it = prep.catalog.inputs(uniq.numpy())
                tv, iv, both = model.item_tower.text_and_image_views(
                    it.text, it.has_text, it.image, it.has_image, it.sparse
                )
                loss = loss + lc.consistency_weight * consistency.compute_loss_from_embeddings(
                    tv, iv, both, lc.consistency_temperature
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            examples_seen += len(rows)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        bar.close()
        train_seconds += time.perf_counter() - t0
        val = validate(model, prep, reps, rels)
        history.append(
            {
                "epoch": epoch + 1,
                "loss": float(np.mean(losses)) if losses else 0.0,
                **{f"val_{k}": v for k, v in val.items()},
            }
        )
        logger.info(
            "%s epoch %d: loss %.4f, val nDCG@10 %.4f, val recall@100 %.4f",
            name,
            epoch + 1,
            history[-1]["loss"],
            val["ndcg@10"],
            val["recall@100"],
        )
        if val["ndcg@10"] > best:
            best, best_epoch = val["ndcg@10"], epoch + 1
            save_run(
                out,
                name,
                config,
                model,
                prep.stats,
                {"dataset": str(data), "best_epoch": best_epoch, "val": val},
            )
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "epoch": epoch,
                "best": best,
                "best_epoch": best_epoch,
                "history": json.dumps(history),
                "generator": gen.get_state(),
            },
            state_path,
        )
        if epoch + 1 - best_epoch >= config.patience:
            stopped = "early stopping"
            break
        if (time.perf_counter() - start) / 60 > config.max_minutes:
            stopped = "time budget"
            logger.warning("stopping: time budget of %.1f minutes reached", config.max_minutes)
            break
    summary = {
        "name": name,
        "dataset": str(data),
        "examples": {
            "train": len(train_idx),
            "validation": len(val_idx),
            "validation_queries": len(reps),
        },
        "best_epoch": best_epoch,
        "best_val_ndcg@10": best,
        "stopped_by": stopped,
        "history": history,
        "examples_per_s": round(examples_seen / train_seconds, 1) if train_seconds else 0.0,
        "seconds": round(time.perf_counter() - start, 1),
    }
    info = json.loads((out / "run.json").read_text())
    info.update({"training": summary})
    (out / "run.json").write_text(json.dumps(info, indent=2, default=str))
    logger.info(
        "%s: best val nDCG@10 %.4f at epoch %d; %.0f examples/s; %.0fs",
        name,
        best,
        best_epoch,
        summary["examples_per_s"],
        summary["seconds"],
    )
    return summary
