"""``make demo``: the jobs end to end on the local stack, with a summary.

Starts Kafka, Cassandra and the Flink cluster (if not running), creates the topics, generates
seeded synthetic journeys with injected faults, produces them, makes sure the ingestion job
runs (unbounded; left alone if running, resumed from its checkpoint if it ran before: see
``local/jobs.py``), reads the outputs with ``read_committed`` until they hold this run's
records and compares them with the generator's ground truth. Then makes sure the identity +
profiles job runs the same way and waits until Cassandra holds this run's persons as an
offline resolution says, and until its journeys stage has published this run's sessions and
triggers as the independent offline oracle (``generator/journey_truth.py``) computes them.
Running it again feeds the same jobs with a new seed's events, later in event time (event
time never goes back: ``.stack/data/demo-calendar.json`` keeps where the last run ended).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import sys
import time
from collections import Counter
from typing import Any, Callable, TypeVar

from generator.erasure_truth import erased_event_ids, erased_ids, erased_nodes, erasures, surviving, without_erased
from generator.journey_truth import JourneySettings as OracleJourneySettings
from generator.journey_truth import JourneyTruth, journey_truth
from generator.produce import produce
from generator.segment_truth import load_rules as oracle_rules
from generator.segment_truth import segment_truth
from generator.synth import generate
from generator.timing import DAY_MS, DEFAULT_BASE_TIME_MS
from k8s.topics import ensure_topics
from local import stack
from local.flink_cluster import REST, FlinkJobError
from local.jobs import demo_salt, ensure_job
from local.kafka_read import read_committed
from local.polling import WaitTimeout, wait_until
from models.avro_codec import DecodeError, SchemaCatalog
from models.identity import IdentityRules, observation_of, resolve
from models.profile import fold
from models.journeys import JourneySettings
from models.segments import DEFAULT_RULES_PATH
from state.cassandra_schema import apply_schema, connect
from state.journey_store import JourneyStore
from state.profile_store import TRAIT_COLUMNS, ProfileStore

BOOTSTRAP = f"127.0.0.1:{stack.KAFKA_PORT}"
T = TypeVar("T")


class _Progress:
    """One progress line: redrawn in place on a terminal, printed every 10 s (and at the end)
    in logs."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self.t0 = time.monotonic()
        self.last = -10.0

    def show(self, line: str, final: bool) -> None:
        elapsed = time.monotonic() - self.t0
        text = f"{line}  {elapsed:4.0f}s"
        if self.tty:
            print("\r" + text, end="", flush=True)
        elif final or elapsed - self.last >= 10:
            print(text, flush=True)
            self.last = elapsed

    def end(self) -> float:
        if self.tty:
            print()
        return time.monotonic() - self.t0


def _watch(
    read: Callable[[], T], done: Callable[[T], bool], describe: Callable[[T], str], timeout_s: float, interval_s: float
) -> tuple[T, float]:
    """``read()`` until ``done`` (or ``timeout_s``: the last value), showing ``describe(value)``;
    returns the value and the seconds it took."""
    progress = _Progress()

    def check() -> T:
        value = read()
        progress.show(describe(value), final=done(value))
        return value

    try:
        value = wait_until(check, timeout_s, interval_s, "the demo's results", until=done)
    except WaitTimeout as e:
        value = e.last
    return value, progress.end()


def wait_for_outputs(
    catalog: SchemaCatalog, event_ids: set[str], bad_raw: set[bytes], timeout_s: float = 600
) -> tuple[list[dict], list[dict], float]:
    """Read journey.normalized and journey.dlq (read_committed) until they hold this run's
    events and dead letters (found by ``raw_digest``: the DLQ keeps no raw bytes,
    docs/privacy.md); then once more two checkpoints later, so that anything extra (a
    duplicate) would show. Returns (this run's events, this run's dead letters, seconds)."""
    _, elapsed = _watch(
        lambda: _read_mine(catalog, event_ids, bad_raw),
        lambda md: len(md[0]) >= len(event_ids) and len(md[1]) >= len(bad_raw),
        lambda md: f"  {len(md[0])} of {len(event_ids)} events, {len(md[1])} of {len(bad_raw)} dead letters",
        timeout_s,
        2,
    )
    time.sleep(5)  # two more checkpoints (2 s interval) commit anything still in flight
    mine, dlq = _read_mine(catalog, event_ids, bad_raw)
    return mine, dlq, elapsed


def _read_mine(catalog: SchemaCatalog, event_ids: set[str], bad_raw: set[bytes]) -> tuple[list[dict], list[dict]]:
    normalized = _decodable(catalog, "journey.normalized")
    dead = _decodable(catalog, "journey.dlq")
    salt = demo_salt().encode()
    digests = {hmac.new(salt, raw, hashlib.sha256).hexdigest() for raw in bad_raw}
    return [e for e in normalized if e["event_id"] in event_ids], [d for d in dead if d["raw_digest"] in digests]


def _raw_pii_in(ds: Any, dlq: list[dict]) -> int:
    """How many of this run's dead letters hold a raw email or phone the generator planted (any
    case, whitespace stripped): none may (docs/privacy.md)."""
    needles = set()
    for p in ds.truth.persons:
        for v in (*p.email_variants, *p.phone_variants):
            if len(v.strip()) >= 7:
                needles.add(v.strip().lower().encode())
    return sum(1 for d in dlq if any(n in d["raw"].lower() for n in needles))


def _decodable(catalog: SchemaCatalog, topic: str) -> list[dict]:
    """The topic's records this code can decode (a stack may hold records of older runs in a
    format this version no longer writes; they are not this run's anyway)."""
    out = []
    for r in read_committed(BOOTSTRAP, topic):
        try:
            out.append(catalog.decode(r.value)[1])
        except DecodeError:
            continue
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--persons", type=int, default=300)
    ap.add_argument("--seed", type=int, default=None, help="default: a new seed per run")
    ap.add_argument("--rate", type=float, default=None, help="records/s to produce (default: flat out)")
    args = ap.parse_args(argv)
    if args.persons < 1:
        ap.error("--persons must be at least 1")
    seed = args.seed if args.seed is not None else int(time.time())

    print("1/10 local stack (Kafka, Cassandra, Flink)")
    for name in ("kafka", "cassandra", "flink"):
        stack.COMPONENTS[name].start()
    print(
        "2/10 topics:",
        ", ".join(ensure_topics(BOOTSTRAP)) or "all present",
        f"| Cassandra schema: {len(apply_schema('127.0.0.1', port=stack.CASSANDRA_PORT))} statements applied (keyspace journey)",
    )
    base_time_ms, days = calendar()
    print(
        f"3/10 generating {args.persons} persons (seed {seed}, {days} days from {_iso(base_time_ms)}) "
        f"and producing to journey.events.*"
    )
    ds = generate(seed=seed, persons=args.persons, base_time_ms=base_time_ms, days=days)
    _save_calendar_end(max(r.occurred_at for r in ds.records if r.kind == "valid" and r.occurred_at))
    out_dir = stack.STACK / "demo" / str(seed)
    ds.truth.write(out_dir / "truth.json")
    report = produce(ds, BOOTSTRAP, rate=args.rate)
    print(f"  produced {report.delivered} records in {report.elapsed_s:.1f}s; ground truth in {out_dir / 'truth.json'}")
    print(
        "4/10 ingestion job on the Flink cluster (unbounded, exactly-once; resumed from its checkpoint if it ran before)"
    )
    jid, how = ensure_job("ingestion", progress=lambda s: print(f"  {s}", flush=True))
    print(f"  job {jid} {how}; watch it at {REST}/#/job/running/{jid}/overview")
    print("5/10 reading journey.normalized and journey.dlq (read_committed) until they hold this run's records")
    catalog = SchemaCatalog.load()
    bad_raw = {b.raw for b in ds.truth.bad_records}
    mine, dlq, job_s = wait_for_outputs(catalog, set(ds.truth.valid_event_ids), bad_raw)
    got_reasons = Counter(d["error_type"] for d in dlq)
    want_reasons = Counter(b.error_type for b in ds.truth.bad_records)
    unique_ok = sorted(e["event_id"] for e in mine) == ds.truth.valid_event_ids
    dlq_ok = got_reasons == want_reasons and len(dlq) == len(ds.truth.bad_records)
    dropped = report.delivered - len(mine) - len(dlq)

    s = ds.truth.summary()
    ok = unique_ok and dlq_ok and dropped == s["duplicate"]
    print()
    print(
        f"  records produced       {report.delivered:>7}  (valid {s['valid']}, duplicates {s['duplicate']}, bad {s['bad']})"
    )
    print(f"  normalized events out  {len(mine):>7}  expected {s['valid']:<6} {'OK' if unique_ok else 'MISMATCH'}")
    print(f"  dead-lettered          {len(dlq):>7}  expected {s['bad']:<6} {'OK' if dlq_ok else 'MISMATCH'}")
    for reason, n in sorted(want_reasons.items()):
        print(f"    {reason:<26} {got_reasons.get(reason, 0):>5}  expected {n}")
    forms = Counter(d["raw_form"] for d in dlq)
    leaked = _raw_pii_in(ds, dlq)
    print(
        f"  dead letters kept as   {forms.get('pii_hashed', 0)} pii_hashed, {forms.get('masked_prefix', 0)} masked_prefix; "
        f"raw emails/phones found in them: {leaked} {'OK' if leaked == 0 else 'MISMATCH'}"
    )
    ok = ok and leaked == 0
    print(
        f"  duplicates dropped     {dropped:>7}  expected {s['duplicate']:<6} {'OK' if dropped == s['duplicate'] else 'MISMATCH'}"
    )
    print(
        f"  persons / carts        {s['persons']} / {s['carts']} ({s['carts_abandoned']} abandoned); late events {s['late_events']}"
    )
    print(f"  time to all outputs    {job_s:7.1f}s  (from the job's start or resume)")
    if mine:
        sample = next((e for e in mine if e["identifiers"]["email_hash"]), mine[0])
        print("  a normalized event (email/phone only as salted hashes):")
        print("   ", json.dumps({k: sample[k] for k in ("event_id", "event_type", "channel", "identifiers")})[:400])
    print()
    print("6/10 identity + profiles + journeys job (unbounded)")
    pjid, how = ensure_job("profiles", progress=lambda s: print(f"  {s}", flush=True))
    print(f"  job {pjid} {how}; watch it at {REST}/#/job/running/{pjid}/overview")
    print("7/10 waiting until Cassandra holds this run's profiles (journey.profiles, identity_links)")
    ok = show_profiles(mine) and ok
    print()
    print(
        "8/10 waiting until the journeys stage has decided this run (journey.sessions, journey.triggers, "
        "read_committed; Cassandra sessions, carts, triggers)"
    )
    ok = show_journeys(catalog, mine) and ok
    print()
    print(
        "9/10 waiting until the rule segments of this run are decided (journey.segments, read_committed; "
        "Cassandra profile_segments; rules/segments.yaml unless `journey rules publish` changed them)"
    )
    ok = show_segments(catalog, mine) and ok
    print()
    print(
        "10/10 waiting until the online models have learned this run's closed sessions (journey.scores, "
        "read_committed): clusters beside the planted behaviour types, purchase propensity beside the outcomes"
    )
    ok = show_scores(catalog, mine, ds.truth) and ok
    print()
    print(
        f"Flink web UI: {REST}  (ingestion {jid} and profiles {pjid} keep running: a later "
        f"`make demo`, `make ingest` or `make profiles` finds them, or resumes them from their "
        f"checkpoints after `make down` / `make up`)"
    )
    print(
        "`make test` runs on a stack of its own and leaves this one alone; `make down` stops this one, "
        "`make reset` wipes it."
    )
    return 0 if ok else 1


def show_profiles(events: list[dict], timeout_s: float = 180) -> bool:
    """Poll Cassandra until every profile of an offline resolution of ``events`` is there with
    the same identifiers, events, orders and revenue; print the result and a sample."""
    rules = IdentityRules()
    all_events, events = events, surviving(events)  # what no erasure removed (docs/privacy.md)
    res = resolve([observation_of(e) for e in events], rules)
    by_profile: dict[str, list[dict]] = {}
    for e in events:
        kept = sorted({n for n in observation_of(e).identifiers if not rules.is_blocked(n[1])}, key=rules.rank)
        if kept:
            by_profile.setdefault(res.profile_of[kept[0]], []).append(e)
    want = {pid: fold(evs, pid) for pid, evs in by_profile.items()}
    members = {
        pid: {t: sorted(v for tt, v in res.members[pid] if tt == t) for t, _ in res.members[pid]} for pid in res.members
    }
    with ProfileStore.connect("127.0.0.1", stack.CASSANDRA_PORT) as store:

        def equal_profiles() -> list[str]:
            got = {pid: store.get(pid) for pid in res.members}
            return [pid for pid, p in got.items() if p is not None and _same(p, want.get(pid), members[pid])]

        same, _ = _watch(
            equal_profiles,
            lambda same: len(same) == len(res.members),
            lambda same: f"  {len(same)} of {len(res.members)} profiles equal the offline resolution",
            timeout_s,
            3,
        )
        sample_id = max(want, key=lambda pid: (want[pid].orders, len(res.members[pid])))
        sample = store.get(sample_id)
        cql = f"SELECT {', '.join(TRAIT_COLUMNS)} FROM journey.profiles WHERE profile_id = %s"
        plain = connect("127.0.0.1", stack.CASSANDRA_PORT)  # a plain cassandra-driver session, no project code
        try:
            row = plain.execute(cql, (sample_id,)).one()
        finally:
            plain.cluster.shutdown()
    ok = len(same) == len(res.members) and show_erasures(all_events)
    traits_ok = row is not None and _cql_traits(row) == _cql_traits(want[sample_id].stored_traits())
    ok = ok and traits_ok
    merged = len({n for pid in res.members for n in res.members[pid]}) - len(res.members)
    print(
        f"  profiles {len(res.members)} from {len(events)} events ({merged} identifiers merged into others, "
        f"{len(res.refused)} links refused) {'OK' if ok else 'MISMATCH'}"
    )
    if sample is not None:
        traits = sample.traits(as_of_ms=max(e["occurred_at"] for e in events))
        print(
            f"  e.g. {sample.profile_id}: {dict((t, len(v)) for t, v in sample.identifiers.items())} identifiers, "
            f"{sample.events} events, {sample.orders} orders, revenue {sample.revenue_cents / 100:.2f}, "
            f"segment {traits.rfm_segment}, top categories {[c for c, _ in traits.top_categories[:3]]}"
        )
    print(
        f"  its traits read with plain CQL ({'equal to' if traits_ok else 'DIFFERENT from'} the offline fold; "
        f"columns in docs/profiles.md):"
    )
    print(f"    {cql.replace('%s', repr(sample_id))}")
    if row is not None:
        for name, value in _cql_traits(row).items():
            print(f"    {name:<24} {value}")
    return ok


def show_erasures(events: list[dict], timeout_s: float = 120) -> bool:
    """This run's erasure requests (the generator plants a few, each the person's last event):
    poll Cassandra until no row of theirs is left in any table and the ledger holds their
    tombstones (``generator/erasure_truth.py`` says which identifiers and profile ids)."""
    from models.erasure import tombstone_key
    from tests.erasure_checks import PROFILE_TABLES

    planned = erasures(events)
    if not planned:
        print("  erasures               none in this run")
        return True
    ids, nodes = erased_ids(events), erased_nodes(events)
    session = connect("127.0.0.1", stack.CASSANDRA_PORT)

    requests = sorted({r for er in planned for r in er.request_ids})
    stages = ("profiles", "journeys", "models")

    def left() -> tuple[int, int, int, int]:
        """(rows left, links left, tombstones, audit rows of the three stages)."""
        rows = sum(
            1
            for t in PROFILE_TABLES
            for pid in ids
            for _ in session.execute(f"SELECT profile_id FROM journey.{t} WHERE profile_id = %s", (pid,))
        )
        links = sum(
            1
            for t, v in nodes
            for _ in session.execute(
                "SELECT profile_id FROM journey.identity_links WHERE identifier_type = %s AND identifier_value = %s",
                (t, v),
            )
        )
        stones = sum(
            1
            for n in nodes
            for _ in session.execute(
                "SELECT tombstone FROM journey.erased_identifiers WHERE tombstone = %s", (tombstone_key(n),)
            )
        )
        audit = {
            (r.ref, r.stage)
            for ref in requests
            for r in session.execute("SELECT ref, stage FROM journey.privacy_audit WHERE ref = %s", (ref,))
        }
        return rows, links, stones, len(audit & {(r, s) for r in requests for s in stages})

    done = (0, 0, len(nodes), len(requests) * len(stages))
    try:
        (rows, links, stones, audit), _ = _watch(
            left,
            lambda r: r == done,
            lambda r: (
                f"  erasures: {r[0]} rows and {r[1]} links of the erased persons left, "
                f"{r[2]} of {len(nodes)} tombstones, {r[3]} of {done[3]} audit rows"
            ),
            timeout_s,
            3,
        )
    finally:
        session.cluster.shutdown()
    ok = (rows, links, stones, audit) == done
    print(
        f"  erasures               {len(planned)} requests: {len(nodes)} identifiers, {len(ids)} profile ids; rows left "
        f"{rows}, links left {links}, tombstones {stones} of {len(nodes)}, audit rows {audit} of {done[3]} "
        f"(3 stages per request) {'OK' if ok else 'MISMATCH'}"
    )
    return ok


def calendar() -> tuple[int, int]:
    """(base time, days) of this run's data set: after the last run's (event time never goes
    back in a running job: older events would be late), 14 days, fewer when that would
    reach the wall clock."""
    path = stack.DATA / "demo-calendar.json"  # with the jobs' state: `make reset` wipes both
    last_end = json.loads(path.read_text())["calendar_end_ms"] if path.exists() else None
    base = DEFAULT_BASE_TIME_MS if last_end is None else max(DEFAULT_BASE_TIME_MS, last_end + DAY_MS)
    room_days = (int(time.time() * 1000) - base) // DAY_MS - 1
    if room_days < 1:
        raise stack.StackError(
            f"the demo's synthetic calendar has caught up with the wall clock ({_iso(base)}): the jobs' event "
            f"time cannot go back; wipe the stack with `make reset` to start the calendar again"
        )
    return base, int(min(14, room_days))


def _save_calendar_end(end_ms: int) -> None:
    path = stack.DATA / "demo-calendar.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"calendar_end_ms": end_ms}))


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ms / 1000))


def show_journeys(catalog: SchemaCatalog, events: list[dict], timeout_s: float = 300) -> bool:
    """Poll journey.triggers and journey.sessions until they hold what the offline oracle says
    about ``events`` (this run's); print the counts beside it, and Cassandra's rows."""
    want = without_erased(journey_truth(events, (), OracleJourneySettings()), events)
    gone = {f"{t}:{v}" for t, v in erased_nodes(events)}  # checked by show_erasures
    streams = {f"{t}:{v}" for e in events for t, v in e["identifiers"].items() if v is not None} - gone
    late_ids = {e["event_id"] for e in events} - erased_event_ids(events)
    want_published = {t["trigger_id"] for t in want.triggers if not t["suppressed"]}
    want_sessions = {s["session_id"] for s in want.sessions if s["closed"]}

    def read() -> tuple[list[dict], list[dict], list[dict]]:
        mine = [t for t in _decodable(catalog, "journey.triggers") if t.get("stream") in streams]
        sessions = [x for x in _decodable(catalog, "journey.sessions") if x.get("stream") in streams]
        late = [x for x in _decodable(catalog, "journey.late") if x["event_id"] in late_ids]
        return mine, sessions, late

    (triggers, sessions, late), _ = _watch(
        read,
        lambda r: (
            {t["trigger_id"] for t in r[0]} >= want_published and {x["session_id"] for x in r[1]} >= want_sessions
        ),
        lambda r: f"  {len(r[0])} of {len(want_published)} triggers, {len(r[1])} of {len(want_sessions)} sessions",
        timeout_s,
        3,
    )
    time.sleep(3)  # anything extra (a trigger twice) would show now
    triggers, sessions, late = read()
    with JourneyStore.connect("127.0.0.1", stack.CASSANDRA_PORT) as js:
        stored = {t: [r for r in js.all_rows(t) if r["stream"] in streams] for t in ("sessions", "carts", "triggers")}
    return _print_journeys(want, triggers, sessions, late, stored)


def show_scores(catalog: SchemaCatalog, events: list[dict], truth, timeout_s: float = 180) -> bool:
    """Poll journey.scores until every closed session of this run is scored (as many as the
    journeys oracle closes); print the adjusted Rand index of the profiles' latest clusters
    against the generator's planted behaviour, and the progressive ROC AUC of the propensity."""
    from bench.quality import adjusted_rand_index, roc_auc
    from tests.profiles_harness import oracle_samples

    res = resolve([observation_of(e) for e in events], IdentityRules())
    samples = oracle_samples(events, res)
    # what consent lets the learner publish (docs/privacy.md)
    want = {(s.profile_id, s.session_id): s for s in samples if s.kind == 0 and s.publish}
    carts = {(s.profile_id, s.session_id) for s in samples if s.is_abandonment and s.publish}
    churn = {(s.profile_id, s.session_id): bool(s.churned) for s in samples if s.is_churn_label}

    def read() -> tuple[dict[tuple[str, str], dict], dict[tuple[str, str], dict]]:
        sessions, actions = {}, {}
        for r in _decodable(catalog, "journey.scores"):
            if r.get("kind", "session") == "session" and (r["profile_id"], r["session_id"]) in want:
                sessions[(r["profile_id"], r["session_id"])] = r
            elif (r["profile_id"], r.get("trigger_id")) in carts:
                actions[(r["profile_id"], r["trigger_id"])] = r
        return sessions, actions

    (got, actions), _ = _watch(
        read,
        lambda g: len(g[0]) == len(want) and len(g[1]) == len(carts),
        lambda g: f"  {len(g[0])} of {len(want)} sessions scored, {len(g[1])} of {len(carts)} abandoned carts answered",
        timeout_s,
        3,
    )
    behaviour = {}
    for p in truth.persons:
        pid = res.profile_of.get(("customer_id", p.customer_id))
        if pid is not None:
            behaviour[pid] = p.behaviour
    latest: dict[str, dict] = {}
    for r in sorted(got.values(), key=lambda r: r["at"]):
        if r["cluster"] is not None:
            latest[r["profile_id"]] = r
    people = sorted(p for p in latest if p in behaviour)
    ari = adjusted_rand_index([behaviour[p] for p in people], [latest[p]["cluster"] for p in people]) if people else 0.0
    labels = [want[k].purchased for k in got]
    auc = roc_auc(labels, [got[k]["propensity"] for k in got]) if 0 < sum(labels) < len(labels) else float("nan")
    ok = len(got) == len(want) and len(actions) == len(carts)
    print(
        f"  sessions scored           {len(got):>6}  expected {len(want):<6} {'OK' if len(got) == len(want) else 'MISMATCH'}"
    )
    print(f"  cluster ARI vs behaviour  {ari:>6.3f}  ({len(people)} profiles with 3+ sessions; target 0.8)")
    print(f"  purchase propensity AUC   {auc:>6.3f}  (predicted before each session's outcome; target 0.85)")
    kinds = {a: sum(1 for r in actions.values() if r["recommended_action"] == a) for a in ("reminder", "offer")}
    print(
        f"  abandoned carts answered  {len(actions):>6}  expected {len(carts):<6} "
        f"{'OK' if len(actions) == len(carts) else 'MISMATCH'}  ({kinds['reminder']} reminder, {kinds['offer']} offer)"
    )
    decided = [(churn[k], got[k]["churn_risk"]) for k in churn if k in got and got[k]["churn_risk"] is not None]
    positives = sum(y for y, _ in decided)
    churn_auc = roc_auc([y for y, _ in decided], [p for _, p in decided]) if 0 < positives < len(decided) else None
    print(
        f"  churn labels decided      {len(churn):>6}  ({sum(churn.values())} churned: no event within "
        f"{JourneySettings().churn_window_ms // 86_400_000} days of a close); "
        f"risk published at the close, AUC {'n/a' if churn_auc is None else format(churn_auc, '.3f')} "
        "(a cold model: labels come a week after their close)"
    )
    print("  (the models keep learning across demo runs; make quality measures them alone)")
    return ok


def show_segments(catalog: SchemaCatalog, events: list[dict], timeout_s: float = 180) -> bool:
    """Poll journey.segments until every profile of this run has the changes the offline oracle
    (``generator/segment_truth.py``, shipped rules) gives; print them per segment beside it."""
    res = resolve([observation_of(e) for e in events], IdentityRules())
    gone = erased_nodes(events)  # the erased persons' (checked by show_erasures)
    want: dict[str, list[tuple]] = {}
    for c in segment_truth(events, oracle_rules(DEFAULT_RULES_PATH)):
        t, v = c["person"].split(":", 1)
        if (t, v) in gone:
            continue
        pid = res.profile_of[(t, v)]
        want.setdefault(pid, []).append((c["segment"], c["change"], c["rule_version"], c["at"]))

    erased = erased_ids(events)

    def read() -> dict[str, list[tuple]]:
        got: dict[str, list[tuple]] = {}
        for r in sorted(_decodable(catalog, "journey.segments"), key=lambda r: (r["profile_id"], r["sequence"])):
            if r["profile_id"] in res.members and r["profile_id"] not in erased:
                got.setdefault(r["profile_id"], []).append((r["segment"], r["change"], r["rule_version"], r["at"]))
        return got

    got, _ = _watch(
        read,
        lambda g: g == want,
        lambda g: f"  {sum(map(len, g.values()))} of {sum(map(len, want.values()))} segment changes",
        timeout_s,
        3,
    )
    ok = got == want
    names = sorted({c[0] for cs in want.values() for c in cs} | {c[0] for cs in got.values() for c in cs})
    for name in names:
        counts = []
        for change in ("entered", "exited"):
            n_got = sum(1 for cs in got.values() for c in cs if c[0] == name and c[1] == change)
            n_want = sum(1 for cs in want.values() for c in cs if c[0] == name and c[1] == change)
            counts.append(f"{change} {n_got:>4} (expected {n_want:<4})")
        print(f"  {name:<16} {'  '.join(counts)}")
    print(
        f"  every profile's changes in order, as the oracle says (time-only exits included): {'OK' if ok else 'MISMATCH'}"
    )
    with JourneyStore.connect("127.0.0.1", stack.CASSANDRA_PORT) as js:
        sample = next((pid for pid in sorted(want) if js.segments(pid)), None)
        if sample is not None:
            rows = ", ".join(f"{r['segment']} v{r['rule_version']}" for r in js.segments(sample))
            print(f"  Cassandra profile_segments of {sample}: {rows}")
    print("  change the rules without a restart: journey rules publish FILE (journey rules status shows the versions)")
    return ok


def _print_journeys(want: JourneyTruth, triggers, sessions, late, stored) -> bool:
    def kind(rows, k: str, suppressed: bool = False) -> int:
        return sum(1 for t in rows if t["kind"] == k and bool(t["suppressed"]) == suppressed)

    oracle_published = [t for t in want.triggers if not t["suppressed"]]
    carts = Counter(c["status"] for c in stored["carts"])
    want_carts = Counter(c["status"] for c in want.carts)
    session_ids = {x["session_id"] for x in sessions}
    rows = [
        ("sessions (closed)", len(session_ids), sum(1 for x in want.sessions if x["closed"])),
        (
            "carts abandoned (+recovered)",
            carts["abandoned"] + carts["recovered"],
            want_carts["abandoned"] + want_carts["recovered"],
        ),
        ("carts purchased", carts["purchased"], want_carts["purchased"]),
        ("carts recovered", carts["recovered"], want_carts["recovered"]),
        ("cart_abandoned published", kind(triggers, "cart_abandoned"), kind(oracle_published, "cart_abandoned")),
        (
            "escalations published",
            kind(triggers, "cart_abandoned_escalation"),
            kind(oracle_published, "cart_abandoned_escalation"),
        ),
        ("recoveries published", kind(triggers, "cart_recovered"), kind(oracle_published, "cart_recovered")),
        ("high intent published", kind(triggers, "high_intent"), kind(oracle_published, "high_intent")),
        (
            "suppressed (marketing)",
            sum(1 for t in stored["triggers"] if t["suppressed"]),
            sum(1 for t in want.triggers if t["suppressed"]),
        ),
        ("late (beyond lateness)", len(late), len(want.late_dropped)),
    ]
    ok = True
    for label, got, expected in rows:
        ok = ok and got == expected
        print(f"  {label:<26} {got:>6}  expected {expected:<6} {'OK' if got == expected else 'MISMATCH'}")
    ids = [t["trigger_id"] for t in triggers]
    exact = len(ids) == len(set(ids)) and set(ids) == {t["trigger_id"] for t in oracle_published}
    ok = ok and exact
    print(f"  every trigger exactly once and as the oracle says: {'OK' if exact else 'MISMATCH'}")
    sample = next((t for t in triggers if t["kind"] == "cart_abandoned"), None)
    if sample is not None:
        print("  a published trigger:")
        print("   ", json.dumps({k: v for k, v in sample.items() if v is not None})[:500])
    return ok


def _cql_traits(traits) -> dict[str, object]:
    """The trait columns of a CQL row or a :class:`StoredTraits`, in one comparable form."""
    out: dict[str, object] = {}
    for name in TRAIT_COLUMNS:
        value = getattr(traits, name)
        if name == "top_categories":
            value = [(c, round(v, 4)) for c, v in (value or ())]
        out[name] = value
    return out


def _same(p, want, members: dict[str, list[str]]) -> bool:
    ids = {t: sorted(v) for t, v in p.identifiers.items() if v}
    if want is None:  # a profile with no event of its own (only linked identifiers)
        return ids == members and p.events == 0
    return ids == members and (p.events, p.orders, p.revenue_cents) == (want.events, want.orders, want.revenue_cents)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (stack.StackError, FlinkJobError) as e:
        print(f"demo: {e}", file=sys.stderr)
        sys.exit(2)
