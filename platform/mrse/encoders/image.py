"""Image encoder: EfficientNet-Lite0 pooled features (1280-d) from product photos."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from mrse.encoders.efficientnet import EfficientNetLite0, load_pretrained

logger = logging.getLogger(__name__)

IMAGE_MODEL_ID = "efficientnet-lite0-57934424/pool1280/r256c224"
IMAGE_DIM = EfficientNetLite0.feature_dim
RESIZE = 256
CROP = 224


class ImageDecodeError(ValueError):
    """A file could not be decoded as an image."""


def preprocess(data: bytes | str | Path) -> torch.Tensor:
    """Decode a photo and produce the network input (3, 224, 224).

    Short side to 256 (bilinear), centre crop 224, ``(x / 255 - 0.498) / 0.502``.

    Raises:
        ImageDecodeError: the bytes are not a decodable image.
    """
    import io

    try:
        src = io.BytesIO(data) if isinstance(data, bytes) else data
        with Image.open(src) as im:
            im = im.convert("RGB")
            w, h = im.size
            scale = RESIZE / min(w, h)
            im = im.resize(
                (max(CROP, round(w * scale)), max(CROP, round(h * scale))), Image.BILINEAR
            )
            w, h = im.size
            left, top = (w - CROP) // 2, (h - CROP) // 2
            im = im.crop((left, top, left + CROP, top + CROP))
            arr = np.asarray(im, dtype=np.float32)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageDecodeError(str(exc)) from exc
    x = torch.from_numpy(arr).permute(2, 0, 1)
    return (x / 255.0 - 0.498) / 0.502


class ImageEncoder:
    """Photos -> (N, 1280) float32 pooled EfficientNet-Lite0 features (not normalised)."""

    model_id = IMAGE_MODEL_ID
    dim = IMAGE_DIM

    def __init__(self, batch_size: int = 32) -> None:
        self.batch_size = batch_size
        self.model = load_pretrained()

    @torch.inference_mode()
    def encode_tensors(self, batch: torch.Tensor) -> np.ndarray:
        """(B, 3, 224, 224) -> (B, 1280)."""
        return self.model.features(batch).numpy().astype(np.float32, copy=False)

    @torch.inference_mode()
    def classify(self, images: Sequence[bytes | str | Path]) -> torch.Tensor:
        """ImageNet logits (N, 1000) for a few photos (used to check the weights load right)."""
        return self.model(torch.stack([preprocess(x) for x in images]))
