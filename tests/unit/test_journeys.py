"""The journeys stage's pure logic (models/journeys.py): sessions, carts, triggers, lateness, moves."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from models.journeys import (
    CartOut,
    Fact,
    Journey,
    JourneySettings,
    JourneyState,
    LateOut,
    SessionOut,
    TriggerOut,
    session_id,
    state_of_record,
    state_record,
)
from state.records import JOURNEY_STATE_CODEC

S = JourneySettings()
MIN = 60_000
CK = ("cookie_id", "ck1")
CUST = ("customer_id", "c1")
END = 10**13  # far beyond every due time


def fact(eid: str, at: int, kind: str, stream=CK, atom=None, ids=None, **kw) -> Fact:
    """An event of the logged-in customer c1 (``ids``: its identifiers as node keys)."""
    channel = kw.pop("channel", "web")
    if ids is None:
        ids = ("customer_id:c1",) + ((f"{stream[0]}:{stream[1]}",) if stream else ())
    return Fact(eid, at, kind, channel, stream, atom or stream or CUST, tuple(ids), **kw)


def add(eid, at, cart="c1", product="sku-1", qty=1, price=1000, **kw):
    return fact(eid, at, "add_to_cart", cart_id=cart, product_id=product, quantity=qty, price_cents=price, **kw)


def consent(eid, at, granted=True, stream=None):
    return fact(eid, at, "consent_update", stream=stream, atom=CUST, purpose="marketing", granted=granted)


def run(facts, bound=0, journey=None):
    """Feed ``facts`` in the given arrival order with a watermark ``max seen - bound - 1``."""
    j = journey or Journey("p-1", JourneyState(), S)
    outs = []
    seen = None
    for f in facts:
        w = -(2**63) if seen is None else seen - bound - 1
        outs += j.on_event(f, w)
        seen = f.at if seen is None else max(seen, f.at)
        outs += j.advance(seen - bound - 1)
    outs += j.advance(END)
    return j, outs


def triggers(outs, published_only=False):
    return [o.trigger for o in outs if isinstance(o, TriggerOut) and (o.published or not published_only)]


def kinds(outs):
    return [(t["kind"], t["suppressed"]) for t in triggers(outs)]


def sessions(outs):
    final = {}
    for o in outs:
        if isinstance(o, SessionOut):
            final[o.session["session_id"]] = o.session
    return final


def test_cart_without_purchase_within_30_min_is_abandoned_once_with_items_value_and_action():
    _, outs = run([consent("c", 0), add("a1", 1000, qty=2, price=1250), add("a2", 2000, product="sku-2")])
    (t,) = triggers(outs)
    assert (t["kind"], t["fired_at"], t["value"], t["suppressed"]) == ("cart_abandoned", 2000 + 30 * MIN, 35.0, False)
    assert t["items"] == [
        {"product_id": "sku-1", "quantity": 2, "unit_price": 12.5},
        {"product_id": "sku-2", "quantity": 1, "unit_price": 10.0},
    ]
    assert (t["engagement"], t["action"]) == (10, "reminder")  # two cart adds: 5 + 5


def test_purchase_at_exactly_the_deadline_completes_the_cart():
    _, outs = run([consent("c", 0), add("a", 0), fact("p", 30 * MIN, "purchase", cart_id="c1", total_cents=1000)])
    assert triggers(outs) == []
    rows = [o.row for o in outs if isinstance(o, CartOut) and o.row]
    assert rows[-1]["status"] == "purchased"


def test_purchase_one_ms_after_the_deadline_is_a_recovery():
    _, outs = run([consent("c", 0), add("a", 0), fact("p", 30 * MIN + 1, "purchase", cart_id="c1", total_cents=1000)])
    assert kinds(outs) == [("cart_abandoned", False), ("cart_recovered", False)]
    rec = triggers(outs)[1]
    assert (rec["time_to_recovery_ms"], rec["message_opened"]) == (1, False)


def test_emptied_cart_is_never_abandoned_and_checkout_completes_a_cart():
    emptied = [add("a", 0), fact("r", 1000, "remove_from_cart", cart_id="c1", product_id="sku-1", quantity=1)]
    _, outs = run([consent("c", 0), *emptied])
    assert triggers(outs) == []
    _, outs = run([consent("c", 0), add("a", 0, cart="c2"), fact("k", 5 * MIN, "checkout_started", cart_id="c2")])
    assert triggers(outs) == []


def test_later_adds_to_an_abandoned_cart_do_not_abandon_it_again():
    _, outs = run([consent("c", 0), add("a", 0), add("b", 40 * MIN)])
    assert kinds(outs) == [("cart_abandoned", False)]


def test_open_without_purchase_within_t2_escalates_exactly_once_with_a_stronger_action():
    deadline = 30 * MIN
    opened = fact("o", deadline + 5 * MIN, "email_open", stream=None, atom=("email_hash", "e"), channel="email")
    second = fact("o2", deadline + 6 * MIN, "email_click", stream=None, atom=("email_hash", "e"), channel="email")
    _, outs = run([consent("c", 0), add("a", 0), opened, second])
    assert kinds(outs) == [("cart_abandoned", False), ("cart_abandoned_escalation", False)]
    esc = triggers(outs)[1]
    assert (esc["fired_at"], esc["action"]) == (deadline + 5 * MIN + S.escalation_timeout_ms, "offer")


def test_purchase_after_an_opened_reminder_recovers_without_escalation():
    opened = fact("o", 40 * MIN, "push_open", stream=("device_id", "d"), channel="app")
    buy = fact("p", 50 * MIN, "purchase", cart_id="c1", total_cents=1000)
    _, outs = run([consent("c", 0), add("a", 0), opened, buy])
    assert kinds(outs) == [("cart_abandoned", False), ("cart_recovered", False)]
    assert triggers(outs)[1]["message_opened"] is True


def test_without_marketing_consent_triggers_are_suppressed_and_never_escalated():
    opened = fact("o", 40 * MIN, "email_open", stream=None, channel="email")
    _, outs = run([add("a", 0), opened])
    assert kinds(outs) == [("cart_abandoned", True)]
    assert triggers(outs)[0]["suppression_reason"] == "no_marketing_consent"
    _, outs = run([consent("c", 0, granted=False), add("a", 0)])
    assert kinds(outs) == [("cart_abandoned", True)]


def test_consent_revoked_before_the_deadline_suppresses_and_a_tie_goes_to_the_greater_event_id():
    _, outs = run([consent("c1", 0), add("a", 0), consent("c2", 10 * MIN, granted=False)])
    assert kinds(outs) == [("cart_abandoned", True)]
    _, outs = run([consent("b", 5, granted=False), consent("a", 5), add("x", 10)])  # "b" > "a": denied
    assert kinds(outs) == [("cart_abandoned", True)]


def test_high_intent_fires_once_per_product_per_session_for_dwell_or_repeated_views():
    def view(eid, at, product="sku-1", dwell=1000):
        return fact(eid, at, "product_view", product_id=product, dwell_ms=dwell)

    _, outs = run(
        [consent("c", 0), view("v1", 1), view("v2", 2), view("v3", 3), view("v4", 4), view("w", 5, "sku-2", 31_000)]
    )
    got = [(t["product_id"], t["reason"], t["fired_at"]) for t in triggers(outs)]
    assert got == [("sku-1", "views", 3), ("sku-2", "dwell", 5)]
    _, outs = run([consent("c", 0), view("v1", 1), view("v2", 2), view("v3", 31 * MIN + 3)])  # two sessions
    assert triggers(outs) == []


def test_a_gap_of_exactly_30_min_continues_the_session_and_one_ms_more_starts_a_new_one():
    _, outs = run([fact("a", 0, "page_view"), fact("b", 30 * MIN, "page_view"), fact("c", 60 * MIN + 1, "page_view")])
    got = sorted((s["started_at"], s["ended_at"], s["events"]) for s in sessions(outs).values())
    assert got == [(0, 30 * MIN, 2), (60 * MIN + 1, 60 * MIN + 1, 1)]
    assert set(sessions(outs)) == {session_id("cookie_id:ck1", 0), session_id("cookie_id:ck1", 60 * MIN + 1)}


def test_sessions_are_per_device_stream():
    app = fact("b", 10, "app_open", stream=("device_id", "d1"), channel="app")
    _, outs = run([fact("a", 0, "page_view"), app])
    assert sorted(s["stream"] for s in sessions(outs).values()) == ["cookie_id:ck1", "device_id:d1"]


def test_session_summary_counts_and_engagement():
    evs = [
        fact("a", 0, "page_view", referrer="https://m.example/?utm_campaign=x", campaign="x"),
        fact("b", 1000, "product_view", product_id="p", dwell_ms=65_000),
        fact("c", 2000, "search"),
        add("d", 3000),
        fact("e", 4000, "checkout_started", cart_id="c1"),
        fact("f", 5000, "purchase", cart_id="c1", total_cents=1999),
    ]
    _, outs = run(evs)
    (s,) = sessions(outs).values()
    assert (s["events"], s["duration_ms"], s["revenue"], s["first_campaign"], s["version"]) == (6, 5000, 19.99, "x", 1)
    assert s["engagement"] == 1 + 2 + 2 + 5 + 10 + 20 + 2  # dwell 65 s: 2 points


def test_a_late_event_within_the_lateness_updates_the_closed_session_with_a_higher_version():
    j = Journey("p-1", JourneyState(), S)
    j.on_event(fact("a", 0, "page_view"), -1)
    w = 50 * MIN  # the session closed at 30 min; it is retained until 30 min + 1 h
    assert [o.session["version"] for o in j.advance(w) if isinstance(o, SessionOut)] == [1]
    late = j.on_event(fact("b", 10 * MIN, "page_view"), w)
    assert [(o.session["version"], o.session["events"]) for o in late if isinstance(o, SessionOut)] == [(2, 2)]
    dropped = j.on_event(fact("c", 5, "page_view"), w + 10 * 3600_000)
    assert [type(o) for o in dropped] == [LateOut]
    assert dropped[0].record["reason"] == "beyond_allowed_lateness"


def test_every_state_and_timer_is_gone_once_carts_and_sessions_are_over():
    j, _ = run([consent("c", 0), add("a", 0), fact("o", 40 * MIN, "email_open", stream=None, channel="email")])
    assert j.state.buffer == [] and j.state.sessions == [] and j.state.carts == []
    assert j.next_due() is None  # no timer left behind (consent and recent scores are person-level)


def test_a_cart_started_anonymously_and_bought_after_login_is_purchased_not_abandoned():
    """Cookie profile C merges into P while C's cart timer is pending; P holds its decisions
    until C's part arrived, then sees one cart, bought."""
    s = S
    c = Journey("p-c", JourneyState(), s)
    c.on_event(add("a", 0, atom=CK, ids=("cookie_id:ck1",)), -(2**63))
    c.advance(1000)
    p = Journey("p-p", JourneyState(), s)
    p.on_event(consent("g", 0), -(2**63))
    p.advance(1000)
    p.expect({"cookie_id:ck1": 1})  # the login's command to the survivor
    p.on_event(fact("login", 5 * MIN, "identify", atom=CUST), 2000)
    buy = fact("b", 10 * MIN, "purchase", atom=CUST, cart_id="c1", total_cents=1000)
    p.on_event(buy, 2000)
    assert p.advance(END) == []  # held: nothing decided from half a person
    parts, deletions = c.split_off([CK], everything=True)
    assert c.state.is_empty() and [d.row for d in deletions] == [None]
    ((node, part),) = parts
    outs = p.absorb(node, JOURNEY_STATE_CODEC.decode(JOURNEY_STATE_CODEC.encode(part)))
    outs += p.advance(END)
    assert triggers(outs) == []
    assert [o.row["status"] for o in outs if isinstance(o, CartOut)][-1] == "purchased"


def test_a_merge_while_a_timer_is_pending_fires_one_trigger_in_the_surviving_profile():
    c = Journey("p-c", JourneyState(), S)
    c.on_event(add("a", 0, atom=CK, ids=("cookie_id:ck1",)), -(2**63))
    c.advance(1000)
    p = Journey("p-p", JourneyState(), S)
    p.on_event(consent("g", 0), -(2**63))
    p.expect({"cookie_id:ck1": 1})
    p.on_event(fact("login", 5 * MIN, "identify", atom=CUST), 1000)
    parts, _ = c.split_off([CK], everything=True)
    assert c.advance(END) == []  # the cookie profile's timer finds nothing
    outs = p.absorb(*parts[0]) + p.advance(END)
    assert [(t["kind"], t["profile_id"], t["suppressed"]) for t in triggers(outs)] == [("cart_abandoned", "p-p", False)]


def test_consent_counts_only_from_when_identity_linked_the_cart_to_the_person():
    """Identity as of event time: a cart abandoned on a cookie before its login is anonymous
    at its deadline (no consent), even though the login that merged it came first in processing."""
    anon = add("a", 0, atom=CK, ids=("cookie_id:ck1",))
    login = fact("login", 45 * MIN, "identify")  # after the 30 min deadline
    _, outs = run([consent("g", 0), anon, login])
    assert kinds(outs) == [("cart_abandoned", True)]
    _, outs = run([consent("g", 0), anon, fact("login", 20 * MIN, "identify")])  # before it
    assert kinds(outs) == [("cart_abandoned", False)]


def test_a_split_moves_only_what_belongs_to_the_evicted_identifiers():
    j = Journey("p-1", JourneyState(), S)
    for f in (add("a", 0), fact("v", 5, "app_open", stream=("device_id", "d"), channel="app")):
        j.on_event(f, -1)
    j.advance(100)
    parts, _ = j.split_off([("device_id", "d")], everything=False)
    ((node, part),) = parts
    assert [x.stream for x in part.sessions] == ["device_id:d"] and part.carts == []
    assert [x.stream for x in j.state.sessions] == ["cookie_id:ck1"] and len(j.state.carts) == 1


def _journey_facts(rng: random.Random, n: int) -> list[Fact]:
    streams = [CK, ("cookie_id", "ck2"), ("device_id", "d1")]
    out, t = [], 0
    for i in range(n):
        t += rng.choice((1_000, 20_000, 5 * MIN, 29 * MIN, 31 * MIN, 3 * 3600_000))
        stream = rng.choice(streams)
        kind = rng.choice(("page_view", "product_view", "add", "remove", "checkout", "purchase", "open", "consent"))
        eid = f"e{i:04d}"
        cart = f"c{rng.randint(1, 3)}"
        if kind == "add":
            out.append(add(eid, t, cart=cart, product=rng.choice("ab"), stream=stream))
        elif kind == "remove":
            out.append(
                fact(eid, t, "remove_from_cart", stream=stream, cart_id=cart, product_id=rng.choice("ab"), quantity=1)
            )
        elif kind == "checkout":
            out.append(fact(eid, t, "checkout_started", stream=stream, cart_id=cart))
        elif kind == "purchase":
            out.append(fact(eid, t, "purchase", stream=stream, cart_id=cart, total_cents=500))
        elif kind == "open":
            out.append(fact(eid, t, "email_open", stream=None, channel="email"))
        elif kind == "consent":
            out.append(consent(eid, t, granted=rng.random() < 0.7))
        elif kind == "product_view":
            out.append(
                fact(
                    eid,
                    t,
                    "product_view",
                    stream=stream,
                    product_id=rng.choice("ab"),
                    dwell_ms=rng.choice((1000, 40_000)),
                )
            )
        else:
            out.append(fact(eid, t, "page_view", stream=stream))
    return out


def _shuffle_within(facts: list[Fact], bound: int, rng: random.Random) -> list[Fact]:
    """An arrival order in which no event comes after one more than ``bound`` later."""
    keyed = [(f.at + rng.uniform(0, bound), f) for f in facts]
    return [f for _, f in sorted(keyed, key=lambda x: x[0])]


def _result(outs):
    return sorted(map(repr, triggers(outs))), sessions(outs)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.integers(5, 60))
def test_any_arrival_order_within_the_bound_gives_the_same_triggers_and_sessions(seed: int, n: int) -> None:
    rng = random.Random(seed)
    facts = _journey_facts(rng, n)
    bound = 10 * MIN
    _, base = run(facts, bound)
    j, outs = run(_shuffle_within(facts, bound, rng), bound)
    assert _result(outs) == _result(base)
    assert not any(isinstance(o, LateOut) for o in outs)
    # nothing left behind once every cart and session is over: no timer, and of the state only
    # the person's identity history (links and consent by identifier, bounded by their identifiers)
    st = j.state
    assert (st.buffer, st.sessions, st.carts, st.intents, st.opens, st.recent, st.pending) == (
        [],
        [],
        [],
        [],
        [],
        [],
        {},
    )
    assert j.next_due() is None
    assert len(st.links) <= 3 and len(st.consent) <= 1


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 40))
def test_the_state_record_round_trips_whatever_the_state(seed: int, n: int) -> None:
    rng = random.Random(seed)
    j = Journey("p-1", JourneyState(), S)
    facts = _journey_facts(rng, n)
    for f in facts[: n // 2]:
        j.on_event(f, -(2**63))
    j.advance(facts[n // 3].at)
    j.expect({"cookie_id:x": 2})
    assert state_of_record(state_record(j.state)) == j.state
    assert JOURNEY_STATE_CODEC.decode(JOURNEY_STATE_CODEC.encode(j.state)) == j.state


def test_the_profile_consent_view_shows_the_latest_update_and_the_suppressed_triggers_and_moves_with_a_merge():
    """docs/privacy.md: Cassandra profile_consent rows (ConsentOut), versioned by the profile's
    consent writes; a profile merged away deletes its rows above its last write."""
    from models.journeys import ConsentOut

    def views(outs):
        return {
            (o.profile_id, o.purpose): (o.version, o.row and (o.row["granted"], o.row["source"], o.row["suppressed"]))
            for o in outs
            if isinstance(o, ConsentOut)
        }

    c = Journey("p-c", JourneyState(), S)  # a cookie profile: its cart is abandoned without consent
    c.on_event(add("a", 0, atom=CK, ids=("cookie_id:ck1",)), -(2**63))
    outs = c.advance(S.cart_timeout_ms)
    assert views(outs) == {("p-c", "marketing"): (1, (False, "default", 1))}
    p = Journey("p-p", JourneyState(), S)
    optin = fact("g", 0, "consent_update", stream=None, atom=CUST, purpose="analytics", granted=False, channel="crm")
    p.on_event(optin, -(2**63))
    assert views(p.advance(1000)) == {("p-p", "analytics"): (1, (False, "crm", 0))}
    assert p.advance(2000) == []  # nothing changed: nothing written
    p.expect({"cookie_id:ck1": 1})
    parts, deletions = c.split_off([CK], everything=True)
    assert views(deletions) == {("p-c", "marketing"): (2, None)}  # deleted above its write (version 1)
    outs = p.absorb(*parts[0])
    assert views(outs) == {("p-p", "marketing"): (2, (False, "default", 1))}  # the count came along
    assert JOURNEY_STATE_CODEC.decode(JOURNEY_STATE_CODEC.encode(p.state)) == p.state  # the view is state
