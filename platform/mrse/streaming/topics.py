"""Topic names and creation (brokers in tests and the demo do not auto-create reliably)."""

from __future__ import annotations

import logging

from mrse.kafka_client import client_options, unreachable

logger = logging.getLogger(__name__)

CLICKS = "mrse.clicks"
DEAD_LETTER = "mrse.clicks.dlq"
EXPOSURES = "mrse.exposures"
CATALOG = "mrse.catalog"  # catalog events (mrse.catalog.worker)
CATALOG_DLQ = "mrse.catalog.dlq"


def ensure_topics(
    bootstrap: str, topics: list[str], partitions: int = 1, configs: dict[str, str] | None = None
) -> None:
    """Create the topics that do not exist yet (with the topic ``configs``, e.g. compaction;
    a topic that exists is left as it is)."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import KafkaConnectionError, KafkaTimeoutError, TopicAlreadyExistsError

    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap, client_id="mrse-admin", bootstrap_timeout_ms=10_000,
            **client_options(),
        )  # fmt: skip
    except (KafkaConnectionError, KafkaTimeoutError) as exc:  # every worker starts here
        raise unreachable(bootstrap, exc) from exc
    try:
        existing = set(admin.list_topics())
        new = [NewTopic(t, partitions, 1, topic_configs=configs or {}) for t in topics
               if t not in existing]  # fmt: skip
        if new:
            try:
                admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass
            logger.info("created topics %s", [t.name for t in new])
    finally:
        admin.close()
