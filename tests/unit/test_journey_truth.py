"""The offline journeys oracle (generator/journey_truth.py), rule by rule on hand-made events,
and the generator's planted carts (recoveries, escalations) against it."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any

import pytest

from generator.journey_truth import (
    JourneySettings,
    JourneyTruth,
    ambiguous_trigger_ids,
    journey_truth,
    session_id,
    trigger_id,
)
from generator.synth import Dataset, GroundTruth, generate
from models.avro_codec import SchemaCatalog
from models.ingest import Accepted, Ingestor, IngestSettings, SourceRecord

T0 = 1_790_035_200_000  # 2026-09-22T00:00:00Z
MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
S = JourneySettings()
G, T, T2, R = S.session_gap_ms, S.cart_timeout_ms, S.escalation_timeout_ms, S.recovery_window_ms
ID_TYPES = ("customer_id", "email_hash", "phone_hash", "device_id", "cookie_id", "loyalty_id")
GRANTED = "0-consent"  # sorts before every other event id used here


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


def add(eid: str, t: int, cart: str = "cart-1", product: str = "p1", qty: int = 1, price: float = 10.0, **ids: str):
    ids = ids or {"customer_id": "c1", "cookie_id": "k1"}
    payload = {"cart_id": cart, "product_id": product, "category": "x", "quantity": qty, "unit_price": price}
    return ev(eid, t, "add_to_cart", payload=payload, **ids)


def remove(eid: str, t: int, cart: str = "cart-1", product: str = "p1", qty: int = 1, **ids: str):
    ids = ids or {"customer_id": "c1", "cookie_id": "k1"}
    payload = {"cart_id": cart, "product_id": product, "category": "x", "quantity": qty, "unit_price": 0.0}
    return ev(eid, t, "remove_from_cart", payload=payload, **ids)


def checkout(eid: str, t: int, cart: str = "cart-1", **ids: str):
    ids = ids or {"customer_id": "c1", "cookie_id": "k1"}
    return ev(eid, t, "checkout_started", payload={"cart_id": cart, "cart_value": 0.0, "items": 1}, **ids)


def purchase(eid: str, t: int, cart: str | None = "cart-1", total: float = 10.0, channel: str = "web", **ids: str):
    ids = ids or {"customer_id": "c1", "cookie_id": "k1"}
    typ = "purchase" if cart else "store_purchase"
    payload: dict[str, Any] = {
        "order_id": "o-" + eid,
        "cart_id": cart,
        "currency": "USD",
        "total": total,
        "items": [],
        "store_id": None,
    }
    return ev(eid, t, typ, channel, payload, **ids)


def view(eid: str, t: int, product: str = "p1", dwell: int = 1_000, **ids: str):
    ids = ids or {"customer_id": "c1", "cookie_id": "k1"}
    payload = {"product_id": product, "category": "x", "price": 1.0, "dwell_ms": dwell}
    return ev(eid, t, "product_view", payload=payload, **ids)


def page(eid: str, t: int, url: str = "https://shop.example/", referrer: str | None = None, **ids: str):
    ids = ids or {"customer_id": "c1", "cookie_id": "k1"}
    return ev(eid, t, "page_view", payload={"url": url, "referrer": referrer, "title": "x"}, **ids)


def consent(eid: str, t: int, granted: bool = True, purpose: str = "marketing", **ids: str):
    ids = ids or {"customer_id": "c1"}
    return ev(eid, t, "consent_update", payload={"purpose": purpose, "granted": granted}, **ids)


def email_open(eid: str, t: int, email: str = "e1", typ: str = "email_open"):
    payload = {"campaign_id": "cmp", "message_id": "m-" + eid, "link_url": None}
    return ev(eid, t, typ, "email", payload, email_hash=email)


def identify(eid: str, t: int, **ids: str):
    return ev(eid, t, "identify", payload={"method": "login"}, **ids)


def tick(t: int, eid: str = "zz-tick") -> dict:
    """An unrelated visitor's event: event time reaches ``t``."""
    return page(eid, t, cookie_id="someone-else")


def known(t: int = T0 - DAY, granted: bool | None = True) -> list[dict]:
    """Customer c1 with email e1 and cookie k1 linked, and (maybe) marketing consent, a day before T0."""
    out = [identify("0-identify", t, customer_id="c1", email_hash="e1", cookie_id="k1")]
    if granted is not None:
        out.append(consent(GRANTED, t + MIN, granted))
    return out


def of_kind(jt: JourneyTruth, kind: str) -> list[dict]:
    return [t for t in jt.triggers if t["kind"] == kind]


def cart(jt: JourneyTruth, cart_id: str = "cart-1") -> dict:
    return next(c for c in jt.carts if c["cart_id"] == cart_id)


# ----------------------------------------------------------------------------- sessions


def test_a_gap_of_exactly_g_continues_the_session_and_one_ms_more_starts_a_new_one() -> None:
    jt = journey_truth([page("a", T0), page("b", T0 + G), page("c", T0 + 2 * G + 1)])
    assert [(s["started_at"], s["ended_at"], s["events"]) for s in jt.sessions] == [
        (T0, T0 + G, 2),
        (T0 + 2 * G + 1, T0 + 2 * G + 1, 1),
    ]
    assert jt.sessions[0]["session_id"] == "s-" + hashlib.sha256(f"cookie_id:k1:{T0}".encode()).hexdigest()[:20]
    assert jt.sessions[1]["session_id"] == session_id(("cookie_id", "k1"), T0 + 2 * G + 1)


def test_session_summary_counts_money_channels_referrer_campaign_and_engagement() -> None:
    events = [
        page("a1", T0, "https://shop.example/?utm_campaign=spring", "https://ref.example/?utm_campaign=other"),
        page("a2", T0 + MIN, "https://shop.example/sale", "https://second.example/"),
        view("a3", T0 + 2 * MIN, dwell=65_000),
        ev("a4", T0 + 3 * MIN, "search", payload={"query": "q", "results": 1}, customer_id="c1", cookie_id="k1"),
        add("a5", T0 + 4 * MIN),
        checkout("a6", T0 + 5 * MIN),
        purchase("a7", T0 + 6 * MIN, total=0.1),
        purchase("a8", T0 + 7 * MIN, cart="cart-2", total=0.2),  # unknown cart: a session event all the same
        page("b1", T0 + DAY, "https://shop.example/", None),
        page("b2", T0 + DAY + MIN, "https://shop.example/x", "https://mail.example/?utm_campaign=&utm_campaign=back"),
    ]
    first, second = journey_truth(events).sessions
    assert {k: v for k, v in first.items() if k not in ("session_id", "closed")} == {
        "stream": "cookie_id:k1",
        "started_at": T0,
        "ended_at": T0 + 7 * MIN,
        "duration_ms": 7 * MIN,
        "events": 8,
        "page_views": 2,
        "product_views": 1,
        "dwell_ms": 65_000,
        "searches": 1,
        "cart_adds": 1,
        "checkouts": 1,
        "purchases": 2,
        "revenue": 0.3,
        "channels": ["web"],
        "first_referrer": "https://ref.example/?utm_campaign=other",
        "first_campaign": "spring",  # the url before the referrer
        "engagement": 2 + 2 + 2 + 5 + 10 + 40 + 2,
    }
    assert (second["first_referrer"], second["first_campaign"]) == (None, "back")  # an empty value is skipped
    assert first["closed"] and not second["closed"]  # event time never passes its end + G


def test_streams_are_the_web_cookie_the_app_device_else_the_atom_and_messages_are_in_no_session() -> None:
    events = [
        page("a", T0, customer_id="c1", cookie_id="k1"),
        ev("b", T0 + MIN, "app_open", "app", {"app_version": "1", "os": "ios"}, customer_id="c1", device_id="d1"),
        page("c", T0 + 2 * MIN, customer_id="c1"),  # web without a cookie: the atom
        purchase("d", T0 + 3 * MIN, cart=None, channel="pos", customer_id="c1"),
        ev("e", T0 + 4 * MIN, "loyalty_scan", "pos", {"store_id": "s", "points": 1}, loyalty_id="L1", phone_hash="h"),
        email_open("f", T0 + 5 * MIN),
        consent("g", T0 + 6 * MIN, cookie_id="k1"),
        ev("h", T0 + 7 * MIN, "crm_update", "crm", {"attributes": {}}, customer_id="c1"),
        ev("i", T0 + 8 * MIN, "erasure_request", "web", {"request_id": "r", "regulation": "gdpr"}, cookie_id="k1"),
    ]
    sessions = {s["stream"]: (s["events"], s["channels"]) for s in journey_truth(events).sessions}
    assert sessions == {
        "cookie_id:k1": (1, ["web"]),
        "device_id:d1": (1, ["app"]),
        "customer_id:c1": (2, ["pos", "web"]),
        "loyalty_id:L1": (1, ["pos"]),
    }


def test_duplicates_count_once_and_blocked_identifiers_neither_link_nor_make_streams() -> None:
    a = page("a", T0, customer_id="c1", cookie_id="undefined")
    events = [a, dict(a), page("b", T0 + MIN, customer_id="c2", cookie_id="undefined"), page("c", T0, cookie_id="0000")]
    jt = journey_truth(events)  # two customers share a blocked cookie: no error, no link
    assert {(s["stream"], s["events"]) for s in jt.sessions} == {("customer_id:c1", 1), ("customer_id:c2", 1)}


def test_two_customer_ids_in_one_person_raise() -> None:
    with pytest.raises(ValueError, match="two customer_id"):
        journey_truth(
            [
                identify("a", T0, customer_id="c1", cookie_id="k1"),
                identify("b", T0 + 1, customer_id="c2", cookie_id="k1"),
            ]
        )


# ----------------------------------------------------------------------------- carts


def test_abandonment_fires_once_at_last_add_plus_timeout_with_the_items_value_and_action() -> None:
    events = known() + [
        add("a1", T0, product="p1", qty=2, price=9.99),
        add("a2", T0 + 5 * MIN, product="p2", qty=1, price=5.0),
        add("a3", T0 + 10 * MIN, product="p1", qty=1, price=8.99),  # the latest price counts
        remove("a4", T0 + 20 * MIN, product="p2"),  # does not move the deadline
        add("a5", T0 + 50 * MIN, product="p3", qty=1, price=1.0),  # after the abandonment: contents, not fate
        tick(T0 + 5 * HOUR),
    ]
    jt = journey_truth(events)
    [ab] = jt.triggers
    assert ab == {
        "trigger_id": "t-" + hashlib.sha256(b"cart_abandoned:cart-1").hexdigest()[:20],
        "kind": "cart_abandoned",
        "fired_at": T0 + 10 * MIN + T,
        "stream": "cookie_id:k1",
        "cart_id": "cart-1",
        "session_id": None,
        "product_id": None,
        "reason": None,
        "action": "reminder",
        "engagement": 15,  # three adds by the deadline (the identify is a day before, in a session of its own: 0)
        "value": 26.97,
        "items": [("p1", 3, 8.99)],
        "time_to_recovery_ms": None,
        "message_opened": None,
        "suppressed": False,
        "suppression_reason": None,
    }
    assert cart(jt) | {"items": None} == {
        "cart_id": "cart-1",
        "status": "abandoned",
        "value": 27.97,
        "items": None,
        "stream": "cookie_id:k1",
        "abandoned_at": T0 + 40 * MIN,
        "recovered_at": None,
    }


def test_a_purchase_at_exactly_the_deadline_completes_the_cart_and_one_ms_later_recovers_it() -> None:
    on_time = journey_truth(known() + [add("a", T0), purchase("b", T0 + T), tick(T0 + DAY)])
    assert cart(on_time)["status"] == "purchased" and on_time.triggers == []
    late = journey_truth(known() + [add("a", T0), purchase("b", T0 + T + 1), tick(T0 + DAY)])
    assert cart(late)["status"] == "recovered"
    assert [(t["kind"], t["fired_at"], t["time_to_recovery_ms"]) for t in late.triggers] == [
        ("cart_abandoned", T0 + T, None),
        ("cart_recovered", T0 + T + 1, 1),
    ]


def test_an_emptied_cart_has_no_deadline_until_items_are_added_again() -> None:
    emptied = known() + [add("a", T0, qty=2), remove("b", T0 + MIN, qty=2)]
    jt = journey_truth(emptied + [tick(T0 + DAY)])
    assert (cart(jt)["status"], jt.triggers) == ("emptied", [])
    jt = journey_truth(emptied + [add("c", T0 + 2 * HOUR, product="p2"), tick(T0 + DAY)])
    assert [(t["kind"], t["fired_at"], t["items"]) for t in jt.triggers] == [
        ("cart_abandoned", T0 + 2 * HOUR + T, [("p2", 1, 10.0)])
    ]


def test_checkout_completes_the_cart_and_a_later_purchase_makes_it_purchased() -> None:
    base = known() + [add("a", T0), checkout("b", T0 + 10 * MIN)]
    jt = journey_truth(base + [tick(T0 + DAY)])
    assert (cart(jt)["status"], jt.triggers) == ("checkout", [])
    jt = journey_truth(base + [purchase("c", T0 + DAY), tick(T0 + 2 * DAY)])
    assert (cart(jt)["status"], jt.triggers) == ("purchased", [])
    # a checkout after the abandonment changes nothing
    jt = journey_truth(known() + [add("a", T0), checkout("b", T0 + HOUR), tick(T0 + DAY)])
    assert cart(jt)["status"] == "abandoned"


def test_a_due_time_after_the_last_event_never_fires() -> None:
    jt = journey_truth(known() + [add("a", T0), tick(T0 + T - 1)])
    assert (cart(jt)["status"], jt.triggers) == ("open", [])
    assert journey_truth(known() + [add("a", T0), tick(T0 + T)]).triggers[0]["fired_at"] == T0 + T


def test_an_offer_needs_the_engagement_of_every_stream_of_the_person_within_seven_days() -> None:
    app: dict[str, Any] = {"customer_id": "c1", "device_id": "d1"}
    history = [add("h1", T0 - DAY, cart="cart-0", **app), purchase("h2", T0 - DAY + MIN, cart="cart-0", **app)]
    jt = journey_truth(known() + history + [add("a", T0), tick(T0 + DAY)])
    assert [(t["engagement"], t["action"]) for t in jt.triggers] == [(5 + 20 + 5, "reminder")]
    history.append(checkout("h3", T0 - DAY + 30_000, cart="cart-0", **app))  # +10: 40
    jt = journey_truth(known() + history + [add("a", T0), tick(T0 + DAY)])
    assert [(t["engagement"], t["action"]) for t in jt.triggers] == [(40, "offer")]
    # a session that started exactly 7 days before the decision is out of the window; 1 ms later, in
    old = [page("o", T0, **app)]
    for start, expected in ((T0, 5), (T0 - 1, 6)):
        jt = journey_truth(known() + old + [add("a", start + 7 * DAY - T), tick(T0 + 8 * DAY)])
        assert jt.triggers[0]["engagement"] == expected
    many = [purchase(f"m{i}", T0 - HOUR + i, cart=None, channel="pos", customer_id="c1") for i in range(9)]
    assert journey_truth(known() + many + [add("a", T0), tick(T0 + DAY)]).triggers[0]["engagement"] == 100


# ----------------------------------------------------------------------------- recovery and escalation


def test_a_recovery_without_an_open_reports_the_time_to_recovery_and_no_message_opened() -> None:
    jt = journey_truth(known() + [add("a", T0), purchase("b", T0 + 3 * HOUR), tick(T0 + 3 * DAY)])
    rec = of_kind(jt, "cart_recovered")
    assert [(t["fired_at"], t["time_to_recovery_ms"], t["message_opened"], t["suppressed"]) for t in rec] == [
        (T0 + 3 * HOUR, 3 * HOUR - T, False, False)
    ]
    assert rec[0]["trigger_id"] == trigger_id("cart_recovered", "cart-1")
    assert of_kind(jt, "cart_abandoned_escalation") == []


def test_a_recovery_after_an_open_reports_the_message_opened_and_no_escalation() -> None:
    events = known() + [add("a", T0), email_open("b", T0 + 2 * HOUR), purchase("c", T0 + 5 * HOUR), tick(T0 + 3 * DAY)]
    jt = journey_truth(events)
    assert [(t["kind"], t["message_opened"]) for t in jt.triggers] == [
        ("cart_abandoned", None),
        ("cart_recovered", True),
    ]
    assert cart(jt)["recovered_at"] == T0 + 5 * HOUR


def test_the_first_open_after_the_abandonment_escalates_after_t2_with_the_stronger_action() -> None:
    events = known() + [
        add("a", T0),
        email_open("b", T0 + T),  # at the deadline: not after the abandonment
        ev("c", T0 + 2 * HOUR, "push_open", "app", {"campaign_id": "x"}, customer_id="c1", device_id="d1"),
        email_open("d", T0 + 3 * HOUR, typ="email_click"),  # not the first: no second timer
        tick(T0 + 3 * DAY),
    ]
    jt = journey_truth(events)
    esc = of_kind(jt, "cart_abandoned_escalation")
    assert [(t["fired_at"], t["action"], t["engagement"], t["value"], t["suppressed"]) for t in esc] == [
        (T0 + 2 * HOUR + T2, "offer", 5, 10.0, False)  # the cart's session; the others score 0
    ]
    assert esc[0]["trigger_id"] == trigger_id("cart_abandoned_escalation", "cart-1")
    # an offer becomes offer_plus; a recovery after the escalation is still recorded
    rich = [purchase(f"m{i}", T0 - HOUR + i, cart=None, channel="pos", customer_id="c1") for i in range(2)]
    jt = journey_truth(known() + rich + events[2:] + [purchase("e", T0 + 2 * DAY)])
    assert [(t["kind"], t["action"]) for t in jt.triggers] == [
        ("cart_abandoned", "offer"),
        ("cart_abandoned_escalation", "offer_plus"),
        ("cart_recovered", None),
    ]


def test_a_purchase_at_exactly_open_plus_t2_cancels_the_escalation() -> None:
    base = known() + [add("a", T0), email_open("b", T0 + HOUR)]
    jt = journey_truth(base + [purchase("c", T0 + HOUR + T2), tick(T0 + 3 * DAY)])
    assert [t["kind"] for t in jt.triggers] == ["cart_abandoned", "cart_recovered"]
    jt = journey_truth(base + [purchase("c", T0 + HOUR + T2 + 1), tick(T0 + 3 * DAY)])
    assert [t["kind"] for t in jt.triggers] == ["cart_abandoned", "cart_abandoned_escalation", "cart_recovered"]


def test_a_suppressed_abandonment_is_never_escalated_but_its_recovery_is_recorded() -> None:
    events = known(granted=None) + [add("a", T0), email_open("b", T0 + HOUR), purchase("c", T0 + 2 * DAY)]
    jt = journey_truth(events + [tick(T0 + 3 * DAY)])
    assert [(t["kind"], t["suppressed"], t["suppression_reason"], t["message_opened"]) for t in jt.triggers] == [
        ("cart_abandoned", True, "no_marketing_consent", None),
        ("cart_recovered", True, "no_marketing_consent", True),
    ]
    assert cart(jt)["status"] == "recovered"
    default_granted = journey_truth(
        events + [tick(T0 + 3 * DAY)], settings=JourneySettings(marketing_consent_default=True)
    )
    assert [t["kind"] for t in default_granted.triggers if not t["suppressed"]] == [
        "cart_abandoned",
        "cart_abandoned_escalation",
        "cart_recovered",
    ]


def test_a_purchase_after_the_recovery_window_is_no_recovery() -> None:
    jt = journey_truth(known() + [add("a", T0), purchase("b", T0 + T + R + 1), tick(T0 + 9 * DAY)])
    assert (cart(jt)["status"], [t["kind"] for t in jt.triggers]) == ("abandoned", ["cart_abandoned"])
    jt = journey_truth(known() + [add("a", T0), purchase("b", T0 + T + R), tick(T0 + 9 * DAY)])
    assert cart(jt)["status"] == "recovered"


# ----------------------------------------------------------------------------- high intent


def test_high_intent_by_dwell_or_by_views_fires_once_per_product_per_session() -> None:
    events = known() + [
        view("v1", T0, "p1"),
        view("v2", T0 + MIN, "p1"),
        view("v3", T0 + 2 * MIN, "p1"),  # third view: views
        view("v4", T0 + 3 * MIN, "p2", dwell=30_000),  # dwell at the threshold
        view("v5", T0 + 4 * MIN, "p3"),
        view("v6", T0 + 5 * MIN, "p3"),
        view("v7", T0 + 6 * MIN, "p3", dwell=31_000),  # both: dwell
        view("w1", T0 + 6 * MIN + 30_000, "p4", dwell=29_999),
        view("v8", T0 + 7 * MIN, "p1", dwell=99_000),  # already fired in this session
        view("v9", T0 + 7 * MIN + G + 1, "p1", dwell=40_000),  # a new session: again
    ]
    jt = journey_truth(events)
    first = session_id(("cookie_id", "k1"), T0)
    second = session_id(("cookie_id", "k1"), T0 + 7 * MIN + G + 1)
    got = [(t["session_id"], t["product_id"], t["reason"], t["fired_at"]) for t in of_kind(jt, "high_intent")]
    assert got == [
        (first, "p1", "views", T0 + 2 * MIN),
        (first, "p2", "dwell", T0 + 3 * MIN),
        (first, "p3", "dwell", T0 + 6 * MIN),
        (second, "p1", "dwell", T0 + 7 * MIN + G + 1),
    ]
    t = of_kind(jt, "high_intent")[0]
    assert t["trigger_id"] == "t-" + hashlib.sha256(f"high_intent:{first}:p1".encode()).hexdigest()[:20]
    assert (t["stream"], t["cart_id"], t["value"], t["engagement"], t["suppressed"]) == (
        "cookie_id:k1",
        None,
        None,
        None,
        False,
    )


# ----------------------------------------------------------------------------- consent and identity


def test_a_consent_tie_at_the_same_ms_goes_to_the_greater_event_id() -> None:
    def suppressed(first: bool, second: bool) -> bool:
        events = [consent("c-a", T0, first), consent("c-b", T0, second), view("v", T0 + HOUR, dwell=40_000)]
        return journey_truth(events).triggers[0]["suppressed"]

    assert (suppressed(False, True), suppressed(True, False)) == (False, True)
    # a later consent wins over any id; another purpose is not marketing
    events = [consent("z", T0, True), consent("a", T0 + 1, False), view("v", T0 + HOUR, dwell=40_000)]
    assert journey_truth(events).triggers[0]["suppressed"]
    events = [consent("a", T0, True), consent("b", T0 + 1, False, "analytics"), view("v", T0 + HOUR, dwell=40_000)]
    assert not journey_truth(events).triggers[0]["suppressed"]


def test_consent_reaches_an_anonymous_cart_through_a_link_before_the_deadline_not_after() -> None:
    anon: dict[str, Any] = {"cookie_id": "k9"}
    base = [consent("c", T0 - DAY), add("a", T0, **anon)]
    linked = journey_truth(base + [identify("i", T0 + T, customer_id="c1", cookie_id="k9"), tick(T0 + DAY)])
    assert [(t["stream"], t["suppressed"]) for t in linked.triggers] == [("cookie_id:k9", False)]
    too_late = journey_truth(base + [identify("i", T0 + T + 1, customer_id="c1", cookie_id="k9"), tick(T0 + DAY)])
    assert [t["suppressed"] for t in too_late.triggers] == [True]
    # a revocation after the decision changes nothing
    link = identify("i", T0 + MIN, customer_id="c1", cookie_id="k9")
    revoked = journey_truth(base + [link, consent("r", T0 + T + 1, False), tick(T0 + DAY)])
    assert [t["suppressed"] for t in revoked.triggers] == [False]


def test_late_events_are_dropped_from_the_journey_but_still_link() -> None:
    anon: dict[str, Any] = {"cookie_id": "k9"}
    events = [
        consent("c", T0 - DAY),
        add("a", T0, **anon),
        add("late-add", T0 + MIN, product="p2", **anon),
        identify("late-link", T0 + 2 * MIN, customer_id="c1", cookie_id="k9"),
        tick(T0 + DAY),
    ]
    jt = journey_truth(events, late_event_ids=["late-link", "late-add", "not-in-the-input"])
    assert jt.late_dropped == ["late-add", "late-link"]
    assert [(t["fired_at"], t["items"], t["suppressed"]) for t in jt.triggers] == [(T0 + T, [("p1", 1, 10.0)], False)]
    assert jt.sessions[0]["events"] == 1 and jt.counts()["late"] == 2


def test_ambiguous_triggers_are_the_decisions_just_before_a_link() -> None:
    def amb(link_after: int) -> tuple[list[dict], set[str]]:
        events = [
            consent("c", T0 - DAY),
            view("v", T0, dwell=40_000, cookie_id="k9"),
            identify("i", T0 + link_after, customer_id="c1", cookie_id="k9"),
        ]
        return journey_truth(events).triggers, ambiguous_trigger_ids(events)

    triggers, ids = amb(2 * MIN)
    assert triggers[0]["suppressed"] and ids == {triggers[0]["trigger_id"]}
    assert amb(11 * MIN)[1] == set()


# ----------------------------------------------------------------------------- the generator's ground truth


@lru_cache(maxsize=1)
def generated() -> tuple[Dataset, tuple[dict, ...]]:
    """A data set with every planted case, and its valid events normalized by the ingestion logic."""
    ds = generate(seed=42, persons=60)
    ing, catalog = Ingestor(IngestSettings("journey-salt-0123456")), SchemaCatalog.load()
    out = []
    for i, rec in enumerate(ds.records):
        res = ing.process(SourceRecord(rec.value, rec.topic, 0, i, 1_900_000_000_000))
        if isinstance(res, Accepted):
            out.append(catalog.decode(res.value)[1])
    return ds, tuple(out)


def test_every_planted_recovery_and_escalation_is_in_the_oracle_and_unambiguous() -> None:
    ds, events = generated()
    jt = journey_truth(events, ds.truth.late_event_ids)
    trig = {(t["kind"], t["cart_id"]): t for t in jt.triggers if t["cart_id"]}
    status = {c["cart_id"]: c["status"] for c in jt.carts}
    recovered = [c for c in ds.truth.carts if c.recovered_at is not None]
    escalated = [c for c in ds.truth.carts if c.escalation_expected]
    unconsented = [c for c in ds.truth.carts if c.reminder_opened_at and not c.recovered_at and not c.marketing_consent]
    assert all(len(x) >= 2 for x in (recovered, escalated, unconsented))
    assert {c.reminder_opened_at is None for c in recovered} == {True, False}
    for c in recovered:
        t = trig[("cart_recovered", c.cart_id)]
        assert (t["fired_at"], t["message_opened"], status[c.cart_id]) == (
            c.recovered_at,
            c.reminder_opened_at is not None,
            "recovered",
        )
        assert t["value"] == c.value and ("cart_abandoned_escalation", c.cart_id) not in trig
    for c in escalated:
        t = trig[("cart_abandoned_escalation", c.cart_id)]
        assert c.reminder_opened_at is not None
        assert (t["fired_at"], t["suppressed"]) == (c.reminder_opened_at + T2, False)
    for c in unconsented:
        assert trig[("cart_abandoned", c.cart_id)]["suppressed"]
        assert ("cart_abandoned_escalation", c.cart_id) not in trig
    planted = {trig[k]["trigger_id"] for k in trig if k[1] in {c.cart_id for c in recovered + escalated}}
    assert not planted & ambiguous_trigger_ids(events, ds.truth.late_event_ids)
    # what the truth says about the journeys, from the raw events, is the oracle's on the normalized ones
    assert ds.truth.journeys == jt.counts()
    high_intent = {t["reason"] for t in of_kind(jt, "high_intent")}
    assert high_intent == {"dwell", "views"}
    assert 0 < jt.counts()["suppressed"] < len(jt.triggers)


def test_a_truth_json_written_before_journeys_still_loads() -> None:
    ds, _ = generated()
    doc = ds.truth.to_json()
    doc.pop("journeys")
    for c in doc["carts"]:
        for k in ("marketing_consent", "reminder_opened_at", "recovered_at"):
            c.pop(k)
    old = GroundTruth.from_json(doc)
    assert old.journeys == {} and all(c.recovered_at is None for c in old.carts)
    assert GroundTruth.from_json(ds.truth.to_json()) == ds.truth
