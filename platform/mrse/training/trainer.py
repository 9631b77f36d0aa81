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
from mrse.encoders.features import encode_query_texts
from mrse.features.catalog import CatalogFeatures, FeatureStats
from mrse.features.featurizer import Featurizer
from mrse.features.queries import QueryFeatures, snapshot_profiles
from mrse.losses import consistency, sampled_softmax, triplet
from mrse.metrics.ranking import mean_metrics, query_metrics
from mrse.models.inference import encode_catalog, encode_queries
from mrse.models.towers import text_and_image_views
from mrse.models.two_tower import MRSEModel
from mrse.sampling.hard_negatives import mine_hard_negatives
from mrse.sampling.negatives import popularity_log_q, uniform_negatives
from mrse.training.checkpoint import save_run
from mrse.training.config import TrainConfig
from mrse.training.distributed import (
    agree,
    average_dense_gradients,
    dense_parameters,
    full_state_dict,
    init_from_env,
    shard_model,
)
from mrse.training.examples import Examples, build_examples, split_examples, validation_qrels

logger = logging.getLogger(__name__)


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


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
    if stats is None:
        featurizer, catalog = Featurizer.fit(dataset, cache, config.model)
    else:  # resuming: the statistics the run was started with
        featurizer = Featurizer(config.model, stats)
        catalog = featurizer.catalog(dataset, cache)
    examples = build_examples(dataset)
    profiles = snapshot_profiles(dataset.events, catalog, examples.requests(), config.profile)
    vecs = encode_query_texts(list(examples.texts), cache)
    queries = featurizer.queries(list(examples.texts), vecs, profiles, catalog)
    return PreparedData(dataset, featurizer.stats, catalog, examples, queries)


def validate(
    model: MRSEModel,
    data: PreparedData,
    items: torch.Tensor,
    reps: list[int],
    rels: list[dict[int, int]],
) -> dict[str, float]:
    """Retrieval metrics of the validation queries over the whole catalog (``items`` (N, D))."""
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

    Runs alone, or sharded when started by ``torchrun`` (see ``mrse.training.distributed``).
    Returns the run summary (also in ``out/run.json``).
    """
    start = time.perf_counter()
    parallel = init_from_env()
    if parallel.sharded and resume:
        raise ValueError("--resume is supported for single-process training only")
    if parallel.sharded and config.batch_size < 2 * parallel.world:
        raise ValueError(
            f"batch_size must be >= {2 * parallel.world} for {parallel.world} processes"
        )
    if config.threads:
        torch.set_num_threads(config.threads)
    if parallel.is_main:
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

    if parallel.sharded:
        model = shard_model(config.model, config.lr, parallel)
        dense = dense_parameters(model)
        opt = torch.optim.AdamW(dense, lr=config.lr, weight_decay=config.weight_decay, fused=True)
    else:
        model = MRSEModel(config.model)
        dense = []
        opt = torch.optim.AdamW(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True
        )
    state_path = out / "train_state.pt"
    first_epoch, best, best_epoch, history = 0, -1.0, -1, []
    if resume and state_path.exists():
        st = torch.load(state_path, map_location="cpu", weights_only=True)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        first_epoch, best = int(st["epoch"]) + 1, float(st["best"])
        best_epoch = int(st["best_epoch"])
        history = json.loads(st["history"])
        gen.set_state(st["generator"])
        logger.info("resumed from epoch %d (best val nDCG@10 %.4f)", first_epoch, best)
    # Sharded: every rank must make the same collective calls, so drop the ragged last batch.
    n_train = len(train_idx)
    steps_per_epoch = (
        n_train // config.batch_size if parallel.sharded else math.ceil(n_train / config.batch_size)
    )
    if steps_per_epoch == 0:
        raise ValueError(
            f"{n_train} training examples do not fill one batch of {config.batch_size}"
        )
    examples_seen, train_seconds = 0, 0.0
    stopped = "epochs"
    # The item index: mined from, attended over, and (after each epoch) validated against.
    index = encode_catalog(model, prep.catalog)
    for epoch in range(first_epoch, config.epochs):
        model.train()
        t0 = time.perf_counter()
        perm = train_idx[torch.randperm(len(train_idx), generator=gen).numpy()]
        losses = []
        bar = tqdm(
            range(steps_per_epoch),
            desc=f"{name} epoch {epoch + 1}/{config.epochs}",
            unit="step",
            leave=False,
            disable=not parallel.is_main,
        )
        for step in bar:
            rows = perm[step * config.batch_size : (step + 1) * config.batch_size]
            rows = rows[parallel.rank :: parallel.world]
            if len(rows) < 2:
                continue
            if step and step % config.refresh_every == 0:
                index = encode_catalog(model, prep.catalog)
            loss = hybrid_loss(model, prep, rows, index, known, log_q, config, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if parallel.sharded:
                average_dense_gradients(dense, parallel.world)
            opt.step()
            losses.append(float(loss.detach()))
            examples_seen += len(rows) * parallel.world
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        bar.close()
        index = encode_catalog(model, prep.catalog)  # serves validation and the next epoch
        train_seconds += time.perf_counter() - t0
        val = validate(model, prep, index, reps, rels)
        history.append(
            {
                "epoch": epoch + 1,
                "loss": float(np.mean(losses)) if losses else 0.0,
                **{f"val_{k}": v for k, v in val.items()},
            }
        )
        if parallel.is_main:
            logger.info(
                "%s epoch %d: loss %.4f, val nDCG@10 %.4f, val recall@100 %.4f",
                name,
                epoch + 1,
                history[-1]["loss"],
                val["ndcg@10"],
                val["recall@100"],
            )
        improved = agree(val["ndcg@10"] > best, parallel)
        if improved:
            best, best_epoch = val["ndcg@10"], epoch + 1
            state = full_state_dict(parallel) if parallel.sharded else model.state_dict()
            if parallel.is_main:
                info = {"dataset": str(data), "best_epoch": best_epoch, "val": val}
                save_run(out, name, config, state, prep.stats, info)
        if not parallel.sharded:
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
        if agree(epoch + 1 - best_epoch >= config.patience, parallel):
            stopped = "early stopping"
            break
        if agree((time.perf_counter() - start) / 60 > config.max_minutes, parallel):
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
        "world_size": parallel.world,
        "sharding": parallel.plan,
        "examples_per_s": round(examples_seen / train_seconds, 1) if train_seconds else 0.0,
        "seconds": round(time.perf_counter() - start, 1),
    }
    if parallel.is_main:
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
    if parallel.sharded:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return summary


def hybrid_loss(
    model: MRSEModel,
    prep: PreparedData,
    rows: np.ndarray,
    index: torch.Tensor,
    known: dict[str, set[int]],
    log_q: torch.Tensor,
    config: TrainConfig,
    gen: torch.Generator,
) -> torch.Tensor:
    """The configured sum of softmax, hard-negative triplet and consistency terms for a batch.

    Args:
        rows: (B,) example indices; index: (N, D) current (stale) item embeddings, used for
            mining and for the users' recent items.
    """
    lc, ex = config.loss, prep.examples
    n_items = len(prep.catalog)
    pos = ex.item_rows[rows]
    q = model.encode_queries(prep.queries.inputs(rows), index).embedding  # (B, D)
    rand_rows, rand_log_q = uniform_negatives(n_items, lc.random_negatives, gen)
    hard_rows = valid = None
    if lc.triplet_weight > 0:
        exclude = [known.get(ex.texts[r], set()) | {int(p)} for r, p in zip(rows, pos, strict=True)]
        hard_rows, valid = mine_hard_negatives(
            q.detach(), index, exclude, lc.hard_negatives, lc.hard_pool
        )
    parts = [torch.from_numpy(pos), rand_rows]
    if hard_rows is not None:
        parts.append(hard_rows[valid])
    uniq, inverse = torch.unique(torch.cat(parts), return_inverse=True)
    item_tower_out = model.encode_items(prep.catalog.inputs(uniq.numpy()))
    item_out = item_tower_out.embedding  # (U, D)
    b, m = len(rows), len(rand_rows)
    pos_emb = item_out[inverse[:b]]  # (B, D)
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
        neg = q.new_zeros(b, lc.hard_negatives, q.shape[1])  # (B, K, D)
        neg[valid] = item_out[inverse[b + m :]]
        loss = loss + lc.triplet_weight * triplet.compute_loss_from_embeddings(
            q, pos_emb, neg, valid, lc.margin
        )
    if lc.consistency_weight > 0 and config.model.use_image:
        tv, iv, both = text_and_image_views(item_tower_out)
        loss = loss + lc.consistency_weight * consistency.compute_loss_from_embeddings(
            tv, iv, both, lc.consistency_temperature
        )
    return loss
