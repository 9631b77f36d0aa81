"""Fixtures shared by the unit tests."""

from __future__ import annotations

import pytest
from qdrant_client import QdrantClient

from mrse.index.client import ClientIndex
from mrse.index.edge import EdgeIndex


@pytest.fixture(params=["edge", "client"])
def index(request, tmp_path):
    """An empty index of the test module's ``DIM`` on each backend: an Edge shard and a
    collection of the local Qdrant client."""
    dim = request.module.DIM
    idx = (
        EdgeIndex(tmp_path / "edge", dim)
        if request.param == "edge"
        else ClientIndex(QdrantClient(":memory:"), "items_v1", dim)
    )
    yield idx
    idx.close()
