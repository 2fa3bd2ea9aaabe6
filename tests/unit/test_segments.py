"""Rule segments (models/segments.py and their place in models/journeys.py): validation, hot
reload, features and windows, time-only changes, merges, state records."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.journeys import Journey, JourneySettings, JourneyState, state_of_record, state_record
from models.segments import (
    DAY_MS,
    DEFAULT_RULES_PATH,
    FEATURES,
    WEEK_MS,
    RuleError,
    RuleSet,
    SegmentFacts,
    SegmentOut,
    SegmentRule,
    compile_rule,
    features,
    load_rules,
    next_change,
    parse_rules,
)
from state.records import JOURNEY_STATE_CODEC, SEGMENT_RULE_CODEC
from tests.unit.test_journeys import CK, add, fact
from tests.unit.test_journeys import run as run_in_arrival_order

S = JourneySettings()
MIN = 60_000
END = 10**13


def rule(name="r", version=1, expression="sessions_7d >= 3", purpose="personalization", **kw) -> SegmentRule:
    return SegmentRule(name, version, purpose, expression, **kw)


def changes(outs) -> list[tuple[str, str, int, int]]:
    return [
        (o.record["segment"], o.record["change"], o.record["at"], o.record["rule_version"])
        for o in outs
        if isinstance(o, SegmentOut)
    ]


def run(facts, rules: RuleSet, until: int = END, journey: Journey | None = None):
    j = journey or Journey("p-1", JourneyState(), S, rules)
    outs = []
    for f in sorted(facts, key=lambda f: f.order()):
        outs += j.on_event(f, f.at - 1)
    outs += j.advance(until)
    return j, outs


def view(eid, at, stream=CK):
    return fact(eid, at, "page_view", stream=stream)


def purchase(eid, at, total_cents, cart=None):
    return fact(eid, at, "purchase", cart_id=cart, total_cents=total_cents)


# ---- definitions and validation --------------------------------------------------------


def test_the_shipped_rules_are_valid_and_name_only_known_features():
    rules = load_rules(DEFAULT_RULES_PATH)
    assert {r.name for r in rules} == {"high_value", "engaged", "at_risk", "cart_abandoner", "new_customer", "lapsed"}
    rs = RuleSet.of(rules)
    assert rs.features <= FEATURES.keys()
    assert all(c.features for c in rs.active())


@pytest.mark.parametrize(
    "expression, problem",
    [
        ("sessions_7d >= ", "syntax error"),
        ("visits > 3", "unknown field(s) visits"),
        ("lifetime_value + 1 > 3.0", "type error"),
        ("purchases + 1", "type error: the expression gives int, not bool"),
        ("'a' + purchases > 0", "type error"),
    ],
)
def test_an_invalid_rule_is_refused_with_a_clear_error(expression, problem):
    with pytest.raises(RuleError, match=re.escape(problem)) as e:
        compile_rule(rule("bad", 3, expression))
    assert "rule 'bad' v3" in str(e.value)


@pytest.mark.parametrize(
    "text, problem",
    [
        ("- {name: Bad-Name, version: 1, purpose: marketing, expression: 'true'}", "rule name must match"),
        ("- {name: a, version: 1, purpose: sales, expression: 'true'}", "purpose must be one of"),
        ("- {name: a, version: '2', purpose: marketing, expression: 'true'}", "version must be an integer"),
        ("- {name: a, version: 1, purpose: marketing}", "expression must be a non-empty string"),
        ("- {name: a, version: 1, purpose: marketing, expression: 'true', colour: red}", "unknown keys"),
        (
            "[{name: a, version: 1, purpose: marketing, expression: 'true'}, "
            "{name: a, version: 2, purpose: marketing, expression: 'true'}]",
            "rules defined twice: a",
        ),
        ("{{{", "not YAML or JSON"),
        ("42", "expected a rule"),
    ],
)
def test_a_malformed_definition_is_refused(text, problem):
    with pytest.raises(RuleError, match=re.escape(problem)):
        parse_rules(text)


def test_a_missing_rules_file_is_a_clear_error(tmp_path: Path):
    with pytest.raises(RuleError, match="does not exist"):
        load_rules(tmp_path / "nope.yaml")


def test_json_and_yaml_definitions_are_the_same():
    y = parse_rules("rules:\n- name: a\n  version: 2\n  purpose: analytics\n  expression: purchases > 1\n")
    j = parse_rules('{"name": "a", "version": 2, "purpose": "analytics", "expression": "purchases > 1"}')
    assert y == j


def test_hot_reload_adds_replaces_retires_and_refuses_without_changing_what_runs():
    rs = RuleSet.of([rule("a", 1, "sessions_7d >= 3")])
    rs.apply(rule("b", 1, "purchases >= 1"))
    rs.apply(rule("a", 2, "sessions_7d >= 2"))
    with pytest.raises(RuleError, match="version must be higher"):
        rs.apply(rule("a", 2, "sessions_7d >= 9"))
    with pytest.raises(RuleError, match="unknown field"):
        rs.apply(rule("a", 5, "nonsense > 1"))
    assert rs.versions() == {"a": 2, "b": 1} and rs.rules["a"].rule.expression == "sessions_7d >= 2"
    rs.apply(rule("b", 2, "purchases >= 1", enabled=False))
    assert [c.rule.name for c in rs.active()] == ["a"] and rs.features == {"sessions_7d"}


def test_the_rule_record_round_trips_through_the_broadcast_state_codec():
    r = rule("x", 7, "purchases_30d > 1 && active_30d", "analytics", description="d", enabled=False)
    assert SEGMENT_RULE_CODEC.decode(SEGMENT_RULE_CODEC.encode(r)) == r


# ---- features --------------------------------------------------------------------------


def test_windows_are_half_open_and_count_only_what_is_inside():
    f = SegmentFacts()
    f.on_event(0, 10_000)
    names = ["purchases_7d", "purchases_30d", "first_purchase_30d", "active_7d", "active_30d", "lifetime_value"]
    assert features(f, [], WEEK_MS - 1, names) == {
        "purchases_7d": 1,
        "purchases_30d": 1,
        "first_purchase_30d": True,
        "active_7d": True,
        "active_30d": True,
        "lifetime_value": 100.0,
    }
    at_week = features(f, [], WEEK_MS, names)
    assert at_week["purchases_7d"] == 0 and not at_week["active_7d"] and at_week["purchases_30d"] == 1


def test_engagement_per_week_counts_sessions_by_their_start():
    sessions = [(0, 10), (8 * DAY_MS, 5), (15 * DAY_MS, 2)]
    got = features(
        SegmentFacts(), sessions, 15 * DAY_MS, ["engagement_7d", "engagement_prev_7d", "engagement_prev2_7d"]
    )
    assert got == {"engagement_7d": 2, "engagement_prev_7d": 5, "engagement_prev2_7d": 10}


def test_next_change_is_the_earliest_instant_a_named_feature_changes_by_time():
    f = SegmentFacts()
    f.on_event(5, None)
    assert next_change(f, [3], 5, ["sessions_7d"]) == 3 + WEEK_MS
    assert next_change(f, [3], 5, ["active_30d"]) == 5 + 30 * DAY_MS
    assert next_change(f, [3], 5, ["purchases", "lifetime_value"]) is None
    assert next_change(f, [3], 3 + WEEK_MS, ["sessions_7d"]) is None


# ---- evaluation in the journey ---------------------------------------------------------


def test_engaged_is_entered_at_the_third_session_and_left_7_days_after_the_oldest_without_any_event():
    rs = RuleSet.of([rule("engaged", 1, "sessions_7d >= 3")])
    starts = [0, 2 * 60 * MIN, 4 * 60 * MIN]
    _, outs = run([view(f"v{i}", t) for i, t in enumerate(starts)], rs)
    assert changes(outs) == [("engaged", "entered", starts[2], 1), ("engaged", "exited", starts[0] + WEEK_MS, 1)]


def test_high_value_is_left_exactly_7_days_after_the_purchase_and_the_end_of_event_time_cuts_it_off():
    rs = RuleSet.of([rule("high_value", 1, "purchases_7d >= 1 && lifetime_value > 300.0")])
    evs = [purchase("p1", 1000, 20_000), purchase("p2", DAY_MS, 15_000)]
    _, outs = run(evs, rs)
    assert changes(outs) == [("high_value", "entered", DAY_MS, 1), ("high_value", "exited", DAY_MS + WEEK_MS, 1)]
    _, outs = run(evs, rs, until=DAY_MS + WEEK_MS - 1)
    assert changes(outs) == [("high_value", "entered", DAY_MS, 1)]


def test_cart_abandoner_is_decided_at_the_deadline_after_the_cart_decision():
    rs = RuleSet.of([rule("cart_abandoner", 1, "carts_abandoned_7d >= 1")])
    _, outs = run([add("a1", 0)], rs)
    deadline = S.cart_timeout_ms
    assert changes(outs) == [
        ("cart_abandoner", "entered", deadline, 1),
        ("cart_abandoner", "exited", deadline + WEEK_MS, 1),
    ]


def test_lapsed_is_entered_7_days_after_the_last_event_of_a_customer():
    rs = RuleSet.of([rule("lapsed", 1, "purchases >= 1 && !active_7d")])
    _, outs = run([purchase("p1", 0, 100), view("v1", DAY_MS)], rs)
    assert changes(outs) == [("lapsed", "entered", DAY_MS + WEEK_MS, 1)]


def test_a_retired_rule_ends_memberships_at_the_next_evaluation_with_the_retiring_version():
    rs = RuleSet.of([rule("buyer", 1, "purchases >= 1")])
    j, outs = run([purchase("p1", 0, 100)], rs, until=10)
    assert changes(outs) == [("buyer", "entered", 0, 1)]
    rs.apply(rule("buyer", 2, "purchases >= 1", enabled=False))
    _, outs = run([view("v1", 20)], rs, until=30, journey=j)
    assert changes(outs) == [("buyer", "exited", 20, 2)]


def test_a_changed_rule_keeps_members_that_still_qualify_and_names_its_version_on_new_decisions():
    rs = RuleSet.of([rule("buyer", 1, "purchases >= 1")])
    j, _ = run([purchase("p1", 0, 100)], rs, until=10)
    rs.apply(rule("buyer", 2, "purchases >= 2"))
    _, outs = run([view("v1", 20)], rs, until=30, journey=j)
    assert changes(outs) == [("buyer", "exited", 20, 2)]


def test_a_rule_that_fails_at_run_time_keeps_the_membership_and_is_counted():
    rs = RuleSet.of([rule("ratio", 1, "purchases > 0 && 10 / (purchases - 1) > 1")])
    j = Journey("p-1", JourneyState(), S, rs)
    _, outs = run([purchase("p1", 0, 100)], rs, until=10, journey=j)  # 10 / 0
    assert changes(outs) == [] and j.rule_stats.errors == 1 and "ratio" in j.rule_stats.errors_by_rule


def test_a_profile_merged_away_leaves_its_segments_and_the_survivor_decides_on_the_merged_facts():
    rs = RuleSet.of([rule("big", 1, "lifetime_value > 150.0"), rule("buyer", 1, "purchases >= 1")])
    anon = Journey("p-anon", JourneyState(), S, rs)
    for o in anon.on_event(purchase("p1", 0, 10_000), -1) + anon.advance(5):
        pass
    assert set(anon.state.segments.members) == {"buyer"}
    parts, outs = anon.apply_command(10, evict=[CK], merged_away=True)
    assert changes(outs) == [("buyer", "exited", 10, 1)]
    assert anon.state.is_empty()
    survivor = Journey("p-cust", JourneyState(), S, rs)
    survivor.absorb(*parts[0])
    outs = survivor.on_event(purchase("p2", 20, 6_000), 19) + survivor.advance(25)
    assert [c[:2] for c in changes(outs)] == [("big", "entered"), ("buyer", "entered")]


def test_journey_state_with_segments_round_trips_the_state_record():
    rs = RuleSet.of(load_rules())
    j, _ = run([purchase("p1", 0, 40_000), view("v1", 1000), add("a1", 2000)], rs, until=3 * DAY_MS)
    st = j.state
    assert st.segments.members and st.segments.purchase_times
    assert JOURNEY_STATE_CODEC.decode(JOURNEY_STATE_CODEC.encode(st)) == st
    assert state_of_record(state_record(st)) == st


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 25))
def test_any_arrival_order_within_the_bound_gives_the_same_segment_changes(seed: int, n: int) -> None:
    rnd = random.Random(seed)
    rs = RuleSet.of(load_rules())
    kinds = ["page_view", "product_view", "purchase", "add_to_cart"]
    facts, t = [], 0
    for i in range(n):
        t += rnd.choice([MIN, 40 * MIN, DAY_MS, 3 * DAY_MS])
        k = rnd.choice(kinds)
        if k == "purchase":
            facts.append(purchase(f"e{i:03d}", t, rnd.randint(1, 50_000)))
        elif k == "add_to_cart":
            facts.append(add(f"e{i:03d}", t, cart=f"cart{i}"))
        elif k == "product_view":
            facts.append(fact(f"e{i:03d}", t, k, product_id="sku", dwell_ms=rnd.randint(0, 90_000)))
        else:
            facts.append(view(f"e{i:03d}", t))
    _, in_order = run(facts, rs)
    bound = 2 * DAY_MS
    shuffled = sorted(facts, key=lambda f: f.at + rnd.randint(0, bound))
    _, outs = run_in_arrival_order(shuffled, bound=bound, journey=Journey("p-1", JourneyState(), S, rs))
    assert changes(outs) == changes(in_order)


# ---- consent per purpose (docs/privacy.md) -------------------------------------------------


def consent_for(eid, at, purpose, granted, channel="web"):
    return fact(
        eid,
        at,
        "consent_update",
        stream=None,
        atom=("customer_id", "c1"),
        purpose=purpose,
        granted=granted,
        channel=channel,
    )


def test_a_rule_holds_members_only_while_its_purpose_is_consented_to_the_latest_update_wins():
    rs = RuleSet.of([rule("active", 1, "active_7d", purpose="marketing")])
    evs = [
        view("v1", 1000),  # marketing: denied by default, the entry is withheld
        consent_for("c1", 2000, "marketing", True),  # opt-in: enters at once
        consent_for("c2", 3000, "marketing", False, channel="crm"),  # opt-out from the CRM: leaves at once
        consent_for("c3", 3000, "marketing", True, channel="app"),  # same time, later event id: wins
        consent_for("c4", 4000, "analytics", False),  # another purpose: changes nothing here
    ]
    j, outs = run(evs, rs, until=5000)
    # every applied event is evaluated after it: the opt-out and the opt-in at 3000 both decide
    assert changes(outs) == [
        ("active", "entered", 2000, 1),
        ("active", "exited", 3000, 1),
        ("active", "entered", 3000, 1),
    ]
    assert j.profile_consent(5000) == {"personalization": True, "marketing": True, "analytics": False}
    assert j.rule_stats.withheld == {"marketing": 2}  # before the opt-in, and between c2 and c3
    marks = {k: (m.granted, m.source) for k, m in j.state.consent.items()}
    assert marks == {"marketing|customer_id:c1": (True, "app"), "analytics|customer_id:c1": (False, "web")}


def test_an_opt_out_makes_a_member_leave_at_its_time_and_counts_one_withheld_entry_per_stretch():
    rs = RuleSet.of([rule("active", 1, "active_7d", purpose="personalization")])
    evs = [
        view("v1", 1000),  # personalization: granted by default
        consent_for("c1", 2000, "personalization", False),
        view("v2", 3000),  # still withheld: counted once
        consent_for("c2", 4000, "personalization", True),
    ]
    j, outs = run(evs, rs, until=5000)
    assert changes(outs) == [
        ("active", "entered", 1000, 1),
        ("active", "exited", 2000, 1),
        ("active", "entered", 4000, 1),
    ]
    assert j.rule_stats.withheld == {"personalization": 1}


def test_consent_defaults_are_settings():
    rs = RuleSet.of([rule("active", 1, "active_7d", purpose="marketing")])
    j = Journey("p-1", JourneyState(), JourneySettings(marketing_consent_default=True), rs)
    _, outs = run([view("v1", 1000)], rs, until=2000, journey=j)
    assert changes(outs) == [("active", "entered", 1000, 1)]


def test_consent_marks_of_a_release_before_purposes_read_as_marketing():
    rec = state_record(JourneyState())
    rec["consent"] = {"customer_id:c1": {"at": 5, "event_id": "e5", "granted": True}}
    st = state_of_record(rec)
    assert (
        list(st.consent) == ["marketing|customer_id:c1"]
        and st.consent["marketing|customer_id:c1"].purpose == "marketing"
    )
