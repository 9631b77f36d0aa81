"""New and changed items through the frozen encoders (via the content-keyed feature cache) and
every served model version's item tower: exactly the features `mrse index` computes."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import unquote, urlparse

import pandas as pd

from mrse.catalog.events import CatalogEventError
from mrse.catalog.plan import ItemChange
from mrse.catalog.writes import Upsert
from mrse.data.dataset import Dataset, ValidationReport
from mrse.encoders.cache import FeatureCache
from mrse.encoders.features import LazyEncoder, encode_items
from mrse.features.catalog import build_catalog_features
from mrse.index.points import (
    EXPLAIN_KEY,
    PHOTO_KEY,
    attribute_payload,
    item_points,
    lexical_terms,
)
from mrse.training.checkpoint import Run

logger = logging.getLogger(__name__)


MAX_PHOTO_BYTES = 20 * 1024 * 1024  # larger files are not read (decoded pixels: MAX_PIXELS)


def resolve_photo(photo: str, roots: tuple[Path, ...]) -> str:
    """The file a photo reference names, if it lies under one of ``roots``.

    Relative paths are taken from the first root; ``file://`` URIs are paths. Anything else (a
    URL, a path outside every root after resolving ``..`` and symbolic links) is refused: the
    worker reads photos only where it is told it may.

    Raises:
        CatalogEventError: ``photo_not_allowed``; ``photo_too_large`` (over 20 MiB).
    """
    if not photo:
        return ""
    parsed = urlparse(photo)
    if parsed.scheme == "file":
        photo = unquote(parsed.path)
    elif parsed.scheme and len(parsed.scheme) > 1:  # "C:" style drive letters are not schemes
        raise CatalogEventError(
            "photo_not_allowed", f"{parsed.scheme}:// photos are not fetched; use a file path"
        )
    if not roots:
        raise CatalogEventError("photo_not_allowed", "no photo_roots configured")
    path = Path(photo)
    if not path.is_absolute():
        path = roots[0] / path
    resolved = path.resolve()
    if not any(resolved.is_relative_to(root.resolve()) for root in roots):
        raise CatalogEventError(
            "photo_not_allowed", "the photo is outside the worker's photo_roots"
        )
    try:
        size = resolved.stat().st_size
    except OSError:
        return str(resolved)  # missing: reported as unreadable when it is encoded
    if size > MAX_PHOTO_BYTES:
        raise CatalogEventError("photo_too_large", f"{size:,} bytes > {MAX_PHOTO_BYTES:,}")
    return str(resolved)


class ItemEncoder:
    """Holds the encoders (loaded on first use) and the served runs."""

    def __init__(
        self, runs: dict[str, Run], cache_dir: Path | None, photo_roots: tuple[Path, ...]
    ) -> None:
        """``cache_dir``: the encoders' feature cache (opened per batch, in the worker's
        thread: SQLite connections stay in the thread that made them)."""
        from mrse.encoders.image import ImageEncoder
        from mrse.encoders.text import TextEncoder

        self.runs = runs
        self.cache_dir = cache_dir
        self.photo_roots = photo_roots
        self._encoders = SimpleNamespace(
            encode=LazyEncoder(TextEncoder, "encode"),
            encode_tensors=LazyEncoder(ImageEncoder, "encode_tensors"),
        )
        self.images = any(r.featurizer.shape.use_image or r.featurizer.shape.use_profile
                          for r in runs.values())  # fmt: skip

    def warm_up(self) -> None:
        """Load the encoders now, so the first new item does not wait for them."""
        import io

        import torch
        from PIL import Image

        from mrse.encoders.image import preprocess

        self._encoders.encode(["warm up"])
        if self.images:
            buf = io.BytesIO()
            Image.new("RGB", (32, 32)).save(buf, format="JPEG")
            self._encoders.encode_tensors(torch.stack([preprocess(buf.getvalue())]))

    def encode(
        self, changes: list[ItemChange], versions: list[str] | None = None, trusted: bool = False
    ) -> tuple[dict[str, Upsert], dict[str, CatalogEventError]]:
        """Upserts for ``changes`` (all of kind ``encode``) with vectors for ``versions``
        (default every run), and the items whose photo could not be used (they are encoded
        from their text: the missing-modality path). ``trusted``: photo paths come from the
        catalog snapshot, not from events (not checked against the photo roots)."""
        problems: dict[str, CatalogEventError] = {}
        photos = []
        for c in changes:
            assert c.content is not None
            if trusted:
                photos.append(c.content.photo)
                continue
            try:
                photos.append(resolve_photo(c.content.photo, self.photo_roots))
            except CatalogEventError as exc:
                problems[c.item_id] = exc
                photos.append("")
        items = pd.DataFrame(
            {
                "item_id": [c.item_id for c in changes],
                "title": [c.content.title for c in changes],  # type: ignore[union-attr]
                "description": [c.content.description for c in changes],  # type: ignore[union-attr]
                "brand": [c.content.brand for c in changes],  # type: ignore[union-attr]
                "category": [c.content.category for c in changes],  # type: ignore[union-attr]
                "price": [c.attributes.get("price") for c in changes],
                "image": photos,
            }
        )
        empty = pd.DataFrame()
        dataset = Dataset(Path("catalog-events"), items, empty, empty, empty, None,
                          ValidationReport())  # fmt: skip
        with FeatureCache.open_default(self.cache_dir) as cache:
            feats, _ = encode_items(dataset, cache, self._encoders, self._encoders, self.images)
        if self.images:
            for c, path, ok in zip(changes, photos, feats.has_image, strict=True):
                if path and not ok:
                    problems[c.item_id] = CatalogEventError(
                        "photo_unreadable", "the photo could not be read or decoded"
                    )
        attrs = [
            attribute_payload(
                c.content.category, c.content.brand,  # type: ignore[union-attr]
                c.attributes.get("price"), c.attributes.get("in_stock", True),
            )
            for c in changes
        ]  # fmt: skip
        upserts = {
            c.item_id: Upsert(a, {}, t)
            for c, a, t in zip(changes, attrs, lexical_terms(items), strict=True)
        }
        for version in versions if versions is not None else list(self.runs):
            run = self.runs[version]
            catalog = build_catalog_features(dataset, feats, run.featurizer.stats,
                                             run.featurizer.shape)  # fmt: skip
            vectors, payloads = item_points(run.model, catalog, attrs)
            for c, vec, p in zip(changes, vectors, payloads, strict=True):
                own = {k: p[k] for k in (EXPLAIN_KEY, PHOTO_KEY) if k in p}
                upserts[c.item_id].vectors[version] = (vec, own)
        return upserts, problems
