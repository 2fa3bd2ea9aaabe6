"""Where the journeys stage writes sessions, carts and triggers: Cassandra, or a recording in tests.

Tables (``state/schema.cql``): ``sessions`` and ``triggers`` by profile, newest first;
``carts`` by profile and cart. Writes are idempotent: ``USING TIMESTAMP 2 * version + 1``
(deletions ``2 * version``) with the session's publication version and the cart's change
count, which replays reproduce; a trigger never changes (timestamp 1). The operator writes
synchronously (all statements of one step in parallel, then waits), so a checkpoint never
covers a write that was not made.

Reading::

    from state.journey_store import JourneyStore

    with JourneyStore.connect("127.0.0.1", 9042) as js:
        js.sessions("p-1b86c9d9528f4064e291")   # the person's sessions, newest first
        js.carts("p-1b86c9d9528f4064e291")
        js.triggers("p-1b86c9d9528f4064e291")

A session is written under the profile that held it when it closed; :meth:`JourneyStore.sessions`
also returns the sessions written under the profile's earlier ids (a profile's ids are the
canonical ids of its identifiers alone) whose stream is one of its identifiers now, so an
anonymous session belongs to the person once identity has merged it. With plain CQL::

    SELECT * FROM journey.sessions WHERE profile_id IN ('p-…', 'p-…');   -- the ids above

Examples
--------
>>> import tempfile, pathlib
>>> from models.journeys import CartOut, SessionOut
>>> path = pathlib.Path(tempfile.mkdtemp()) / "journeys.jsonl"
>>> w = RecordingJourneys(str(path))()
>>> w.write([SessionOut({"session_id": "s-1", "profile_id": "p-1", "version": 1, "started_at": 5}),
...          CartOut("p-1", "c1", 1, {"profile_id": "p-1", "cart_id": "c1", "status": "open"}),
...          CartOut("p-1", "c1", 3, None)])
3
>>> rec = read_recorded_journeys(path)
>>> rec.sessions[("p-1", "s-1")]["version"], rec.carts
(1, {})
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Protocol, Sequence

from models.config import CassandraAuth
from models.identity import IdentityRules, canonical_profile_id
from models.erasure import ERASED_TIMESTAMP
from models.journeys import (
    CartOut,
    ConsentAuditOut,
    ConsentOut,
    ErasedOut,
    LateOut,
    Out,
    SampleOut,
    SessionOut,
    TriggerOut,
)
from models.segments import SegmentOut
from state.recording import append_statements

SESSION_COLUMNS = (
    "profile_id",
    "started_at",
    "session_id",
    "stream",
    "version",
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
CART_COLUMNS = (
    "profile_id",
    "cart_id",
    "stream",
    "status",
    "opened_at",
    "last_change_at",
    "items",
    "value",
    "deadline",
    "completed_at",
    "abandoned_at",
    "escalated",
    "recovered_at",
    "version",
)
TRIGGER_COLUMNS = (
    "profile_id",
    "fired_at",
    "trigger_id",
    "kind",
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
#: ``segment_members`` and ``profile_segments`` (the key columns first, in each table's order)
MEMBER_COLUMNS = ("segment", "profile_id", "rule_version", "entered_at", "purpose")
#: ``privacy_audit`` (docs/privacy.md), in statement order
AUDIT_COLUMNS = (
    "ref",
    "stage",
    "part",
    "action",
    "at",
    "tables",
    "rows",
    "identifiers",
    "profiles",
    "purpose",
    "granted",
    "source",
)


def audit_row(ref: str, stage: str, part: int, action: str, at: Any, **values: Any) -> tuple[Any, ...]:
    """A ``privacy_audit`` row in :data:`AUDIT_COLUMNS` order (the columns not given: null)."""
    unknown = set(values) - set(AUDIT_COLUMNS[5:])
    if unknown:
        raise ValueError(f"not privacy_audit columns: {sorted(unknown)}")
    return (ref, stage, part, action, at, *(values.get(c) for c in AUDIT_COLUMNS[5:]))


#: ``profile_consent`` (docs/privacy.md)
CONSENT_COLUMNS = ("profile_id", "purpose", "granted", "changed_at", "source", "event_id", "suppressed")
_TIMES = frozenset({"started_at", "ended_at", "opened_at", "last_change_at", "deadline", "completed_at"})
_TIMES |= {"abandoned_at", "recovered_at", "fired_at", "entered_at", "changed_at"}


class JourneyWriter(Protocol):
    def write(self, outs: Sequence[Out]) -> int:
        """Write what the outputs say (late events are not stored); returns the requests made."""
        ...

    def close(self) -> None: ...


def _to_cql(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in _TIMES:
        return datetime.fromtimestamp(value / 1000, tz=timezone.utc)
    if name == "items":
        return [(i["product_id"], i["quantity"], i["unit_price"]) for i in value]
    return value


def _from_cql(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in _TIMES:
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return int(round(value.timestamp() * 1000))
    if name == "items":
        return [{"product_id": p, "quantity": q, "unit_price": u} for p, q, u in value]
    if name == "channels":
        return list(value)
    return value


def statements(outs: Iterable[Out]) -> list[tuple[str, tuple[Any, ...], int]]:
    """``(table action, values, timestamp)`` for each write the outputs need (pure; the
    Cassandra and recording stores share it). Actions: ``session``, ``session-delete``,
    ``cart``, ``cart-delete``, ``trigger``, ``segment``, ``segment-delete`` (a membership: both
    tables), ``consent``, ``consent-delete``."""
    out: list[tuple[str, tuple[Any, ...], int]] = []
    for o in outs:
        if isinstance(o, SessionOut):
            s, v = o.session, o.session["version"]
            out.append(("session", tuple(_to_cql(c, s.get(c)) for c in SESSION_COLUMNS), 2 * v + 1))
            if o.replaces_started_at is not None:
                key = (s["profile_id"], _to_cql("started_at", o.replaces_started_at), s["session_id"])
                out.append(("session-delete", key, 2 * v))
        elif isinstance(o, CartOut):
            if o.row is None:
                out.append(("cart-delete", (o.profile_id, o.cart_id), 2 * o.version))
            else:
                out.append(("cart", tuple(_to_cql(c, o.row.get(c)) for c in CART_COLUMNS), 2 * o.version + 1))
        elif isinstance(o, TriggerOut):
            out.append(("trigger", tuple(_to_cql(c, o.trigger.get(c)) for c in TRIGGER_COLUMNS), 1))
        elif isinstance(o, SegmentOut):
            r = o.record
            if r["change"] == "entered":
                row = (r["segment"], r["profile_id"], r["rule_version"], _to_cql("entered_at", r["at"]), r["purpose"])
                out.append(("segment", row, o.row_version))
            else:
                out.append(("segment-delete", (r["segment"], r["profile_id"]), o.row_version))
        elif isinstance(o, ConsentOut):
            if o.row is None:
                out.append(("consent-delete", (o.profile_id, o.purpose), 2 * o.version))
            else:
                out.append(("consent", tuple(_to_cql(c, o.row.get(c)) for c in CONSENT_COLUMNS), 2 * o.version + 1))
        elif isinstance(o, ErasedOut):
            out.extend(erasure_statements(o))
        elif isinstance(o, ConsentAuditOut):
            at = _to_cql("changed_at", o.at)
            audit = audit_row(
                o.event_id, "journeys", 0, "consent_change", at, purpose=o.purpose, granted=o.granted, source=o.source
            )
            out.append(("audit", audit, 1))
        else:  # late events and learning samples are not stored here
            assert isinstance(o, (LateOut, SampleOut))
    return out


#: the journeys' tables an erasure empties for each profile id (by partition)
ERASED_TABLES = ("sessions", "carts", "triggers", "profile_consent", "profile_segments")


def erasure_statements(o: ErasedOut) -> list[tuple[str, tuple[Any, ...], int]]:
    """An erased profile (docs/privacy.md): every partition of :data:`ERASED_TABLES` under each of
    its ids and its ``segment_members`` rows deleted at ``ERASED_TIMESTAMP``, and the audit row."""
    out: list[tuple[str, tuple[Any, ...], int]] = []
    for pid in o.ids:
        out += [(f"erase-{t}", (pid,), ERASED_TIMESTAMP) for t in ERASED_TABLES]
        out += [("erase-segment_members", (seg, pid), ERASED_TIMESTAMP) for seg in o.segments]
    tables = [*ERASED_TABLES, "segment_members"] if o.segments else list(ERASED_TABLES)
    at = _to_cql("changed_at", o.at)
    audit = audit_row(
        o.request_id, "journeys", o.part, "erasure", at, tables=tables, rows=len(out), profiles=len(o.ids)
    )
    return out + [("audit", audit, 1)]


class JourneyStore:
    """Writer (synchronous, idempotent) and reader of the journeys tables.

    Parameters
    ----------
    session : cassandra.cluster.Session
    keyspace : str
    """

    def __init__(self, session: Any, keyspace: str = "journey") -> None:
        from cassandra import ConsistencyLevel

        self._session, self._ks = session, keyspace
        self._owns_cluster = False
        ks = keyspace

        def prep(cql: str) -> Any:
            stmt = session.prepare(cql)
            stmt.consistency_level = ConsistencyLevel.LOCAL_QUORUM
            stmt.is_idempotent = True
            return stmt

        def insert(table: str, cols: Sequence[str]) -> Any:
            return prep(
                f"INSERT INTO {ks}.{table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) USING TIMESTAMP ?"
            )

        self._writes = {
            "session": insert("sessions", SESSION_COLUMNS),
            "session-delete": prep(
                f"DELETE FROM {ks}.sessions USING TIMESTAMP ? WHERE profile_id = ? AND started_at = ? AND session_id = ?"
            ),
            "cart": insert("carts", CART_COLUMNS),
            "cart-delete": prep(f"DELETE FROM {ks}.carts USING TIMESTAMP ? WHERE profile_id = ? AND cart_id = ?"),
            "trigger": insert("triggers", TRIGGER_COLUMNS),
            "segment": insert("segment_members", MEMBER_COLUMNS),
            "segment-delete": prep(
                f"DELETE FROM {ks}.segment_members USING TIMESTAMP ? WHERE segment = ? AND profile_id = ?"
            ),
            "profile-segment": insert("profile_segments", MEMBER_COLUMNS),
            "profile-segment-delete": prep(
                f"DELETE FROM {ks}.profile_segments USING TIMESTAMP ? WHERE segment = ? AND profile_id = ?"
            ),
            "consent": insert("profile_consent", CONSENT_COLUMNS),
            "consent-delete": prep(
                f"DELETE FROM {ks}.profile_consent USING TIMESTAMP ? WHERE profile_id = ? AND purpose = ?"
            ),
            "audit": insert("privacy_audit", AUDIT_COLUMNS),
            "erase-segment_members": prep(
                f"DELETE FROM {ks}.segment_members USING TIMESTAMP ? WHERE segment = ? AND profile_id = ?"
            ),
            **{
                f"erase-{t}": prep(f"DELETE FROM {ks}.{t} USING TIMESTAMP ? WHERE profile_id = ?")
                for t in ERASED_TABLES
            },
        }
        self._reads = {
            t: prep(f"SELECT {', '.join(cols)} FROM {ks}.{t} WHERE profile_id IN ?")
            for t, cols in (("sessions", SESSION_COLUMNS), ("carts", CART_COLUMNS), ("triggers", TRIGGER_COLUMNS))
        }
        self._identifiers = prep(f"SELECT identifiers FROM {ks}.profiles WHERE profile_id = ?")

    @classmethod
    def connect(
        cls,
        host: str = "127.0.0.1",
        port: int = 9042,
        keyspace: str = "journey",
        auth: CassandraAuth | None = None,
        wait_s: float = 0.0,
    ) -> "JourneyStore":
        from state.cassandra_schema import connect

        session = connect(host, port, auth=auth, wait_s=wait_s)
        store = cls(session, keyspace)
        store._owns_cluster = True
        return store

    def close(self) -> None:
        if self._owns_cluster:
            self._session.cluster.shutdown()

    def __enter__(self) -> "JourneyStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- writing ---------------------------------------------------------------------------

    def write(self, outs: Sequence[Out]) -> int:
        """Issue every write of ``outs`` at once and wait for all (raises the first failure)."""
        futures = []
        for action, values, ts in statements(outs):
            deletes = action.endswith("-delete") or action.startswith("erase-")
            params = (ts, *values) if deletes else (*values, ts)
            futures.append(self._session.execute_async(self._writes[action], params))
            if action.startswith("segment"):  # the same membership by profile
                futures.append(self._session.execute_async(self._writes["profile-" + action], params))
        for f in futures:
            f.result()
        return len(futures)

    # ---- reading ---------------------------------------------------------------------------

    def _rows(self, table: str, cols: Sequence[str], profile_ids: Sequence[str]) -> list[dict[str, Any]]:
        rows = self._session.execute(self._reads[table], (list(profile_ids),))
        return [{c: _from_cql(c, getattr(r, c)) for c in cols} for r in rows]

    def profile_ids_of(self, profile_id: str, rules: IdentityRules = IdentityRules()) -> tuple[list[str], set[str]]:
        """The profile's ids (its own and its identifiers' canonical ids) and its identifiers
        as ``type:value`` streams (empty when the profile row does not exist)."""
        row = self._session.execute(self._identifiers, (profile_id,)).one()
        ids = {} if row is None or row.identifiers is None else row.identifiers
        nodes = [(t, v) for t, vs in ids.items() for v in vs]
        aliases = sorted({profile_id} | {canonical_profile_id([n], rules) for n in nodes})
        return aliases, {f"{t}:{v}" for t, v in nodes}

    def sessions(self, profile_id: str) -> list[dict[str, Any]]:
        """The person's sessions, newest first: rows under any of the profile's ids whose
        stream is one of its identifiers (under its own id: all), the latest version of each."""
        aliases, streams = self.profile_ids_of(profile_id)
        best: dict[str, dict[str, Any]] = {}
        for r in self._rows("sessions", SESSION_COLUMNS, aliases):
            if r["profile_id"] != profile_id and r["stream"] not in streams:
                continue
            have = best.get(r["session_id"])
            if have is None or r["version"] > have["version"]:
                best[r["session_id"]] = r
        return sorted(best.values(), key=lambda r: (-r["started_at"], r["session_id"]))

    def carts(self, profile_id: str) -> list[dict[str, Any]]:
        return self._rows("carts", CART_COLUMNS, [profile_id])

    def triggers(self, profile_id: str) -> list[dict[str, Any]]:
        return self._rows("triggers", TRIGGER_COLUMNS, [profile_id])

    def segments(self, profile_id: str) -> list[dict[str, Any]]:
        """The profile's rule segments (``profile_segments``)."""
        rows = self._session.execute(
            f"SELECT {', '.join(MEMBER_COLUMNS)} FROM {self._ks}.profile_segments WHERE profile_id = %s", (profile_id,)
        )
        return [{c: _from_cql(c, getattr(r, c)) for c in MEMBER_COLUMNS} for r in rows]

    def all_rows(self, table: str) -> list[dict[str, Any]]:
        """Every row of ``sessions``, ``carts``, ``triggers``, ``segment_members``,
        ``profile_segments`` or ``profile_consent`` (tests, the demo; small data)."""
        cols = {
            "sessions": SESSION_COLUMNS,
            "carts": CART_COLUMNS,
            "triggers": TRIGGER_COLUMNS,
            "profile_consent": CONSENT_COLUMNS,
        }.get(table, MEMBER_COLUMNS)
        rows = self._session.execute(f"SELECT {', '.join(cols)} FROM {self._ks}.{table}")
        return [{c: _from_cql(c, getattr(r, c)) for c in cols} for r in rows]


@dataclass(frozen=True)
class CassandraJourneys:
    """Factory of the production store (picklable: Flink ships it to the TaskManagers)."""

    host: str
    port: int
    keyspace: str
    auth: CassandraAuth | None = None  # None: JOURNEY_CASSANDRA_* of the process
    wait_s: float = 0.0  # how long open() waits for an unreachable Cassandra (JOURNEY_CASSANDRA_WAIT_MS)

    def __call__(self) -> JourneyStore:
        return JourneyStore.connect(self.host, self.port, self.keyspace, self.auth, self.wait_s)


@dataclass(frozen=True)
class RecordingJourneys:
    """Factory of a store that appends each write to ``path`` as a JSON line (tests)."""

    path: str

    def __call__(self) -> "_Recording":
        return _Recording(Path(self.path))


class _Recording:
    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, outs: Sequence[Out]) -> int:
        return append_statements(self.path, statements(outs))

    def close(self) -> None:
        pass


@dataclass
class RecordedJourneys:
    """Rows as Cassandra would hold them after the recorded writes (highest timestamp wins,
    a deletion wins a tie)."""

    sessions: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (profile, session)
    carts: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (profile, cart)
    triggers: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (profile, trigger)
    segments: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (profile, segment)
    consent: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (profile, purpose)


def read_recorded_journeys(path: Path) -> RecordedJourneys:
    cells: dict[tuple[str, tuple], tuple[int, bool, dict[str, Any] | None]] = {}

    def put(table: str, key: tuple, ts: int, row: dict[str, Any] | None) -> None:
        have = cells.get((table, key))
        if have is None or ts > have[0] or (ts == have[0] and row is None):
            cells[(table, key)] = (ts, row is None, row)

    erased: dict[tuple[str, str], int] = {}  # (table, profile id) -> partition deleted at
    recorded_table = {"sessions": "sessions", "carts": "carts", "triggers": "triggers"}
    recorded_table |= {"profile_consent": "consent", "profile_segments": "segments", "segment_members": "segments"}
    for line in Path(path).read_text().splitlines():
        action, values, ts = json.loads(line)
        if action == "audit":
            continue
        if action.startswith("erase-"):
            pid = values[-1]  # the profile id is the last key value of every erase statement
            where = (recorded_table[action.removeprefix("erase-")], pid)
            erased[where] = max(ts, erased.get(where, ts))
            continue
        if action == "session":
            row = dict(zip(SESSION_COLUMNS, values))
            put("sessions", (row["profile_id"], row["started_at"], row["session_id"]), ts, row)
        elif action == "session-delete":
            put("sessions", tuple(values), ts, None)
        elif action == "cart":
            row = dict(zip(CART_COLUMNS, values))
            put("carts", (row["profile_id"], row["cart_id"]), ts, row)
        elif action == "cart-delete":
            put("carts", tuple(values), ts, None)
        elif action == "segment":
            row = dict(zip(MEMBER_COLUMNS, values))
            put("segments", (row["profile_id"], row["segment"]), ts, row)
        elif action == "segment-delete":
            put("segments", (values[1], values[0]), ts, None)
        elif action == "consent":
            row = dict(zip(CONSENT_COLUMNS, values))
            put("consent", (row["profile_id"], row["purpose"]), ts, row)
        elif action == "consent-delete":
            put("consent", tuple(values), ts, None)
        else:
            row = dict(zip(TRIGGER_COLUMNS, values))
            put("triggers", (row["profile_id"], row["trigger_id"]), ts, row)
    rec = RecordedJourneys()
    for (table, key), (ts, _, kept) in cells.items():
        if kept is None or erased.get((table, key[0]), -1) >= ts:
            continue
        if table == "sessions":
            rec.sessions[(key[0], key[2])] = kept
        else:
            getattr(rec, table)[key] = kept
    return rec
