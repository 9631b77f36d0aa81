"""Batch encoding of a catalog with the content-keyed cache and progress bars."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from mrse.data.dataset import Dataset
from mrse.encoders.cache import FeatureCache, content_key
from mrse.encoders.image import FRAME_MODEL_IDS, IMAGE_DIM, ImageDecodeError, preprocess
from mrse.encoders.text import TEXT_DIM, TEXT_MODEL_ID

logger = logging.getLogger(__name__)


class LazyEncoder:
    """Calls ``method`` of an encoder built on first use, so a warm cache never loads a model.

    Keep one instance for many calls: each instance loads its model at most once.
    """

    def __init__(self, factory: Callable[[], object], method: str = "encode") -> None:
        self._factory = factory
        self._method = method
        self._encoder: object | None = None

    def __call__(self, batch):
        if self._encoder is None:
            self._encoder = self._factory()
        return getattr(self._encoder, self._method)(batch)


def lazy_text_encoder() -> LazyEncoder:
    from mrse.encoders.text import TextEncoder

    return LazyEncoder(TextEncoder, "encode")


def lazy_query_encoder(name: str = "minilm") -> tuple[LazyEncoder, str]:
    """(encoder, cache model id) of a query encoder: ``minilm`` (fp32, the training encoder)
    or ``minilm-int8`` (the serving default, ONNX Runtime)."""
    if name == "minilm":
        return lazy_text_encoder(), TEXT_MODEL_ID
    if name == "minilm-int8":
        from mrse.encoders.query_onnx import INT8_MODEL_ID, OnnxQueryEncoder

        return LazyEncoder(OnnxQueryEncoder, "encode"), INT8_MODEL_ID
    raise ValueError(f"unknown query encoder {name!r}; choose minilm or minilm-int8")


@dataclass
class EncodeStats:
    """What one encoding pass did: how much came from the cache, how fast the rest went."""

    total: int = 0
    cached: int = 0
    encoded: int = 0
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def per_second(self) -> float:
        return self.encoded / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class ItemFeatures:
    """Frozen-encoder features of a catalog, row-aligned with ``Dataset.items``.

    Attributes:
        item_ids: (N,) item ids.
        text: (N, 384) unit MiniLM vectors; zero rows where ``has_text`` is False.
        has_text: (N,) bool.
        image: (N, 1280) EfficientNet-Lite0 pooled features of the photo's centre (the towers'
            input); zero rows where ``has_image`` is False.
        has_image: (N,) bool.
        whole: (N, 1280) the same network's features of the whole photo (the photo channel's
            input, ``mrse.features.photo``); None where not encoded (then no channel).
    """

    item_ids: np.ndarray
    text: np.ndarray
    has_text: np.ndarray
    image: np.ndarray
    has_image: np.ndarray
    whole: np.ndarray | None = None


def encode_texts(
    texts: Sequence[str],
    encode: Callable[[list[str]], np.ndarray],
    cache: FeatureCache,
    model_id: str = TEXT_MODEL_ID,
    dim: int = TEXT_DIM,
    batch_size: int = 256,
    desc: str = "text",
) -> tuple[np.ndarray, EncodeStats]:
    """Encode ``texts`` (N,) to (N, dim), reading and filling the cache. Empty strings -> zeros."""
    stats = EncodeStats(total=len(texts))
    out = np.zeros((len(texts), dim), dtype=np.float32)
    keys = [content_key(model_id, t.encode()) for t in texts]
    todo_idx = [i for i, t in enumerate(texts) if t]
    hits = cache.get_many([keys[i] for i in todo_idx])
    missing: dict[str, list[int]] = {}
    for i in todo_idx:
        vec = hits.get(keys[i])
        if vec is None:
            missing.setdefault(keys[i], []).append(i)
        else:
            out[i] = vec
            stats.cached += 1
    unique = list(missing)
    start = time.perf_counter()
    with tqdm(total=len(unique), desc=f"encode {desc}", unit="text", disable=not unique) as bar:
        for s in range(0, len(unique), batch_size):
            chunk = unique[s : s + batch_size]
            vecs = encode([texts[missing[k][0]] for k in chunk])
            cache.put_many(chunk, vecs)
            for k, v in zip(chunk, vecs, strict=True):
                for i in missing[k]:
                    out[i] = v
                    stats.encoded += 1
            bar.update(len(chunk))
    stats.seconds = time.perf_counter() - start
    return out, stats


def encode_images(
    paths: Sequence[str],
    encode: Callable[[torch.Tensor], np.ndarray],
    cache: FeatureCache,
    dim: int = IMAGE_DIM,
    batch_size: int = 32,
    desc: str = "images",
    frame: str = "centre",
) -> tuple[np.ndarray, np.ndarray, EncodeStats]:
    """Encode photo files to (N, dim) features of their ``frame`` (``mrse.encoders.image.FRAMES``,
    cached under its ``FRAME_MODEL_IDS``) and an (N,) ok mask.

    Empty paths mean "no photo". An unreadable photo is counted in ``stats.failed`` (and
    logged), and its row stays zero with ``ok`` False: the item is kept, without an image.
    """
    stats = EncodeStats(total=len(paths))
    out = np.zeros((len(paths), dim), dtype=np.float32)
    ok = np.zeros(len(paths), dtype=bool)
    raw: dict[int, bytes] = {}
    keys: dict[int, str] = {}
    for i, p in enumerate(paths):
        if not p:
            continue
        try:
            raw[i] = Path(p).read_bytes()
        except OSError as exc:
            logger.warning("cannot read photo %s: %s", p, exc)
            stats.failed.append(p)
            continue
        keys[i] = content_key(FRAME_MODEL_IDS[frame], raw[i])
    hits = cache.get_many(list(set(keys.values())))
    todo = []
    for i, k in keys.items():
        if k in hits:
            out[i], ok[i] = hits[k], True
            stats.cached += 1
        else:
            todo.append(i)
    start = time.perf_counter()
    with tqdm(total=len(todo), desc=f"encode {desc}", unit="img", disable=not todo) as bar:
        for s in range(0, len(todo), batch_size):
            chunk, tensors = [], []
            for i in todo[s : s + batch_size]:
                try:
                    tensors.append(preprocess(raw[i], (frame,)))
                    chunk.append(i)
                except ImageDecodeError as exc:
                    logger.warning("cannot decode photo %s: %s", paths[i], exc)
                    stats.failed.append(paths[i])
            if chunk:
                vecs = encode(torch.stack(tensors))
                cache.put_many([keys[i] for i in chunk], vecs)
                out[chunk], ok[chunk] = vecs, True
                stats.encoded += len(chunk)
            bar.update(len(todo[s : s + batch_size]))
    stats.seconds = time.perf_counter() - start
    if stats.failed:
        logger.warning("%d photo(s) could not be read or decoded", len(stats.failed))
    return out, ok, stats


def encode_items(
    dataset: Dataset,
    cache: FeatureCache,
    text_encoder: object | None = None,
    image_encoder: object | None = None,
    images: bool = True,
) -> tuple[ItemFeatures, dict[str, EncodeStats]]:
    """Encode every item's text and photo (cached). Encoders load lazily, only if needed.

    Unreadable photos are recorded in ``dataset.report.unreadable_images``.
    """
    from mrse.encoders.image import ImageEncoder

    stats: dict[str, EncodeStats] = {}
    texts = dataset.item_texts
    encode_text = lazy_text_encoder() if text_encoder is None else text_encoder.encode  # type: ignore[attr-defined]
    text, stats["text"] = encode_texts(texts, encode_text, cache, desc=f"{dataset.name} text")
    has_text = np.array([bool(t) for t in texts])
    n = len(texts)
    if images:
        encode_img = (
            LazyEncoder(ImageEncoder, "encode_tensors")
            if image_encoder is None
            else image_encoder.encode_tensors  # type: ignore[attr-defined]
        )
        paths = list(dataset.items["image"])
        image, has_image, stats["image"] = encode_images(
            paths, encode_img, cache, desc=f"{dataset.name} images"
        )
        dataset.report.unreadable_images.extend(stats["image"].failed)
        whole, _, stats["whole photo"] = encode_images(
            paths, encode_img, cache, desc=f"{dataset.name} whole photos", frame="whole"
        )
    else:
        image, has_image = np.zeros((n, IMAGE_DIM), np.float32), np.zeros(n, bool)
        whole = None
    for name, s in stats.items():
        logger.info(
            "%s %s: %d total, %d from cache, %d encoded in %.1fs (%.1f/s), %d failed",
            dataset.name,
            name,
            s.total,
            s.cached,
            s.encoded,
            s.seconds,
            s.per_second,
            len(s.failed),
        )
    feats = ItemFeatures(
        item_ids=dataset.items["item_id"].to_numpy(dtype=object),
        text=text,
        has_text=has_text,
        image=image,
        has_image=has_image,
        whole=whole,
    )
    return feats, stats


def encode_query_texts(
    texts: list[str],
    cache: FeatureCache,
    encode: Callable[[list[str]], np.ndarray] | None = None,
    model_id: str = TEXT_MODEL_ID,
) -> np.ndarray:
    """Raw MiniLM vectors (Q, 384) of query strings through the cache.

    Pass one ``encode`` (e.g. a :func:`lazy_text_encoder`) across calls to load the model once;
    ``model_id`` keys the cache (another encoder of the same space: another id).
    """
    vecs, _ = encode_texts(
        texts, encode or lazy_text_encoder(), cache, model_id=model_id, desc="queries"
    )
    return vecs
