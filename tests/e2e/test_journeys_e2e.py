"""Journeys on the real stack: generator -> Kafka -> ingestion job -> Kafka -> profiles job
(parallelism 2, exactly-once, identity merges moving journey state through the feedback
topic) -> journey.sessions / journey.triggers / journey.late (read_committed) and Cassandra
sessions / carts / triggers, compared field by field with the independent offline oracle
(generator/journey_truth.py) over the events the job read."""

from __future__ import annotations

import time
from typing import Any

import pytest

from generator.journey_truth import JourneySettings as OracleSettings
from generator.journey_truth import journey_truth
from generator.produce import produce
from generator.synth import generate
from local.flink_cluster import cancel, counter_total, submit, wait_for_counters, wait_state
from local.kafka_read import read_committed
from local.polling import WaitTimeout, wait_until
from models.avro_codec import SchemaCatalog
from models.identity import observation_of, resolve
from state.journey_store import JourneyStore
from tests.ingestion_harness import Topics
from tests.profile_oracle import RULES
from tests.profiles_harness import ProfilesRun

pytestmark = pytest.mark.e2e

SESSION_FIELDS = (
    "session_id",
    "stream",
    "started_at",
    "ended_at",
    "duration_ms",
    "events",
    "page_views",
    "product_views",
    "dwell_ms",
    "searches",
    "cart_adds",
    "checkouts",
    "purchases",
    "revenue",
    "channels",
    "first_referrer",
    "first_campaign",
    "engagement",
)
TRIGGER_FIELDS = (
    "trigger_id",
    "kind",
    "fired_at",
    "stream",
    "cart_id",
    "session_id",
    "product_id",
    "reason",
    "action",
    "engagement",
    "value",
    "items",
    "time_to_recovery_ms",
    "message_opened",
    "suppressed",
    "suppression_reason",
)


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


def _items(v: Any) -> Any:
    return None if v is None else [tuple(i.values()) if isinstance(i, dict) else tuple(i) for i in v]


def _trigger(t: dict[str, Any]) -> dict[str, Any]:
    return {k: _items(t[k]) if k == "items" else t[k] for k in TRIGGER_FIELDS}


def _latest_sessions(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        if r["session_id"] not in out or r["version"] > out[r["session_id"]]["version"]:
            out[r["session_id"]] = r
    return out


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
        events = run.normalized_events(bootstrap)
        want = journey_truth(events, (), OracleSettings())
        want_published = {t["trigger_id"]: t for t in want.triggers if not t["suppressed"]}
        t0 = time.monotonic()

        def published() -> dict[str, dict[str, Any]]:
            got = [catalog.decode(r.value)[1] for r in read_committed(bootstrap, run.triggers)]
            return {t["trigger_id"]: t for t in got}

        try:
            triggers = wait_until(
                published, 300, 3, "journey.triggers", until=lambda got: set(got) >= set(want_published)
            )
        except WaitTimeout as e:
            triggers = e.last
        seconds = time.monotonic() - t0
        time.sleep(3)  # nothing more may come
        triggers_raw = [catalog.decode(r.value)[1] for r in read_committed(bootstrap, run.triggers)]
        sessions_raw = [catalog.decode(r.value)[1] for r in read_committed(bootstrap, run.sessions)]
        counters = wait_for_counters(
            job.job_id,
            {"sessions": 1, "triggers_cart_abandoned": 1, "parts_sent": 1, "parts_received": 1},
            [n for n in _COUNTERS if n not in ("sessions", "triggers_cart_abandoned", "parts_sent", "parts_received")],
        )
        store = JourneyStore(session, run.keyspace)
        tables = {t: store.all_rows(t) for t in ("sessions", "carts", "triggers")}
        profile_sessions = {}
        final = resolve([observation_of(e) for e in events], RULES)
        some_pids = sorted(set(final.profile_of.values()))[:8]
        for pid in some_pids:
            profile_sessions[pid] = store.sessions(pid)
    finally:
        cancel(job.job_id)
    session.execute(f"DROP KEYSPACE IF EXISTS {run.keyspace}")
    return {
        "events": events,
        "want": want,
        "triggers": triggers,
        "triggers_raw": triggers_raw,
        "sessions_raw": sessions_raw,
        "seconds": seconds,
        "counters": counters,
        "tables": tables,
        "final": final,
        "profile_sessions": profile_sessions,
    }


def test_every_published_trigger_equals_the_oracle_exactly_once(result):
    want = {t["trigger_id"]: _trigger(t) for t in result["want"].triggers if not t["suppressed"]}
    got_raw = result["triggers_raw"]
    assert len(got_raw) == len({t["trigger_id"] for t in got_raw}), "a trigger was published twice"
    got = {t["trigger_id"]: _trigger(t) for t in got_raw}
    assert set(got) == set(want), (len(set(want) - set(got)), len(set(got) - set(want)))
    for tid, t in got.items():
        assert t == want[tid], tid
    kinds = {t["kind"] for t in got.values()}
    assert kinds == {"cart_abandoned", "cart_abandoned_escalation", "cart_recovered", "high_intent"}
    print(f"\n{len(got)} triggers equal to the oracle, {result['seconds']:.1f} s after the job started")


def test_triggers_name_the_persons_profile(result):
    final = result["final"]
    for t in result["triggers_raw"]:
        node = tuple(t["stream"].split(":", 1))
        assert t["profile_id"] == final.profile_of[node], t


def test_closed_sessions_equal_the_oracle_field_by_field(result):
    want = {s["session_id"]: s for s in result["want"].sessions if s["closed"]}
    got = _latest_sessions(result["sessions_raw"])
    assert set(got) == set(want)
    for sid, s in got.items():
        assert {k: s[k] for k in SESSION_FIELDS} == {k: want[sid][k] for k in SESSION_FIELDS}, sid
        assert s["version"] == 1  # nothing was late


def test_cassandra_holds_the_sessions_carts_and_every_trigger(result):
    want = result["want"]
    tables = result["tables"]
    sessions = _latest_sessions(tables["sessions"])
    assert set(sessions) == {s["session_id"] for s in want.sessions if s["closed"]}
    triggers = {t["trigger_id"]: _trigger(t) for t in tables["triggers"]}
    assert triggers == {t["trigger_id"]: _trigger(t) for t in want.triggers}  # suppressed ones too
    carts = {c["cart_id"]: c["status"] for c in tables["carts"]}
    assert carts == {c["cart_id"]: c["status"] for c in want.carts}


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
