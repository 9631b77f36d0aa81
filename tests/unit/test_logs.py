"""The CLI's logging: kafka-python's close race is no ERROR traceback; real errors are."""

from __future__ import annotations

import logging

from mrse.logs import setup_logging


def _record(exc: BaseException, name: str = "kafka.net.transport") -> logging.LogRecord:
    try:
        raise exc
    except BaseException as e:
        info = (type(e), e, e.__traceback__)
    return logging.LogRecord(name, logging.ERROR, __file__, 1, "Error receiving", (), info)


def test_closed_socket_race_is_not_an_error_but_other_errors_are(caplog):
    setup_logging(False)
    logger = logging.getLogger("kafka.net.transport")
    with caplog.at_level(logging.WARNING, logger="kafka"):
        try:
            None.recv(4096)  # type: ignore[attr-defined]  # exactly what kafka-python hits
        except AttributeError as race:
            logger.handle(_record(race))
        logger.handle(_record(OSError("connection reset")))
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "connection reset" in str(errors[0].exc_info[1])
