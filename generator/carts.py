"""Online carts: items added (and maybe removed), then left open, checked out or purchased.

Every cart played is recorded as a :class:`generator.truth.CartTruth`, and a purchase adds to
the person's orders and revenue.

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
"""

from __future__ import annotations

from typing import Any

from generator.actions import Ids, emit, identify
from generator.catalog import CURRENCY, money
from generator.context import Generation
from generator.persons import Person, raw_email
from generator.timing import SECOND_MS
from generator.truth import CartTruth


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
) -> int:
    """A cart: adds (and maybe removes), then ``open``, ``checkout`` or ``purchase``.

    With ``anonymous_ids`` the items are added anonymously and the visitor identifies
    (method ``checkout``) before checking out. Returns the time of the cart's last event.
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
    g.carts.append(
        CartTruth(
            cart_id=cart_id,
            person_id=p.truth.person_id,
            channel=channel,
            opened_at=opened_at,
            last_event_at=t,
            anonymous=anonymous_ids is not None,
            checkout_started=outcome in ("checkout", "purchase"),
            purchased=outcome == "purchase",
            order_id=order_id,
            units=units,
            value=value,
        )
    )
    return t
