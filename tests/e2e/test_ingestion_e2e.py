"""Ingestion on the real stack: generator -> Kafka -> Flink standalone cluster -> Kafka.

The job runs unbounded with 1 s exactly-once checkpoints, as in production; outputs are read
with ``isolation.level=read_committed`` and compared with the generator's ground truth (an
independent oracle: it never calls the pipeline's code). Counters are read from the Flink
REST API while the job runs.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import Counter
from dataclasses import dataclass

import pytest

from generator.produce import produce
from generator.synth import Dataset, generate
from local.flink_cluster import cancel, operator_counters, submit, wait_state
from local.kafka_read import Record, read_committed
from local.polling import WaitTimeout, steady, wait_until
from models.avro_codec import SchemaCatalog
from tests import dlq_oracle
from tests.erasure_checks import raw_pii_needles
from tests.ingestion_harness import SALT, Topics, compare_with_truth, wait_for_count
from tests.metrics_checks import MetricViews, problems, read_views

pytestmark = pytest.mark.e2e

COUNTERS = ["received", "valid", "dead_lettered", "duplicates", "emitted"]


@dataclass
class Run:
    topics: Topics
    dataset: Dataset
    produced: int
    normalized: list[Record]
    dlq: list[Record]
    inputs: dict[tuple[str, int, int], bytes]
    counters: dict[str, int]
    metrics: MetricViews  # every metric of the job's own operators, over REST and Prometheus


@pytest.fixture(scope="module")
def run(local_stack: str) -> Run:
    bootstrap = local_stack
    topics = Topics.create(bootstrap)
    ds = generate(seed=20261123, persons=40)
    report = produce(ds, bootstrap, progress=False, topic_prefix=topics.prefix)
    job = submit("flink_jobs.ingestion", topics.job_env(bootstrap), detached=True)
    try:
        wait_state(job.job_id, {"RUNNING"}, timeout_s=120)
        truth = ds.truth
        wait_for_count(bootstrap, topics.normalized, len(truth.valid_event_ids), 300)
        wait_for_count(bootstrap, topics.dlq, len(truth.bad_records), 60)
        time.sleep(4)  # a few more checkpoints: anything extra (a duplicate) would show up now
        normalized = read_committed(bootstrap, topics.normalized)
        dlq = read_committed(bootstrap, topics.dlq)
        counters = _stable_counters(job.job_id, report.delivered)
        metrics = read_views(job.job_id, idle=True)
    finally:
        cancel(job.job_id)
    source = {(r.topic, r.partition, r.offset): r.value for t in topics.inputs for r in read_committed(bootstrap, t)}
    return Run(topics, ds, report.delivered, normalized, dlq, source, counters, metrics)


def _stable_counters(job_id: str, produced: int, timeout_s: float = 90) -> dict[str, int]:
    """Counters of the fused operators, by short name (received, valid, ..., reason.X.dead_lettered).

    Metrics reach the REST API with a few seconds' delay: wait until ``received`` has seen
    every produced record and two reads in a row agree.
    """

    def read() -> dict[str, int]:
        return {k.split(".", 1)[1]: v for k, v in operator_counters(job_id, COUNTERS).items()}

    try:
        return wait_until(
            read,
            timeout_s,
            2,
            f"counters of {job_id} with received >= {produced}, two equal reads",
            until=steady(lambda now: bool(now) and now.get("received", 0) >= produced),
        )
    except WaitTimeout as e:
        return e.last


def _decode(records: list[Record]) -> list[dict]:
    catalog = SchemaCatalog.load()
    return [catalog.decode(r.value)[1] for r in records]


def test_every_unique_valid_event_comes_out_exactly_once(run: Run) -> None:
    ids = sorted(e["event_id"] for e in _decode(run.normalized))
    assert ids == run.dataset.truth.valid_event_ids
    assert compare_with_truth(run.dataset, run.normalized, run.dlq).mismatches == 0


def test_dead_letter_topic_holds_exactly_the_injected_bad_records_by_reason(run: Run) -> None:
    got = Counter((d["raw"], d["error_type"]) for d in _decode(run.dlq))
    want = Counter((dlq_oracle.expected(b.raw, SALT)[0], b.error_type) for b in run.dataset.truth.bad_records)
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


def test_every_metric_of_the_reference_is_served_over_rest_and_prometheus_with_the_same_value(run: Run) -> None:
    assert problems(run.metrics, "ingestion", idle=True) == []
    assert run.metrics.rest[("dedupe-by-event-id", "received")] == run.produced


def test_dead_letters_point_back_at_their_source_record(run: Run) -> None:
    for d in _decode(run.dlq):
        key = (d["source_topic"], d["source_partition"], d["source_offset"])
        raw, form, size, digest = dlq_oracle.expected(run.inputs[key], SALT)
        assert (d["raw"], d["raw_form"], d["raw_size"], d["raw_digest"]) == (raw, form, size, digest)


def test_normalized_events_point_back_at_a_source_record_with_the_same_event_id(run: Run) -> None:
    catalog = SchemaCatalog.load()
    for e in _decode(run.normalized):
        src = run.inputs[(e["source_topic"], e["source_partition"], e["source_offset"])]
        assert catalog.decode(src)[1]["event_id"] == e["event_id"]


def test_no_raw_email_or_phone_reaches_either_output_topic_dead_letters_included(run: Run) -> None:
    """Every raw email and phone the generator planted (each person's spellings, and those of
    the rejected events), in any case and without its whitespace, searched for in every record
    of journey.normalized and journey.dlq (read_committed, all partitions, from the start)."""
    pii = raw_pii_needles(run.dataset)
    assert len(pii) > 20 and any(n.isdigit() for n in pii)
    dead = [d for d in _decode(run.dlq)]
    assert {d["raw_form"] for d in dead} == {"pii_hashed", "masked_prefix"}
    for topic, records in (("journey.normalized", run.normalized), ("journey.dlq", run.dlq)):
        assert records
        for r in records:
            low = r.value.lower()
            found = [n for n in pii if n in low]
            assert not found, f"{topic} offset {r.offset} holds raw PII {found[:3]}"


def test_raw_email_and_phone_never_leave_ingestion_only_their_salted_hashes(run: Run) -> None:
    blob = b"".join(r.value for r in run.normalized)
    hashes = {e["identifiers"]["email_hash"] for e in _decode(run.normalized)} | {
        e["identifiers"]["phone_hash"] for e in _decode(run.normalized)
    }
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
