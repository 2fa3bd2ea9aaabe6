"""Erasure on the real stack (docs/privacy.md, "Erasure"), then a full replay.

Generated data with planted erasure requests (each the person's last event) -> Kafka ->
ingestion job -> profiles job (parallelism 2, exactly-once). Checked against the erasure
oracle (``generator/erasure_truth.py``, computed from the events alone):

* every Cassandra table holds nothing of an erased person (no row under any of their profile
  ids, no link of any of their identifiers) and the rest equals the profile oracle over the
  events no erasure removed; the ledger holds exactly their tombstones; the audit trail has
  each stage's row for each request and no personal data; ``journey.identity`` announces
  ``profile_erased`` for each of their ids; ``journey privacy report`` by their raw email
  finds nothing;
* then everything is replayed from the earliest offsets by new jobs (new consumer groups, new
  output topics, the same Cassandra): the ingestion job drops every record of theirs
  (``erased``; received = valid + dead-lettered + erased, valid = emitted + duplicates), and
  its output is the first run's without their events; a profiles job started with no state
  on the first run's ``journey.normalized`` (which still holds their events) drops every one
  of them (``erased``), writes no record about them to any topic, and Cassandra still holds
  nothing of them.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from generator.produce import produce
from generator.synth import generate
from k8s.topics import ensure_topics
from local import stack
from local.flink_cluster import cancel, submit, wait_state
from local.kafka_read import read_committed
from local.polling import wait_until
from models.erasure import tombstone_key
from tests.erasure_checks import (
    INGEST_COUNTERS,
    PROFILE_TABLES,
    ROUTER_COUNTERS,
    counters_when,
    decoded,
    mentions,
    output_topics,
    replay_profiles,
    raw_pii_found,
    raw_pii_needles,
    rows_of,
    traces,
)
from generator.erasure_truth import erasures, erased_event_ids, erased_ids, erased_nodes
from tests.ingestion_harness import SALT, Topics
from tests.profiles_harness import ProfilesRun, wait_until_cassandra_equals_oracle

pytestmark = pytest.mark.e2e


@dataclass
class Pass:
    """What one pass of the jobs left."""

    counters: dict[str, int]
    topics: dict[str, list[dict[str, Any]]]


def _privacy_report(keyspace: str, email: str) -> tuple[int, str]:
    from journey_cli.main import main as journey

    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        mp.setenv("JOURNEY_CASSANDRA_PORT", str(stack.CASSANDRA_PORT))
        mp.setenv("JOURNEY_KEYSPACE", keyspace)
        mp.setenv("JOURNEY_PII_SALT", SALT)
        code = journey(["privacy", "report", "--email", email, "--json"])
    return code, out.getvalue()


@pytest.fixture(scope="module")
def erased(local_stack, session):
    bootstrap = local_stack
    topics = Topics.create(bootstrap, "erase")
    ds = generate(seed=29, persons=40)
    report = produce(ds, bootstrap, progress=False, topic_prefix=topics.prefix)
    run = ProfilesRun.create(bootstrap, topics, session)
    ledger = {"JOURNEY_ERASURE_LEDGER": "cassandra", "JOURNEY_KEYSPACE": run.keyspace}
    submit("flink_jobs.ingestion", topics.job_env(bootstrap, **ledger), args=["--bounded"])
    events = run.normalized_events(bootstrap)
    oracle = erasures(events)
    assert oracle, "the data set has an erasure request"
    job = submit("flink_jobs.profiles", run.job_env(bootstrap), detached=True)
    try:
        wait_state(job.job_id, {"RUNNING"}, timeout_s=120)
        cassandra_diff, _ = wait_until_cassandra_equals_oracle(session, run.keyspace, events, timeout_s=300)
        stages = {"profiles", "journeys", "models"}
        requests = {r for er in oracle for r in er.request_ids}
        wait_until(
            lambda: {(r.ref, r.stage) for r in session.execute(f"SELECT ref, stage FROM {run.keyspace}.privacy_audit")},
            180,
            2,
            "every stage's audit row of every erasure request",
            until=lambda got: {(r, s) for r in requests for s in stages} <= got,
        )
        first_counters = counters_when(
            job.job_id, ROUTER_COUNTERS, lambda c: c["events"] >= len(events), "the router's counters"
        )
        rows = rows_of(session, run.keyspace)
        first_topics = {k: decoded(bootstrap, t) for k, t in output_topics(run).items()}
        # every topic the jobs wrote (read_committed, all partitions, from the start) and every
        # row of every table, as bytes, for the raw-PII scan
        written = (topics.normalized, topics.dlq, run.feedback, *output_topics(run).values())
        blobs = {t: [r.value for r in read_committed(bootstrap, t)] for t in written}
        for table in session.cluster.metadata.keyspaces[run.keyspace].tables:
            blobs[table] = [repr(tuple(r)).encode() for r in session.execute(f"SELECT * FROM {run.keyspace}.{table}")]
        person = next(p for p in ds.truth.persons if p.erased and p.email_variants)
        report_code, report_out = _privacy_report(run.keyspace, person.email_variants[-1])
    finally:
        cancel(job.job_id)

    # the replay: new jobs from the earliest offsets, the same Cassandra
    replay_prefix = f"replay{uuid.uuid4().hex[:8]}"
    ingest_replay = Topics(replay_prefix, topics.inputs, f"{replay_prefix}.normalized", f"{replay_prefix}.dlq")
    ensure_topics(bootstrap, partitions=2, topics=(ingest_replay.normalized, ingest_replay.dlq))
    env = ingest_replay.job_env(
        bootstrap, JOURNEY_INPUT_TOPIC_PATTERN=re.escape(topics.prefix) + r"\.events\..*", **ledger
    )
    ingestion = submit("flink_jobs.ingestion", env, detached=True)
    try:
        wait_state(ingestion.job_id, {"RUNNING"}, timeout_s=120)
        ingest_counters = counters_when(
            ingestion.job_id,
            INGEST_COUNTERS,
            lambda c: c["received"] >= report.delivered and c["emitted"] + c["duplicates"] >= c["valid"] > 0,
            "the replayed ingestion's counters",
        )
        replayed_events = decoded(bootstrap, ingest_replay.normalized)
        replayed_dlq = decoded(bootstrap, ingest_replay.dlq)
    finally:
        cancel(ingestion.job_id)
    replay = replay_profiles(bootstrap, session, topics.normalized, run.keyspace, events)
    session.execute(f"DROP KEYSPACE IF EXISTS {run.keyspace}")
    return {
        "events": events,
        "oracle": oracle,
        "cassandra_diff": cassandra_diff,
        "rows": rows,
        "first": Pass(first_counters, first_topics),
        "report": (report_code, report_out),
        "person": person,
        "ingest_counters": ingest_counters,
        "replayed_events": replayed_events,
        "replayed_dlq": replayed_dlq,
        "replay": replay,
        "pii": raw_pii_found(blobs, raw_pii_needles(ds)),
        "scanned": {k: len(v) for k, v in blobs.items()},
    }


def test_no_topic_and_no_table_holds_a_raw_email_or_phone(erased):
    """Every raw email and phone the generator planted (any case, whitespace stripped, a phone's
    digits) searched for in every record of every topic the jobs wrote and every table row."""
    assert erased["pii"] == []
    scanned = erased["scanned"]
    assert all(scanned[t] for t in ("profiles", "sessions", "scores", "privacy_audit")), scanned
    print(f"\nscanned {sum(scanned.values())} records and rows in {len(scanned)} topics and tables: no raw PII")


def test_cassandra_holds_nothing_of_an_erased_person_and_the_rest_is_the_oracles(erased):
    ids, nodes = erased_ids(erased["events"]), erased_nodes(erased["events"])
    assert erased["cassandra_diff"] == []
    assert traces(erased["rows"], ids, nodes) == []
    # the person had rows before: their sessions were published before the erasure
    assert any(mentions(s, ids, nodes) for s in erased["first"].topics["sessions"])
    print(f"\n{len(erased['oracle'])} erasures, {len(nodes)} identifiers and {len(ids)} profile ids: no row left")


def test_the_ledger_holds_exactly_their_tombstones_and_the_audit_no_personal_data(erased):
    nodes = erased_nodes(erased["events"])
    assert {r.tombstone for r in erased["rows"]["erased_identifiers"]} == {tombstone_key(n) for n in nodes}
    audit = [r for r in erased["rows"]["privacy_audit"] if r.action == "erasure"]
    requests = {r for er in erased["oracle"] for r in er.request_ids}
    assert {r.ref for r in audit} == requests
    for r in audit:
        assert r.rows > 0 and r.tables, r
        assert not mentions(r._asdict(), erased_ids(erased["events"]), nodes), r
    consent = [r for r in erased["rows"]["privacy_audit"] if r.action == "consent_change"]
    assert consent and all(r.purpose and r.source and r.granted is not None for r in consent)


def test_journey_identity_announces_every_erased_profile_id(erased):
    announced = {e["profile_id"] for e in erased["first"].topics["identity"] if e["kind"] == "profile_erased"}
    assert announced == set(erased_ids(erased["events"]))
    c = erased["first"].counters
    assert c["erasures"] == c["erasure_requests"] == len(erased["oracle"])


def test_the_privacy_report_finds_nothing_on_an_erased_person(erased):
    code, out = erased["report"]
    assert code == 0, out
    rep = json.loads(out)
    assert rep["profile_id"] is None and not any(rep.get(t) for t in PROFILE_TABLES), rep
    assert rep["erased"]["request_id"] in {r for er in erased["oracle"] for r in er.request_ids}


def test_a_replay_of_ingestion_drops_every_record_of_theirs_and_the_counters_add_up(erased):
    c = erased["ingest_counters"]
    assert c["received"] == c["valid"] + c["dead_lettered"] + c["erased"], c
    assert c["valid"] == c["emitted"] + c["duplicates"], c
    gone = erased_event_ids(erased["events"])
    assert c["erased"] >= len(gone) > 0
    first = {e["event_id"] for e in erased["events"]}
    assert {e["event_id"] for e in erased["replayed_events"]} == first - gone
    nodes = erased_nodes(erased["events"])
    assert not [d for d in erased["replayed_dlq"] if any(v in d["raw"].decode("latin-1") for _, v in nodes)]


def test_a_profiles_job_replaying_from_no_state_never_resurrects_them(erased):
    ids, nodes = erased_ids(erased["events"]), erased_nodes(erased["events"])
    replay = erased["replay"]
    c = replay.counters
    assert c["ledger_tombstones"] == len(nodes)
    assert c["erased"] == len(erased_event_ids(erased["events"]))  # dropped before identity, each
    assert c["erasures"] == 0  # their requests are among the dropped events
    assert replay.differences == []
    assert traces(replay.rows, ids, nodes) == []
    written = [(k, r) for k, recs in replay.topics.items() for r in recs if mentions(r, ids, nodes)]
    assert written == [], written[:3]
    assert replay.topics["sessions"], "the replay published the other persons' sessions again"
