"""Checks shared by the erasure tests on the real stack (``tests/e2e/test_erasure_e2e.py``, the
erasure chaos scenario): every row and record that could hold an erased person, and the
counters the jobs report about it."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from local.flink_cluster import counter_total, operator_counters
from local.kafka_read import read_committed
from local.polling import WaitTimeout, steady, wait_until
from models.avro_codec import SchemaCatalog
from tests.profiles_harness import ProfilesRun

#: every table a person's data can be in, and how a row of it names the person
PROFILE_TABLES = ("profiles", "sessions", "carts", "triggers", "profile_segments", "profile_consent", "scores")
INGEST_COUNTERS = ["received", "valid", "dead_lettered", "erased", "duplicates", "emitted"]
ROUTER_COUNTERS = ["events", "erased", "erasures", "erasure_requests", "ledger_tombstones"]


def rows_of(session, keyspace: str) -> dict[str, list[Any]]:
    out = {t: list(session.execute(f"SELECT * FROM {keyspace}.{t}")) for t in PROFILE_TABLES}
    out["segment_members"] = list(session.execute(f"SELECT * FROM {keyspace}.segment_members"))
    out["identity_links"] = list(session.execute(f"SELECT * FROM {keyspace}.identity_links"))
    out["erased_identifiers"] = list(session.execute(f"SELECT * FROM {keyspace}.erased_identifiers"))
    out["privacy_audit"] = list(session.execute(f"SELECT * FROM {keyspace}.privacy_audit"))
    return out


def decoded(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    catalog = SchemaCatalog.load()
    return [catalog.decode(r.value)[1] for r in read_committed(bootstrap, topic)]


def output_topics(run: ProfilesRun) -> dict[str, str]:
    return {
        "identity": run.identity,
        "sessions": run.sessions,
        "triggers": run.triggers,
        "late": run.late,
        "segments": run.segments,
        "scores": run.scores,
    }


def totals(job_id: str, names: list[str]) -> dict[str, int]:
    """Each counter summed over operators and subtasks (not its per-reason copies)."""
    counters = {k: v for k, v in operator_counters(job_id, names).items() if ".reason." not in k}
    return {n: counter_total(counters, n) for n in names}


def counters_when(job_id: str, names: list[str], done, what: str, timeout_s: float = 240) -> dict[str, int]:
    try:
        return wait_until(
            lambda: totals(job_id, names),
            timeout_s,
            3,
            what,
            until=steady(done),
        )
    except WaitTimeout as e:
        return e.last


def traces(rows: dict[str, list[Any]], ids: frozenset[str], nodes: frozenset) -> list[str]:
    """Every row of the person's: under one of their profile ids, or linking one of their identifiers."""
    found = [f"{t}: {r}" for t in (*PROFILE_TABLES, "segment_members") for r in rows[t] if r.profile_id in ids]
    found += [
        f"identity_links: {r}" for r in rows["identity_links"] if (r.identifier_type, r.identifier_value) in nodes
    ]
    return found


def mentions(record: dict[str, Any], ids: frozenset[str], nodes: frozenset) -> bool:
    text = json.dumps(record, default=str)
    return any(i in text for i in ids) or any(v in text for _, v in nodes)


@dataclass
class ProfilesReplay:
    """What a profiles job started with no state on an old ``journey.normalized`` left."""

    counters: dict[str, int]  # the router's (ROUTER_COUNTERS)
    differences: list[str]  # Cassandra against the profile oracle over the surviving events
    rows: dict[str, list[Any]]  # every table (rows_of)
    topics: dict[str, list[dict[str, Any]]]  # its own output topics, decoded


def replay_profiles(bootstrap: str, session, normalized: str, keyspace: str, events: list[dict]) -> ProfilesReplay:
    """Run a new profiles job (own group and output topics, the same keyspace) over
    ``normalized`` from the earliest offsets until its router has read ``events``."""
    from local.flink_cluster import cancel, submit, wait_state
    from tests.ingestion_harness import Topics
    from tests.profiles_harness import wait_until_cassandra_equals_oracle

    prefix = f"replay{uuid.uuid4().hex[:8]}"
    run = ProfilesRun.over(bootstrap, Topics(prefix, (), normalized, f"{prefix}.dlq"), keyspace)
    job = submit("flink_jobs.profiles", run.job_env(bootstrap), detached=True)
    try:
        wait_state(job.job_id, {"RUNNING"}, timeout_s=120)
        diff, _ = wait_until_cassandra_equals_oracle(session, keyspace, events, timeout_s=300)
        rows = rows_of(session, keyspace)
        # profile rows are written from the command itself, sessions only once event time closes
        # them and a checkpoint commits them: Cassandra can be complete before the first session
        # is readable, so give the sessions their time (the test then checks there are some)
        try:
            wait_until(lambda: decoded(bootstrap, run.sessions), 120, 2, "the replay's sessions", until=bool)
        except WaitTimeout:
            pass
        # the counters last: an erased event's other identifiers are looked up in the ledger
        # when its erasure closure comes back on the feedback topic, a checkpoint after the
        # event was counted (read first, a loaded run once saw 4 of the 5 tombstones)
        counters = counters_when(
            job.job_id, ROUTER_COUNTERS, lambda c: c["events"] >= len(events), "the replayed router's counters"
        )
        topics = {k: decoded(bootstrap, t) for k, t in output_topics(run).items()}
    finally:
        cancel(job.job_id)
    return ProfilesReplay(counters, diff, rows, topics)


def raw_pii_needles(dataset: Any) -> set[bytes]:
    """Every raw email and phone a generated data set planted (each person's spellings and those
    of its rejected events), lower-cased without whitespace, and each phone's digits."""
    from models.avro_codec import DecodeError

    catalog = SchemaCatalog.load()
    raws: set[str] = set()
    for p in dataset.truth.persons:
        raws |= {v for v in (*p.email_variants, *p.phone_variants, p.email or "", p.phone or "")}
    for b in dataset.truth.bad_records:
        try:
            ids = catalog.decode(b.raw, expect="Event")[1]["identifiers"]
        except DecodeError:
            continue
        raws |= {v for v in (ids.get("email"), ids.get("phone")) if v}
    needles = {v.strip().lower().encode() for v in raws if len(v.strip()) >= 7}
    digits = {"".join(c for c in v if c.isdigit()).encode() for v in raws if sum(c.isdigit() for c in v) >= 10}
    return needles | digits


def raw_pii_found(blobs: dict[str, list[bytes]], needles: set[bytes]) -> list[str]:
    """Where any needle occurs (case-insensitively) in the blobs, by source name."""
    return [
        f"{where}: {[n for n in needles if n in blob.lower()][:2]}"
        for where, values in blobs.items()
        for blob in values
        if any(n in blob.lower() for n in needles)
    ]
