"""Kafka topics of the project, created idempotently (local stack, CI and the k8s setup Job).

Usage: ``python -m k8s.topics [--bootstrap 127.0.0.1:9092] [--partitions 2]``
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any

from models import contract
from models.config import DEFAULT_BOOTSTRAP_SERVERS

#: input topics, one per channel of the Event schema (:data:`models.contract.INPUT_TOPICS`; the
#: ingestion job subscribes to ``journey\\.events\\..*``)
INPUT_TOPICS: tuple[str, ...] = contract.INPUT_TOPICS
#: output topics with the schema (schemas/*.avsc record name) each carries
OUTPUT_TOPICS: dict[str, str] = {
    "journey.normalized": "NormalizedEvent",
    "journey.dlq": "DeadLetter",
    "journey.identity": "IdentityEvent",
    "journey.profile-moves": "(internal: MovedState and JourneyMove, state moved on merges and splits)",
    "journey.sessions": "Session",
    "journey.triggers": "Trigger",
    "journey.late": "LateEvent",
    "journey.segments": "SegmentChange",
    "journey.scores": "Score",
    "journey.control": "(JSON rule updates: docs/segments.md)",
    "journey.control-results": "(JSON answers to rule updates, one per journeys subtask)",
}
ALL_TOPICS: tuple[str, ...] = INPUT_TOPICS + tuple(OUTPUT_TOPICS)
#: how long a topic that holds personal data keeps it (docs/privacy.md, "Erasure"): no topic is
#: keyed or compacted, so a record is never rewritten or tombstoned; it is deleted with its log
#: segment, at most this long (plus one segment's roll time, ``segment.ms``) after it was
#: written, well within the one month GDPR allows for an erasure
PERSONAL_DATA_RETENTION_MS = 7 * 24 * 3600 * 1000
PERSONAL_DATA_SEGMENT_MS = 24 * 3600 * 1000
#: what retention counts from: the time the broker appended the record. With the default
#: ``CreateTime`` it counts from the record's own timestamp, which the jobs' Kafka sinks set to
#: the event time: outputs about events older than the retention (a replay, history from a
#: backfill) were deleted minutes after they were committed, and a producer stamping future
#: times would keep personal data past it
TIMESTAMP_TYPE = "LogAppendTime"
TIMESTAMP_KEY = "message.timestamp.type"
#: the topics without personal data: rule updates and the answers to them
NO_PERSONAL_DATA = ("journey.control", "journey.control-results")
#: per-topic settings (the DLQ holds hashed identifiers only, docs/privacy.md)
TOPIC_CONFIG: dict[str, dict[str, str]] = {
    **{
        t: {
            "retention.ms": str(PERSONAL_DATA_RETENTION_MS),
            "segment.ms": str(PERSONAL_DATA_SEGMENT_MS),
            TIMESTAMP_KEY: TIMESTAMP_TYPE,
        }
        for t in (*INPUT_TOPICS, *OUTPUT_TOPICS)
        if t not in NO_PERSONAL_DATA
    },
    # rule updates are kept forever: a job started without a checkpoint rebuilds its rules from them
    "journey.control": {"retention.ms": "-1", TIMESTAMP_KEY: TIMESTAMP_TYPE},
    "journey.control-results": {TIMESTAMP_KEY: TIMESTAMP_TYPE},
}
#: topics whose partition count is fixed by design, whatever ``--partitions`` says.
#: journey.identity is a change log in resolution order: the last ``identifier_linked`` of an
#: identifier is its profile, which holds only within one partition (the profiles job refuses
#: to start on an identity topic with more)
#: journey.control holds rule updates, applied in the order they were published.
FIXED_PARTITIONS: dict[str, int] = {"journey.identity": 1, "journey.control": 1}


def ensure_topics(
    bootstrap: str,
    partitions: int = 2,
    replication: int = 1,
    topics: tuple[str, ...] = ALL_TOPICS,
    timeout_s: float = 30.0,
    auth: Any = None,
) -> list[str]:
    """Create missing topics; returns the names created.

    ``partitions`` applies to every topic but those in :data:`FIXED_PARTITIONS`. An existing
    topic keeps its partitions and settings, except its timestamp type, which is set to
    :data:`TIMESTAMP_TYPE` where :data:`TOPIC_CONFIG` asks for it (a topic created before it
    did: with ``CreateTime``, retention deletes committed outputs about old events); each
    topic altered is said on stderr (:func:`align_timestamp_type`).
    """
    from confluent_kafka.admin import AdminClient, NewTopic

    from state.kafka_clients import kafka_client_config

    admin = AdminClient(kafka_client_config(bootstrap, auth=auth))  # credentials: auth, else JOURNEY_KAFKA_*
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    for name in align_timestamp_type(admin, [t for t in topics if t in existing], timeout_s):
        print(f"topic {name}: {TIMESTAMP_KEY} set to {TIMESTAMP_TYPE} (docs/privacy.md)", file=sys.stderr)
    missing = [t for t in topics if t not in existing]
    if not missing:
        return []
    new = [
        NewTopic(t, FIXED_PARTITIONS.get(t, partitions), replication, config=TOPIC_CONFIG.get(t, {})) for t in missing
    ]
    futures = admin.create_topics(new, operation_timeout=timeout_s)
    created = []
    for name, fut in futures.items():
        try:
            fut.result()
            created.append(name)
        except Exception as e:  # TOPIC_ALREADY_EXISTS from a concurrent creator is fine
            if "TOPIC_ALREADY_EXISTS" not in str(e):
                raise RuntimeError(f"could not create topic {name}: {e}") from e
    return created


def align_timestamp_type(
    admin: Any, topics: list[str], timeout_s: float = 30.0, config: Mapping[str, Mapping[str, str]] = TOPIC_CONFIG
) -> list[str]:
    """Set ``message.timestamp.type`` to :data:`TIMESTAMP_TYPE` on those existing ``topics``
    whose ``config`` (per topic) asks for it and whose current value differs (an incremental
    alter: nothing else of theirs changes); returns their names. ``admin``: a
    ``confluent_kafka`` AdminClient."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

    wanted = [t for t in topics if config.get(t, {}).get(TIMESTAMP_KEY) == TIMESTAMP_TYPE]
    if not wanted:
        return []
    described = admin.describe_configs(
        [ConfigResource(ConfigResource.Type.TOPIC, t) for t in wanted], request_timeout=timeout_s
    )
    stale = []
    for resource, fut in described.items():
        entry = fut.result().get(TIMESTAMP_KEY)
        if entry is None or entry.value != TIMESTAMP_TYPE:
            stale.append(resource.name)
    if not stale:
        return []
    change = [ConfigEntry(TIMESTAMP_KEY, TIMESTAMP_TYPE, incremental_operation=AlterConfigOpType.SET)]
    futures = admin.incremental_alter_configs(
        [ConfigResource(ConfigResource.Type.TOPIC, t, incremental_configs=change) for t in sorted(stale)],
        request_timeout=timeout_s,
    )
    for resource, fut in futures.items():
        try:
            fut.result()
        except Exception as e:
            raise RuntimeError(f"could not set {TIMESTAMP_KEY}={TIMESTAMP_TYPE} on topic {resource.name}: {e}") from e
    return sorted(stale)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Create the project's Kafka topics (idempotent).")
    ap.add_argument("--bootstrap", default=DEFAULT_BOOTSTRAP_SERVERS)
    ap.add_argument("--partitions", type=int, default=2)
    ap.add_argument("--replication", type=int, default=1)
    args = ap.parse_args(argv)
    created = ensure_topics(args.bootstrap, args.partitions, args.replication)
    print(f"topics: {len(ALL_TOPICS)} total, created {len(created)}: {', '.join(created) or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
