"""Clickstream: event schema and validation, producer, and the stream worker."""
