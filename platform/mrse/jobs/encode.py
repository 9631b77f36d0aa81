"""`mrse encode`: a catalog's texts and photos into the feature cache, sharded and resumable.

Started by ``torchrun`` (``trainers/encode.py``), process ``RANK`` of ``WORLD_SIZE`` encodes the
items at rows ``RANK, RANK + WORLD_SIZE, ...``; all write to the one content-keyed cache (SQLite,
one transaction per batch). Killed at any point, a rerun encodes only what is not cached yet:
at most one batch per process is lost. Training, indexing and serving then read the cache and
encode nothing.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from mrse.data import load_dataset
from mrse.encoders.cache import FeatureCache
from mrse.encoders.features import LazyEncoder, encode_images, encode_texts, lazy_text_encoder

logger = logging.getLogger(__name__)


def shard_from_env() -> tuple[int, int]:
    """(rank, world size) as ``torchrun`` sets them; (0, 1) alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK={rank} and WORLD_SIZE={world} do not describe a shard")
    return rank, world


def encode_shard(
    data: Path,
    cache_dir: Path | None = None,
    images: bool = True,
    shard: tuple[int, int] | None = None,
) -> dict:
    """Encode this process's shard of ``data``'s items (``shard`` = (rank, world), default
    from the environment) into the cache; returns counts and rates per modality."""
    rank, world = shard or shard_from_env()
    dataset = load_dataset(data)
    rows = list(range(rank, len(dataset.items), world))
    texts = [dataset.item_texts[i] for i in rows]
    tag = f"{dataset.name}" + (f" shard {rank + 1}/{world}" if world > 1 else "")
    start = time.perf_counter()
    stats = {}
    with FeatureCache.open_default(cache_dir) as cache:
        _, stats["text"] = encode_texts(texts, lazy_text_encoder(), cache, desc=f"{tag} text")
        if images:
            from mrse.encoders.image import ImageEncoder

            photos = [str(dataset.items["image"].iloc[i]) for i in rows]
            encoder = LazyEncoder(ImageEncoder, "encode_tensors")
            _, _, stats["image"] = encode_images(photos, encoder, cache, desc=f"{tag} photos")
            _, _, stats["whole photo"] = encode_images(
                photos, encoder, cache, desc=f"{tag} whole photos", frame="whole"
            )
    summary = {
        "dataset": dataset.name,
        "shard": [rank, world],
        "items": len(rows),
        "seconds": round(time.perf_counter() - start, 1),
        **{
            name: {
                "total": s.total,
                "cached": s.cached,
                "encoded": s.encoded,
                "failed": len(s.failed),
                "per_second": round(s.per_second, 1),
            }
            for name, s in stats.items()
        },
    }
    logger.info("encoded %s", summary)
    return summary
