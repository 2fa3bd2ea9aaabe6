"""Read a whole topic as a downstream consumer would: ``isolation.level=read_committed``."""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from local.polling import WaitTimeout, wait_until
from models.config import KafkaAuth
from state.kafka_clients import kafka_client_config


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


def read_committed(bootstrap: str, topic: str, timeout_s: float = 60.0, auth: KafkaAuth | None = None) -> list[Record]:
    """Every committed record of ``topic`` from the beginning up to its last stable offset.

    Stops when each partition reports end-of-partition (at the LSO, so open transactions are
    not waited for). Raises ``TimeoutError`` if that takes longer than ``timeout_s``. Credentials:
    ``auth``, else ``JOURNEY_KAFKA_*`` of the environment.
    """
    c = Consumer(
        kafka_client_config(
            bootstrap,
            {
                "group.id": f"reader-{time.time_ns()}",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
            },
            auth,
        )
    )
    try:
        md = c.list_topics(topic, timeout=10)
        if topic not in md.topics or md.topics[topic].error is not None:
            raise ValueError(f"topic {topic} does not exist on {bootstrap}")
        parts = sorted(md.topics[topic].partitions)
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        pending = set(parts)
        out: list[Record] = []

        def poll_once() -> set[int]:
            """Take one record or end-of-partition event (blocks up to 0.5 s); the partitions left."""
            m = c.poll(0.5)
            if m is not None and m.error():
                if m.error().code() != -191:  # _PARTITION_EOF
                    raise RuntimeError(f"reading {topic}: {m.error()}")
                pending.discard(m.partition())
            elif m is not None:
                out.append(Record(m.topic(), m.partition(), m.offset(), m.key(), m.value()))
            return pending

        try:
            wait_until(
                poll_once, timeout_s, 0, f"every partition of {topic} read to its end", until=lambda left: not left
            )
        except WaitTimeout:
            raise TimeoutError(f"reading {topic}: partitions {sorted(pending)} not at end after {timeout_s}s") from None
        return out
    finally:
        c.close()


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """High watermark per partition (counts records plus transaction markers)."""
    c = Consumer(kafka_client_config(bootstrap, {"group.id": f"offsets-{time.time_ns()}"}))
    try:
        md = c.list_topics(topic, timeout=10)
        return {
            p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in md.topics[topic].partitions
        }
    finally:
        c.close()


def group_lag(bootstrap: str, group: str, topic: str) -> int:
    """Records of ``topic`` past the offsets ``group`` committed (a Flink job commits its
    source offsets on each completed checkpoint); a partition with no commit counts whole."""
    c = Consumer(kafka_client_config(bootstrap, {"group.id": group, "enable.auto.commit": False}))
    try:
        parts = [TopicPartition(topic, p) for p in c.list_topics(topic, timeout=10).topics[topic].partitions]
        lag = 0
        for tp in c.committed(parts, timeout=10):
            low, high = c.get_watermark_offsets(tp, timeout=10)
            lag += high - (tp.offset if tp.offset >= 0 else low)
        return lag
    finally:
        c.close()
