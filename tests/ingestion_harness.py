"""Shared by the end-to-end and fault-injection tests: isolated topics for one run, the job's
settings for them, and the comparison of the committed outputs with the generator's truth."""

from __future__ import annotations

import re
import uuid
from collections import Counter
from dataclasses import dataclass

from generator.synth import Dataset
from k8s.topics import ensure_topics
from local.kafka_read import Record, read_committed
from local.polling import WaitTimeout, wait_until
from tests import dlq_oracle
from models.avro_codec import SchemaCatalog
from models.events import CHANNELS

SALT = "e2e-salt-0123456789abcdef"


@dataclass(frozen=True)
class Topics:
    prefix: str
    inputs: tuple[str, ...]
    normalized: str
    dlq: str

    @classmethod
    def create(cls, bootstrap: str, name: str = "it") -> "Topics":
        prefix = f"{name}{uuid.uuid4().hex[:8]}"
        t = cls(prefix, tuple(f"{prefix}.events.{c}" for c in CHANNELS), f"{prefix}.normalized", f"{prefix}.dlq")
        ensure_topics(bootstrap, partitions=2, topics=(*t.inputs, t.normalized, t.dlq))
        return t

    def job_env(self, bootstrap: str, **extra: str) -> dict[str, str]:
        env = {
            "JOURNEY_PII_SALT": SALT,
            "JOURNEY_BOOTSTRAP_SERVERS": bootstrap,
            "JOURNEY_INPUT_TOPIC_PATTERN": re.escape(self.prefix) + r"\.events\..*",
            "JOURNEY_OUTPUT_TOPIC": self.normalized,
            "JOURNEY_DLQ_TOPIC": self.dlq,
            "JOURNEY_GROUP_ID": self.prefix,
            "JOURNEY_TRANSACTIONAL_ID_PREFIX": self.prefix,
            "JOURNEY_JOB_NAME": f"test-ingestion-{self.prefix}",
            "JOURNEY_CHECKPOINT_INTERVAL_MS": "1000",
            # ingestion alone (no profiles stage, no Cassandra): the erasure tests turn it on
            "JOURNEY_ERASURE_LEDGER": "off",
        }
        env.update(extra)
        return env


def wait_for_count(bootstrap: str, topic: str, count: int, timeout_s: float) -> list[Record]:
    """Re-read ``topic`` (read_committed) until it holds ``count`` records or time runs out
    (then the last read: the caller's comparison shows what is missing)."""
    try:
        return wait_until(
            lambda: read_committed(bootstrap, topic),
            timeout_s,
            2,
            f"{count} records in {topic}",
            until=lambda recs: len(recs) >= count,
        )
    except WaitTimeout as e:
        return e.last


@dataclass(frozen=True)
class Comparison:
    compared: int
    missing: int
    extra: int

    @property
    def mismatches(self) -> int:
        return self.missing + self.extra


def compare_with_truth(dataset: Dataset, normalized: list[Record], dlq: list[Record], salt: str = SALT) -> Comparison:
    """Multiset comparison: normalized event ids vs the unique valid ids, and dead letters
    (what is kept of the raw bytes, reason) vs the injected bad records, redacted as
    ``tests/dlq_oracle.py`` says. ``extra`` counts duplicates too."""
    catalog = SchemaCatalog.load()
    got = Counter(catalog.decode(r.value)[1]["event_id"] for r in normalized)
    want = Counter(dataset.truth.valid_event_ids)
    got_dl = Counter((d["raw"], d["error_type"]) for d in (catalog.decode(r.value)[1] for r in dlq))
    want_dl = Counter((dlq_oracle.expected(b.raw, salt)[0], b.error_type) for b in dataset.truth.bad_records)
    missing = sum((want - got).values()) + sum((want_dl - got_dl).values())
    extra = sum((got - want).values()) + sum((got_dl - want_dl).values())
    return Comparison(len(normalized) + len(dlq), missing, extra)
