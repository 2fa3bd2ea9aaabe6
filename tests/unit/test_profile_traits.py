"""The traits stored in ``journey.profiles`` (docs/profiles.md) against the independent oracle
``tests/traits_oracle.py``: hand-made definitions, any arrival order and any merge of partial
profiles (hypothesis), the partitioned pipeline (router + folds + delayed moved state) over
generated data sets, the state format, and the CQL column types."""

from __future__ import annotations

import base64
import json
import pickle
import random
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.identity import IdentityRules, observation_of, resolve
from models.identity_router import IdentityRouter
from models.profile import ProfileAggregate, StoredTraits, fold
from models.profile_fold import FoldState, ProfileFold
from state.cassandra_schema import load_statements, parse_create_table
from state.profile_store import TRAIT_COLUMNS
from tests import profile_oracle
from tests.profile_oracle import CassandraModel
from tests.profiles_harness import generated_by_person
from tests.traits_oracle import differences, expected_traits, raw_event

DAY = 86_400_000
HOUR = 3_600_000
T0 = 1_790_035_200_000  # 2026-09-22T00:00:00Z, a UTC midnight (day 20718)
PID = "p"
RULES = IdentityRules()


def columns_of(agg: ProfileAggregate) -> dict[str, Any]:
    """The aggregate's trait columns as the store writes them (money and days of the aggregate too)."""
    t = agg.stored_traits()
    return {
        "orders": agg.orders,
        "revenue_cents": agg.revenue_cents,
        "purchase_day_cents": agg.purchase_day_cents,
        **{name: getattr(t, name) for name in TRAIT_COLUMNS},
    }


def assert_traits_equal_oracle(agg: ProfileAggregate, events: list[dict[str, Any]]) -> None:
    diff = differences(expected_traits(events), columns_of(agg))
    assert not diff, diff


# ---------------------------------------------------------------------------- definitions, by hand


def test_orders_on_one_utc_day_make_one_purchase_day_and_utc_midnight_starts_the_next() -> None:
    evs = [
        raw_event("a", "purchase", T0 - 1, total=1.0),  # 23:59:59.999 the day before
        raw_event("b", "purchase", T0, total=2.0),  # 00:00:00.000
        raw_event("c", "store_purchase", T0 + DAY - 1, total=3.0, channel="pos"),
        raw_event("d", "purchase", T0 + 5 * DAY, total=0.0),
    ]  # a free order is still a purchase day
    agg = fold(evs, PID)
    t = agg.stored_traits()
    assert (agg.orders, t.purchase_days) == (4, 3)
    assert agg.purchase_day_cents == {(T0 - 1) // DAY: 100, T0 // DAY: 500, T0 // DAY + 5: 0}
    assert t.repeat_day_spend_cents == Decimal("250.00")  # (500 + 0) / 2: the first day (100) left out
    assert_traits_equal_oracle(agg, evs)


def test_recency_is_days_from_the_last_order_to_the_last_event_of_any_type() -> None:
    evs = [
        raw_event("o", "purchase", T0, total=10.0),
        raw_event("v", "page_view", T0 + 2 * DAY + 6 * HOUR),
        raw_event("late", "page_view", T0 - 40 * DAY),
    ]  # older event arriving later changes nothing
    assert fold(evs, PID).stored_traits().recency_days == 2.25
    assert fold(evs[:1], PID).stored_traits().recency_days == 0.0
    assert_traits_equal_oracle(fold(evs, PID), evs)


def test_averages_are_exact_quotients_rounded_half_to_even_to_a_hundredth_of_a_cent() -> None:
    # 3 orders, 1 + 1 + 6 cents on 2 days: AOV 8/3 = 2.666.. -> 2.67; per day 8/2 = 4.00
    evs = [
        raw_event("a", "purchase", T0, total=0.01),
        raw_event("b", "purchase", T0 + HOUR, total=0.01),
        raw_event("c", "purchase", T0 + DAY, total=0.06),
    ]
    t = fold(evs, PID).stored_traits()
    assert (t.avg_order_value_cents, t.avg_day_spend_cents, t.repeat_day_spend_cents) == (
        Decimal("2.67"),
        Decimal("4.00"),
        Decimal("6.00"),
    )
    for d in (t.avg_order_value_cents, t.avg_day_spend_cents, t.repeat_day_spend_cents):
        assert d.as_tuple().exponent == -2  # always two places, also for whole cents
    # half a hundredth goes to the even neighbour: 1/8 = 0.125 -> 0.12, 3/8 = 0.375 -> 0.38
    eighth = [raw_event(f"e{i}", "purchase", T0 + i, total=0.01 if i == 0 else 0.0) for i in range(8)]
    assert fold(eighth, PID).stored_traits().avg_order_value_cents == Decimal("0.12")
    three_eighths = [raw_event(f"e{i}", "purchase", T0 + i, total=0.03 if i == 0 else 0.0) for i in range(8)]
    assert fold(three_eighths, PID).stored_traits().avg_order_value_cents == Decimal("0.38")
    # beyond float precision the quotient is still exact: (2**60 + 1) cents / 3 orders
    big = ProfileAggregate(PID, orders=3, revenue_cents=2**60 + 1)
    assert big.stored_traits().avg_order_value_cents == Decimal("384307168202282325.67")


def test_repeat_day_spend_leaves_out_the_first_purchase_day_even_when_it_arrives_last() -> None:
    evs = [
        raw_event("later", "purchase", T0 + 10 * DAY, total=30.0),
        raw_event("later2", "purchase", T0 + 20 * DAY, total=50.0),
        raw_event("first", "purchase", T0, total=1000.0),
    ]
    agg = ProfileAggregate.empty(PID)
    seen = []
    for e in evs:  # as a stream: the first day's order comes last
        agg = agg.merge(ProfileAggregate.from_event(e, PID), PID)
        seen.append(e)
        assert_traits_equal_oracle(agg, seen)
    assert agg.stored_traits().repeat_day_spend_cents == Decimal("4000.00")


def test_a_profile_without_purchases_has_zero_purchase_days_and_null_money_traits() -> None:
    evs = [
        raw_event("v", "product_view", T0, category="books", dwell_ms=30_000),
        raw_event("c", "add_to_cart", T0 + HOUR, category="home"),
    ]
    t = fold(evs, PID).stored_traits()
    assert (
        t.recency_days,
        t.purchase_days,
        t.avg_order_value_cents,
        t.avg_day_spend_cents,
        t.repeat_day_spend_cents,
    ) == (None, 0, None, None, None)
    assert [c for c, _ in t.top_categories] == ["home", "books"]
    assert ProfileAggregate.empty(PID).stored_traits() == StoredTraits(None, 0, None, None, None, ())
    assert_traits_equal_oracle(fold(evs, PID), evs)


def test_one_purchase_day_has_no_repeat_day_spend() -> None:
    evs = [raw_event("a", "purchase", T0 + HOUR, total=5.0), raw_event("b", "purchase", T0 + 2 * HOUR, total=7.0)]
    t = fold(evs, PID).stored_traits()
    assert (t.purchase_days, t.avg_day_spend_cents, t.repeat_day_spend_cents) == (1, Decimal("1200.00"), None)


def test_top_categories_are_shares_of_affinity_decayed_to_the_last_event_at_most_five() -> None:
    hl = 30 * DAY
    evs = [raw_event(f"v{c}{i}", "product_view", T0, category=c) for i, c in enumerate("abcdefg")]
    evs += [raw_event("va2", "product_view", T0 + hl, category="a")]  # one half-life later: weight 1 vs 0.5
    t = fold(evs, PID, hl).stored_traits()
    assert [c for c, _ in t.top_categories] == ["a", "b", "c", "d", "e"]  # f and g tie with b..e, cut by name
    shares = dict(t.top_categories)
    assert shares["a"] == pytest.approx(1.5 / (1.5 + 6 * 0.5), rel=1e-12)
    assert all(0.0 <= s <= 1.0 for s in shares.values()) and sum(shares.values()) <= 1.0
    assert_traits_equal_oracle(fold(evs, PID, hl), evs)


# ---------------------------------------------------------------------------- any order, any merge


CATEGORIES = ("shoes", "books", "home", "toys", "garden", "beauty", "sports")
# few distinct instants, clustered around UTC midnights, so same-day orders and day boundaries are common
TIMES = (T0 - 1, T0, T0 + 1, T0 + DAY - 1, T0 + DAY, T0 + 3 * DAY + 7 * HOUR, T0 + 90 * DAY)


@st.composite
def synthetic_events(draw: st.DrawFn, n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        at = draw(st.sampled_from(TIMES))
        kind = draw(st.sampled_from(["purchase", "store_purchase", "product_view", "add_to_cart", "page_view"]))
        cat = st.sampled_from(CATEGORIES)
        if kind in ("purchase", "store_purchase"):
            total = float(draw(st.decimals(min_value=0, max_value=2000, places=2)))
            items = draw(st.lists(st.tuples(cat, st.integers(1, 3)), min_size=1, max_size=3))
            out.append(raw_event(f"e{i}", kind, at, total=total, items=items))
        else:
            out.append(raw_event(f"e{i}", kind, at, category=draw(cat), dwell_ms=draw(st.integers(0, 300_000))))
    return out


def merged_in_random_parts(events: list[dict[str, Any]], rnd: random.Random, parts: int) -> ProfileAggregate:
    """Fold random disjoint parts into profiles of their own, then merge them in a random tree (identity merges)."""
    groups: list[list[dict[str, Any]]] = [[] for _ in range(parts)]
    for e in events:
        groups[rnd.randrange(parts)].append(e)
    aggs = [fold(g, f"p-{i}") for i, g in enumerate(groups)]
    while len(aggs) > 1:
        a, b = aggs.pop(rnd.randrange(len(aggs))), aggs.pop(rnd.randrange(len(aggs)))
        aggs.append(a.merge(b, profile_id=PID))
    return aggs[0]


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 14).flatmap(synthetic_events), st.randoms(use_true_random=False), st.integers(1, 4))
def test_traits_equal_the_oracle_for_any_arrival_order_and_any_merge_of_partial_profiles(
    events: list[dict[str, Any]], rnd: random.Random, parts: int
) -> None:
    shuffled = list(events)
    rnd.shuffle(shuffled)
    agg = merged_in_random_parts(shuffled, rnd, parts)
    assert_traits_equal_oracle(agg, events)
    reference = fold(events, PID)
    assert agg.purchase_day_cents == reference.purchase_day_cents  # the state itself merges exactly
    t, r = agg.stored_traits(), reference.stored_traits()
    assert (
        t.recency_days,
        t.purchase_days,
        t.avg_order_value_cents,
        t.avg_day_spend_cents,
        t.repeat_day_spend_cents,
    ) == (r.recency_days, r.purchase_days, r.avg_order_value_cents, r.avg_day_spend_cents, r.repeat_day_spend_cents)


# ---------------------------------------------------------------------------- the partitioned pipeline


class Pipeline:
    """Router + one fold per profile + a feedback queue that delays moved atoms, flushing at random
    into a model of Cassandra (as tests/unit/test_profile_pipeline.py, without crashes)."""

    def __init__(self, rnd: random.Random, max_delay: int = 6, flush_probability: float = 0.3) -> None:
        self.rnd, self.max_delay, self.flush_probability = rnd, max_delay, flush_probability
        self.router = IdentityRouter(RULES)
        self.folds: dict[str, tuple[dict, FoldState]] = {}
        self.feedback: list[tuple[int, tuple, ProfileAggregate]] = []
        self.db = CassandraModel()
        self.now = self.moved = 0

    def _apply(self, cmd) -> None:
        atoms, state = self.folds.setdefault(cmd.profile_id, ({}, FoldState()))
        for atom, agg in ProfileFold(cmd.profile_id, atoms, state).apply(cmd):
            self.moved += 1
            self.feedback.append((self.now + self.rnd.randint(0, self.max_delay), atom, agg.to_dict()))

    def _deliver(self, everything: bool = False) -> None:
        due = [f for f in self.feedback if everything or f[0] <= self.now]
        self.feedback = [f for f in self.feedback if f not in due]
        self.rnd.shuffle(due)
        for _, atom, agg in due:  # as JSON over the feedback topic
            cmd = self.router.route_state(atom, json.loads(json.dumps(agg)))
            assert cmd is not None
            self._apply(cmd)

    def _flush(self, probability: float) -> None:
        for pid, (atoms, state) in list(self.folds.items()):
            if state.dirty and self.rnd.random() < probability:
                self.db.apply(ProfileFold(pid, atoms, state).flush())

    def run(self, events: list[dict[str, Any]]) -> dict[str, ProfileAggregate]:
        for e in events:
            self.now += 1
            self._deliver()
            for cmd in self.router.route_event(e, payload=e).commands:
                self._apply(cmd)
            self._flush(self.flush_probability)
        while self.feedback:
            self.now += self.max_delay + 1
            self._deliver(everything=True)
            self._flush(self.flush_probability)
        self._flush(1.0)
        return {pid: agg for pid, (_, agg) in self.db.view().items()}


def profile_of_person(events: tuple[dict[str, Any], ...], links: dict[tuple[str, str], str]) -> str:
    pids = {links[(t, v)] for e in events for t, v in e["identifiers"].items() if v is not None and (t, v) in links}
    assert len(pids) == 1, f"a planted person ended in {len(pids)} profiles"
    return pids.pop()


@pytest.mark.parametrize(("seed", "persons", "days"), [(5, 30, 60), (6, 40, 14), (7, 25, 120)])
def test_pipeline_profiles_of_generated_persons_store_the_oracles_traits_in_any_arrival_order(
    seed: int, persons: int, days: int
) -> None:
    by_person = generated_by_person(seed, persons, days)
    events = [e for evs in by_person.values() for e in evs]
    random.Random(seed).shuffle(events)  # late customer ids: cookie and device profiles merge into them
    pipeline = Pipeline(random.Random(seed))
    profiles = pipeline.run(events)
    links = pipeline.db.identity_links()
    assert len(profiles) == len(by_person)  # the planted persons, one profile each
    expected = {profile_of_person(evs, links): expected_traits(evs) for evs in by_person.values()}
    assert set(expected) == set(profiles)
    for pid, want in expected.items():
        diff = differences(want, columns_of(profiles[pid]))
        assert not diff, (pid, diff)
    # the data set exercised what it should: merges, repeat days, several orders a day, non-buyers
    assert pipeline.moved > 0
    traits = [profiles[pid].stored_traits() for pid in profiles]
    assert any(t.repeat_day_spend_cents is not None for t in traits)
    assert any(p.orders > p.stored_traits().purchase_days > 0 for p in profiles.values())
    assert any(t.purchase_days == 0 for t in traits)


def test_pipeline_with_a_shared_device_split_off_stores_the_oracles_traits() -> None:
    """tests/profile_oracle.events(): two customers on one tablet; the tablet's atoms move out."""
    evs = list(profile_oracle.events())
    random.Random(3).shuffle(evs)
    obs = [observation_of(e) for e in evs]
    res = resolve(obs, RULES)
    by_profile: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e, ob in zip(evs, obs):
        kept = sorted({n for n in ob.identifiers if not RULES.is_blocked(n[1])}, key=RULES.rank)
        if kept:
            by_profile[res.profile_of[kept[0]]].append(e)
    pipeline = Pipeline(random.Random(4), max_delay=3)
    profiles = pipeline.run(evs)
    assert set(profiles) == set(by_profile) and pipeline.moved > 0
    for pid, pevs in by_profile.items():
        diff = differences(expected_traits(pevs), columns_of(profiles[pid]))
        assert not diff, (pid, diff)


# ---------------------------------------------------------------------------- state format


# pickle.dumps of a ProfileAggregate (one order, one page view) made by the code before
# purchase_day_cents existed, as Flink state and the feedback topic may still hold it
OLD_PICKLE = base64.b64decode(
    "gAWVbQEAAAAAAACMDm1vZGVscy5wcm9maWxllIwQUHJvZmlsZUFnZ3JlZ2F0ZZSTlCmBlH2UKIwKcHJvZmlsZV9pZJSMBXAtb2xklIwL"
    "aWRlbnRpZmllcnOUfZQojAljb29raWVfaWSUjARjay0xlIWUjAtjdXN0b21lcl9pZJSMA2MtMZSFlHWMDWZpcnN0X3NlZW5fbXOUigYA"
    "bFDEoAGMDGxhc3Rfc2Vlbl9tc5SKBmBWUcSgAYwGZXZlbnRzlEsCjAZvcmRlcnOUSwGMDXJldmVudWVfY2VudHOUTeIEjA5maXJzdF9v"
    "cmRlcl9tc5SKBgBsUMSgAYwNbGFzdF9vcmRlcl9tc5SKBgBsUMSgAYwOY2hhbm5lbF9jb3VudHOUfZSMA3dlYpRLAnOMEWNhdGVnb3J5"
    "X2FmZmluaXR5lH2UjAVzaG9lc5RHRTIQSOPJytxzjAdjb25zZW50lH2UjA5jcm1fYXR0cmlidXRlc5R9lHViLg=="
)


def test_an_aggregate_pickled_before_purchase_days_existed_still_loads_and_merges() -> None:
    old = pickle.loads(OLD_PICKLE)
    assert (old.events, old.orders, old.revenue_cents, old.purchase_day_cents) == (2, 1, 1250, {})
    new_order = ProfileAggregate.from_event(
        raw_event("e3", "purchase", 1_790_100_000_000, total=1.0, customer_id="c-1"), "p-old"
    )
    merged = old.merge(new_order, "p-old")
    assert (merged.orders, merged.purchase_day_cents) == (2, {1_790_100_000_000 // DAY: 100})
    assert merged.stored_traits().purchase_days == 1  # the order folded before the upgrade is not in a day
    assert ProfileAggregate.from_dict({k: v for k, v in old.to_dict().items() if k != "purchase_day_cents"}) == old


def test_purchase_days_survive_the_json_of_the_feedback_topic_with_integer_days() -> None:
    agg = fold([raw_event("a", "purchase", T0 + DAY, total=2.5), raw_event("b", "purchase", T0 - DAY, total=1.0)], PID)
    d = json.loads(json.dumps(agg.to_dict()))
    assert d["purchase_day_cents"] == {str(T0 // DAY - 1): 100, str(T0 // DAY + 1): 250}
    back = ProfileAggregate.from_dict(d)
    assert back == agg and list(back.purchase_day_cents) == sorted(back.purchase_day_cents)
    assert pickle.loads(pickle.dumps(agg)) == agg


# ---------------------------------------------------------------------------- the columns


def test_every_stored_trait_has_a_documented_column_of_its_type() -> None:
    table = next(p for p in map(parse_create_table, load_statements()) if p and p[1] == "profiles")[2]
    assert {c: table.get(c) for c in TRAIT_COLUMNS} == {
        "recency_days": "double",
        "purchase_days": "bigint",
        "avg_order_value_cents": "decimal",
        "avg_day_spend_cents": "decimal",
        "repeat_day_spend_cents": "decimal",
        "top_categories": "frozen<list<frozen<tuple<text,double>>>>",
    }
    assert table["purchase_day_cents"] == "map<date,bigint>"
    doc = (Path(__file__).resolve().parents[2] / "docs" / "profiles.md").read_text(encoding="utf-8")
    for column in (*TRAIT_COLUMNS, "purchase_day_cents", "orders", "revenue_cents", "last_seen"):
        assert f"`{column}`" in doc, f"docs/profiles.md does not document {column}"
    assert "SELECT " in doc and "UTC" in doc
