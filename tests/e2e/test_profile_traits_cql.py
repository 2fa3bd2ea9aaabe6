"""Profile traits readable with plain CQL, against the REAL local Cassandra (started if not running).

Profiles of generated persons are folded (in shuffled order, from partial profiles merged the
way identity merges combine them) and written through ``ProfileStore.write``, the streaming
job's write path, into a keyspace of this module's own. They are read back with a plain
``SELECT`` on the driver session (no ProfileStore, no models/) and compared with the
independent oracle ``tests/traits_oracle.py`` computed from each person's raw events.
A keyspace created by the code before the trait columns existed gets them from
``apply_schema``.
"""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from models.profile import ProfileAggregate, fold
from models.profile_fold import ProfileWrite, row_version
from state.cassandra_schema import SchemaError, apply_schema, load_statements
from state.profile_store import ProfileStore
from tests.profiles_harness import generated_by_person
from tests.traits_oracle import differences, expected_traits, raw_event

pytestmark = pytest.mark.e2e

TRAIT_SELECT = (
    "profile_id, version, last_seen, orders, revenue_cents, purchase_day_cents, recency_days, "
    "purchase_days, avg_order_value_cents, avg_day_spend_cents, repeat_day_spend_cents, top_categories"
)
NEW_COLUMNS = {
    "purchase_day_cents": "map<date, bigint>",
    "recency_days": "double",
    "purchase_days": "bigint",
    "avg_order_value_cents": "decimal",
    "avg_day_spend_cents": "decimal",
    "repeat_day_spend_cents": "decimal",
    "top_categories": "frozen<list<frozen<tuple<text, double>>>>",
}

# journey.profiles as the code before this change created it (state/schema.cql at that time)
PROFILES_BEFORE_TRAITS = """
CREATE TABLE {ks}.profiles (
  profile_id        text PRIMARY KEY,
  version           bigint,
  identifiers       map<text, frozen<list<text>>>,
  first_seen        timestamp,
  last_seen         timestamp,
  events            bigint,
  orders            bigint,
  revenue_cents     bigint,
  first_order       timestamp,
  last_order        timestamp,
  channel_counts    map<text, bigint>,
  category_affinity map<text, double>,
  consent           map<text, text>,
  crm_attributes    map<text, text>,
  updated_by_event  text
) WITH comment = 'Unified customer profile (ProfileAggregate); cells written USING TIMESTAMP version'"""


def _merged_profile(events: list[dict[str, Any]], pid: str, rnd: random.Random) -> ProfileAggregate:
    """Shuffled events folded into up to three partial profiles, merged as identity merges do."""
    evs = list(events)
    rnd.shuffle(evs)
    cuts = sorted(rnd.randint(0, len(evs)) for _ in range(2))
    parts = [fold(evs[: cuts[0]], f"{pid}-a"), fold(evs[cuts[0] : cuts[1]], f"{pid}-b"), fold(evs[cuts[1] :], pid)]
    return parts[2].merge(parts[0].merge(parts[1]), profile_id=pid)


def _select(session, keyspace: str, pid: str):
    return session.execute(
        f"SELECT {TRAIT_SELECT}, writetime(purchase_days) AS wt FROM {keyspace}.profiles WHERE profile_id = %s", (pid,)
    ).one()


@pytest.fixture(scope="module")
def written(session, keyspace) -> dict[str, list[dict[str, Any]]]:
    """Profile id -> the raw events of one generated person, written through ProfileStore.write."""
    rnd = random.Random(2024)
    out = {}
    store = ProfileStore(session, keyspace)
    for i, (person, events) in enumerate(
        sorted(generated_by_person(5, 30, 60, salt="traits-cql-salt-0123456789").items())
    ):
        pid = f"p-traits-{i:03d}-{uuid.uuid4().hex[:6]}"
        agg = _merged_profile(events, pid, rnd)
        store.write(ProfileWrite(pid, row_version(len(events), agg.events), agg, (), row_version(len(events), 0)))
        out[pid] = events
    store.flush()
    return out


def test_a_plain_cql_select_returns_the_oracles_traits_for_every_profile(session, keyspace, written):
    rows = {
        r.profile_id: r
        for r in session.execute(f"SELECT {TRAIT_SELECT}, writetime(purchase_days) AS wt FROM {keyspace}.profiles")
    }
    assert set(written) <= set(rows)
    for pid, events in written.items():
        row, want = rows[pid], expected_traits(events)
        diff = differences(want, row._asdict())
        assert not diff, (pid, diff)
        assert _epoch_ms(row.last_seen) == want.last_seen_ms  # "as of" is the last_seen column
        assert row.wt == 2 * row.version + 1  # written with the row, at its version
    # what the data set covers: buyers with repeat days, several orders on one day, non-buyers
    assert any(r.repeat_day_spend_cents is not None for r in map(rows.get, written))
    assert any(r.orders > r.purchase_days > 0 for r in map(rows.get, written))
    nobuy = [rows[p] for p in written if rows[p].orders == 0]
    assert nobuy and all(
        (
            r.purchase_days,
            r.recency_days,
            r.avg_order_value_cents,
            r.avg_day_spend_cents,
            r.repeat_day_spend_cents,
            r.purchase_day_cents,
        )
        == (0, None, None, None, None, None)
        for r in nobuy
    )
    sample = max((rows[p] for p in written), key=lambda r: (r.purchase_days, r.profile_id))
    print("\nSELECT " + TRAIT_SELECT + f" FROM {keyspace}.profiles WHERE profile_id = '{sample.profile_id}';")
    for name, value in sample._asdict().items():
        if name != "wt":
            print(f"  {name:<24} {value!r}")


def _epoch_ms(dt: datetime) -> int:
    """Epoch ms of a driver timestamp (naive UTC), to the nearest millisecond."""
    return round((dt - datetime(1970, 1, 1)) / timedelta(microseconds=1) / 1000)


def test_trait_columns_follow_the_row_version_a_stale_write_and_a_replay_change_nothing(session, keyspace):
    store = ProfileStore(session, keyspace)
    pid = f"p-versions-{uuid.uuid4().hex[:8]}"
    t0 = 1_790_035_200_000
    events = [
        raw_event("o1", "purchase", t0, total=10.0, items=[("shoes", 1)]),
        raw_event("o2", "purchase", t0 + 86_400_000, total=30.0, items=[("books", 2)]),
        raw_event("v1", "product_view", t0 + 2 * 86_400_000, category="home"),
    ]
    newer, stale = fold(events, pid), fold(events[:1], pid)
    for agg, version in [
        (newer, row_version(3, 3)),
        (stale, row_version(1, 1)),
        (newer, row_version(3, 3)),
        (newer, row_version(3, 3)),
    ]:  # a stale write, then two replays of the newest
        store.write(ProfileWrite(pid, version, agg, (), 0))
        store.flush()
    row = _select(session, keyspace, pid)
    assert not differences(expected_traits(events), row._asdict())
    assert (row.purchase_days, row.repeat_day_spend_cents, len(row.top_categories)) == (2, Decimal("3000.00"), 3)
    assert row.wt == 2 * row_version(3, 3) + 1


def test_a_profile_that_never_bought_nor_looked_at_products_reads_as_zero_days_and_nulls(session, keyspace):
    store = ProfileStore(session, keyspace)
    pid = f"p-browser-{uuid.uuid4().hex[:8]}"
    events = [raw_event("p1", "page_view", 1_790_035_200_000), raw_event("p2", "page_view", 1_790_035_260_000)]
    store.write(ProfileWrite(pid, row_version(2, 2), fold(events, pid), (), 0))
    store.flush()
    row = _select(session, keyspace, pid)
    assert (row.orders, row.revenue_cents, row.purchase_days) == (0, 0, 0)
    assert (
        row.purchase_day_cents,
        row.recency_days,
        row.avg_order_value_cents,
        row.avg_day_spend_cents,
        row.repeat_day_spend_cents,
        row.top_categories,
    ) == (None,) * 6
    assert not differences(expected_traits(events), row._asdict())
    assert row.wt == 2 * row_version(2, 2) + 1


def test_applying_the_schema_to_a_keyspace_from_before_the_traits_adds_exactly_the_new_columns(session):
    ks = f"journey_test_{uuid.uuid4().hex[:12]}"
    session.execute(f"CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}")
    try:
        session.execute(PROFILES_BEFORE_TRAITS.format(ks=ks))
        session.execute(
            f"INSERT INTO {ks}.profiles (profile_id, version, events, orders, revenue_cents) "
            f"VALUES ('p-old', 7, 7, 2, 1500) USING TIMESTAMP 15"
        )

        statements = apply_schema(session, keyspace=ks)
        added = [s for s in statements if s.startswith("ALTER TABLE")]
        assert {s.split(" ADD ")[1].split(" ")[0] for s in added} == set(NEW_COLUMNS)
        assert all(s.startswith(f"ALTER TABLE {ks}.profiles ADD ") for s in added)
        columns = {
            r.column_name: r.type
            for r in session.execute(
                "SELECT column_name, type FROM system_schema.columns WHERE keyspace_name = %s AND table_name = %s",
                (ks, "profiles"),
            )
        }
        assert {c: columns.get(c) for c in NEW_COLUMNS} == NEW_COLUMNS
        old = session.execute(f"SELECT {TRAIT_SELECT} FROM {ks}.profiles WHERE profile_id = 'p-old'").one()
        assert (old.version, old.orders, old.revenue_cents, old.purchase_days, old.top_categories) == (
            7,
            2,
            1500,
            None,
            None,
        )  # kept; traits null until the profile is written again

        again = apply_schema(session, keyspace=ks)  # idempotent: nothing more to add
        assert not [s for s in again if s.startswith("ALTER TABLE")] and len(again) == len(load_statements())

        store = ProfileStore(session, ks)
        events = [
            raw_event("o", "purchase", 1_790_035_200_000, total=12.34),
            raw_event("v", "page_view", 1_790_035_200_000 + 43_200_000),
        ]
        store.write(ProfileWrite("p-old", row_version(9, 2), fold(events, "p-old"), (), 0))
        store.flush()
        row = session.execute(f"SELECT {TRAIT_SELECT} FROM {ks}.profiles WHERE profile_id = 'p-old'").one()
        assert not differences(expected_traits(events), row._asdict())
        assert (row.recency_days, row.avg_order_value_cents) == (0.5, Decimal("1234.00"))
    finally:
        session.execute(f"DROP KEYSPACE IF EXISTS {ks}", timeout=60)


def test_a_table_that_disagrees_with_the_file_gets_no_columns_and_is_reported(session):
    ks = f"journey_test_{uuid.uuid4().hex[:12]}"
    session.execute(f"CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}")
    try:
        session.execute(
            PROFILES_BEFORE_TRAITS.format(ks=ks).replace("orders            bigint", "orders            int")
        )
        with pytest.raises(SchemaError, match=r"orders is int, the file says bigint.*purchase_days \(bigint\) missing"):
            apply_schema(session, keyspace=ks)
        columns = {
            r.column_name
            for r in session.execute(
                "SELECT column_name FROM system_schema.columns WHERE keyspace_name = %s AND table_name = %s",
                (ks, "profiles"),
            )
        }
        assert not columns & set(NEW_COLUMNS)  # left exactly as it was
    finally:
        session.execute(f"DROP KEYSPACE IF EXISTS {ks}", timeout=60)
