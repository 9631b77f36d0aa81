"""Image encoder: EfficientNet-Lite0 pooled features (1280-d) from product photos."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from mrse.encoders.efficientnet import EfficientNetLite0, load_pretrained

logger = logging.getLogger(__name__)

IMAGE_MODEL_ID = "efficientnet-lite0-57934424/pool1280/r256c224"
# the same network on the whole photo squashed to 224x224 (the photo channel's input)
WHOLE_MODEL_ID = "efficientnet-lite0-57934424/pool1280/whole224"
IMAGE_DIM = EfficientNetLite0.feature_dim
RESIZE = 256
CROP = 224


class ImageDecodeError(ValueError):
    """A file could not be decoded as an image."""


class ImageTooLarge(ImageDecodeError):
    """An image declares more pixels than ``MAX_PIXELS`` (a decompression bomb, or a photo too
    big to decode safely)."""


# the most pixels a photo may have: a 40-megapixel camera image decodes to 120 MB of RGB; a
# "decompression bomb" (a small file declaring billions of pixels) is refused from its header
MAX_PIXELS = 40_000_000


def _centre(im: Image.Image) -> Image.Image:
    """Short side to 256 (bilinear), centre crop 224: what the towers see of a photo."""
    w, h = im.size
    scale = RESIZE / min(w, h)
    im = im.resize((max(CROP, round(w * scale)), max(CROP, round(h * scale))), Image.BILINEAR)
    w, h = im.size
    left, top = (w - CROP) // 2, (h - CROP) // 2
    return im.crop((left, top, left + CROP, top + CROP))


def _whole(im: Image.Image) -> Image.Image:
    """The whole photo squashed to 224x224 (bilinear): what the photo channel sees of it (a
    shopper's photo shows a part of the product photo, rarely its centre; measured in
    docs/benchmarks.md, "Shop by photo")."""
    return im.resize((CROP, CROP), Image.BILINEAR)


FRAMES = {"centre": _centre, "whole": _whole}
# the feature cache's model id of each frame's features
FRAME_MODEL_IDS = {"centre": IMAGE_MODEL_ID, "whole": WHOLE_MODEL_ID}


def preprocess(data: bytes | str | Path, frames: tuple[str, ...] = ("centre",)) -> torch.Tensor:
    """Decode a photo once and produce the network input of each of its ``frames`` (a name of
    ``FRAMES``): (3, 224, 224) for one frame, (F, 3, 224, 224) for several; pixels as
    ``(x / 255 - 0.498) / 0.502``.

    Raises:
        ImageDecodeError: the bytes are not a decodable image.
        ImageTooLarge: the photo declares more than ``MAX_PIXELS`` pixels.
    """
    import io

    try:
        src = io.BytesIO(data) if isinstance(data, bytes) else data
        with Image.open(src) as im:
            if im.size[0] * im.size[1] > MAX_PIXELS:  # read from the header, before decoding
                raise ImageTooLarge(f"{im.size[0]}x{im.size[1]} pixels: over {MAX_PIXELS:,}")
            im = im.convert("RGB")
            arrs = [np.asarray(FRAMES[f](im), dtype=np.float32) for f in frames]
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(str(exc)) from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageDecodeError(str(exc)) from exc
    x = (torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2) / 255.0 - 0.498) / 0.502
    return x[0] if len(frames) == 1 else x


class _Features(torch.nn.Module):
    """Export wrapper: the pooled features, not the logits."""

    def __init__(self, model: EfficientNetLite0) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.features(x)


def export_onnx(model: EfficientNetLite0, path: Path) -> Path:
    """Write the feature extractor as ONNX (batch axis dynamic, 224x224 input fixed)."""
    import warnings

    path.parent.mkdir(parents=True, exist_ok=True)
    # Several processes (e.g. torchrun ranks) may export at once: each writes its own file and
    # the atomic rename makes the last identical copy win.
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp")
    with warnings.catch_warnings():
        # SAME padding is traced as constants: exact for the fixed 224x224 input.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Features(model),
            (torch.zeros(1, 3, CROP, CROP),),
            str(tmp),
            input_names=["pixels"],
            output_names=["features"],
            dynamic_axes={"pixels": {0: "batch"}, "features": {0: "batch"}},
            dynamo=False,
        )
    tmp.replace(path)
    return path


class ImageEncoder:
    """Photos -> (N, 1280) float32 pooled EfficientNet-Lite0 features (not normalised).

    ``backend="onnx"`` (default when onnxruntime is installed) runs the same weights through
    ONNX Runtime, about 2-3x faster than eager PyTorch on CPU; ``"torch"`` runs them eagerly.
    Both produce the same features (checked by a test).
    """

    model_id = IMAGE_MODEL_ID
    dim = IMAGE_DIM

    def __init__(
        self, batch_size: int = 32, backend: str = "auto", cache_dir: Path | None = None
    ) -> None:
        self.batch_size = batch_size
        self.model = load_pretrained()
        if backend == "auto":
            try:
                import onnxruntime  # noqa: F401

                backend = "onnx"
            except ImportError:
                backend = "torch"
        if backend not in ("onnx", "torch"):
            raise ValueError(f"backend must be 'onnx', 'torch' or 'auto', got {backend!r}")
        self.backend = backend
        self._session = None
        if backend == "onnx":
            import onnxruntime as ort

            from mrse.encoders.cache import default_cache_dir

            path = (cache_dir or default_cache_dir()) / "models" / "efficientnet-lite0-feat.onnx"
            if not path.exists():
                export_onnx(self.model, path)
            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            # ONNX Runtime takes every core unless told: honour OMP_NUM_THREADS as torch does,
            # so P sharded encoders on P cores (trainers/encode.py) do not oversubscribe them
            threads = os.environ.get("OMP_NUM_THREADS", "")
            if threads.isdigit() and int(threads) > 0:
                opts.intra_op_num_threads = int(threads)
            self._session = ort.InferenceSession(
                str(path), opts, providers=["CPUExecutionProvider"]
            )

    @torch.inference_mode()
    def encode_tensors(self, batch: torch.Tensor) -> np.ndarray:
        """(B, 3, 224, 224) -> (B, 1280)."""
        if self._session is not None:
            return self._session.run(None, {"pixels": batch.numpy()})[0].astype(np.float32)
        return self.model.features(batch).numpy().astype(np.float32, copy=False)

    @torch.inference_mode()
    def classify(self, images: Sequence[bytes | str | Path]) -> torch.Tensor:
        """ImageNet logits (N, 1000) for a few photos (used to check the weights load right)."""
        return self.model(torch.stack([preprocess(x) for x in images]))
