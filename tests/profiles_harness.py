"""Shared by the profiles end-to-end and fault-injection tests: the job's topics, keyspace and
settings for one run, and the comparison of Cassandra with the offline oracle."""

from __future__ import annotations

import dataclasses
import re
import time
import uuid
from collections import defaultdict
from functools import lru_cache
from typing import Any
from dataclasses import dataclass

from generator.synth import generate
from k8s.topics import ensure_topics
from local.jobs import REPLAY_OUT_OF_ORDERNESS_MS  # the tests replay generated history too
from local.kafka_read import read_committed
from local.polling import WaitTimeout, wait_until
from models.avro_codec import SchemaCatalog
from models.config import KafkaAuth
from models.ingest import Accepted, IngestSettings, Ingestor, SourceRecord
from state.cassandra_schema import apply_schema
from state.profile_store import ProfileStore
from generator.erasure_truth import (
    erased_event_ids,
    erased_ids,
    erased_nodes,
    erased_stream,
    erasure_time_by_profile,
    surviving,
    without_erased,
)
from tests.ingestion_harness import Topics
from models.identity import observation_of, resolve
from tests.profile_oracle import RULES, assert_same, oracle
from generator.journey_truth import JourneySettings as OracleJourneySettings
from generator.journey_truth import JourneyTruth, journey_truth
from state.journey_store import SESSION_COLUMNS, TRIGGER_COLUMNS, JourneyStore


@lru_cache(maxsize=4)
def generated_by_person(
    seed: int, persons: int, days: int, salt: str = "traits-salt-0123456789"
) -> dict[str, tuple[dict[str, Any], ...]]:
    """Valid events of a generated data set, normalized by the ingestion logic, by planted person."""
    catalog = SchemaCatalog.load()
    ingestor = Ingestor(IngestSettings(salt), catalog)
    by_person: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in generate(seed=seed, persons=persons, days=days).records:
        if r.kind == "valid":
            res = ingestor.process(SourceRecord(r.value, r.topic, 0, 0, 1_900_000_000_000))
            assert isinstance(res, Accepted), res
            by_person[r.person_id].append(catalog.decode(res.value)[1])
    return {p: tuple(evs) for p, evs in by_person.items()}


def normalized_records(persons: int, seed: int, salt: str = "profiles-salt-0123456789") -> list[bytes]:
    """NormalizedEvent bytes of a generated data set, as the ingestion logic makes them:
    valid, deduplicated, in generated order (for feeding the profiles job directly)."""
    ing = Ingestor(IngestSettings(salt))
    seen, out = set(), []
    for i, r in enumerate(generate(seed=seed, persons=persons).records):
        res = ing.process(SourceRecord(r.value, r.topic, 0, i, int(time.time() * 1000)))
        if isinstance(res, Accepted) and res.event_id not in seen:
            seen.add(res.event_id)
            out.append(res.value)
    return out


@dataclass(frozen=True)
class ProfilesRun:
    topics: Topics  # the ingestion run whose journey.normalized the profiles job reads
    identity: str
    feedback: str
    keyspace: str

    @property
    def sessions(self) -> str:
        return f"{self.topics.prefix}.sessions"

    @property
    def triggers(self) -> str:
        return f"{self.topics.prefix}.triggers"

    @property
    def late(self) -> str:
        return f"{self.topics.prefix}.late"

    @property
    def segments(self) -> str:
        return f"{self.topics.prefix}.segments"

    @property
    def scores(self) -> str:
        return f"{self.topics.prefix}.scores"

    @property
    def control(self) -> str:
        return f"{self.topics.prefix}.control"

    @property
    def control_results(self) -> str:
        return f"{self.topics.prefix}.control-results"

    @classmethod
    def create(cls, bootstrap: str, topics: Topics, session, auth: KafkaAuth | None = None) -> "ProfilesRun":
        """The run's topics (Kafka credentials: ``auth``, else ``JOURNEY_KAFKA_*`` of the
        environment) and its keyspace (through ``session``, authenticated or not)."""
        run = cls.over(bootstrap, topics, auth=auth)
        apply_schema(session, keyspace=run.keyspace)
        return run

    @classmethod
    def over(
        cls, bootstrap: str, topics: Topics, keyspace: str | None = None, auth: KafkaAuth | None = None
    ) -> "ProfilesRun":
        """A run reading ``topics.normalized`` (which exists: an ingestion run's, or another
        run's), with its own output and feedback topics (created, named after
        ``topics.prefix``), writing to ``keyspace`` (None: a new name; the caller applies the
        schema it wants)."""
        prefix = topics.prefix
        run = cls(topics, f"{prefix}.identity", f"{prefix}.profile-moves", keyspace or f"it_{uuid.uuid4().hex[:10]}")
        run.create_topics(bootstrap, auth)
        return run

    def create_topics(self, bootstrap: str, auth: KafkaAuth | None = None) -> None:
        """The run's own output and feedback topics."""
        outputs = (
            self.feedback,
            self.sessions,
            self.triggers,
            self.late,
            self.segments,
            self.scores,
            self.control_results,
        )
        ensure_topics(bootstrap, partitions=2, topics=outputs, auth=auth)
        ensure_topics(bootstrap, partitions=1, topics=(self.identity, self.control), auth=auth)  # ordered logs

    def job_env(self, bootstrap: str, **extra: str) -> dict[str, str]:
        env = {
            "JOURNEY_BOOTSTRAP_SERVERS": bootstrap,
            "JOURNEY_INPUT_TOPIC_PATTERN": re.escape(self.topics.normalized),
            "JOURNEY_IDENTITY_TOPIC": self.identity,
            "JOURNEY_FEEDBACK_TOPIC": self.feedback,
            "JOURNEY_GROUP_ID": f"{self.topics.prefix}-profiles",
            "JOURNEY_TRANSACTIONAL_ID_PREFIX": f"{self.topics.prefix}-profiles",
            "JOURNEY_JOB_NAME": f"test-profiles-{self.topics.prefix}",
            "JOURNEY_KEYSPACE": self.keyspace,
            "JOURNEY_CHECKPOINT_INTERVAL_MS": "1000",
            "JOURNEY_COALESCE_MS": "500",
            "JOURNEY_SESSIONS_TOPIC": self.sessions,
            "JOURNEY_TRIGGERS_TOPIC": self.triggers,
            "JOURNEY_LATE_TOPIC": self.late,
            "JOURNEY_SEGMENTS_TOPIC": self.segments,
            "JOURNEY_SCORES_TOPIC": self.scores,
            "JOURNEY_CONTROL_TOPIC": self.control,
            "JOURNEY_CONTROL_RESULTS_TOPIC": self.control_results,
            "JOURNEY_OUT_OF_ORDERNESS_MS": str(REPLAY_OUT_OF_ORDERNESS_MS),
            "JOURNEY_IDLE_ADVANCE_MS": "5000",
        }
        env.update(extra)
        return env

    def identity_events(self, bootstrap: str, auth: KafkaAuth | None = None) -> list[dict]:
        """The committed journey.identity records, in the order they were written."""
        catalog = SchemaCatalog.load()
        records = read_committed(bootstrap, self.identity, auth=auth)
        assert {r.partition for r in records} <= {0}, "journey.identity must be one partition"
        return [catalog.decode(r.value)[1] for r in sorted(records, key=lambda r: r.offset)]

    def normalized_events(self, bootstrap: str, auth: KafkaAuth | None = None) -> list[dict]:
        catalog = SchemaCatalog.load()
        return [catalog.decode(r.value)[1] for r in read_committed(bootstrap, self.topics.normalized, auth=auth)]


@dataclass
class CassandraContents:
    profiles: dict  # pid -> (0, ProfileAggregate)
    links: dict  # (type, value) -> pid


def read_cassandra(session, keyspace: str) -> CassandraContents:
    store = ProfileStore(session, keyspace)
    pids = [r.profile_id for r in session.execute(f"SELECT profile_id FROM {keyspace}.profiles")]
    profiles = {pid: (0, store.get(pid)) for pid in pids}
    links = {
        (r.identifier_type, r.identifier_value): r.profile_id
        for r in session.execute(f"SELECT identifier_type, identifier_value, profile_id FROM {keyspace}.identity_links")
    }
    return CassandraContents(profiles, links)


def differences(got: CassandraContents, events: list[dict], erasure_requests: list[dict] | None = None) -> list[str]:
    """Where Cassandra differs from the oracle over ``events`` (empty: equal): the oracle over
    the events that no erasure removed (``generator/erasure_truth.py``; ``erasure_requests``:
    the events whose requests count, default all)."""
    want = oracle(surviving(events, erasure_requests))
    out = []
    try:
        assert_same(
            {pid: (0, agg) for pid, (_, agg) in got.profiles.items()}, {pid: (0, agg) for pid, (_, agg) in want.items()}
        )
    except AssertionError as e:
        missing, extra = set(want) - set(got.profiles), set(got.profiles) - set(want)
        out.append(f"profiles: {len(missing)} missing, {len(extra)} extra, first difference: {e!r:.300}")
    members = {pid: {(t, v) for t, vs in agg.identifiers.items() for v in vs} for pid, (_, agg) in want.items()}
    owner = {n: pid for pid, ns in members.items() for n in ns}
    wrong_links = {n for n in set(owner) | set(got.links) if got.links.get(n) != owner.get(n)}
    if wrong_links:
        out.append(f"identity_links: {len(wrong_links)} of {len(owner)} differ, e.g. {sorted(wrong_links)[:2]}")
    return out


def wait_until_cassandra_equals_oracle(
    session,
    keyspace: str,
    events: list[dict],
    timeout_s: float,
    settle_s: float = 3.0,
    erasure_requests: list[dict] | None = None,
) -> tuple[list[str], float]:
    """Poll until Cassandra equals the oracle and stays equal for ``settle_s`` (no late
    overwrite); returns the last differences (empty: converged) and the seconds it took."""
    t0 = time.monotonic()
    converged = 0.0

    def settled_differences() -> list[str]:
        nonlocal converged
        diff = differences(read_cassandra(session, keyspace), events, erasure_requests)
        if not diff:
            converged = time.monotonic() - t0
            time.sleep(settle_s)
            diff = differences(read_cassandra(session, keyspace), events, erasure_requests)
        return diff

    try:
        wait_until(settled_differences, timeout_s, 2, f"{keyspace} equal to the oracle", until=lambda diff: not diff)
    except WaitTimeout as e:
        return e.last, time.monotonic() - t0
    return [], converged


def identity_differences(
    identity_events: list[dict], events: list[dict], erasure_requests: list[dict] | None = None
) -> list[str]:
    """Where the committed journey.identity log differs from the offline oracle ``resolve()``
    over ``events`` (empty: equal). A consumer that keeps each identifier's last
    ``identifier_linked`` must know every identifier's profile, and every refusal and every
    shared identifier of the oracle must be announced. A record of a failed attempt that leaked past a restart (or one
    the restart lost) shows here as a wrong or missing profile."""
    res = resolve([observation_of(e) for e in surviving(events, erasure_requests)], RULES)
    last: dict[tuple[str, str], str] = {}
    for e in identity_events:
        if e["kind"] == "identifier_linked":
            last[(e["identifier_type"], e["identifier_hash"])] = e["profile_id"]
        elif e["kind"] == "profile_erased":  # a consumer forgets the profile's identifiers
            last = {n: pid for n, pid in last.items() if pid != e["profile_id"]}
    out = []
    wrong = {n for n in set(last) | set(res.profile_of) if last.get(n) != res.profile_of.get(n)}
    if wrong:
        out.append(
            f"journey.identity: {len(wrong)} of {len(res.profile_of)} identifiers end in the wrong profile, "
            f"e.g. {sorted(wrong)[:2]}"
        )
    refused = {
        (e["identifier_type"], e["identifier_hash"], e["reason"])
        for e in identity_events
        if e["kind"] == "link_refused"
    }
    missing = {(r.b[0], r.b[1], r.reason) for r in res.refused} - refused
    if missing:
        out.append(f"journey.identity: {len(missing)} refused links not announced, e.g. {sorted(missing)[:2]}")
    shared = {(e["identifier_type"], e["identifier_hash"]) for e in identity_events if e["kind"] == "identifier_shared"}
    if set(res.shared) - shared:
        out.append(f"journey.identity: shared identifiers not announced, e.g. {sorted(set(res.shared) - shared)[:2]}")
    # an erased identifier may have been announced shared before its erasure took back what made it so
    not_shared = shared - set(res.shared) - set(erased_nodes(events, erasure_requests))
    if not_shared:
        out.append(f"journey.identity: identifiers announced shared that are not, e.g. {sorted(not_shared)[:2]}")
    self_merges = [
        e for e in identity_events if e["kind"] == "profile_merged" and e["from_profile_id"] == e["profile_id"]
    ]
    if self_merges:
        out.append(f"journey.identity: {len(self_merges)} profile_merged records name one profile twice")
    return out


def wait_until_identity_equals_oracle(
    bootstrap: str,
    run: "ProfilesRun",
    events: list[dict],
    timeout_s: float,
    erasure_requests: list[dict] | None = None,
    auth: KafkaAuth | None = None,
) -> tuple[list[str], list[dict]]:
    """Poll the committed journey.identity log (Kafka credentials: ``auth``) until
    :func:`identity_differences` finds nothing (or the time is up); returns the differences
    and the records read last.

    Read it while the job runs: the log commits with the checkpoint after the router announced
    a link, and the fold's Cassandra row for it can land before that checkpoint, so a log read
    once after Cassandra converged and the job was cancelled can miss its last transaction
    (a loaded run saw 6 of 223 identifiers in their previous profile that way)."""

    def read() -> tuple[list[str], list[dict]]:
        records = run.identity_events(bootstrap, auth=auth)
        return identity_differences(records, events, erasure_requests), records

    try:
        return wait_until(read, timeout_s, 2, "journey.identity equal to the oracle", until=lambda r: r[0] == [])
    except WaitTimeout as e:
        return e.last


# ---------------------------------------------------------------------------- journeys

#: the fields the oracle decides (the store's columns but the profile and, for sessions, the version)
SESSION_FIELDS = tuple(c for c in SESSION_COLUMNS if c not in ("profile_id", "version"))
TRIGGER_FIELDS = tuple(c for c in TRIGGER_COLUMNS if c != "profile_id")


def comparable_trigger(t: dict[str, Any]) -> dict[str, Any]:
    """A trigger (Kafka, Cassandra or oracle) with the fields the oracle decides, items as tuples."""

    def items(v: Any) -> Any:
        return None if v is None else [tuple(i.values()) if isinstance(i, dict) else tuple(i) for i in v]

    return {k: items(t[k]) if k == "items" else t[k] for k in TRIGGER_FIELDS}


def latest_sessions(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The highest version of each session."""
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        if r["session_id"] not in out or r["version"] > out[r["session_id"]]["version"]:
            out[r["session_id"]] = r
    return out


@dataclass
class JourneyOutputs:
    triggers: list[dict]  # journey.triggers, committed, in offset order per partition
    sessions: list[dict]  # journey.sessions, committed
    late: list[dict]  # journey.late, committed
    tables: dict[str, list[dict]]  # Cassandra sessions, carts, triggers


def read_journey_outputs(bootstrap: str, session, run: ProfilesRun) -> JourneyOutputs:
    catalog = SchemaCatalog.load()

    def topic(name: str) -> list[dict]:
        return [catalog.decode(r.value)[1] for r in read_committed(bootstrap, name)]

    store = JourneyStore(session, run.keyspace)
    tables = {t: store.all_rows(t) for t in ("sessions", "carts", "triggers")}
    return JourneyOutputs(topic(run.triggers), topic(run.sessions), topic(run.late), tables)


def journey_differences(got: JourneyOutputs, want: JourneyTruth) -> list[str]:
    """Where the journeys outputs differ from the oracle (empty: equal): every published
    trigger exactly once and equal, the closed sessions' latest versions equal field by
    field, and Cassandra holding every session, every trigger (suppressed too) and each
    cart's final status."""
    out = []
    ids = [t["trigger_id"] for t in got.triggers]
    if len(ids) != len(set(ids)):
        out.append(f"journey.triggers: {len(ids) - len(set(ids))} triggers published more than once")
    published = {t["trigger_id"]: comparable_trigger(t) for t in got.triggers}
    want_published = {t["trigger_id"]: comparable_trigger(t) for t in want.triggers if not t["suppressed"]}
    if published != want_published:
        wrong = sum(1 for k in set(published) & set(want_published) if published[k] != want_published[k])
        out.append(
            f"journey.triggers: {len(set(want_published) - set(published))} missing, "
            f"{len(set(published) - set(want_published))} extra, {wrong} different of {len(want_published)}"
        )
    want_sessions = {s["session_id"]: {k: s[k] for k in SESSION_FIELDS} for s in want.sessions if s["closed"]}
    for name, rows in (("journey.sessions", got.sessions), ("Cassandra sessions", got.tables["sessions"])):
        sessions = {sid: {k: s[k] for k in SESSION_FIELDS} for sid, s in latest_sessions(rows).items()}
        if sessions != want_sessions:
            wrong = sum(1 for k in set(sessions) & set(want_sessions) if sessions[k] != want_sessions[k])
            out.append(
                f"{name}: {len(set(want_sessions) - set(sessions))} missing, "
                f"{len(set(sessions) - set(want_sessions))} extra, {wrong} different of {len(want_sessions)}"
            )
    late = sorted(x["event_id"] for x in got.late)
    if late != sorted(want.late_dropped):
        out.append(f"journey.late: {len(late)} events, expected {len(want.late_dropped)} (e.g. {late[:2]})")
    stored = {t["trigger_id"]: comparable_trigger(t) for t in got.tables["triggers"]}
    if stored != {t["trigger_id"]: comparable_trigger(t) for t in want.triggers}:
        out.append(f"Cassandra triggers: {len(stored)} rows differ from the oracle's {len(want.triggers)}")
    carts = {c["cart_id"]: c["status"] for c in got.tables["carts"]}
    want_carts = {c["cart_id"]: c["status"] for c in want.carts}
    if carts != want_carts:
        wrong = sum(1 for k in set(carts) | set(want_carts) if carts.get(k) != want_carts.get(k))
        out.append(f"Cassandra carts: {wrong} of {len(want_carts)} differ in status or presence")
    return out


def wait_until_journeys_equal_oracle(
    bootstrap: str, session, run: ProfilesRun, events: list[dict], timeout_s: float, settle_s: float = 3.0
) -> tuple[list[str], JourneyOutputs, JourneyTruth]:
    """Poll until the journeys outputs equal the oracle over ``events`` (nothing late) and stay
    equal for ``settle_s``; returns the last differences (empty: converged), the outputs and
    the oracle's answer."""
    want = without_erased(journey_truth(events, (), OracleJourneySettings()), events)

    def settled() -> tuple[list[str], JourneyOutputs]:
        got = outputs_without_erased(read_journey_outputs(bootstrap, session, run), events)
        diff = journey_differences(got, want)
        if not diff:
            time.sleep(settle_s)
            got = outputs_without_erased(read_journey_outputs(bootstrap, session, run), events)
            diff = journey_differences(got, want)
        return diff, got

    try:
        diff, got = wait_until(settled, timeout_s, 3, "journeys equal to the oracle", until=lambda r: not r[0])
    except WaitTimeout as e:
        diff, got = e.last
    return diff, got, want


def outputs_without_erased(got: JourneyOutputs, events: list[dict]) -> JourneyOutputs:
    """The topics' records of the persons an erasure removed left out (see :func:`without_erased`)."""
    gone, gone_events = erased_nodes(events), erased_event_ids(events)
    return dataclasses.replace(
        got,
        triggers=[t for t in got.triggers if not erased_stream(t, gone)],
        sessions=[x for x in got.sessions if not erased_stream(x, gone)],
        late=[x for x in got.late if x["event_id"] not in gone_events],
    )


def oracle_segments(events: list[dict], final=None) -> dict[str, list[tuple]]:
    """The segment oracle's changes (shipped rules) by the profile of an offline resolution,
    without the erased persons' profiles (see :func:`without_erased`)."""
    from generator.segment_truth import load_rules as oracle_rules
    from generator.segment_truth import segment_truth
    from models.segments import DEFAULT_RULES_PATH

    final = final or resolve([observation_of(e) for e in events], RULES)
    want: dict[str, list[tuple]] = defaultdict(list)
    gone = erased_nodes(events)
    for c in segment_truth(events, oracle_rules(DEFAULT_RULES_PATH)):
        node = tuple(c["person"].split(":", 1))
        if node in gone:
            continue
        pid = final.profile_of[node]
        want[pid].append((c["segment"], c["change"], c["rule_version"], c["at"], c["purpose"]))
    return dict(want)


def segment_records(bootstrap: str, run: ProfilesRun, catalog: SchemaCatalog) -> list[dict]:
    """journey.segments (read_committed), in each partition's order."""
    recs = sorted(read_committed(bootstrap, run.segments), key=lambda r: (r.partition, r.offset))
    return [catalog.decode(r.value)[1] for r in recs]


def segments_by_profile(
    bootstrap: str, run: ProfilesRun, catalog: SchemaCatalog, gone: frozenset[str] = frozenset()
) -> dict[str, list[tuple]]:
    """Each profile's changes in the order they were decided (``sequence``: the topic's two
    partitions do not keep a profile's order)."""
    got: dict[str, list[tuple]] = defaultdict(list)
    for r in sorted(segment_records(bootstrap, run, catalog), key=lambda r: (r["profile_id"], r["sequence"])):
        if r["profile_id"] in gone:  # (``gone``: the erased persons' ids, see without_erased)
            continue
        got[r["profile_id"]].append((r["segment"], r["change"], r["rule_version"], r["at"], r["purpose"]))
    return dict(got)


def poll_until_equal(read, want: dict, timeout_s: float, what: str, label: str) -> tuple[list[str], dict]:
    """Poll ``read()`` every 3 s until it equals ``want`` (or the time is up); returns the first
    ten differing keys, then one line counting the rest (empty: converged), and what was read
    last."""
    try:
        got = wait_until(read, timeout_s, 3, what, until=lambda g: g == want)
    except WaitTimeout as e:
        got = e.last
    diff = [
        f"{label} {k}: got {got.get(k)} want {want.get(k)}"
        for k in sorted(set(got) | set(want))
        if got.get(k) != want.get(k)
    ]
    more = [f"{label}: {len(diff) - 10} more differing keys ({len(got)} read, {len(want)} wanted)"]
    return diff[:10] + (more if len(diff) > 10 else []), got


MORE_KEYS = re.compile(r": (\d+) more differing keys \(")


def mismatch_count(diff: list[str]) -> int:
    """How many differences the lines of ``diff`` stand for: one per line, except the lines
    :func:`poll_until_equal` ends with, which count the keys beyond the first ten.

    >>> mismatch_count(["scores p-1: got 1 want 2", "scores: 1314 more differing keys (351 read, 1675 wanted)"])
    1315
    """
    return sum(int(m.group(1)) if (m := MORE_KEYS.search(line)) else 1 for line in diff)


def wait_until_segments_equal_oracle(
    bootstrap: str, run: "ProfilesRun", events: list[dict], timeout_s: float
) -> tuple[list[str], dict[str, list[tuple]]]:
    """Poll journey.segments until every profile's changes equal the oracle's; returns the
    differences (empty: converged) and what was read."""
    want = oracle_segments(events)
    catalog = SchemaCatalog.load()
    return poll_until_equal(
        lambda: segments_by_profile(bootstrap, run, catalog, erased_ids(events)),
        want,
        timeout_s,
        "journey.segments equal to the oracle",
        "segments of",
    )


def oracle_samples(events: list[dict], final=None) -> list:
    """The learning samples the journeys stage must emit, from the journeys oracle's closed
    sessions (``generator/journey_truth.py``) by the profile of an offline resolution, in the
    learner's order ``(close, profile id, session id)`` (docs/learning.md)."""
    from models.samples import samples_of_sessions

    from generator.journey_truth import identifiers_of
    from models.journeys import JourneySettings

    final = final or resolve([observation_of(e) for e in events], RULES)
    oracle_settings = OracleJourneySettings()
    gap = oracle_settings.session_gap_ms
    closes = []
    sessions: dict[str, list[tuple[int, int]]] = defaultdict(list)
    truth = journey_truth(events, (), oracle_settings)
    abandonments = []
    for t in truth.triggers:
        if t["kind"] == "cart_abandoned":
            node = tuple(t["stream"].split(":", 1))
            published = not t["suppressed"]
            abandonments.append((t["fired_at"], final.profile_of[node], t["trigger_id"], t["cart_id"], published))
    for s in truth.sessions:
        t, v = s["stream"].split(":", 1)
        pid = final.profile_of[(t, v)]
        sessions[pid].append((s["started_at"], s["engagement"]))
        if s["closed"]:
            closes.append((s["ended_at"] + gap, pid, s))
    # churn labels: each profile's event times, decided up to the newest event (the idle tick)
    activity: dict[str, list[int]] = defaultdict(list)
    # consent per purpose (docs/privacy.md): each profile's consent updates, in the order applied
    updates: dict[tuple[str, str], list[tuple[int, str, bool]]] = defaultdict(list)
    for e in events:
        ids = identifiers_of(e)
        if ids:
            pid = final.profile_of[ids[0]]
            activity[pid].append(e["occurred_at"])
            if e["event_type"] == "consent_update":
                payload = e["payload"][1] if isinstance(e["payload"], tuple) else e["payload"]
                updates[(pid, payload["purpose"])].append((e["occurred_at"], e["event_id"], bool(payload["granted"])))
    job = JourneySettings()
    defaults = {p: getattr(job, f"{p}_consent_default") for p in ("personalization", "marketing", "analytics")}

    def consent(pid: str, purpose: str, at: int) -> bool:
        """The latest update of the purpose at or before ``at`` (a due time comes after the events at it)."""
        marks = [m for m in updates.get((pid, purpose), ()) if m[0] <= at]
        return max(marks)[2] if marks else defaults[purpose]

    end = max((e["occurred_at"] for e in events), default=0)
    erased_at = erasure_time_by_profile(events)
    samples = samples_of_sessions(
        closes,
        activity=activity,
        sessions=sessions,
        end=end,
        churn_window_ms=job.churn_window_ms,
        lateness_ms=job.allowed_lateness_ms,
        abandonments=abandonments,
        consent=consent,
    )
    # an erased person's samples up to the erasure are learned; nothing after it exists
    return [x for x in samples if x.at <= erased_at.get(x.profile_id, x.at)]


def oracle_scores(samples: list) -> list[dict]:
    """What ``learn-models`` must publish for ``samples`` (in that order): River's models run
    over them in a plain loop, with each profile's previous cluster."""
    from models.learning import Learner
    from operators.learning import action_record, score_record

    learner, last, out = Learner(), {}, []
    propensity: dict[str, float] = {}
    for s in samples:
        if s.is_abandonment:
            if s.publish:  # (marketing consent, as its trigger)
                p = propensity.get(s.profile_id)
                action = learner.recommend(p)
                out.append(action_record(s, last.get(s.profile_id), p, action, learner.model_version))
            continue
        scored = learner.learn(s)  # (learned only with analytics consent)
        if scored is None:  # a churn label: publishes nothing
            continue
        if s.publish:  # (personalization consent)
            out.append(score_record(scored, last.get(s.profile_id)))
        propensity[s.profile_id] = scored.propensity
        if scored.cluster is not None:
            last[s.profile_id] = scored.cluster
    return out


def scores_by_session(bootstrap: str, run: "ProfilesRun") -> dict[tuple[str, str], dict]:
    """journey.scores (read_committed) by (profile, session); a duplicate fails."""
    catalog = SchemaCatalog.load()
    out: dict[tuple[str, str], dict] = {}
    for r in read_committed(bootstrap, run.scores):
        rec = catalog.decode(r.value)[1]
        key = (rec["profile_id"], rec["session_id"] or rec["trigger_id"])
        assert key not in out, f"a score twice: {rec}"
        out[key] = rec
    return out


def wait_until_scores_equal_oracle(
    bootstrap: str, run: "ProfilesRun", events: list[dict], timeout_s: float
) -> tuple[list[str], dict[tuple[str, str], dict], list[dict]]:
    """Poll journey.scores until it holds exactly the oracle's scores (River over the oracle's
    samples in the learner's order); returns the differences, what was read and the oracle's."""
    want = {(s["profile_id"], s["session_id"] or s["trigger_id"]): s for s in oracle_scores(oracle_samples(events))}
    diff, got = poll_until_equal(lambda: scores_by_session(bootstrap, run), want, timeout_s, "journey.scores", "score")
    return diff, got, list(want.values())
