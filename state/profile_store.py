"""Cassandra store of unified customer profiles (``journey.profiles``) and identity links.

How to read a profile
---------------------
A profile is one row of ``journey.profiles`` keyed by its canonical ``profile_id``; any of its
identifiers (``customer_id``, ``email_hash``, ``phone_hash``, ``device_id``, ``cookie_id``,
``loyalty_id``) finds it through ``journey.identity_links``. Email and phone are only ever
stored as salted hashes: hash them the way the ingestion stage does before looking them up.
:meth:`ProfileStore.get` returns a typed :class:`models.profile.ProfileAggregate`
(timestamps as epoch milliseconds, UTC; consent and CRM attributes as
``(value, at_ms, event_id)`` tuples; absent maps as ``{}``)::

    from state.profile_store import ProfileStore

    with ProfileStore.connect("127.0.0.1", 9042) as store:       # keyspace "journey"
        p = store.get(identifier_type="customer_id", identifier_value="C-1001")
        if p is not None:
            print(p.profile_id, p.orders, p.revenue_cents / 100, p.consent.get("marketing"))
        same = store.get(p.profile_id)                            # by canonical id
        store.identifiers_of(p.profile_id)      # {"customer_id": ["C-1001"], "email_hash": [...]}

A canonical profile id is ``p-`` and 20 hex digits (:func:`models.identity.canonical_profile_id`:
SHA-256 of the profile's highest-priority identifier), so look profiles up by an identifier
unless you have the id. Reading with plain CQL (cqlsh, Spark, another service) works too;
``version`` orders a row's updates (see "Writing" below; ``writetime(<column>)`` is
``2 * version + 1``), consent / crm_attributes values are JSON arrays
``[granted|value, at_ms, event_id]``. Every row also carries its traits as of its last event
(recency, purchase days, average spends in cents, top categories normalized to [0, 1]:
:data:`TRAIT_COLUMNS`, defined in ``docs/profiles.md``), written with the row at the same
timestamp, so a reader needs no Python::

    SELECT * FROM journey.profiles WHERE profile_id = 'p-1b86c9d9528f4064e291';
    SELECT orders, purchase_days, revenue_cents, avg_order_value_cents, repeat_day_spend_cents,
           recency_days, last_seen, top_categories
      FROM journey.profiles WHERE profile_id = 'p-1b86c9d9528f4064e291';
    SELECT profile_id FROM journey.identity_links
     WHERE identifier_type = 'email_hash' AND identifier_value = '5f0c...';

Writing (the Flink profile operator)
------------------------------------
Writes are idempotent upserts ``USING TIMESTAMP`` (DESIGN.md section 3, "Exactly-once"),
never wall-clock time. The streaming job writes through :meth:`ProfileStore.write` with the
row version of :func:`models.profile_fold.row_version` (``2**60 + piece version * 2**22
+ events_folded``; the ``version`` column holds it): timestamp ``2 * version + 1`` for rows
and links, ``2 * version`` for deletions. A replay rewrites identical cells, and a stale
write (lower version) loses to the newer row whatever the arrival order (on equal timestamps
Cassandra lets a deletion win, then the larger value). :meth:`ProfileStore.write` is the only
write path (tools and tests use it too). Never write these tables at any other timestamp: a
cell at ``version`` instead of ``2 * version + 1`` is ordered wrongly against the job's
writes and deletions, and a wall-clock timestamp (microseconds since 1970, ~1.7e15) would
beat every later version.

Writes are asynchronous with at most ``max_in_flight`` requests outstanding (the caller
blocks when the window is full: back-pressure). :meth:`ProfileStore.write` returns a
:class:`WriteTicket` that says when Cassandra answered. The profiles operator
(``operators/profile_fold.py``) keeps each issued write in its Flink state (``writing``)
until its ticket confirms it, and a checkpoint taken before that holds the write as
unconfirmed: after a restore it is issued again (idempotent), so a checkpoint never covers
a lost write; a failed write fails the job. :meth:`ProfileStore.flush` waits for every
outstanding write and raises the first failure (``close()``, tools, tests);
read-your-writes needs a ``flush()``.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from typing import Any, Sequence

from cassandra import ConsistencyLevel
from cassandra.cluster import Session
from cassandra.query import BatchStatement, BatchType, PreparedStatement
from cassandra.util import Date

from models.erasure import ERASED_TIMESTAMP, tombstone_key
from models.profile import ProfileAggregate, StoredTraits
from models.profile_fold import ProfileWrite
from state.journey_store import AUDIT_COLUMNS, audit_row
from state.cassandra_schema import DEFAULT_HOST, DEFAULT_KEYSPACE, DEFAULT_PORT, connect

__all__ = ["FIELD_TO_COLUMN", "TRAIT_COLUMNS", "ProfileStore", "ProfileStoreError"]

# ProfileAggregate field -> journey.profiles column (the *_ms fields are timestamp columns).
FIELD_TO_COLUMN: dict[str, str] = {
    "profile_id": "profile_id",
    "identifiers": "identifiers",
    "first_seen_ms": "first_seen",
    "last_seen_ms": "last_seen",
    "events": "events",
    "orders": "orders",
    "revenue_cents": "revenue_cents",
    "first_order_ms": "first_order",
    "last_order_ms": "last_order",
    "channel_counts": "channel_counts",
    "category_affinity": "category_affinity",
    "consent": "consent",
    "crm_attributes": "crm_attributes",
    "purchase_day_cents": "purchase_day_cents",  # map<date, bigint>: UTC day -> cents
}
#: Columns of the :class:`models.profile.StoredTraits` of the row's profile (same names), derived
#: at each write; :meth:`ProfileStore.get` does not read them (they follow from the aggregate).
TRAIT_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(StoredTraits))
TIMESTAMP_FIELDS = frozenset(f for f, c in FIELD_TO_COLUMN.items() if f.endswith("_ms"))
JSON_TUPLE_FIELDS = frozenset({"consent", "crm_attributes"})
#: Columns written besides the aggregate and its traits. (Keyspaces created before this version
#: also hold ``updated_by_event``, always null and no longer written: see state/schema.cql.)
META_COLUMNS = ("version",)

_EPOCH = datetime(1970, 1, 1)
_KEYSPACE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,47}$")


class ProfileStoreError(RuntimeError):
    """A Cassandra read or write of the profile store failed."""


def _ms_from_datetime(dt: datetime | None) -> int | None:
    """Epoch milliseconds of a driver timestamp (naive datetimes are UTC), rounded exactly."""
    if dt is None:
        return None
    if dt.tzinfo is not None:
        dt = dt.astimezone(timezone.utc).replace(tzinfo=None)
    td = dt - _EPOCH
    us = (td.days * 86_400 + td.seconds) * 1_000_000 + td.microseconds
    return (us + 500) // 1000


def _json_tuple(value: tuple | list) -> str:
    return json.dumps(list(value), separators=(",", ":"), ensure_ascii=False)


def _check_fields_mapped() -> None:
    missing = [f.name for f in fields(ProfileAggregate) if f.name not in FIELD_TO_COLUMN]
    if missing:
        raise ProfileStoreError(
            f"ProfileAggregate fields {missing} have no column in journey.profiles: add them to "
            "state/schema.cql and FIELD_TO_COLUMN (state/profile_store.py) so they are not dropped"
        )


class ProfileStore:
    """Idempotent, bounded-asynchronous writer and typed reader of profiles and identity links.

    Parameters
    ----------
    session : cassandra.cluster.Session
        An open session (its default keyspace is not used: statements are qualified).
    keyspace : str
        Keyspace holding the tables of ``state/schema.cql``.
    max_in_flight : int
        Most write requests outstanding at once; submitting more blocks until one completes.
    consistency : int
        Consistency level of every statement (``LOCAL_QUORUM``).

    Attributes
    ----------
    writes_issued : int
        Write requests submitted since construction (a :meth:`write` batch is one request).
    mutations_issued : int
        Statements in those requests (a :meth:`write` batch counts each of its statements).
    writes_failed : int
        Write requests that failed since construction.
    peak_in_flight : int
        Highest number of write requests outstanding at once.

    Notes
    -----
    Submit from one thread (the operator's); completions run on the driver's event-loop
    thread and only update counters. Only prepared statements are used.
    """

    def __init__(
        self,
        session: Session,
        keyspace: str = DEFAULT_KEYSPACE,
        max_in_flight: int = 64,
        *,
        consistency: int = ConsistencyLevel.LOCAL_QUORUM,
    ) -> None:
        _check_fields_mapped()
        if not _KEYSPACE_NAME.match(keyspace):
            raise ValueError(f"invalid keyspace name {keyspace!r}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        self._session = session
        self._keyspace = keyspace
        self._max_in_flight = max_in_flight
        self._owns_cluster = False
        self._cond = threading.Condition()
        self._in_flight = 0
        self._pending_failed = 0
        self._first_error: tuple[str, BaseException] | None = None
        self.writes_issued = 0
        self.mutations_issued = 0
        self._consistency = consistency
        self.writes_failed = 0
        self.peak_in_flight = 0

        self._columns = [*FIELD_TO_COLUMN.values(), *TRAIT_COLUMNS, *META_COLUMNS]
        ks = keyspace
        self._upsert = self._prepare(
            f"INSERT INTO {ks}.profiles ({', '.join(self._columns)}) "
            f"VALUES ({', '.join('?' * len(self._columns))}) USING TIMESTAMP ?",
            consistency,
            write=True,
        )
        self._select = self._prepare(
            f"SELECT {', '.join(FIELD_TO_COLUMN.values())} FROM {ks}.profiles WHERE profile_id = ?", consistency
        )
        self._link = self._prepare(
            f"INSERT INTO {ks}.identity_links (identifier_type, identifier_value, profile_id, version) "
            "VALUES (?, ?, ?, ?) USING TIMESTAMP ?",
            consistency,
            write=True,
        )
        self._lookup = self._prepare(
            f"SELECT profile_id, version FROM {ks}.identity_links WHERE identifier_type = ? AND identifier_value = ?",
            consistency,
        )
        self._delete_profile = self._prepare(
            f"DELETE FROM {ks}.profiles USING TIMESTAMP ? WHERE profile_id = ?", consistency, write=True
        )
        self._erasure: tuple[PreparedStatement, PreparedStatement, PreparedStatement] | None = None  # on first use

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def connect(
        cls,
        hosts: str | Sequence[str] = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        keyspace: str = DEFAULT_KEYSPACE,
        max_in_flight: int = 64,
        **connect_kwargs: Any,
    ) -> "ProfileStore":
        """Connect to Cassandra and build a store that owns (and :meth:`close` shuts down) the cluster.

        Parameters
        ----------
        hosts : str or sequence of str
            Contact point(s).
        port : int
            Native transport port.
        keyspace : str
            Keyspace of the tables.
        max_in_flight : int
            Bound on outstanding write requests.
        **connect_kwargs
            Passed to :func:`state.cassandra_schema.connect` (timeouts, consistency).

        Returns
        -------
        ProfileStore

        Raises
        ------
        state.cassandra_schema.CassandraUnavailableError
            If Cassandra is unreachable (the message names the address and suggests ``make up``).
        ProfileStoreError
            If the tables do not exist (apply the schema first).
        """
        session = connect(hosts, port, **connect_kwargs)
        try:
            store = cls(session, keyspace, max_in_flight)
        except BaseException:
            session.cluster.shutdown()
            raise
        store._owns_cluster = True
        return store

    def close(self) -> None:
        """Flush pending writes, then shut the cluster down if this store opened it."""
        try:
            self.flush()
        finally:
            if self._owns_cluster:
                self._session.cluster.shutdown()

    def __enter__(self) -> "ProfileStore":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        elif self._owns_cluster:
            self._session.cluster.shutdown()

    def _prepare(self, cql: str, consistency: int, write: bool = False) -> PreparedStatement:
        try:
            stmt = self._session.prepare(cql)
        except Exception as exc:  # InvalidRequest (no keyspace/table), NoHostAvailable, ...
            raise ProfileStoreError(
                f"cannot prepare {cql.split(' WHERE')[0][:90]}...: {type(exc).__name__}: {exc}. Is the schema "
                f"applied to keyspace {self._keyspace!r}? To apply it: python -m state.cassandra_schema "
                f"--keyspace {self._keyspace}"
            ) from exc
        stmt.consistency_level = consistency
        # Fixed USING TIMESTAMP makes every write safe to retry or speculatively execute.
        stmt.is_idempotent = write
        return stmt

    # ------------------------------------------------------------------ bounded asynchronous writes

    @property
    def max_in_flight(self) -> int:
        """The bound on outstanding write requests."""
        return self._max_in_flight

    @property
    def in_flight(self) -> int:
        """Write requests outstanding now."""
        with self._cond:
            return self._in_flight

    def _submit(
        self,
        stmt: PreparedStatement | BatchStatement,
        params: tuple | None,
        what: str,
        mutations: int = 1,
        ticket: WriteTicket | None = None,
    ) -> None:
        with self._cond:
            while self._in_flight >= self._max_in_flight:
                self._cond.wait()
            self._in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
            self.writes_issued += 1
            self.mutations_issued += mutations
        try:
            future = self._session.execute_async(stmt, params)
        except Exception as exc:  # e.g. serialization of a bad value, or a shut-down session
            self._on_error(exc, what, ticket)
            return
        future.add_callbacks(self._on_success, self._on_error, callback_args=(ticket,), errback_args=(what, ticket))

    def _on_success(self, _result: Any, ticket: WriteTicket | None = None) -> None:
        with self._cond:
            self._in_flight -= 1
            if ticket is not None:
                ticket.done = True
            self._cond.notify_all()

    def _on_error(self, exc: BaseException, what: str, ticket: WriteTicket | None = None) -> None:
        with self._cond:
            self._in_flight -= 1
            if ticket is not None:
                ticket.error = f"{what}: {type(exc).__name__}: {exc}"
                ticket.done = True
            self.writes_failed += 1
            self._pending_failed += 1
            if self._first_error is None:
                self._first_error = (what, exc)
            self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every submitted write has completed; raise the first failure, if any.

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait at most (default: until done; each request has the driver's
            request timeout, so this always ends).

        Raises
        ------
        ProfileStoreError
            If a write failed since the previous flush (the first failure is the cause and is
            named in the message), or ``timeout`` passed. The failure record is then cleared.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: self._in_flight == 0, timeout):
                raise ProfileStoreError(f"{self._in_flight} Cassandra writes still in flight after {timeout} s")
            first, failed = self._first_error, self._pending_failed
            self._first_error, self._pending_failed = None, 0
        if first is not None:
            what, exc = first
            raise ProfileStoreError(
                f"{failed} Cassandra write(s) to keyspace {self._keyspace!r} failed since the last flush; "
                f"first: {what}: {type(exc).__name__}: {exc}"
            ) from exc

    # ------------------------------------------------------------------ writes

    @staticmethod
    def _row_values(profile: ProfileAggregate, version: int) -> tuple:
        """The values of ``self._columns`` for ``profile`` at ``version`` (every column, nulls included)."""
        values: list[Any] = []
        for name in FIELD_TO_COLUMN:
            value = getattr(profile, name)
            if name == "identifiers":
                value = {t: list(vs) for t, vs in value.items()}
            elif name in JSON_TUPLE_FIELDS:
                value = {k: _json_tuple(v) for k, v in value.items()}
            elif name == "purchase_day_cents":
                value = {Date(day): cents for day, cents in value.items()}  # an int would be read as raw CQL
            values.append(value)
        traits = profile.stored_traits()
        for name in TRAIT_COLUMNS:
            value = getattr(traits, name)
            if name == "top_categories":
                value = [tuple(pair) for pair in value] or None  # no categories: null, like an empty collection
            values.append(value)
        return tuple(values) + (version,)

    def write(self, w: ProfileWrite) -> WriteTicket:
        """Write one coalesced profile update of the streaming job: one request (asynchronous).

        With ``v = w.version`` (:func:`models.profile_fold.row_version`): the row (whose
        ``identifiers`` column is the profile's complete identifier set) and the identifier ->
        profile links are written at timestamp ``2v + 1``. ``w.profile is None`` deletes the
        row at ``2v`` (the profile was merged away; its identifiers' links are rewritten by
        the profiles they moved to, at higher timestamps). Every id in ``w.ghosts`` is
        deleted at ``2 * w.ghost_version``. All of it goes in one UNLOGGED batch: one round
        trip (the mutations stay independent; each is idempotent on its own, so a batch cut
        short by a failure is completed by the replay's rewrite). Every column of the row is
        written, nulls and whole maps included (a map write replaces the map as of this
        version), so the row equals ``w.profile`` and its trait columns are
        :meth:`models.profile.ProfileAggregate.stored_traits` of it.

        Returns a :class:`WriteTicket` that says when this write completed (or failed),
        without waiting for it.
        """
        return self.write_all((w,))

    def write_all(self, writes: Sequence[ProfileWrite]) -> WriteTicket:
        """Several profiles' writes (each as :meth:`write` says) in one UNLOGGED batch: one
        request and one ticket for all of them. The operator groups the writes of a few
        milliseconds this way (``operators/profile_fold.py``); keep a group well under
        Cassandra's ``batch_size_fail_threshold`` (50 KiB by default; a profile row is about
        1 KiB)."""
        if not writes:
            raise ValueError("write_all needs at least one write")
        ticket = WriteTicket()
        batch = BatchStatement(BatchType.UNLOGGED, consistency_level=self._consistency)
        for w in writes:
            self._add_write(batch, w)
        first = writes[0]
        what = "erase" if first.erasure is not None else "write"
        more = f" and {len(writes) - 1} more profiles" if len(writes) > 1 else ""
        self._submit(
            batch,
            None,
            f"{what} profile {first.profile_id!r} version {first.version}{more} ({len(batch)} mutations)",
            mutations=len(batch),
            ticket=ticket,
        )
        return ticket

    def _add_write(self, batch: BatchStatement, w: ProfileWrite) -> None:
        if w.erasure is not None:
            self._add_erasure(batch, w)
            return
        for ghost in w.ghosts:
            batch.add(self._delete_profile, (_checked(2 * w.ghost_version), ghost))
        pid = w.profile_id
        if w.profile is None:
            batch.add(self._delete_profile, (_checked(2 * w.version), pid))
        else:
            ts = _checked(2 * w.version + 1)
            for t, values in w.profile.identifiers.items():
                for v in values:
                    batch.add(self._link, (t, v, pid, w.version, ts))
            batch.add(self._upsert, self._row_values(w.profile, w.version) + (ts,))

    def _erasure_statements(self) -> tuple[PreparedStatement, PreparedStatement, PreparedStatement]:
        """The erasure's statements, prepared on the first erasure (a keyspace of a release
        before erasure lacks their tables until the new schema is applied)."""
        if self._erasure is None:
            ks, consistency = self._keyspace, self._consistency
            self._erasure = (
                self._prepare(
                    f"DELETE FROM {ks}.identity_links USING TIMESTAMP ? WHERE identifier_type = ? AND identifier_value = ?",
                    consistency,
                    write=True,
                ),
                self._prepare(
                    f"INSERT INTO {ks}.erased_identifiers (tombstone, request_id, erased_at) VALUES (?, ?, ?)",
                    consistency,
                    write=True,
                ),
                self._prepare(
                    f"INSERT INTO {ks}.privacy_audit ({', '.join(AUDIT_COLUMNS)}) "
                    f"VALUES ({', '.join('?' * len(AUDIT_COLUMNS))})",
                    consistency,
                    write=True,
                ),
            )
        return self._erasure

    def _add_erasure(self, batch: BatchStatement, w: ProfileWrite) -> None:
        """An erased profile (``docs/privacy.md``): its row and every id of its component
        deleted, its identifiers' links deleted, all at ``ERASED_TIMESTAMP``; their tombstones
        into the ledger; the audit row."""
        e = w.erasure
        assert e is not None
        delete_link, tombstone, audit = self._erasure_statements()
        ids = sorted({w.profile_id, *w.ghosts})
        for pid in ids:
            batch.add(self._delete_profile, (ERASED_TIMESTAMP, pid))
        for t, v in e.nodes:
            batch.add(delete_link, (ERASED_TIMESTAMP, t, v))
        at = datetime.fromtimestamp(e.at / 1000, tz=timezone.utc)
        for node in e.nodes:
            batch.add(tombstone, (tombstone_key(node), e.request_id, at))
        tables = ["profiles", "identity_links"] if e.nodes else ["profiles"]
        rows = len(ids) + len(e.nodes)
        row = audit_row(
            e.request_id,
            "profiles",
            e.part,
            "erasure",
            at,
            tables=tables,
            rows=rows,
            identifiers=len(e.nodes),
            profiles=len(ids),
        )
        batch.add(audit, row)

    # ------------------------------------------------------------------ reads

    def _read(self, stmt: PreparedStatement, params: tuple, what: str):
        try:
            return self._session.execute(stmt, params)
        except Exception as exc:
            raise ProfileStoreError(
                f"reading {what} from keyspace {self._keyspace!r} failed: {type(exc).__name__}: {exc}"
            ) from exc

    def get(
        self, profile_id: str | None = None, *, identifier_type: str | None = None, identifier_value: str | None = None
    ) -> ProfileAggregate | None:
        """Read a profile by canonical id, or by any of its identifiers.

        Parameters
        ----------
        profile_id : str, optional
            Canonical profile id.
        identifier_type, identifier_value : str, optional
            Alternatively an identifier (both required), resolved through ``identity_links``.

        Returns
        -------
        ProfileAggregate or None
            None if the identifier is not linked or the profile does not exist.
        """
        if profile_id is not None:
            if identifier_type is not None or identifier_value is not None:
                raise ValueError("pass either profile_id or an identifier, not both")
        elif identifier_type is None or identifier_value is None:
            raise ValueError("pass either profile_id or both identifier_type and identifier_value")
        else:
            link = self._read(
                self._lookup, (identifier_type, identifier_value), f"identity link {identifier_type}"
            ).one()
            if link is None:
                return None
            profile_id = link.profile_id
        row = self._read(self._select, (profile_id,), f"profile {profile_id!r}").one()
        return None if row is None else self._row_to_profile(row)

    def identifiers_of(self, profile_id: str) -> dict[str, list[str]]:
        """Identifiers of a profile (its row's ``identifiers`` column).

        Returns
        -------
        dict of str to list of str
            ``{identifier_type: [values, sorted]}``; empty if the profile does not exist.
        """
        profile = self.get(profile_id)
        return {} if profile is None else {t: sorted(vs) for t, vs in profile.identifiers.items() if vs}

    @staticmethod
    def _row_to_profile(row: Any) -> ProfileAggregate:
        kwargs: dict[str, Any] = {}
        for name, column in FIELD_TO_COLUMN.items():
            value = getattr(row, column)
            if name in TIMESTAMP_FIELDS:
                value = _ms_from_datetime(value)
            elif name == "identifiers":
                value = {t: tuple(vs or ()) for t, vs in (value or {}).items()}
            elif name in JSON_TUPLE_FIELDS:
                value = {k: tuple(json.loads(v)) for k, v in (value or {}).items()}
            elif name in ("channel_counts", "category_affinity"):
                value = dict(value or {})
            elif name == "purchase_day_cents":
                value = {d.days_from_epoch: int(c) for d, c in (value or {}).items()}
            elif name in ("events", "orders", "revenue_cents"):
                value = value or 0
            kwargs[name] = value
        return ProfileAggregate(**kwargs)


@dataclass
class WriteTicket:
    """Completion of one asynchronous write: ``done`` once Cassandra answered; ``error`` says
    what failed (None: it succeeded). Updated from the driver's event-loop thread."""

    done: bool = False
    error: str | None = None


def _check_version(version: int) -> None:
    if not isinstance(version, int) or version < 0:
        raise ValueError(f"version must be an int >= 0, got {version!r}")


def _checked(timestamp: int) -> int:
    _check_version(timestamp)
    return timestamp
