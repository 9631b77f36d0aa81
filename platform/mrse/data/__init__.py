"""Datasets in the benchmark layout: loading, validation, import and sampling."""

from mrse.data.dataset import Dataset, DataValidationError, ValidationReport, load_dataset

__all__ = ["Dataset", "DataValidationError", "ValidationReport", "load_dataset"]
