"""Encoder throughput on this machine: item texts/s and photos/s, cache bypassed."""

from __future__ import annotations

import logging
import os
import platform
import time
from datetime import date
from pathlib import Path

import torch

from mrse.data.dataset import load_dataset
from mrse.encoders.image import ImageEncoder, preprocess
from mrse.encoders.text import TextEncoder

logger = logging.getLogger(__name__)


def benchmark_encoders(data: Path, n: int = 512) -> dict:
    """Encode ``n`` item texts and ``n`` photos of ``data`` from scratch and time both.

    Image throughput includes JPEG decoding and resizing, as a real catalog pass does; the
    default ONNX Runtime backend and eager PyTorch (on up to 128 photos) run back to back.
    """
    ds = load_dataset(data)
    texts = [t for t in ds.item_texts if t][:n]
    photos = [p for p in ds.items["image"] if p][:n]
    text_enc = TextEncoder()
    text_enc.encode(texts[:8])  # warm-up: first call allocates
    start = time.perf_counter()
    text_enc.encode(texts)
    text_s = time.perf_counter() - start
    titles = [t.split(". ")[0] for t in texts]
    start = time.perf_counter()
    text_enc.encode(titles)
    title_s = time.perf_counter() - start
    rates = {}
    for backend, count in (("onnx", len(photos)), ("torch", min(len(photos), 128))):
        img_enc = ImageEncoder(backend=backend)
        img_enc.encode_tensors(torch.stack([preprocess(p) for p in photos[:4]]))
        start = time.perf_counter()
        for s in range(0, count, img_enc.batch_size):
            batch = torch.stack([preprocess(p) for p in photos[s : min(count, s + 32)]])
            img_enc.encode_tensors(batch)
        rates[backend] = round(count / (time.perf_counter() - start), 1)
    return {
        "dataset": ds.name,
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads",
        "texts": len(texts),
        "texts_per_s": round(len(texts) / text_s, 1),
        "titles_per_s": round(len(titles) / title_s, 1),
        "images": len(photos),
        "images_per_s": rates["onnx"],
        "images_per_s_eager_torch": rates["torch"],
    }
