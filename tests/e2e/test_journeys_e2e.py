"""Journeys on the real stack: generator -> Kafka -> ingestion job -> Kafka -> profiles job
(parallelism 2, exactly-once, identity merges moving journey state through the feedback
topic) -> journey.sessions / journey.triggers / journey.late (read_committed) and Cassandra
sessions / carts / triggers, compared field by field with the independent offline oracle
(generator/journey_truth.py) over the events the job read. Then an event far older than the
allowed lateness arrives: it is published on journey.late and changes nothing else."""

from __future__ import annotations

import dataclasses
import time

import pytest
from confluent_kafka import Producer

from generator.produce import produce
from generator.synth import generate
from local.flink_cluster import cancel, counter_total, submit, wait_for_counters, wait_state
from local.kafka_read import read_committed
from local.polling import wait_until
from models.avro_codec import SchemaCatalog
from models.identity import observation_of, resolve
from state.journey_store import JourneyStore
from tests.ingestion_harness import Topics
from tests.profile_oracle import RULES
from tests.profiles_harness import (
    ProfilesRun,
    journey_differences,
    read_journey_outputs,
    wait_until_journeys_equal_oracle,
)

pytestmark = pytest.mark.e2e

_COUNTERS = (
    "sessions",
    "triggers_cart_abandoned",
    "parts_sent",
    "parts_received",
    "suppressed_marketing",
    "late_dropped",
    "journey_parts",
    "orphan_journey_parts",
    "ticks",
)


DAY_MS = 24 * 3600 * 1000


def _late_copy(event: dict, catalog: SchemaCatalog, days_before: int) -> tuple[bytes, str]:
    """A new NormalizedEvent like ``event``, occurring ``days_before`` days earlier (far beyond
    the allowed lateness once event time has reached the data set's end). Produced straight to
    journey.normalized: a second ingestion run would read again what the first did not commit."""
    rec = dict(event, event_id=f"late-{event['event_id']}", occurred_at=event["occurred_at"] - days_before * DAY_MS)
    return catalog.codec("NormalizedEvent").encode(rec), rec["event_id"]


@pytest.fixture(scope="module")
def result(local_stack, session):
    bootstrap = local_stack
    topics = Topics.create(bootstrap, "jrny")
    ds = generate(seed=717, persons=40)
    produce(ds, bootstrap, progress=False, topic_prefix=topics.prefix)
    submit("flink_jobs.ingestion", topics.job_env(bootstrap), args=["--bounded"])
    run = ProfilesRun.create(bootstrap, topics, session)
    job = submit("flink_jobs.profiles", run.job_env(bootstrap), detached=True)
    catalog = SchemaCatalog.load()
    try:
        wait_state(job.job_id, {"RUNNING"}, timeout_s=120)
        t0 = time.monotonic()
        events = run.normalized_events(bootstrap)
        diff, got, want = wait_until_journeys_equal_oracle(bootstrap, session, run, events, timeout_s=300)
        seconds = time.monotonic() - t0
        counters = wait_for_counters(job.job_id, {"sessions": 1, "parts_received": 1}, list(_COUNTERS))
        store = JourneyStore(session, run.keyspace)
        final = resolve([observation_of(e) for e in events], RULES)
        profile_sessions = {pid: store.sessions(pid) for pid in sorted(set(final.profile_of.values()))[:8]}
        # an event 40 days older than the data set: beyond the allowed lateness
        template = next(e for e in events if e["event_type"] == "page_view")
        late_value, late_id = _late_copy(template, catalog, 40)
        producer = Producer({"bootstrap.servers": bootstrap})
        producer.produce(topics.normalized, value=late_value)
        producer.flush(10)
        late = wait_until(
            lambda: [catalog.decode(r.value)[1] for r in read_committed(bootstrap, run.late)],
            120,
            2,
            "journey.late",
            until=lambda recs: len(recs) >= 1,
        )
        after_late = read_journey_outputs(bootstrap, session, run)
        late_counters = wait_for_counters(job.job_id, {"late_dropped": 1}, [])
    finally:
        cancel(job.job_id)
    session.execute(f"DROP KEYSPACE IF EXISTS {run.keyspace}")
    return {
        "events": events,
        "diff": diff,
        "got": got,
        "want": want,
        "seconds": seconds,
        "counters": counters,
        "final": final,
        "profile_sessions": profile_sessions,
        "late": late,
        "late_id": late_id,
        "after_late": after_late,
        "late_counters": late_counters,
    }


def test_triggers_sessions_and_cassandra_rows_equal_the_oracle(result):
    assert result["diff"] == []
    kinds = {t["kind"] for t in result["got"].triggers}
    assert kinds == {"cart_abandoned", "cart_abandoned_escalation", "cart_recovered", "high_intent"}
    assert any(t["suppressed"] for t in result["want"].triggers)  # and those are only in Cassandra
    print(
        f"\n{len(result['got'].triggers)} triggers and {len(result['got'].sessions)} sessions equal to the oracle, "
        f"{result['seconds']:.1f} s after the job started"
    )


def test_triggers_name_the_persons_profile(result):
    final = result["final"]
    for t in result["got"].triggers:
        node = tuple(t["stream"].split(":", 1))
        assert t["profile_id"] == final.profile_of[node], t


def test_a_persons_sessions_are_read_back_under_the_profile(result):
    final = result["final"]
    want_by_pid: dict[str, set[str]] = {}
    for s in result["want"].sessions:
        if s["closed"]:
            pid = final.profile_of[tuple(s["stream"].split(":", 1))]
            want_by_pid.setdefault(pid, set()).add(s["session_id"])
    for pid, rows in result["profile_sessions"].items():
        assert {r["session_id"] for r in rows} == want_by_pid.get(pid, set()), pid
        assert [r["started_at"] for r in rows] == sorted((r["started_at"] for r in rows), reverse=True)


def test_counters_report_the_stage(result):
    c = {n: counter_total(result["counters"], n) for n in _COUNTERS}
    want = result["want"]
    assert c["sessions"] == len([s for s in want.sessions if s["closed"]])
    assert c["suppressed_marketing"] == sum(1 for t in want.triggers if t["suppressed"])
    assert c["triggers_cart_abandoned"] == sum(
        1 for t in want.triggers if t["kind"] == "cart_abandoned" and not t["suppressed"]
    )
    assert c["orphan_journey_parts"] == 0 and c["late_dropped"] == 0
    assert c["parts_sent"] == c["parts_received"] == c["journey_parts"] > 0
    assert c["ticks"] >= 1


def test_an_event_beyond_the_allowed_lateness_is_published_late_and_changes_nothing(result):
    (late,) = result["late"]
    assert (late["event_id"], late["reason"]) == (result["late_id"], "beyond_allowed_lateness")
    assert late["lateness_ms"] >= 40 * DAY_MS  # the watermark had reached the end of the data set
    with_late = dataclasses.replace(result["want"], late_dropped=[result["late_id"]])
    assert journey_differences(result["after_late"], with_late) == []
    assert counter_total(result["late_counters"], "late_dropped") == 1
