"""Ingestion on the real stack: generator -> Kafka -> Flink standalone cluster -> Kafka.

The job runs unbounded with 1 s exactly-once checkpoints, as in production; outputs are read
with ``isolation.level=read_committed`` and compared with the generator's ground truth (an
independent oracle: it never calls the pipeline's code). Counters are read from the Flink
REST API while the job runs.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
import uuid
from collections import Counter
from dataclasses import dataclass

import pytest

from generator.produce import produce
from generator.synth import Dataset, generate
from k8s.topics import ensure_topics
from local.flink_cluster import cancel, operator_counters, submit, wait_state
from local.kafka_read import Record, read_committed
from models.avro_codec import SchemaCatalog
from models.events import CHANNELS

pytestmark = pytest.mark.e2e

SALT = "e2e-salt-0123456789abcdef"
COUNTERS = ["received", "valid", "dead_lettered", "duplicates", "emitted"]


@dataclass
class Run:
    prefix: str
    dataset: Dataset
    produced: int
    normalized: list[Record]
    dlq: list[Record]
    inputs: dict[tuple[str, int, int], bytes]
    counters: dict[str, int]


def _wait_for(bootstrap: str, topic: str, count: int, timeout_s: float) -> list[Record]:
    deadline = time.monotonic() + timeout_s
    while True:
        recs = read_committed(bootstrap, topic)
        if len(recs) >= count or time.monotonic() > deadline:
            return recs
        time.sleep(2)


@pytest.fixture(scope="module")
def run(local_stack: str) -> Run:
    bootstrap = local_stack
    prefix = f"it{uuid.uuid4().hex[:8]}"
    inputs = [f"{prefix}.events.{c}" for c in CHANNELS]
    out_topic, dlq_topic = f"{prefix}.normalized", f"{prefix}.dlq"
    ensure_topics(bootstrap, partitions=2, topics=(*inputs, out_topic, dlq_topic))
    ds = generate(seed=20261123, persons=40)
    report = produce(ds, bootstrap, progress=False, topic_prefix=prefix)
    job = submit("flink_jobs.ingestion", {
        "JOURNEY_PII_SALT": SALT,
        "JOURNEY_BOOTSTRAP_SERVERS": bootstrap,
        "JOURNEY_INPUT_TOPIC_PATTERN": re.escape(prefix) + r"\.events\..*",
        "JOURNEY_OUTPUT_TOPIC": out_topic,
        "JOURNEY_DLQ_TOPIC": dlq_topic,
        "JOURNEY_GROUP_ID": prefix,
        "JOURNEY_TRANSACTIONAL_ID_PREFIX": prefix,
        "JOURNEY_JOB_NAME": f"e2e-ingestion-{prefix}",
        "JOURNEY_CHECKPOINT_INTERVAL_MS": "1000",
    }, detached=True)
    try:
        wait_state(job.job_id, {"RUNNING"}, timeout_s=120)
        truth = ds.truth
        normalized = _wait_for(bootstrap, out_topic, len(truth.valid_event_ids), 300)
        dlq = _wait_for(bootstrap, dlq_topic, len(truth.bad_records), 60)
        time.sleep(4)  # a few more checkpoints: anything extra (a duplicate) would show up now
        normalized = read_committed(bootstrap, out_topic)
        dlq = read_committed(bootstrap, dlq_topic)
        counters = _stable_counters(job.job_id, report.delivered)
    finally:
        cancel(job.job_id)
    source = {(r.topic, r.partition, r.offset): r.value for t in inputs for r in read_committed(bootstrap, t)}
    return Run(prefix, ds, report.delivered, normalized, dlq, source, counters)


def _stable_counters(job_id: str, produced: int, timeout_s: float = 90) -> dict[str, int]:
    """Counters of the fused operators, by short name (received, valid, ..., reason.X.dead_lettered).

    Metrics reach the REST API with a few seconds' delay: wait until ``received`` has seen
    every produced record and two reads in a row agree.
    """
    last: dict[str, int] = {}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        raw = operator_counters(job_id, COUNTERS)
        now = {k.split(".", 1)[1]: v for k, v in raw.items()}
        if now and now == last and now.get("received", 0) >= produced:
            return now
        last = now
        time.sleep(2)
    return last


def _decode(records: list[Record]) -> list[dict]:
    catalog = SchemaCatalog.load()
    return [catalog.decode(r.value)[1] for r in records]


def test_every_unique_valid_event_comes_out_exactly_once(run: Run) -> None:
    ids = sorted(e["event_id"] for e in _decode(run.normalized))
    assert ids == run.dataset.truth.valid_event_ids


def test_dead_letter_topic_holds_exactly_the_injected_bad_records_by_reason(run: Run) -> None:
    got = Counter((d["raw"], d["error_type"]) for d in _decode(run.dlq))
    want = Counter((b.raw, b.error_type) for b in run.dataset.truth.bad_records)
    assert got == want
    assert len(run.dlq) == len(run.dataset.truth.bad_records)


def test_received_equals_valid_plus_dead_lettered_plus_duplicates(run: Run) -> None:
    truth = run.dataset.truth
    c = run.counters
    assert run.produced == len(run.dataset.records)
    assert c["received"] == run.produced
    assert c["received"] == c["valid"] + c["dead_lettered"]
    assert c["valid"] == c["emitted"] + c["duplicates"]
    assert c["duplicates"] == truth.duplicate_count
    assert c["emitted"] == len(run.normalized)
    assert c["dead_lettered"] == len(run.dlq)
    # the same balance from the topics alone
    assert run.produced == len(run.normalized) + len(run.dlq) + truth.duplicate_count


def test_dead_letters_are_counted_per_reason(run: Run) -> None:
    by_reason = Counter(b.error_type for b in run.dataset.truth.bad_records)
    for reason, n in by_reason.items():
        assert run.counters[f"reason.{reason}.dead_lettered"] == n, reason


def test_dead_letters_point_back_at_their_source_record(run: Run) -> None:
    for d in _decode(run.dlq):
        key = (d["source_topic"], d["source_partition"], d["source_offset"])
        assert run.inputs[key] == d["raw"]


def test_normalized_events_point_back_at_a_source_record_with_the_same_event_id(run: Run) -> None:
    catalog = SchemaCatalog.load()
    for e in _decode(run.normalized):
        src = run.inputs[(e["source_topic"], e["source_partition"], e["source_offset"])]
        assert catalog.decode(src)[1]["event_id"] == e["event_id"]


def test_raw_email_and_phone_never_leave_ingestion_only_their_salted_hashes(run: Run) -> None:
    blob = b"".join(r.value for r in run.normalized)
    hashes = {e["identifiers"]["email_hash"] for e in _decode(run.normalized)} | \
             {e["identifiers"]["phone_hash"] for e in _decode(run.normalized)}
    seen_any = False
    for p in run.dataset.truth.persons:
        for raw in [*p.email_variants, *p.phone_variants, p.email or "", p.phone or ""]:
            if raw.strip():
                assert raw.strip().encode() not in blob
        for kind, value in (("email", p.email), ("phone", p.phone)):
            if value:
                # independent of models.normalize: the documented HMAC over "<type>:<value>"
                expected = hmac.new(SALT.encode(), f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()
                seen_any |= expected in hashes
    assert seen_any
