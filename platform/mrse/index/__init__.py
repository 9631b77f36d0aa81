"""Vector index: one small protocol, a Qdrant Edge backend (embedded) and a qdrant-client one."""

from mrse.index.base import Hit, SearchFilter, VectorIndex, point_id

__all__ = ["Hit", "SearchFilter", "VectorIndex", "point_id"]
