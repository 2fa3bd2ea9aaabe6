"""ProfileStore and the CQL schema against the REAL local Cassandra (started if not running).

The schema is applied into a keyspace of this module's own (``journey_test_<random>``), which
is dropped at the end. Profiles are built with the ProfileAggregate constructor only and
written through ``ProfileStore.write``, the profiles job's one write path (row and links at
``2 * row_version + 1``).
"""

from __future__ import annotations

import dataclasses
import threading
import uuid

import pytest
from cassandra.concurrent import execute_concurrent_with_args

from local import stack
from models.profile import IDENTIFIER_TYPES, ProfileAggregate
from models.profile_fold import ProfileWrite, row_version
from state import cassandra_schema
from state.cassandra_schema import CassandraUnavailableError, SchemaError, apply_schema
from state.profile_store import FIELD_TO_COLUMN, META_COLUMNS, ProfileStore, ProfileStoreError

pytestmark = pytest.mark.e2e

#: every table of state/schema.cql
SCHEMA_TABLES = {
    p[1] for p in map(cassandra_schema.parse_create_table, cassandra_schema.load_statements()) if p is not None
}


@pytest.fixture
def store(session, keyspace):
    st = ProfileStore(session, keyspace)
    yield st
    st.flush()


def _pid() -> str:
    return f"p-{uuid.uuid4().hex[:20]}"  # the shape of a canonical profile id


def full_profile(profile_id: str, events: int = 42, **changes) -> ProfileAggregate:
    """A profile with every field set to a non-default value."""
    base = dict(
        profile_id=profile_id,
        identifiers={
            "customer_id": ("C-1001",),
            "email_hash": ("3f9a…e1", "a7c2…09"),
            "device_id": ("dev-1",),
            "cookie_id": (),
        },
        first_seen_ms=1_699_999_000_001,
        last_seen_ms=1_700_000_000_123,
        events=events,
        orders=3,
        revenue_cents=12_345_678_901,
        first_order_ms=1_699_999_500_999,
        last_order_ms=1_700_000_000_000,
        channel_counts={"web": 30, "app": 11, "store": 1},
        category_affinity={"shoes": 0.1 + 0.2, "books": 12345.678901234567, "tiny": 5e-324},
        consent={"marketing": (True, 1_700_000_000_001, "e-7"), "personalization": (False, 1_699_999_000_002, "e-2")},
        crm_attributes={"tier": ("gold ✓", 1_700_000_000_003, "e-9"), "name": ('O\'Brien "Al"', 1, "e-1")},
        purchase_day_cents={-1: 1, 19_675: 12_345_678_000, 19_676: 900},  # UTC day numbers (date keys)
    )
    base.update(changes)
    return ProfileAggregate(**base)


def _as_job(p: ProfileAggregate, component_events: int | None = None) -> ProfileWrite:
    """The write the profiles job issues for ``p`` as the whole of its identity component
    (``ProfileFold.flush``): version ``row_version(component events, p.events)``."""
    ce = p.events if component_events is None else component_events
    return ProfileWrite(p.profile_id, row_version(ce, p.events), p, (), row_version(ce, 0))


def _raw(session, keyspace: str, profile_id: str):
    columns = ", ".join([*FIELD_TO_COLUMN.values(), *META_COLUMNS])  # CQL has no "SELECT *, f(x)"
    return session.execute(
        f"SELECT {columns}, writetime(events) AS wt_events, writetime(version) AS wt_version "
        f"FROM {keyspace}.profiles WHERE profile_id = %s",
        (profile_id,),
    ).one()


# ---------------------------------------------------------------------------- round trip


def test_round_trip_of_every_field(store, session, keyspace):
    p = full_profile(_pid())
    assert all(getattr(p, f.name) != f.default for f in dataclasses.fields(p) if f.default is not dataclasses.MISSING)
    w = _as_job(p)
    store.write(w)
    store.flush()
    got = store.get(p.profile_id)
    assert got == p
    for f in dataclasses.fields(ProfileAggregate):  # typed, not just equal
        assert type(getattr(got, f.name)) is type(getattr(p, f.name)), f.name
    assert got.consent["marketing"] == (True, 1_700_000_000_001, "e-7")
    row = _raw(session, keyspace, p.profile_id)
    assert (row.version, row.wt_events, row.wt_version) == (w.version, 2 * w.version + 1, 2 * w.version + 1)
    assert row.consent["marketing"] == '[true,1700000000001,"e-7"]'
    assert store.writes_issued == 1 and store.writes_failed == 0


def test_round_trip_of_an_empty_profile(store):
    p = ProfileAggregate(profile_id=_pid())  # all defaults: None timestamps, empty maps, events 0
    store.write(_as_job(p))
    store.flush()
    assert store.get(p.profile_id) == p


@pytest.mark.parametrize("ms", [-86_400_001, 0, 1, 1_700_000_000_123, 253_402_300_799_999])
def test_timestamps_round_trip_at_millisecond_precision(store, ms):
    # the driver turns timestamps into naive UTC datetimes through a float: at year 9999 it
    # returns ...59.998993; the store rounds to the nearest millisecond.
    p = ProfileAggregate(profile_id=_pid(), first_seen_ms=ms, last_seen_ms=ms, events=1)
    store.write(_as_job(p))
    store.flush()
    assert store.get(p.profile_id) == p


# ---------------------------------------------------------------------------- identifiers


def test_get_by_each_identifier_type(store):
    pid = _pid()
    identifiers = {t: (f"{t}-{uuid.uuid4().hex[:8]}",) for t in IDENTIFIER_TYPES}
    p = full_profile(pid, identifiers=identifiers)
    store.write(_as_job(p))  # the row and a link per identifier, in one batch
    store.flush()
    for t, (value,) in identifiers.items():
        assert store.get(identifier_type=t, identifier_value=value) == p, t
    assert store.identifiers_of(pid) == {t: list(v) for t, v in identifiers.items()}
    assert store.get(identifier_type="email_hash", identifier_value="never-seen") is None
    assert store.get(_pid()) is None
    assert store.identifiers_of(_pid()) == {}
    with pytest.raises(ValueError):
        store.get()
    with pytest.raises(ValueError):
        store.get(pid, identifier_type="customer_id", identifier_value="x")
    with pytest.raises(ValueError):
        store.get(identifier_type="customer_id")


# ---------------------------------------------------------------------------- versions


@pytest.mark.parametrize("order", ["newer_first", "stale_first"])
def test_stale_write_does_not_overwrite_newer_row(store, session, keyspace, order):
    pid = _pid()
    newer = full_profile(pid, events=10, identifiers={"customer_id": ("C-1001",), "cookie_id": (f"ck-{pid}",)})
    stale = full_profile(
        pid,
        events=5,
        orders=1,
        revenue_cents=1,
        last_order_ms=None,
        identifiers={"customer_id": ("C-OLD",), "loyalty_id": ("L-9",)},
        channel_counts={"web": 5, "email": 2},
        category_affinity={"toys": 1.0},
        consent={"marketing": (False, 1, "e-0")},
        crm_attributes={},
        purchase_day_cents={19_000: 1},
    )
    writes = [newer, stale] if order == "newer_first" else [stale, newer]
    for p in writes:
        store.write(_as_job(p))
        store.flush()  # one at a time: the outcome must not depend on arrival order
    assert store.get(pid) == newer  # maps are replaced as of the newer version, not merged
    row = _raw(session, keyspace, pid)
    v = row_version(10, 10)
    assert (row.version, row.wt_events) == (v, 2 * v + 1)
    # same for links: a stale write of another profile claiming the identifier does not move it
    other = full_profile(_pid(), events=9, identifiers={"cookie_id": (f"ck-{pid}",)})
    store.write(_as_job(other))
    store.flush()
    assert store.get(identifier_type="cookie_id", identifier_value=f"ck-{pid}") == newer


def test_replay_of_same_version_rewrites_identical_row(store, session, keyspace):
    customer = f"C-replay-{uuid.uuid4().hex[:8]}"
    p = full_profile(_pid(), events=7, identifiers={"customer_id": (customer,), "cookie_id": ("ck-replay",)})
    store.write(_as_job(p))
    store.flush()
    first = _raw(session, keyspace, p.profile_id)
    for _ in range(3):  # a replay from an older checkpoint re-sends the same writes
        store.write(_as_job(p))
    store.flush()
    assert _raw(session, keyspace, p.profile_id) == first
    assert store.get(p.profile_id) == p
    assert store.get(identifier_type="customer_id", identifier_value=customer) == p


# ---------------------------------------------------------------------------- merges


def _write(store, pid, version, profile=None, ghosts=(), ghost_version=0):
    store.write(ProfileWrite(pid, version, profile, ghosts, ghost_version))
    store.flush()


def test_streaming_writes_follow_merges_and_splits_and_a_stale_replay_loses(store, session, keyspace):
    loser, survivor, ghost = _pid(), _pid(), _pid()
    a = full_profile(loser, events=3, identifiers={"email_hash": ("h-a",), "cookie_id": ("ck-a",)})
    b = full_profile(survivor, events=5, identifiers={"customer_id": ("C-b",), "device_id": ("d-1",)})
    g = full_profile(ghost, events=1, identifiers={"cookie_id": ("ck-g",)})
    _write(store, loser, row_version(3, 3), a)
    _write(store, survivor, row_version(5, 5), b)
    _write(store, ghost, row_version(1, 1), g)
    assert store.get(identifier_type="email_hash", identifier_value="h-a") == a

    # a's identifiers merge into b (one event: 3 + 5 + 1 = 9 events in the component); the
    # device leaves b in the same change (a split); the ghost id is deleted by b's write
    merged = full_profile(
        survivor, events=8, identifiers={"customer_id": ("C-b",), "email_hash": ("h-a",), "cookie_id": ("ck-a", "ck-g")}
    )
    _write(store, loser, row_version(9, 0))
    _write(store, survivor, row_version(9, 8), merged, ghosts=(ghost,), ghost_version=row_version(9, 0))

    assert store.get(loser) is None and store.identifiers_of(loser) == {}
    assert store.get(ghost) is None and store.identifiers_of(ghost) == {}
    assert store.get(survivor) == merged
    assert store.identifiers_of(survivor) == {
        "cookie_id": ["ck-a", "ck-g"],
        "customer_id": ["C-b"],
        "email_hash": ["h-a"],
    }  # d-1 is gone (split)
    for t, v in [("email_hash", "h-a"), ("cookie_id", "ck-a"), ("cookie_id", "ck-g")]:
        assert store.get(identifier_type=t, identifier_value=v) == merged  # links moved, not shadowed
    row = session.execute(
        f"SELECT version, writetime(events) AS wt FROM {keyspace}.profiles WHERE profile_id = %s", (survivor,)
    ).one()
    assert (row.version, row.wt) == (row_version(9, 8), 2 * row_version(9, 8) + 1)

    # replays of older writes (lower versions) change nothing
    _write(store, loser, row_version(3, 3), a)
    _write(store, ghost, row_version(1, 1), g)
    _write(store, survivor, row_version(5, 5), b)
    assert store.get(loser) is None and store.get(ghost) is None
    assert store.get(survivor) == merged
    assert store.get(identifier_type="email_hash", identifier_value="h-a") == merged
    # and the same write again is idempotent
    _write(store, survivor, row_version(9, 8), merged, ghosts=(ghost,), ghost_version=row_version(9, 0))
    assert store.get(survivor) == merged


# ---------------------------------------------------------------------------- schema


def test_applying_the_schema_twice_is_fine(session, keyspace, store):
    p = full_profile(_pid())
    store.write(_as_job(p))
    store.flush()
    statements = apply_schema(session, keyspace=keyspace)  # second time (the fixture was first)
    assert len(statements) == len(cassandra_schema.load_statements())  # the keyspace and the tables, IF NOT EXISTS
    apply_schema("127.0.0.1", keyspace=keyspace, port=stack.CASSANDRA_PORT)  # third, via hosts
    assert store.get(p.profile_id) == p  # data untouched
    tables = set(session.cluster.metadata.keyspaces[keyspace].tables)
    assert tables == SCHEMA_TABLES
    assert cassandra_schema.main(["--port", str(stack.CASSANDRA_PORT), "--keyspace", keyspace]) == 0


def test_the_command_line_creates_the_keyspace_with_the_replication_given(session):
    """What the k8s schema Job does (NetworkTopologyStrategy), against the local node's data centre."""
    ks = f"journey_test_{uuid.uuid4().hex[:12]}"
    dc = next(iter(session.cluster.metadata.all_hosts()))
    try:
        assert (
            cassandra_schema.main(
                [
                    "--port",
                    str(stack.CASSANDRA_PORT),
                    "--keyspace",
                    ks,
                    "--replication",
                    f'{{"class": "NetworkTopologyStrategy", "{dc.datacenter}": 1}}',
                ]
            )
            == 0
        )
        row = session.execute("SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = %s", (ks,)).one()
        assert row.replication == {"class": "org.apache.cassandra.locator.NetworkTopologyStrategy", dc.datacenter: "1"}
        tables = session.execute("SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (ks,))
        assert {r.table_name for r in tables} == SCHEMA_TABLES
    finally:
        session.execute(f"DROP KEYSPACE IF EXISTS {ks}", timeout=60)
    assert cassandra_schema.main(["--keyspace", ks, "--replication", '{"class": "NetworkTopologyStrategy"}']) == 2


def test_an_existing_table_that_differs_from_the_file_is_reported(session):
    ks = f"journey_test_{uuid.uuid4().hex[:12]}"
    session.execute(f"CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}")
    try:
        session.execute(f"CREATE TABLE {ks}.profiles (profile_id text PRIMARY KEY, version bigint, events int)")
        with pytest.raises(SchemaError, match=r"events is int, the file says bigint.*revenue_cents.*missing"):
            apply_schema(session, keyspace=ks)
    finally:
        session.execute(f"DROP KEYSPACE IF EXISTS {ks}", timeout=60)


# ---------------------------------------------------------------------------- back-pressure and errors


class _CountingSession:
    """Delegates to a real session; counts requests outstanding (registered before the store's callbacks)."""

    def __init__(self, session):
        self._session = session
        self._lock = threading.Lock()
        self.outstanding = 0
        self.peak = 0
        self.calls = 0

    def __getattr__(self, name):
        return getattr(self._session, name)

    def execute_async(self, *args, **kwargs):
        with self._lock:
            self.outstanding += 1
            self.calls += 1
            self.peak = max(self.peak, self.outstanding)
        future = self._session.execute_async(*args, **kwargs)
        future.add_callbacks(self._done, self._done)
        return future

    def _done(self, _):
        with self._lock:
            self.outstanding -= 1


def test_max_in_flight_bounds_concurrency(session, keyspace):
    counting = _CountingSession(session)
    store = ProfileStore(counting, keyspace, max_in_flight=8)
    ids = [_pid() for _ in range(500)]
    for i, pid in enumerate(ids):
        store.write(_as_job(full_profile(pid, events=i + 1)))  # one batch (one request) per profile
        assert counting.outstanding <= 8 and store.in_flight <= 8
    store.flush()
    assert counting.calls == store.writes_issued == 500
    assert counting.peak <= 8 and store.peak_in_flight <= 8
    assert counting.peak > 1  # really asynchronous, not one at a time
    assert store.in_flight == 0 and counting.outstanding == 0
    rows = execute_concurrent_with_args(
        session,
        session.prepare(f"SELECT events FROM {keyspace}.profiles WHERE profile_id = ?"),
        [(pid,) for pid in ids],
        concurrency=50,
    )
    assert [r.result_or_exc.one().events for r in rows] == list(range(1, 501))


def test_flush_raises_the_first_write_error_clearly(store):
    good = full_profile(_pid())
    with pytest.raises(TypeError, match="channel_counts"):  # a value of the wrong type fails binding, at once
        store.write(_as_job(full_profile("p:bad-value", channel_counts={"web": "many"})))
    store.write(_as_job(full_profile("x" * 70_000)))  # key too long: fails on the server
    store.write(_as_job(good))
    with pytest.raises(ProfileStoreError, match=r"1 Cassandra write\(s\).*failed.*first: write profile 'xxxxxxxxxx"):
        store.flush()
    store.flush()  # the failure was reported once; the store keeps working
    assert store.get(good.profile_id) == good
    assert store.get("p:bad-value") is None
    assert store.writes_failed == 1


def test_clear_error_when_cassandra_is_unreachable(capsys):
    with pytest.raises(CassandraUnavailableError, match=r"127\.0\.0\.1:1\b.*make up"):
        apply_schema("127.0.0.1", port=1)
    with pytest.raises(CassandraUnavailableError, match=r"127\.0\.0\.1:1\b.*make up"):
        ProfileStore.connect("127.0.0.1", 1)
    assert cassandra_schema.main(["--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "127.0.0.1:1" in err and "make up" in err


def test_a_store_needs_the_schema(session):
    with pytest.raises(ProfileStoreError, match="schema.*applied.*python -m state.cassandra_schema"):
        ProfileStore(session, keyspace="journey_no_such_keyspace")
