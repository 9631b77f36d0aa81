"""Logging for every mrse process: one format, library noise kept down (configured by the
entry point, never at import time)."""

from __future__ import annotations

import logging


def _closed_socket_race(record: logging.LogRecord) -> bool:
    """False for kafka-python's traceback when a client is closed while its network loop
    reads (``'NoneType' object has no attribute 'recv'``): harmless, the client is going
    away, but it printed an ERROR traceback at the end of successful runs. Kept at DEBUG."""
    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, AttributeError) and "no attribute 'recv'" in str(exc):
        record.levelno, record.levelname, record.exc_info, record.exc_text = (
            logging.DEBUG, "DEBUG", None, None,
        )  # fmt: skip
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
    return True


def setup_logging(verbose: bool) -> None:
    # Called before any heavy import: some libraries (fbgemm) configure the root logger when
    # imported, which would otherwise turn basicConfig into a no-op.
    level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    root = logging.getLogger()
    root.setLevel(level)
    for handler in root.handlers:
        # libraries that log INFO through the root logger itself (fbgemm's ~30 "Successfully
        # loaded" lines) are noise; their warnings still show
        handler.addFilter(lambda r: r.name != "root" or r.levelno >= logging.WARNING)
    for noisy in ("sentence_transformers", "transformers", "httpx", "bm25s", "kafka", "feast"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    transport = logging.getLogger("kafka.net.transport")
    if _closed_socket_race not in transport.filters:
        transport.addFilter(_closed_socket_race)
