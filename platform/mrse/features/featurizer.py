"""The one owner of how a model turns a catalog and its shoppers into model inputs.

A model's inputs depend on its shape (hash sizes, history length, modalities: ``FeatureShape``)
and on feature statistics fitted on the training catalog (vector means for centring). A
``Featurizer`` holds both; training builds one when it fits the statistics, and every trained
run hands out its own (``Run.featurizer``) to indexing, evaluation, serving and the workers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mrse.data.dataset import Dataset
from mrse.encoders.cache import FeatureCache
from mrse.features.catalog import CatalogFeatures, FeatureStats, model_catalog
from mrse.features.inputs import FeatureShape
from mrse.features.profile import ProfileState, empty_profile
from mrse.features.queries import QueryFeatures, build_query_features


@dataclass(frozen=True)
class Featurizer:
    shape: FeatureShape
    stats: FeatureStats

    @classmethod
    def fit(
        cls, dataset: Dataset, cache: FeatureCache, shape: FeatureShape
    ) -> tuple[Featurizer, CatalogFeatures]:
        """A new model's featurizer, its statistics fitted on ``dataset``; and that catalog."""
        catalog, stats = model_catalog(dataset, cache, shape)
        return cls(shape, stats), catalog

    def catalog(
        self, dataset: Dataset, cache: FeatureCache, images: bool | None = None
    ) -> CatalogFeatures:
        """Every item of ``dataset`` as the item tower reads it. Photos are encoded if the
        model reads them; ``images=True`` always (the stream worker's profiles keep the photo
        vectors of every item, whichever model is served)."""
        catalog, _ = model_catalog(dataset, cache, self.shape, self.stats, images)
        return catalog

    def queries(
        self,
        texts: Sequence[str],
        text_vectors: np.ndarray,
        profiles: Sequence[ProfileState],
        item_rows: Mapping[str, int],
    ) -> QueryFeatures:
        """A batch of queries with the asking shoppers' profiles, as the query tower reads it.

        Args:
            texts: Q query strings.
            text_vectors: (Q, Dt) raw query text vectors.
            profiles: Q profiles (``cold_profile()`` for a shopper with none).
            item_rows: item id -> row of the item embeddings given to the query tower, for the
                profiles' recent items (a catalog's ``index``, or the rows fetched for a batch).
        """
        return build_query_features(
            texts, text_vectors, profiles, item_rows, self.stats, self.shape
        )

    def cold_profile(self) -> ProfileState:
        """The profile of a shopper with no history, in this model's vector sizes."""
        return empty_profile(self.stats.text_mean.shape[0], self.stats.image_mean.shape[0])
