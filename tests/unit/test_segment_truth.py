"""The offline segments oracle (generator/segment_truth.py): every shipped rule entering and leaving
on hand-made events (time-only exits included), the evaluation order, the end of event time,
the person key, rule validation, and sanity on a generated data set against the journeys oracle."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import cel
import pytest

from generator.journey_truth import _People, identifiers_of, journey_truth, stream_name
from generator.segment_truth import (
    CONSENT_DEFAULTS,
    FEATURES,
    PURCHASE_TYPES,
    PURPOSES,
    load_rules,
    segment_replay,
    segment_truth,
    validate_rule,
)

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_FILE = ROOT / "rules" / "segments.yaml"
T0 = 1_790_035_200_000  # 2026-09-22T00:00:00Z
MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
ID_TYPES = ("customer_id", "email_hash", "phone_hash", "device_id", "cookie_id", "loyalty_id")
C1 = {"customer_id": "c1", "cookie_id": "k1"}  # person key "cookie_id:k1"
P1 = "cookie_id:k1"

# the table of docs/segments.md, independent of the shipped file (compared with it below)
SPEC_RULES: dict[str, tuple[str, str]] = {
    "high_value": ("purchases_7d >= 1 && lifetime_value > 300.0", "marketing"),
    "engaged": ("sessions_7d >= 3", "personalization"),
    "at_risk": ("engagement_prev2_7d > engagement_prev_7d && engagement_prev_7d > engagement_7d", "marketing"),
    "cart_abandoner": ("carts_abandoned_7d >= 1", "marketing"),
    "new_customer": ("first_purchase_30d", "personalization"),
    "lapsed": ("purchases >= 1 && !active_7d", "marketing"),
}
SHIPPED = [{"name": n, "version": 1, "purpose": p, "expression": e} for n, (e, p) in SPEC_RULES.items()]
# every purpose granted without a consent record (marketing is denied by default): for the tests of
# the features and instants with the shipped marketing rules
GRANTED = {"personalization": True, "marketing": True, "analytics": True}


def ev(eid: str, t: int, typ: str, channel: str = "web", payload: dict[str, Any] | None = None, **ids: str) -> dict:
    return {
        "event_id": eid,
        "event_type": typ,
        "channel": channel,
        "occurred_at": t,
        "identifiers": {k: ids.get(k) for k in ID_TYPES},
        "payload": ("journey.v1.Payload", payload or {}),
        "context": {},
    }


def page(eid: str, t: int, **ids: str) -> dict:
    return ev(eid, t, "page_view", payload={"url": "https://shop.example/"}, **(ids or C1))


def buy(eid: str, t: int, total: float, typ: str = "purchase", **ids: str) -> dict:
    channel = "pos" if typ == "store_purchase" else "web"
    return ev(eid, t, typ, channel, {"order_id": f"o-{eid}", "cart_id": None, "total": total}, **(ids or C1))


def add(eid: str, t: int, cart: str = "cart-1", **ids: str) -> dict:
    payload = {"cart_id": cart, "product_id": "p1", "category": "x", "quantity": 1, "unit_price": 10.0}
    return ev(eid, t, "add_to_cart", payload=payload, **(ids or C1))


def consent(eid: str, t: int, purpose: str, granted: bool, **ids: str) -> dict:
    return ev(eid, t, "consent_update", payload={"purpose": purpose, "granted": granted}, **(ids or C1))


def tail(t: int) -> dict:
    """An unrelated person's event: moves the end of event time to ``t``."""
    return page("zz-tail", t, cookie_id="zz-tail")


def changes(
    events: list[dict], rules: list[dict] | None = None, person: str | None = P1, segment: str | None = None, **kw: Any
) -> list[tuple[str, str, int]]:
    """``(segment, change, at - T0)`` of one person (and segment)."""
    out = segment_truth(events, SHIPPED if rules is None else rules, **kw)
    return [
        (c["segment"], c["change"], c["at"] - T0)
        for c in out
        if (person is None or c["person"] == person) and (segment is None or c["segment"] == segment)
    ]


def rule(name: str, expression: str, **kw: Any) -> dict:
    return {"name": name, "version": 1, "purpose": "analytics", "expression": expression, **kw}


# ---------------------------------------------------------------------- rules


def test_shipped_file_is_the_spec_table() -> None:
    rules = load_rules(SHIPPED_FILE)
    assert {r["name"]: (r["expression"], r["purpose"]) for r in rules} == SPEC_RULES
    assert all(r["enabled"] and r["version"] >= 1 for r in rules)


def test_load_rules_yaml_and_json_forms(tmp_path: Path) -> None:
    defs = [rule("a", "purchases >= 1"), rule("b", "active_7d", enabled=False, version=3)]
    (tmp_path / "r.json").write_text(json.dumps(defs))
    (tmp_path / "r.yaml").write_text("rules:\n" + "".join(f"  - {json.dumps(d)}\n" for d in defs))
    for name in ("r.json", "r.yaml"):
        loaded = load_rules(tmp_path / name)
        assert [(r["name"], r["version"], r["enabled"]) for r in loaded] == [("a", 1, True), ("b", 3, False)]
    (tmp_path / "bad.yaml").write_text("name: a\n")
    with pytest.raises(ValueError, match="expected a list"):
        load_rules(tmp_path / "bad.yaml")


@pytest.mark.parametrize(
    "definition, error",
    [
        (rule("Bad", "active_7d"), "does not match"),
        (rule("a", "active_7d", version=0), "version"),
        (rule("a", "active_7d", purpose="sales"), "purpose"),
        (rule("a", "purchases >="), "does not compile"),
        (rule("a", "lifetime_value + 1 > 2.0"), "bool"),  # CEL: no int/double arithmetic
        (rule("a", "nonsense >= 1"), "bool"),  # not a feature
        (rule("a", "purchases + 1"), "bool"),  # not a bool
        (rule("a", "active_7d", enabled="yes"), "enabled"),
    ],
)
def test_invalid_rules_are_rejected(definition: dict, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        validate_rule(definition)


def test_valid_rules_and_duplicates() -> None:
    assert validate_rule(rule("a", "lifetime_value + 1.0 > 2.0 && purchases > 0"))["enabled"] is True
    assert validate_rule(rule("a", "[1, 2].exists(x, x > purchases)"))["name"] == "a"  # a comprehension variable
    with pytest.raises(ValueError, match="twice"):
        segment_truth([], [rule("a", "active_7d"), rule("a", "active_30d", version=2)])


# ---------------------------------------------------------------------- the shipped rules


def test_high_value_new_customer_lapsed_purchase_timeline() -> None:
    p = T0 + HOUR
    events = [page("e0", T0), buy("e1", p, 350.0), tail(T0 + 40 * DAY)]
    assert changes(events, consent_defaults=GRANTED) == [
        # one evaluation, rule-name order
        ("high_value", "entered", HOUR),
        ("new_customer", "entered", HOUR),
        # time only, exactly 7 days after the purchase (and the latest event): one instant
        ("high_value", "exited", HOUR + 7 * DAY),
        ("lapsed", "entered", HOUR + 7 * DAY),
        ("new_customer", "exited", HOUR + 30 * DAY),
    ]
    out = segment_truth(events, SHIPPED, consent_defaults=GRANTED)
    assert {c["purpose"] for c in out if c["segment"] == "high_value"} == {"marketing"}


def test_high_value_needs_lifetime_value_over_300() -> None:
    events = [buy("e1", T0, 200.0), buy("e2", T0 + DAY, 100.0), buy("e3", T0 + 2 * DAY, 0.01), tail(T0 + 20 * DAY)]
    assert changes(events, segment="high_value", consent_defaults=GRANTED) == [
        ("high_value", "entered", 2 * DAY),
        ("high_value", "exited", 9 * DAY),
    ]


def test_half_open_window_boundary() -> None:
    p = T0
    events = [buy("e1", p, 350.0), page("e2", p + 7 * DAY - 1), page("e3", p + 7 * DAY), tail(p + 10 * DAY)]
    # still a member 1 ms before t + 7 d, out at exactly t + 7 d (decided by the event there)
    assert changes(events, segment="high_value", consent_defaults=GRANTED) == [
        ("high_value", "entered", 0),
        ("high_value", "exited", 7 * DAY),
    ]
    hv = [rule("w", "purchases_7d == 1 && purchases_30d == 1")]
    assert changes([buy("e1", p, 5.0), tail(p + 31 * DAY)], hv) == [("w", "entered", 0), ("w", "exited", 7 * DAY)]
    hv30 = [rule("w", "purchases_30d == 1 && active_30d")]
    assert changes([buy("e1", p, 5.0), tail(p + 31 * DAY)], hv30) == [("w", "entered", 0), ("w", "exited", 30 * DAY)]


def test_end_of_event_time_cuts_off_later_instants() -> None:
    entered = [("high_value", "entered", 0)]
    kw: dict[str, Any] = {"segment": "high_value", "consent_defaults": GRANTED}
    assert changes([buy("e1", T0, 350.0)], **kw) == entered  # the input ends at the purchase
    assert changes([buy("e1", T0, 350.0), tail(T0 + 7 * DAY - 1)], **kw) == entered
    # an instant exactly at the end is reached
    assert changes([buy("e1", T0, 350.0), tail(T0 + 7 * DAY)], **kw) == entered + [("high_value", "exited", 7 * DAY)]


def test_engaged_enters_at_third_session_and_leaves_by_time_alone() -> None:
    events = [page(f"e{d}", T0 + d * DAY) for d in range(4)] + [tail(T0 + 30 * DAY)]
    # sessions at days 0..3: three within 7 days at day 2; at day 7 (day 0 out) still 3 (1, 2, 3);
    # at day 8 only days 2 and 3: left exactly 7 days after the 3rd most recent session start
    assert changes(events, segment="engaged") == [("engaged", "entered", 2 * DAY), ("engaged", "exited", 8 * DAY)]


def test_sessions_follow_the_gap_and_count_every_stream() -> None:
    g = 30 * MIN
    events = [
        page("e1", T0),
        page("e2", T0 + g),  # gap of exactly G: same session
        page("e3", T0 + 2 * g + 1),  # > G: a new session (2)
        ev("e4", T0 + 2 * g + 2, "app_open", "app", customer_id="c1", device_id="d1"),  # another stream (3)
    ]
    assert changes(events, segment="engaged") == [("engaged", "entered", 2 * g + 2)]
    # email/crm and consent events are in no session
    no_session = [
        page("e1", T0),
        ev("e2", T0 + 2 * HOUR, "email_open", "email", customer_id="c1"),
        ev("e3", T0 + 4 * HOUR, "consent_update", payload={"purpose": "marketing", "granted": True}, **C1),
    ]
    assert changes(no_session, segment="engaged") == []


def test_engagement_as_it_stands_follows_the_journeys_formula() -> None:
    s = T0
    events = [
        page("e1", s),  # 1
        ev("e2", s + MIN, "product_view", payload={"product_id": "p1", "dwell_ms": 65_000}, **C1),  # 2 + 2 (dwell)
        ev("e3", s + 2 * MIN, "search", payload={"query": "x"}, **C1),  # 2
        add("e4", s + 3 * MIN),  # 5
        ev("e5", s + 4 * MIN, "checkout_started", payload={"cart_id": "cart-1"}, **C1),  # 10
        buy("e6", s + 5 * MIN, 10.0),  # 20
    ]
    rules = [rule("a", "engagement_7d >= 22"), rule("b", "engagement_7d >= 42"), rule("c", "engagement_7d >= 43")]
    assert changes(events, rules) == [("a", "entered", 4 * MIN), ("b", "entered", 5 * MIN)]
    # the session moves to the previous week exactly 7 days after its start
    later = events + [tail(s + 8 * DAY)]
    prev = [rule("p", "engagement_prev_7d == 42 && engagement_7d == 0")]
    assert changes(later, prev) == [("p", "entered", 7 * DAY)]


def test_at_risk_enters_and_leaves_by_time_alone() -> None:
    a = [page(f"a{i}", T0 + i * MIN) for i in range(10)]  # session A: engagement 10
    b0 = T0 + 7 * DAY + HOUR
    b = [page(f"b{i}", b0 + i * MIN) for i in range(5)]  # session B: engagement 5
    events = a + b + [tail(T0 + 30 * DAY)]
    # at B's start + 7 d: prev2 = A (10) > prev = B (5) > this week (0); left when A leaves prev2
    assert changes(events, segment="at_risk", consent_defaults=GRANTED) == [
        ("at_risk", "entered", 14 * DAY + HOUR),
        ("at_risk", "exited", 21 * DAY),
    ]
    # a session this week with engagement 5 or more keeps it out
    c = [page(f"c{i}", T0 + 14 * DAY + 2 * HOUR + i * MIN) for i in range(5)]
    assert changes(a + b + c + [tail(T0 + 30 * DAY)], segment="at_risk", consent_defaults=GRANTED) == [
        ("at_risk", "entered", 14 * DAY + HOUR),
        ("at_risk", "exited", 14 * DAY + 2 * HOUR + 4 * MIN),
    ]


def test_cart_abandoner_enters_at_the_deadline_and_leaves_7_days_later() -> None:
    d = T0 + 30 * MIN
    events = [add("e1", T0), tail(T0 + 10 * DAY)]  # no consent: suppressed, still an abandonment
    assert journey_truth(events).triggers[0]["suppressed"] is True
    assert changes(events, segment="cart_abandoner", consent_defaults=GRANTED) == [
        ("cart_abandoner", "entered", 30 * MIN),
        ("cart_abandoner", "exited", 30 * MIN + 7 * DAY),
    ]
    # a purchase at exactly the deadline completes the cart: nothing abandoned
    bought = [add("e1", T0), ev("e2", d, "purchase", payload={"cart_id": "cart-1", "total": 10.0}, **C1)]
    assert changes(bought + [tail(T0 + 10 * DAY)], segment="cart_abandoner", consent_defaults=GRANTED) == []


def test_abandonment_is_evaluated_after_the_events_at_its_deadline() -> None:
    d = T0 + 30 * MIN
    app = ev("e2", d, "app_open", "app", customer_id="c1", device_id="d1")  # a second session, at the deadline
    rules = SHIPPED + [rule("two_sessions", "sessions_7d >= 2")]
    got = changes([add("e1", T0), app], rules, consent_defaults=GRANTED)
    # in one evaluation rule-name order would put cart_abandoner first: the event came before the cart's decision
    assert got == [("two_sessions", "entered", 30 * MIN), ("cart_abandoner", "entered", 30 * MIN)]


def test_new_customer_only_the_first_purchase_counts() -> None:
    events = [buy("e1", T0, 20.0), buy("e2", T0 + 10 * DAY, 20.0), tail(T0 + 45 * DAY)]
    assert changes(events, segment="new_customer") == [
        ("new_customer", "entered", 0),
        ("new_customer", "exited", 30 * DAY),
    ]


def test_lapsed_seven_days_after_the_latest_event() -> None:
    events = [
        ev("e1", T0, "store_purchase", "pos", {"order_id": "o1", "total": 40.0}, loyalty_id="L1", customer_id="c1"),
        page("e2", T0 + 2 * HOUR),
        # any event makes active: these two in no session (so no session-start instant at day 10)
        ev("e3", T0 + 3 * DAY, "email_click", "email", customer_id="c1"),
        ev("e4", T0 + 12 * DAY, "email_open", "email", customer_id="c1"),
        tail(T0 + 25 * DAY),
    ]
    assert changes(events, segment="lapsed", person="cookie_id:k1", consent_defaults=GRANTED) == [
        ("lapsed", "entered", 10 * DAY),
        ("lapsed", "exited", 12 * DAY),
        ("lapsed", "entered", 19 * DAY),
    ]
    # no purchase, no lapse
    assert changes([page("e1", T0), tail(T0 + 25 * DAY)], segment="lapsed", consent_defaults=GRANTED) == []


# ---------------------------------------------------------------------- rules at run time, input handling


def test_a_disabled_rule_evaluates_nothing() -> None:
    events = [buy("e1", T0, 350.0), tail(T0 + 10 * DAY)]
    rules = [dict(r, enabled=r["name"] != "high_value") for r in SHIPPED]
    truth = segment_replay(events, rules)
    assert [c for c in truth.changes if c["segment"] == "high_value"] == []
    assert "high_value" not in truth.rule_errors
    assert [c["segment"] for c in truth.changes if c["person"] == P1][:1] == ["new_customer"]
    assert segment_replay(events, [dict(SHIPPED[0], enabled=False)]).evaluations == 0


def test_a_failing_rule_keeps_the_membership_and_is_counted() -> None:
    rules = [rule("div", "10 / (3 - purchases) > 0", version=4)]  # division by zero at 3 purchases
    events = [page("e0", T0)] + [buy(f"e{i}", T0 + i * HOUR, 1.0) for i in range(1, 5)]
    truth = segment_replay(events, rules)
    assert [(c["change"], c["at"] - T0, c["rule_version"]) for c in truth.changes] == [
        ("entered", 0, 4),
        ("exited", 4 * HOUR, 4),  # at 3 purchases: an error, still a member
    ]
    assert truth.rule_errors == {"div": 1}


def test_person_key_is_the_smallest_node_of_the_final_component() -> None:
    events = [
        buy("e1", T0, 350.0, email_hash="zz-mail"),  # anonymous so far: "email_hash:zz-mail"
        page("e2", T0 + DAY, email_hash="zz-mail", cookie_id="k9"),  # a later link
        tail(T0 + 3 * DAY),
    ]
    out = segment_truth(events, SHIPPED, consent_defaults=GRANTED)
    assert {c["person"] for c in out if c["segment"] == "high_value"} == {"cookie_id:k9"}
    # a late event is not applied but still links
    late = segment_truth(events, [rule("any", "active_7d")], late_event_ids={"e2"})
    assert [(c["person"], c["at"] - T0) for c in late] == [("cookie_id:k9", 0), ("cookie_id:zz-tail", 3 * DAY)]


def test_late_events_are_not_applied_and_duplicates_count_once() -> None:
    events = [buy("e1", T0, 350.0), tail(T0 + DAY)]
    assert changes(events, late_event_ids={"e1"}, consent_defaults=GRANTED) == []
    twice = [buy("e1", T0, 200.0), buy("e1", T0, 200.0), buy("e2", T0 + HOUR, 50.0)]
    assert changes(twice, segment="high_value", consent_defaults=GRANTED) == []
    thrice = list(reversed(twice + [buy("e3", T0 + 2 * HOUR, 51.0)]))
    assert changes(thrice, segment="high_value", consent_defaults=GRANTED) == [("high_value", "entered", 2 * HOUR)]


def test_no_events_no_changes() -> None:
    assert segment_truth([], SHIPPED) == []
    assert segment_truth([page("e1", T0, cookie_id="unknown")], SHIPPED) == []  # a blocked value: no person


# ---------------------------------------------------------------------- consent per purpose


def test_consent_opt_out_makes_a_member_leave_at_its_time() -> None:
    rules = [
        rule("buyer_m", "purchases >= 1", purpose="marketing"),
        rule("buyer_p", "purchases >= 1", purpose="personalization"),
    ]
    events = [
        consent("c0", T0, "marketing", True),
        buy("e1", T0 + HOUR, 5.0),
        consent("c2", T0 + DAY, "marketing", False),
    ]
    assert changes(events, rules) == [
        ("buyer_m", "entered", HOUR),
        ("buyer_p", "entered", HOUR),
        ("buyer_m", "exited", DAY),  # the other purpose's rule stays
    ]
    # an opt-out of another purpose changes nothing
    other = [buy("e1", T0, 5.0), consent("c2", T0 + DAY, "analytics", False)]
    assert changes(other, rules[1:]) == [("buyer_p", "entered", 0)]


def test_consent_opt_in_enters_at_its_time_when_the_expression_holds() -> None:
    rules = [rule("one", "purchases >= 1", purpose="marketing"), rule("two", "purchases >= 2", purpose="marketing")]
    events = [buy("e1", T0, 5.0), consent("c2", T0 + DAY, "marketing", True), buy("e3", T0 + 2 * DAY, 5.0)]
    assert changes(events, rules) == [("one", "entered", DAY), ("two", "entered", 2 * DAY)]
    # an opt-in while the expression is false enters nothing
    assert changes([page("e0", T0), consent("c1", T0 + DAY, "marketing", True)], rules) == []


def test_marketing_is_denied_by_default() -> None:
    assert CONSENT_DEFAULTS == {"personalization": True, "analytics": True, "marketing": False}
    rules = [
        rule("buyer_a", "purchases >= 1"),
        rule("buyer_m", "purchases >= 1", purpose="marketing"),
        rule("buyer_p", "purchases >= 1", purpose="personalization"),
    ]
    events = [buy("e1", T0, 350.0), tail(T0 + 40 * DAY)]
    assert changes(events, rules) == [("buyer_a", "entered", 0), ("buyer_p", "entered", 0)]
    # the shipped marketing rules never enter without a record: only new_customer (personalization)
    assert changes(events) == [("new_customer", "entered", 0), ("new_customer", "exited", 30 * DAY)]
    # consent records for other purposes or other persons do not count
    others = [consent("c0", T0 - DAY, "analytics", True), consent("c1", T0 - DAY, "marketing", True, cookie_id="k2")]
    assert changes(others + events, rules[1:2]) == []


def test_consent_defaults_override() -> None:
    rules = [
        rule("buyer_m", "purchases >= 1", purpose="marketing"),
        rule("buyer_p", "purchases >= 1", purpose="personalization"),
    ]
    events = [buy("e1", T0, 5.0)]
    assert changes(events, rules, consent_defaults={"marketing": True}) == [
        ("buyer_m", "entered", 0),
        ("buyer_p", "entered", 0),
    ]
    # a purpose not given keeps its CONSENT_DEFAULTS value (marketing denied)
    assert changes(events, rules, consent_defaults={"personalization": False}) == []
    # a record beats the default
    opt_in = [consent("c0", T0 + HOUR, "personalization", True)]
    assert changes(events + opt_in, rules, consent_defaults={"personalization": False}) == [
        ("buyer_p", "entered", HOUR)
    ]
    opt_out = [consent("c0", T0 + HOUR, "marketing", False)]
    assert changes(events + opt_out, rules, consent_defaults=GRANTED) == [
        ("buyer_m", "entered", 0),
        ("buyer_p", "entered", 0),
        ("buyer_m", "exited", HOUR),
    ]
    for bad in ({"sales": True}, {"marketing": "yes"}):
        with pytest.raises(ValueError, match="consent default"):
            segment_truth(events, rules, consent_defaults=bad)


def test_a_late_consent_update_changes_nothing() -> None:
    rules = [rule("buyer_m", "purchases >= 1", purpose="marketing")]
    granted = [consent("c0", T0, "marketing", True), buy("e1", T0 + HOUR, 5.0)]
    opt_out = consent("c2", T0 + DAY, "marketing", False)
    assert changes(granted + [opt_out], rules) == [("buyer_m", "entered", HOUR), ("buyer_m", "exited", DAY)]
    assert changes(granted + [opt_out], rules, late_event_ids={"c2"}) == [("buyer_m", "entered", HOUR)]
    # a late opt-in neither: the entry stays withheld
    truth = segment_replay(granted + [opt_out, page("e3", T0 + 2 * DAY)], rules, late_event_ids={"c0"})
    assert truth.changes == [] and truth.withheld["marketing"] == 1


def test_consent_ties_at_one_occurred_at_are_broken_by_event_id() -> None:
    rules = [rule("buyer_m", "purchases >= 1", purpose="marketing")]
    d = T0 + DAY
    # two records at one time, in any input order: the greater event_id decides
    denied = [buy("e1", T0, 5.0), consent("c2", d, "marketing", False), consent("c1", d, "marketing", True)]
    assert changes(denied, rules, consent_defaults=GRANTED) == [("buyer_m", "entered", 0), ("buyer_m", "exited", DAY)]
    assert changes(denied[::-1], rules, consent_defaults=GRANTED) == [
        ("buyer_m", "entered", 0),
        ("buyer_m", "exited", DAY),
    ]
    granted = [buy("e1", T0, 5.0), consent("c1", d, "marketing", False), consent("c2", d, "marketing", True)]
    # the greater event_id is applied last: it leaves the person consented (after an exit at d)
    assert changes(granted, rules, consent_defaults=GRANTED)[-1] == ("buyer_m", "entered", DAY)
    assert changes(granted, rules) == [("buyer_m", "entered", DAY)]


def test_consent_at_an_evaluation_is_what_the_events_applied_so_far_say() -> None:
    """Every applied event is evaluated after it, with the consent records applied up to it:
    two records at one time decide one after the other (as the journeys stage applies them)."""
    rules = [rule("buyer_m", "purchases >= 1", purpose="marketing")]
    d = T0 + DAY
    # member; at d a record denying (c1) then one granting (c2): an exit and a re-entry at d
    flip = [buy("e1", T0, 5.0), consent("c1", d, "marketing", False), consent("c2", d, "marketing", True)]
    assert changes(flip, rules, consent_defaults=GRANTED) == [
        ("buyer_m", "entered", 0),
        ("buyer_m", "exited", DAY),
        ("buyer_m", "entered", DAY),
    ]
    # a purchase ("a1") then an opt-out ("c9") at one time: entered by the purchase, left by the opt-out
    truth = segment_replay([buy("a1", T0, 5.0), consent("c9", T0, "marketing", False)], rules, consent_defaults=GRANTED)
    assert [(c["change"], c["at"]) for c in truth.changes] == [("entered", T0), ("exited", T0)]
    assert truth.withheld["marketing"] == 1


def test_withheld_entries_are_counted_once_per_stretch() -> None:
    rules = [rule("recent_m", "purchases_7d >= 1", purpose="marketing"), rule("recent_a", "purchases_7d >= 1")]
    assert segment_replay([], rules).withheld == {"personalization": 0, "marketing": 0, "analytics": 0}
    events = [
        buy("e1", T0, 5.0),  # true without consent: withheld (1)
        page("e2", T0 + HOUR),  # still true, still withheld: not counted again
        buy("e3", T0 + 2 * DAY, 5.0),  # likewise
        # false at day 9 (7 days after e3, time only): the flag is cleared
        buy("e4", T0 + 12 * DAY, 5.0),  # true again: withheld (2)
        tail(T0 + 30 * DAY),
    ]
    truth = segment_replay(events, rules)
    assert truth.withheld == {"personalization": 0, "marketing": 2, "analytics": 0}
    assert [(c["segment"], c["change"]) for c in truth.changes if c["person"] == P1] == [
        ("recent_a", "entered"),
        ("recent_a", "exited"),
        ("recent_a", "entered"),
        ("recent_a", "exited"),
    ]
    # an opt-out that makes a member leave withholds its entry at once; an opt-in clears the flag
    flips = [
        consent("c0", T0 - DAY, "marketing", True),
        buy("e1", T0, 5.0),
        consent("c1", T0 + HOUR, "marketing", False),  # leaves: withheld (1)
        page("e2", T0 + 2 * HOUR),  # not counted again
        consent("c3", T0 + 3 * HOUR, "marketing", True),  # enters: cleared
        consent("c4", T0 + 4 * HOUR, "marketing", False),  # leaves: withheld (2)
    ]
    truth = segment_replay(flips, rules[:1])
    assert [(c["change"], c["at"] - T0) for c in truth.changes] == [
        ("entered", 0),
        ("exited", HOUR),
        ("entered", 3 * HOUR),
        ("exited", 4 * HOUR),
    ]
    assert truth.withheld == {"personalization": 0, "marketing": 2, "analytics": 0}


# ---------------------------------------------------------------------- a generated data set


def _features_at_end(events: list[dict], person_of: dict[str, str], end: int) -> dict[str, dict[str, Any]]:
    """Every feature at the end of event time, from scratch: the journeys oracle's final sessions
    and abandonments, the events' purchases (an independent check of the oracle's instants)."""
    jt = journey_truth(events)
    f: dict[str, dict[str, Any]] = {}
    for p in set(person_of.values()):
        f[p] = {k: t() for k, t in FEATURES.items()}
        f[p].update(_purchases=[], _latest=None)
    for e in sorted(events, key=lambda e: (e["occurred_at"], e["event_id"])):
        ids = identifiers_of(e)
        if not ids:
            continue
        p = person_of[stream_name(ids[0])]
        f[p]["_latest"] = e["occurred_at"]
        if e["event_type"] in PURCHASE_TYPES:
            f[p]["_purchases"].append((e["occurred_at"], round(e["payload"][1]["total"] * 100)))

    def within(t: int, w: int) -> bool:
        return end - w < t <= end

    for s in jt.sessions:
        x = f[person_of[s["stream"]]]
        x["sessions_7d"] += within(s["started_at"], 7 * DAY)
        x["engagement_7d"] += s["engagement"] if within(s["started_at"], 7 * DAY) else 0
        x["engagement_prev_7d"] += s["engagement"] if within(s["started_at"] + 7 * DAY, 7 * DAY) else 0
        x["engagement_prev2_7d"] += s["engagement"] if within(s["started_at"] + 14 * DAY, 7 * DAY) else 0
    for t in jt.triggers:
        if t["kind"] == "cart_abandoned":
            f[person_of[t["stream"]]]["carts_abandoned_7d"] += within(t["fired_at"], 7 * DAY)
    for x in f.values():
        ps = x.pop("_purchases")
        latest = x.pop("_latest")
        x["lifetime_value"] = sum(c for _, c in ps) / 100
        x["purchases"] = len(ps)
        x["purchases_7d"] = sum(within(t, 7 * DAY) for t, _ in ps)
        x["purchases_30d"] = sum(within(t, 30 * DAY) for t, _ in ps)
        x["first_purchase_30d"] = bool(ps) and within(ps[0][0], 30 * DAY)
        x["active_7d"] = within(latest, 7 * DAY)
        x["active_30d"] = within(latest, 30 * DAY)
    return f


def test_generated_data_set_sanity() -> None:
    from tests.journeys_harness import generated_events

    events = generated_events(seed=7, persons=60)
    rules = load_rules(SHIPPED_FILE)
    started = time.perf_counter()
    truth = segment_replay(events, rules)
    assert time.perf_counter() - started < 20
    end = max(e["occurred_at"] for e in events)
    by_name = {r["name"]: r for r in rules}

    # every person's changes alternate entered/left per segment, starting with entered, in time order
    last: dict[tuple[str, str], str] = {}
    at: dict[str, int] = {}
    persons: list[str] = []
    for c in truth.changes:
        if not persons or persons[-1] != c["person"]:
            assert c["person"] not in persons, "grouped by person"
            persons.append(c["person"])
        key = (c["person"], c["segment"])
        assert c["change"] == ("exited" if last.get(key) == "entered" else "entered")
        last[key] = c["change"]
        assert at.get(c["person"], 0) <= c["at"] <= end
        at[c["person"]] = c["at"]
        assert (c["rule_version"], c["purpose"]) == (by_name[c["segment"]]["version"], by_name[c["segment"]]["purpose"])
    assert persons == sorted(persons)
    assert truth.rule_errors == {r["name"]: 0 for r in rules}
    assert {c["segment"] for c in truth.changes} >= {"high_value", "engaged", "cart_abandoner", "new_customer"}
    assert {c["change"] for c in truth.changes} == {"entered", "exited"}

    # the person key: the smallest node of the final component
    people = _People()
    for e in events:
        if identifiers_of(e):
            people.link(identifiers_of(e))
    person_of = {
        stream_name(n): min(stream_name(m) for m in members) for members in people.members.values() for n in members
    }
    assert set(persons) <= set(person_of.values())

    # the oracle's sessions are the journeys oracle's
    jt = journey_truth(events)
    mine = sorted((s["stream"], s["started_at"], s["engagement"], s["person"]) for s in truth.sessions)
    theirs = sorted((s["stream"], s["started_at"], s["engagement"], person_of[s["stream"]]) for s in jt.sessions)
    assert mine == theirs

    # the final memberships are the rules evaluated at the end of event time from scratch, and
    # the consent then: each person's last consent_update per purpose, else the default
    features = _features_at_end(events, person_of, end)
    consent: dict[tuple[str, str], bool] = {}
    for e in sorted(events, key=lambda e: (e["occurred_at"], e["event_id"])):
        if e["event_type"] == "consent_update" and identifiers_of(e):
            consent[(person_of[stream_name(identifiers_of(e)[0])], e["payload"][1]["purpose"])] = e["payload"][1][
                "granted"
            ]
    assert {v for v in consent.values()} == {True, False}  # the data set has opt-ins and opt-outs
    members = {key for key, change in last.items() if change == "entered"}
    for r in rules:
        program = cel.compile(r["expression"])
        expected = {
            (p, r["name"])
            for p, x in features.items()
            if program.execute(x) and consent.get((p, r["purpose"]), CONSENT_DEFAULTS[r["purpose"]])
        }
        assert {m for m in members if m[1] == r["name"]} == expected, r["name"]
    assert set(truth.withheld) == set(PURPOSES) and truth.withheld["marketing"] > 0
