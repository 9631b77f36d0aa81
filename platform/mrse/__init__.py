"""MRSE: multi-modality retrieval for e-commerce search."""

__version__ = "0.1.0"
