"""How every mrse process authenticates to Kafka: one owner for the client options.

Kafka credentials belong to the deployment, not to one process's config, and every Kafka client
of the platform (workers' consumers and dead-letter producers, the exposure logger, index
followers, topic creation, `mrse catalog publish`, `mrse stream replay`, `mrse ab report`) must
use them. So they come from the environment, read when a client is made:

- ``MRSE_KAFKA_SECURITY_PROTOCOL``: ``PLAINTEXT`` (default), ``SASL_PLAINTEXT``, ``SASL_SSL``,
  ``SSL``;
- ``MRSE_KAFKA_SASL_MECHANISM``: ``SCRAM-SHA-512`` (default), ``SCRAM-SHA-256``, ``PLAIN``;
- ``MRSE_KAFKA_USERNAME``, and the password from the file named by ``MRSE_KAFKA_PASSWORD_FILE``
  (a Docker secret) or ``MRSE_KAFKA_PASSWORD``;
- ``MRSE_KAFKA_CA_FILE``: the CA that signed the brokers' certificates (``*_SSL``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from mrse.settings import secret

PROTOCOLS = ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL")


class KafkaUnavailable(RuntimeError):
    """Kafka could not be reached or refused the credentials: said in one line, with who we
    tried to be."""


def unreachable(bootstrap: str, exc: BaseException) -> KafkaUnavailable:
    """The error for a client that could not bootstrap from ``bootstrap``."""
    opts = client_options()
    who = (f" as user {opts['sasl_plain_username']!r} ({opts['security_protocol']}, "
           f"{opts['sasl_mechanism']})" if "sasl_mechanism" in opts
           else f" ({opts.get('security_protocol', 'PLAINTEXT')})")  # fmt: skip
    return KafkaUnavailable(
        f"cannot connect to Kafka at {bootstrap}{who}: {type(exc).__name__}. Check the address, "
        "and MRSE_KAFKA_SECURITY_PROTOCOL / _SASL_MECHANISM / _USERNAME / _PASSWORD(_FILE) "
        "against the broker's listener"
    )


MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


def client_options(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Keyword arguments for ``KafkaProducer``, ``KafkaConsumer`` and ``KafkaAdminClient``.

    Raises:
        ValueError: an unknown protocol or mechanism, or SASL without a username or password.
    """
    environ = os.environ if environ is None else environ
    protocol = environ.get("MRSE_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT").upper()
    if protocol not in PROTOCOLS:
        raise ValueError(f"MRSE_KAFKA_SECURITY_PROTOCOL must be one of {', '.join(PROTOCOLS)}")
    if protocol == "PLAINTEXT":
        return {}
    out: dict[str, Any] = {"security_protocol": protocol}
    if protocol.startswith("SASL"):
        mechanism = environ.get("MRSE_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512").upper()
        if mechanism not in MECHANISMS:
            raise ValueError(f"MRSE_KAFKA_SASL_MECHANISM must be one of {', '.join(MECHANISMS)}")
        username = environ.get("MRSE_KAFKA_USERNAME")
        password = secret("MRSE_KAFKA_PASSWORD", environ=environ)
        if not username or not password:
            raise ValueError(
                f"{protocol} needs MRSE_KAFKA_USERNAME and MRSE_KAFKA_PASSWORD (or _FILE)"
            )
        out.update(sasl_mechanism=mechanism, sasl_plain_username=username,
                   sasl_plain_password=password)  # fmt: skip
    if protocol.endswith("SSL") and environ.get("MRSE_KAFKA_CA_FILE"):
        out["ssl_cafile"] = environ["MRSE_KAFKA_CA_FILE"]
    return out
