"""Online carts: items added (and maybe removed), then left open, checked out or purchased.

Every cart played is recorded as a :class:`generator.truth.CartTruth`, and a purchase adds to
the person's orders and revenue.

A cart left open by a logged-in visitor may be *followed up* (:data:`FOLLOWUPS`), in bursts
of their own at least 2 hours apart, with nothing else of the person in between:

* ``recover``: bought in a later session, 2 hours to 3 days after the cart's last event
  (a ``cart_recovered`` without a message opened);
* ``remind``: an ``email_open`` 2 hours to 2 days after (well after the abandonment): the
  escalation timer starts, and the cart is never bought (an escalation 24 h later when the
  abandonment was published, i.e. the account's marketing consent was granted); another
  email is opened 2 to 24 hours after that escalation (so event time reaches it);
* ``remind_recover``: the ``email_open``, then the purchase 2 to 20 hours later (a recovery with
  a message opened, no escalation).

The recovery session reuses the cart's identifiers: it links nothing new.

Examples
--------
>>> from generator.context import Generation
>>> from generator.encoding import identifiers
>>> from generator.persons import make_person
>>> g = Generation(seed=5, persons=1, base_time_ms=0, days=1, bad_ratio=0.0, dup_ratio=0.0, late_ratio=0.0,
...                reorder_ratio=0.0)
>>> p = make_person(g, 0, "loyal_buyer")
>>> ids = identifiers(customer_id=p.truth.customer_id, cookie_id=p.truth.cookie_ids[0])
>>> end = play_cart(g, p, 1_000, "web", ids, "purchase")
>>> c = g.carts[0]
>>> (c.cart_id, c.purchased, c.order_id, c.last_event_at == end, p.truth.revenue == c.value)
('cart-5-0000001', True, 'ord-5-0000001', True, True)
>>> [e.event_type for e in p.events][-2:]
['checkout_started', 'purchase']
>>> end = play_cart(g, p, end + 3 * HOUR_MS, "web", ids, "open", followup="remind_recover")
>>> c = g.carts[-1]
>>> c.purchased, c.recovered_at == end == c.last_event_at, c.reminder_opened_at < c.recovered_at
(True, True, True)
>>> [e.event_type for e in p.events][-4:]
['email_open', 'page_view', 'checkout_started', 'purchase']
"""

from __future__ import annotations

from typing import Any

from generator.actions import Ids, app_open_payload, emit, identify, page_view
from generator.catalog import CAMPAIGNS, CURRENCY, money
from generator.context import Generation
from generator.encoding import identifiers
from generator.journey_truth import JourneySettings
from generator.persons import Person, raw_email
from generator.timing import DAY_MS, HOUR_MS, SECOND_MS
from generator.truth import CartTruth

#: The journeys stage's escalation timeout (docs/journeys.md) the reminders are timed against.
ESCALATION_TIMEOUT_MS = JourneySettings().escalation_timeout_ms
#: How a cart left open is followed up (``None``: not at all).
FOLLOWUPS: tuple[str | None, ...] = ("recover", "remind", "remind_recover", None)
#: How often each of :data:`FOLLOWUPS` is drawn for a cart left open.
FOLLOWUP_WEIGHTS: tuple[float, ...] = (0.3, 0.3, 0.2, 0.2)


def marketing_consent(p: Person) -> bool | None:
    """The latest ``marketing`` consent among ``p``'s events so far (``None``: none yet)."""
    for ev in reversed(p.events):
        if ev.event_type == "consent_update" and ev.payload[1].get("purpose") == "marketing":
            return bool(ev.payload[1]["granted"])
    return None


def play_cart(
    g: Generation,
    p: Person,
    t: int,
    channel: str,
    ids: Ids,
    outcome: str,
    bargain: bool = False,
    anonymous_ids: Ids | None = None,
    device: str | None = None,
    followup: str | None = None,
) -> int:
    """A cart: adds (and maybe removes), then ``open``, ``checkout`` or ``purchase``.

    With ``anonymous_ids`` the items are added anonymously and the visitor identifies
    (method ``checkout``) before checking out. ``followup`` (one of :data:`FOLLOWUPS`) is
    played for a cart left ``open`` without ``anonymous_ids``. Returns the time of the last
    event played (the cart's, or the follow-up's).
    """
    rng = g.rng
    cart_id = f"cart-{g.seed}-{g.next('cart'):07d}"
    lines: list[list[Any]] = []  # [product, quantity, unit_price]
    add_ids = anonymous_ids if anonymous_ids is not None else ids
    opened_at = t
    for k in range(rng.randint(2, 5) if bargain else rng.randint(1, 4)):
        if k:
            t = g.step(t)
        prod = g.product(bargain)
        qty = rng.randint(1, 3)
        price = money(prod.price * (rng.choice((0.7, 0.8, 0.9)) if bargain and rng.random() < 0.5 else 1.0))
        emit(
            g,
            p,
            t,
            "add_to_cart",
            channel,
            add_ids,
            {
                "cart_id": cart_id,
                "product_id": prod.product_id,
                "category": prod.category,
                "quantity": qty,
                "unit_price": price,
            },
            device,
        )
        lines.append([prod, qty, price])
    if rng.random() < (0.6 if bargain else 0.25):
        t = g.step(t)
        line = rng.choice(lines)
        removed = rng.randint(1, line[1])
        emit(
            g,
            p,
            t,
            "remove_from_cart",
            channel,
            add_ids,
            {
                "cart_id": cart_id,
                "product_id": line[0].product_id,
                "category": line[0].category,
                "quantity": removed,
                "unit_price": line[2],
            },
            device,
        )
        line[1] -= removed
        if not any(q for _, q, _ in lines):
            t = g.step(t)
            prod = g.product(bargain)
            emit(
                g,
                p,
                t,
                "add_to_cart",
                channel,
                add_ids,
                {
                    "cart_id": cart_id,
                    "product_id": prod.product_id,
                    "category": prod.category,
                    "quantity": 1,
                    "unit_price": prod.price,
                },
                device,
            )
            lines.append([prod, 1, prod.price])
    kept = [ln for ln in lines if ln[1] > 0]
    units = sum(ln[1] for ln in kept)
    value = money(sum(ln[1] * ln[2] for ln in kept))
    order_id: str | None = None
    if outcome in ("checkout", "purchase"):
        if anonymous_ids is not None:
            t = g.step(t)
            linking = {**anonymous_ids, **{k: v for k, v in ids.items() if v}, "email": raw_email(g, p)}
            identify(g, p, t, channel, "checkout", linking, device)
        t = g.step(t, 10 * SECOND_MS, 120 * SECOND_MS)
        emit(
            g, p, t, "checkout_started", channel, ids, {"cart_id": cart_id, "cart_value": value, "items": units}, device
        )
    if outcome == "purchase":
        t = g.step(t, 20 * SECOND_MS, 180 * SECOND_MS)
        order_id = f"ord-{g.seed}-{g.next('order'):07d}"
        buy(g, p, t, channel, ids, cart_id, order_id, kept, value, device)
    consent = marketing_consent(p)
    last = end = t
    reminder_at = recovered_at = None
    if outcome == "open" and anonymous_ids is None and followup is not None:
        if followup not in FOLLOWUPS:
            raise ValueError(f"unknown cart follow-up {followup!r}")
        buy_at = t + rng.randint(2 * HOUR_MS, 3 * DAY_MS)
        if followup in ("remind", "remind_recover"):
            reminder_at = end = t + rng.randint(2 * HOUR_MS, 2 * DAY_MS)
            _open_email(g, p, reminder_at)
            p.truth.sessions += 1
            buy_at = reminder_at + rng.randint(2 * HOUR_MS, 20 * HOUR_MS)
            if followup == "remind":
                # a later newsletter opened, well after the escalation is due: the data set's
                # event time reaches the escalation, wherever the journey ends
                end = reminder_at + ESCALATION_TIMEOUT_MS + rng.randint(2 * HOUR_MS, DAY_MS)
                _open_email(g, p, end)
                p.truth.sessions += 1
        if followup in ("recover", "remind_recover"):
            order_id = f"ord-{g.seed}-{g.next('order'):07d}"
            recovered_at = last = end = _buy_left_cart(g, p, buy_at, channel, ids, device, cart_id, kept, order_id)
            p.truth.sessions += 1
    g.carts.append(
        CartTruth(
            cart_id=cart_id,
            person_id=p.truth.person_id,
            channel=channel,
            opened_at=opened_at,
            last_event_at=last,
            anonymous=anonymous_ids is not None,
            checkout_started=outcome in ("checkout", "purchase") or recovered_at is not None,
            purchased=outcome == "purchase" or recovered_at is not None,
            order_id=order_id,
            units=units,
            value=value,
            marketing_consent=consent,
            reminder_opened_at=reminder_at,
            recovered_at=recovered_at,
        )
    )
    return end


def _open_email(g: Generation, p: Person, t: int) -> None:
    """An ``email_open`` of a campaign message by ``p`` at ``t``."""
    message = f"msg-{g.seed}-{g.next('message'):07d}"
    emit(
        g,
        p,
        t,
        "email_open",
        "email",
        identifiers(email=raw_email(g, p)),
        {"campaign_id": g.rng.choice(CAMPAIGNS), "message_id": message, "link_url": None},
    )


def _buy_left_cart(
    g: Generation,
    p: Person,
    t: int,
    channel: str,
    ids: Ids,
    device: str | None,
    cart_id: str,
    kept: list[list[Any]],
    order_id: str,
) -> int:
    """A later session on the cart's own identifiers that buys the cart as it was left;
    returns the purchase's time."""
    if channel == "web":
        page_view(g, p, t, ids, "https://mail.example/inbox")
    else:
        emit(g, p, t, "app_open", channel, ids, app_open_payload(g, p, device or ""), device)
    units = sum(ln[1] for ln in kept)
    value = money(sum(ln[1] * ln[2] for ln in kept))
    t = g.step(t, 10 * SECOND_MS, 120 * SECOND_MS)
    emit(g, p, t, "checkout_started", channel, ids, {"cart_id": cart_id, "cart_value": value, "items": units}, device)
    t = g.step(t, 20 * SECOND_MS, 180 * SECOND_MS)
    buy(g, p, t, channel, ids, cart_id, order_id, kept, value, device)
    return t


def buy(
    g: Generation,
    p: Person,
    t: int,
    channel: str,
    ids: Ids,
    cart_id: str,
    order_id: str,
    kept: list[Any],
    value: float,
    device: str | None,
) -> None:
    """The ``purchase`` of a cart's lines ``kept`` (product, quantity, unit price), into the truth."""
    emit(
        g,
        p,
        t,
        "purchase",
        channel,
        ids,
        {
            "order_id": order_id,
            "cart_id": cart_id,
            "currency": CURRENCY,
            "total": value,
            "items": [
                {"product_id": pr.product_id, "category": pr.category, "quantity": q, "unit_price": up}
                for pr, q, up in kept
            ],
            "store_id": None,
        },
        device,
    )
    p.truth.online_orders += 1
    p.truth.revenue = money(p.truth.revenue + value)
