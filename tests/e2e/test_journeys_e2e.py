"""Journeys on the real stack: generator -> Kafka -> ingestion job -> Kafka -> profiles job
(parallelism 2, exactly-once, identity merges moving journey state through the feedback
topic) -> journey.sessions / journey.triggers / journey.late / journey.segments
(read_committed) and Cassandra sessions / carts / triggers / segment memberships, compared
field by field with the independent offline oracles (generator/journey_truth.py,
generator/segment_truth.py) over the events the job read. Then an event far older than the
allowed lateness arrives: it is published on journey.late and changes nothing else. Then rule
updates go to the job's journey.control with ``journey rules publish``: an invalid rule and a
stale version are rejected by every subtask (the previous version keeps running), a new
version of ``engaged`` is accepted and decides the profile's next evaluation (a new event),
without a restart."""

from __future__ import annotations

import dataclasses
import time

import pytest
from confluent_kafka import Producer

import json
from collections import Counter, defaultdict
from pathlib import Path

from generator.produce import produce
from generator.synth import generate
from local.flink_cluster import cancel, counter_total, submit, wait_for_counters, wait_state
from local.kafka_read import read_committed
from local.polling import WaitTimeout, wait_until
from models.avro_codec import SchemaCatalog
from models.identity import observation_of, resolve
from state.journey_store import JourneyStore
from state.learning_store import LearningStore
from tests.metrics_checks import problems, read_views
from tests.ingestion_harness import Topics
from tests.profile_oracle import RULES
from generator.erasure_truth import erased_ids, erased_nodes, surviving, touches
from generator.journey_truth import JourneySettings as OracleJourneySettings
from generator.journey_truth import journey_truth
from generator.segment_truth import segment_truth
from tests.profiles_harness import (
    outputs_without_erased,
    oracle_samples,
    ProfilesRun,
    oracle_segments,
    segment_records,
    segments_by_profile,
    wait_until_scores_equal_oracle,
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
    "orphan_messages",
    "ticks",
    "segments_entered",
    "segments_exited",
    "rule_errors",
    "rule_updates_accepted",
    "rule_updates_rejected",
    "samples_learned",
    "churn_labels_learned",
    "cart_actions",
    "not_learned_analytics",
    "scores_suppressed_personalization",
    "actions_suppressed_marketing",
    "segments_withheld_personalization",
    "segments_withheld_marketing",
    "segments_withheld_analytics",
)


DAY_MS = 24 * 3600 * 1000


def _late_copy(event: dict, catalog: SchemaCatalog, days_before: int) -> tuple[bytes, str]:
    """A new NormalizedEvent like ``event``, occurring ``days_before`` days earlier (far beyond
    the allowed lateness once event time has reached the data set's end). Produced straight to
    journey.normalized: a second ingestion run would read again what the first did not commit."""
    rec = dict(event, event_id=f"late-{event['event_id']}", occurred_at=event["occurred_at"] - days_before * DAY_MS)
    return catalog.codec("NormalizedEvent").encode(rec), rec["event_id"]


@pytest.fixture(scope="module")
def result(local_stack, session, tmp_path_factory):
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
        final = resolve([observation_of(e) for e in events], RULES)
        segments_want = oracle_segments(events, final)
        gone_ids = erased_ids(events)
        try:
            segments_got = wait_until(
                lambda: segments_by_profile(bootstrap, run, catalog, gone_ids),
                120,
                2,
                "journey.segments equal to the oracle",
                until=lambda got: got == segments_want,
            )
        except WaitTimeout as e:
            segments_got = e.last
        scores_diff, scores_got, scores_want = wait_until_scores_equal_oracle(bootstrap, run, events, timeout_s=120)
        samples_want = oracle_samples(events, final)
        churn_labels = [s.churned for s in samples_want if s.is_churn_label and s.learn]
        learned_want = sum(1 for s in samples_want if s.kind == 0 and s.learn)
        not_learned_want = sum(1 for s in samples_want if s.kind < 2 and not s.learn)
        unpublished_want = (
            sum(1 for s in samples_want if s.kind == 0 and not s.publish),
            sum(1 for s in samples_want if s.kind == 2 and not s.publish),
        )
        from generator.segment_truth import load_rules as oracle_rules
        from generator.segment_truth import segment_replay
        from models.segments import DEFAULT_RULES_PATH

        # the erased persons' decisions up to their erasure (their last event: the request) count
        # in the counters; their rows and later decisions are gone (generator/erasure_truth.py)
        gone = erased_nodes(events)
        kept = surviving(events)
        theirs = [e for e in events if touches(e, gone)]
        assert theirs and max(e["occurred_at"] for e in kept) == max(e["occurred_at"] for e in events)
        rules = oracle_rules(DEFAULT_RULES_PATH)
        withheld_want = dict(
            Counter(segment_replay(kept, rules).withheld) + Counter(segment_replay(theirs, rules).withheld)
        )
        withheld_want = {p: withheld_want.get(p, 0) for p in segment_replay(kept, rules).withheld}
        erased_decided = journey_truth(theirs, (), OracleJourneySettings())
        erased_segments = segment_truth(theirs, rules)
        with LearningStore(session, run.keyspace) as ls:
            stored_scores = ls.scores()
        members = {
            table: JourneyStore(session, run.keyspace).all_rows(table)
            for table in ("segment_members", "profile_segments", "profile_consent")
        }
        counters = wait_for_counters(job.job_id, {"sessions": 1, "parts_received": 1}, list(_COUNTERS))
        metrics = read_views(job.job_id, idle=False)
        store = JourneyStore(session, run.keyspace)
        profile_sessions = {pid: store.sessions(pid) for pid in sorted(set(final.profile_of.values()))[:8]}
        # an event 40 days older than the data set: beyond the allowed lateness
        # a surviving person's event: an erased person's identifiers are tombstoned, so a copy of
        # theirs would be dropped as erased (the partitions are read in any order)
        template = next(e for e in kept if e["event_type"] == "page_view")
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
        reload = _hot_reload(bootstrap, run, catalog, events, final, segments_want, tmp_path_factory.mktemp("rules"))
        reload_counters = wait_for_counters(job.job_id, {"rule_updates_accepted": 2}, ["rule_updates_rejected"])
    finally:
        cancel(job.job_id)
    privacy = _privacy_reports(run.keyspace, ds.truth)  # (before the keyspace goes)
    session.execute(f"DROP KEYSPACE IF EXISTS {run.keyspace}")
    return {
        "events": events,
        "diff": diff,
        "got": got,
        "want": want,
        "seconds": seconds,
        "counters": counters,
        "metrics": metrics,
        "final": final,
        "profile_sessions": profile_sessions,
        "late": late,
        "late_id": late_id,
        "after_late": after_late,
        "late_counters": late_counters,
        "segments_want": segments_want,
        "segments_got": segments_got,
        "members": members,
        "reload": reload,
        "scores_diff": scores_diff,
        "churn_labels": churn_labels,
        "privacy": privacy,
        "learned_want": learned_want,
        "not_learned_want": not_learned_want,
        "unpublished_want": unpublished_want,
        "withheld_want": withheld_want,
        "erased_decided": erased_decided,
        "erased_segments": erased_segments,
        "gone_ids": gone_ids,
        "scores_got": scores_got,
        "scores_want": scores_want,
        "stored_scores": stored_scores,
        "reload_counters": reload_counters,
    }


def _last(changes: list[tuple], segment: str) -> str | None:
    """The last change of ``segment`` in a profile's changes (None: never)."""
    mine = [c[1] for c in changes if c[0] == segment]
    return mine[-1] if mine else None


def _hot_reload(bootstrap, run, catalog, events, final, segments_want, tmp: Path) -> dict:
    """Publish an invalid rule and a stale version, then a new version of ``engaged``; one new
    event of a profile outside ``engaged`` makes the next evaluation decide with it."""
    from journey_cli.rules import end_offsets, publish, read_answers

    def publish_and_answers(doc: dict, rules: int) -> list[dict]:
        path = tmp / f"rules-{time.time_ns()}.json"
        path.write_text(json.dumps(doc))
        since = end_offsets(bootstrap, run.control_results)
        if doc.get("raw"):
            p = Producer({"bootstrap.servers": bootstrap})
            p.produce(run.control, doc["raw"].encode())
            p.flush(10)
        else:
            publish(bootstrap, run.control, path)
        return read_answers(bootstrap, run.control_results, since, 90, until=lambda a: len(a) >= 2 * rules)

    shipped_engaged = {"name": "engaged", "version": 1, "purpose": "personalization", "expression": "sessions_7d >= 3"}
    rejected = publish_and_answers(
        {
            "raw": json.dumps(
                {
                    "rules": [
                        {"name": "vip", "version": 1, "purpose": "marketing", "expression": "visits > 3"},
                        shipped_engaged | {"expression": "sessions_7d >= 1"},
                    ]
                }
            )
        },
        2,
    )
    engaged_now = {pid for pid, cs in segments_want.items() if _last(cs, "engaged") == "entered"}
    gone = erased_nodes(events)  # their identifiers are tombstoned: an event of theirs is dropped
    person = next(
        pid
        for pid in sorted({pid for node, pid in final.profile_of.items() if node not in gone})
        if pid not in engaged_now
    )
    node = next(n for n, pid in final.profile_of.items() if pid == person and n not in gone)
    t0 = time.monotonic()
    accepted = publish_and_answers({"rules": [shipped_engaged | {"version": 2, "expression": "sessions_7d >= 1"}]}, 1)
    answered_s = time.monotonic() - t0
    template = next(e for e in events if e["event_type"] == "page_view")
    ids = {k: None for k in template["identifiers"]} | {node[0]: node[1]}
    end = max(e["occurred_at"] for e in events)
    new = dict(template, event_id="after-reload", identifiers=ids, occurred_at=end + 60_000)
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(run.topics.normalized, value=catalog.codec("NormalizedEvent").encode(new))
    producer.flush(10)
    decided = wait_until(
        lambda: [
            r for r in segment_records(bootstrap, run, catalog) if r["profile_id"] == person and r["rule_version"] == 2
        ],
        120,
        1,
        "a decision of the new rule version",
        until=lambda recs: any(r["rule_version"] == 2 for r in recs),
    )
    return {
        "rejected": rejected,
        "accepted": accepted,
        "answered_s": answered_s,
        "decided_s": time.monotonic() - t0,
        "decided": decided,
        "person": person,
        "at": new["occurred_at"],
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
    want, theirs = result["want"], result["erased_decided"]  # (an erased person's: up to the erasure)
    assert c["sessions"] == len([s for s in want.sessions + theirs.sessions if s["closed"]])
    assert c["suppressed_marketing"] == sum(1 for t in want.triggers + theirs.triggers if t["suppressed"])
    assert c["triggers_cart_abandoned"] == sum(
        1 for t in want.triggers + theirs.triggers if t["kind"] == "cart_abandoned" and not t["suppressed"]
    )
    assert c["orphan_messages"] == 0 and c["late_dropped"] == 0
    assert c["parts_sent"] == c["parts_received"] == c["journey_parts"] > 0
    assert c["ticks"] >= 1


def test_every_metric_of_the_reference_is_served_over_rest_and_prometheus(result):
    assert problems(result["metrics"], "profiles", idle=False) == []
    got = {p: v for (op, p), v in result["metrics"].rest.items() if op == "learn-models"}
    assert 0 < got["purchase_auc"] <= 1000 and got["model_version"] >= 1, got


def test_an_event_beyond_the_allowed_lateness_is_published_late_and_changes_nothing(result):
    (late,) = result["late"]
    assert (late["event_id"], late["reason"]) == (result["late_id"], "beyond_allowed_lateness")
    assert late["lateness_ms"] >= 40 * DAY_MS  # the watermark had reached the end of the data set
    with_late = dataclasses.replace(result["want"], late_dropped=[result["late_id"]])
    assert journey_differences(outputs_without_erased(result["after_late"], result["events"]), with_late) == []
    assert counter_total(result["late_counters"], "late_dropped") == 1


def test_segment_changes_per_profile_equal_the_oracle_including_time_only_exits(result):
    got, want = result["segments_got"], result["segments_want"]
    assert got == want
    kinds = {c[0] for cs in want.values() for c in cs}
    assert {"engaged", "high_value", "cart_abandoner", "new_customer"} <= kinds, kinds
    event_times = {e["occurred_at"] for e in result["events"]}
    assert any(c[1] == "exited" and c[3] not in event_times for cs in want.values() for c in cs)
    c = {n: counter_total(result["counters"], n) for n in ("segments_entered", "segments_exited", "rule_errors")}
    theirs = [x["change"] for x in result["erased_segments"]]  # decided before their erasure
    assert theirs
    assert c["segments_entered"] == sum(1 for cs in want.values() for x in cs if x[1] == "entered") + theirs.count(
        "entered"
    )
    assert c["segments_exited"] == sum(1 for cs in want.values() for x in cs if x[1] == "exited") + theirs.count(
        "exited"
    )
    assert c["rule_errors"] == 0
    # consent per purpose (docs/privacy.md): entries withheld for want of consent, as the oracle counts them
    withheld = {p: counter_total(result["counters"], f"segments_withheld_{p}") for p in result["withheld_want"]}
    assert withheld == result["withheld_want"] and withheld["marketing"] > 0, (withheld, result["withheld_want"])
    print(f"\n{sum(len(cs) for cs in got.values())} segment changes equal to the oracle; withheld {withheld}")


def test_cassandra_profile_consent_shows_each_profiles_latest_update_and_its_suppressed_triggers(result):
    """docs/privacy.md: per final profile and purpose, the latest consent_update of any of its
    identifiers (when, from which channel, which event) and its triggers suppressed for want of
    marketing consent; nothing for a profile merged away."""
    from generator.journey_truth import identifiers_of

    final, events = result["final"], result["events"]
    latest: dict[tuple[str, str], tuple] = {}
    for e in sorted(events, key=lambda e: (e["occurred_at"], e["event_id"])):
        ids = identifiers_of(e)
        if e["event_type"] == "consent_update" and ids:
            payload = e["payload"][1] if isinstance(e["payload"], tuple) else e["payload"]
            latest[(final.profile_of[ids[0]], payload["purpose"])] = (
                bool(payload["granted"]),
                e["occurred_at"],
                e["channel"],
                e["event_id"],
            )
    suppressed: dict[tuple[str, str], int] = defaultdict(int)
    for t in result["want"].triggers:
        if t["suppressed"]:
            suppressed[(final.profile_of[tuple(t["stream"].split(":", 1))], "marketing")] += 1
    want = {}
    for key in latest.keys() | suppressed.keys():
        if key[0] in result["gone_ids"]:
            continue  # an erased person's rows are gone (docs/privacy.md)
        granted, at, source, event_id = latest.get(key, (False, None, "default", None))  # marketing default
        want[key] = (granted, at, source, event_id, suppressed.get(key, 0))
    got = {
        (r["profile_id"], r["purpose"]): (r["granted"], r["changed_at"], r["source"], r["event_id"], r["suppressed"])
        for r in result["members"]["profile_consent"]
    }
    assert got == want
    assert {k[1] for k in got} == {"personalization", "marketing", "analytics"}
    assert any(v[4] > 0 for v in got.values()) and any(v[2] == "default" for v in got.values())


def _privacy_reports(keyspace: str, truth) -> dict:
    """``journey privacy report`` as a person would be asked about: without the salt, by a
    raw email of a generated person, by an email nobody has (exit code, stdout, stderr)."""
    import contextlib
    import io

    from journey_cli.main import main as journey
    from local import stack
    from tests.ingestion_harness import SALT

    person = next(p for p in truth.persons if p.email_variants and not p.erased)

    def call(args: list[str], salt: str | None) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            mp.setenv("JOURNEY_CASSANDRA_PORT", str(stack.CASSANDRA_PORT))
            mp.setenv("JOURNEY_KEYSPACE", keyspace)
            if salt is None:
                mp.delenv("JOURNEY_PII_SALT", raising=False)
            else:
                mp.setenv("JOURNEY_PII_SALT", salt)
            code = journey(args)
        return code, out.getvalue(), err.getvalue()

    return {
        "person": person,
        "no_salt": call(["privacy", "report", "--email", person.email_variants[0]], None),
        "report": call(["privacy", "report", "--email", person.email_variants[-1], "--json"], SALT),
        "summary": call(["privacy", "report", "--email", person.email_variants[-1]], SALT),
        "nobody": call(["privacy", "report", "--email", "nobody.here@example.org"], SALT),
    }


def test_journey_privacy_report_shows_what_is_held_on_a_person_named_by_their_raw_email(result):
    """docs/privacy.md: a subject access request by a raw email (as the person spells it)
    resolves to the person's profile and lists every row held on it; an email nobody has gives
    nothing; without the salt it refuses with a clear error."""
    from models.normalize import normalize_email, pii_hash
    from tests.ingestion_harness import SALT

    pr, final = result["privacy"], result["final"]
    code, _, err = pr["no_salt"]
    assert code == 2 and "JOURNEY_PII_SALT" in err
    code, out, _ = pr["report"]
    assert code == 0
    rep = json.loads(out)
    node = ("email_hash", pii_hash("email", normalize_email(pr["person"].email), SALT))
    pid = final.profile_of[node]
    assert rep["identifier"] == list(node) and rep["profile_id"] == pid and rep["profile"]["profile_id"] == pid
    for table in ("profile_segments", "profile_consent"):
        assert len(rep[table]) == sum(1 for r in result["members"][table] if r["profile_id"] == pid), table
    sessions = {
        s["session_id"]
        for s in result["want"].sessions
        if s["closed"] and final.profile_of[tuple(s["stream"].split(":", 1))] == pid
    }
    assert sessions and {s["session_id"] for s in rep["sessions"]} == sessions
    assert rep["scores"] and all(r["profile_id"] in rep["profile_ids"] for r in rep["scores"])
    code, out, _ = pr["summary"]
    assert code == 0 and f"-> profile {pid}" in out and pr["person"].email_variants[-1].strip() not in out
    code, out, _ = pr["nobody"]
    assert code == 0 and "nothing held" in out


def test_cassandra_holds_the_memberships_by_segment_and_by_profile(result):
    want = set()
    for pid, cs in result["segments_want"].items():
        last: dict[str, tuple] = {}
        for c in cs:
            last[c[0]] = c
        want |= {(pid, seg, c[2], c[3]) for seg, c in last.items() if c[1] == "entered"}
    for table in ("segment_members", "profile_segments"):
        rows = {(r["profile_id"], r["segment"], r["rule_version"], r["entered_at"]) for r in result["members"][table]}
        assert rows == want, table


def test_an_invalid_rule_and_a_stale_version_are_rejected_by_every_subtask_and_change_nothing(result):
    rejected = result["reload"]["rejected"]
    assert sorted({a["subtask"] for a in rejected}) == [0, 1]
    by_rule = defaultdict(list)
    for a in rejected:
        by_rule[a["rule"]].append(a)
    assert all(a["status"] == "rejected" and "unknown field(s) visits" in a["error"] for a in by_rule["vip"])
    assert all(a["status"] == "rejected" and "version must be higher" in a["error"] for a in by_rule["engaged"])
    assert all(a["running"]["engaged"] == 1 and "vip" not in a["running"] for a in rejected)


def test_a_new_rule_version_decides_the_next_evaluation_without_a_restart(result):
    r = result["reload"]
    assert sorted({a["subtask"] for a in r["accepted"]}) == [0, 1]
    assert all(a["status"] == "accepted" and a["running"]["engaged"] == 2 for a in r["accepted"])
    entered = [x for x in r["decided"] if x["segment"] == "engaged"]
    assert entered and entered[0]["change"] == "entered" and entered[0]["rule_version"] == 2
    assert entered[0]["at"] == r["at"]
    assert counter_total(result["reload_counters"], "rule_updates_rejected") == 4
    print(
        f"\nrule update: answered by both subtasks {r['answered_s']:.1f} s after publishing; first decision "
        f"under v2 visible {r['decided_s']:.1f} s after publishing (one new event, bound 30 d: the idle tick)"
    )


def test_every_closed_session_is_learned_once_and_scored_as_river_over_the_oracle_samples(result):
    assert result["scores_diff"] == []
    want = result["scores_want"]
    assert len(result["scores_got"]) == len(want) > 0
    assert any(s["cluster"] is not None for s in want) and len({s["cluster"] for s in want}) > 2
    actions = [s for s in want if s["kind"] == "cart_abandoned"]
    assert actions and {s["recommended_action"] for s in actions} <= {"reminder", "offer"}
    assert counter_total(result["counters"], "cart_actions") == len(actions)
    want = [s for s in want if s["kind"] == "session"]
    c = counter_total(result["counters"], "samples_learned")
    assert c == result["learned_want"]  # with analytics consent (docs/privacy.md)
    assert counter_total(result["counters"], "not_learned_analytics") == result["not_learned_want"] > 0
    suppressed = tuple(
        counter_total(result["counters"], n)
        for n in ("scores_suppressed_personalization", "actions_suppressed_marketing")
    )
    assert suppressed == result["unpublished_want"] and all(suppressed), suppressed
    # churn labels, decided by the journeys' timers (nothing in the window after a close), each
    # learned once: the churn risks above equal River's over the oracle's labels in order
    labels = result["churn_labels"]
    assert 0 < sum(labels) < len(labels)
    assert counter_total(result["counters"], "churn_labels_learned") == len(labels)
    assert all(s["churn_risk"] is not None for s in want) and len({s["churn_risk"] for s in want}) > 2
    last: dict[str, dict] = {}
    for s in sorted(want, key=lambda s: (s["at"], s["profile_id"], s["session_id"])):
        last[s["profile_id"]] = s
    stored = {r["profile_id"]: (r["session_id"], r["cluster"], r["propensity"]) for r in result["stored_scores"]}
    assert stored == {
        p: (s["session_id"], s["cluster"], s["propensity"]) for p, s in last.items() if p not in result["gone_ids"]
    }  # (an erased person's row is gone; their scores before it were published)
