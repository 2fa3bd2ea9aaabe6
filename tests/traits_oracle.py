"""Independent offline oracle of the profile traits stored in ``journey.profiles`` (docs/profiles.md).

It computes, with plain Python straight from one person's (or one profile's) raw decoded
``NormalizedEvent`` dicts, what the trait columns must hold, following the written
definitions only: nothing of ``models/`` or ``state/`` is imported. It deliberately takes
other routes than the code under test where the definitions allow it: exact
:class:`fractions.Fraction` arithmetic for money and averages, :mod:`datetime` for UTC days,
affinity decayed straight to the last event (instead of to a fixed epoch and back), and a
per-event scan instead of a merge of partial aggregates.

Examples
--------
>>> day = 86_400_000
>>> evs = [raw_event("e1", "purchase", 1_790_000_000_000, total=10.0, items=[("shoes", 1)]),
...        raw_event("e2", "purchase", 1_790_000_000_000 + 2 * day, total=0.05, items=[("books", 2)]),
...        raw_event("e3", "page_view", 1_790_000_000_000 + 3 * day)]
>>> t = expected_traits(evs)
>>> (t.orders, t.revenue_cents, t.purchase_days, t.recency_days)
(2, 1005, 2, 1.0)
>>> (t.avg_order_value_cents, t.avg_day_spend_cents, t.repeat_day_spend_cents)
(Decimal('502.50'), Decimal('502.50'), Decimal('5.00'))
>>> [c for c, _ in t.top_categories]
['books', 'shoes']
>>> differences(t, {**t.as_columns(), "purchase_days": 3})
['purchase_days: got 3, want 2']
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from typing import Any, Iterable, Mapping

#: The documented defaults (docs/profiles.md), restated rather than imported.
HALF_LIFE_MS = 30 * 24 * 60 * 60 * 1000
MS_PER_DAY = 24 * 60 * 60 * 1000
TOP_N = 5
ORDER_TYPES = frozenset({"purchase", "store_purchase"})
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class ExpectedTraits:
    """What the trait columns of one profile's row must hold (see :func:`expected_traits`).

    ``category_shares`` holds the share of every category (not only the top ones), which
    :func:`differences` needs to judge near-ties within float rounding.
    """

    last_seen_ms: int | None
    orders: int
    revenue_cents: int
    purchase_day_cents: dict[date, int]
    recency_days: float | None
    purchase_days: int
    avg_order_value_cents: Decimal | None
    avg_day_spend_cents: Decimal | None
    repeat_day_spend_cents: Decimal | None
    top_categories: tuple[tuple[str, float], ...]
    category_shares: dict[str, float] = field(default_factory=dict)

    def as_columns(self) -> dict[str, Any]:
        """The column values as a plain-CQL reader gets them (``top_categories`` None when empty)."""
        return {
            "orders": self.orders,
            "revenue_cents": self.revenue_cents,
            "purchase_day_cents": dict(self.purchase_day_cents),
            "recency_days": self.recency_days,
            "purchase_days": self.purchase_days,
            "avg_order_value_cents": self.avg_order_value_cents,
            "avg_day_spend_cents": self.avg_day_spend_cents,
            "repeat_day_spend_cents": self.repeat_day_spend_cents,
            "top_categories": list(self.top_categories) or None,
        }


def utc_day(ms: int) -> date:
    """The UTC calendar day of an epoch-millisecond instant (exact: integer timedelta).

    >>> utc_day(86_400_000 - 1), utc_day(86_400_000), utc_day(-1)
    (datetime.date(1970, 1, 1), datetime.date(1970, 1, 2), datetime.date(1969, 12, 31))
    """
    return (_UNIX_EPOCH + timedelta(milliseconds=ms)).date()


def order_cents(total: float) -> int:
    """An order total (a double in the event) as cents: its shortest decimal text, half-cents to even.

    >>> order_cents(19.99), order_cents(0.125), order_cents(0.135), order_cents(1294.41)
    (1999, 12, 14, 129441)
    """
    return round(Fraction(repr(float(total))) * 100)


def rounded_cents(numerator: int, denominator: int) -> Decimal:
    """``numerator / denominator`` cents, rounded half to even to 0.01 cent, as a 2-place Decimal.

    >>> rounded_cents(5000, 3), rounded_cents(1, 8), rounded_cents(3, 8)
    (Decimal('1666.67'), Decimal('0.12'), Decimal('0.38'))
    """
    hundredths = round(Fraction(numerator, denominator) * 100)
    return Decimal(hundredths).scaleb(-2)


def _payload(event: Mapping[str, Any]) -> Mapping[str, Any]:
    p = event.get("payload")
    if isinstance(p, (tuple, list)):
        p = p[1]
    return p or {}


def _category_weights(event: Mapping[str, Any]) -> list[tuple[str, float]]:
    """The documented weights: product view 1 + min(dwell/60 s, 2), add to cart 3, 5 per unit bought."""
    kind, p = event["event_type"], _payload(event)
    if kind == "product_view":
        dwell = p.get("dwell_ms") or 0
        return [(p["category"], 1.0 + min(dwell / 60_000, 2.0))]
    if kind == "add_to_cart":
        return [(p["category"], 3.0)]
    if kind in ORDER_TYPES:
        return [(item["category"], 5.0 * item["quantity"]) for item in p.get("items") or ()]
    return []


def expected_traits(events: Iterable[Mapping[str, Any]], half_life_ms: int = HALF_LIFE_MS) -> ExpectedTraits:
    """The stored traits of the profile holding exactly ``events`` (each once), per docs/profiles.md.

    Parameters
    ----------
    events : iterable of mapping
        Decoded ``NormalizedEvent`` dicts of one profile, in any order.
    half_life_ms : int
        Half-life of category affinity the profile was built with.

    Returns
    -------
    ExpectedTraits
    """
    evs = list(events)
    last_seen = max((e["occurred_at"] for e in evs), default=None)
    order_events = [e for e in evs if e["event_type"] in ORDER_TYPES]
    spend_by_day: dict[date, int] = {}
    for e in order_events:
        d = utc_day(e["occurred_at"])
        spend_by_day[d] = spend_by_day.get(d, 0) + order_cents(_payload(e)["total"])
    revenue = sum(spend_by_day.values())
    n_orders, n_days = len(order_events), len(spend_by_day)

    recency = None
    if order_events:
        last_order = max(e["occurred_at"] for e in order_events)
        recency = float(Fraction(last_seen - last_order, MS_PER_DAY))
    repeat = None
    if n_days >= 2:
        first = min(spend_by_day)
        repeat = rounded_cents(revenue - spend_by_day[first], n_days - 1)

    affinity: dict[str, list[float]] = {}
    for e in evs:
        decay = 2.0 ** ((e["occurred_at"] - last_seen) / half_life_ms)
        for cat, w in _category_weights(e):
            affinity.setdefault(cat, []).append(w * decay)
    sums = {c: math.fsum(ws) for c, ws in affinity.items()}
    total = math.fsum(sums.values())
    shares = {c: v / total for c, v in sums.items()} if total > 0 else {}
    ranked = sorted(shares.items(), key=lambda cs: (-cs[1], cs[0]))

    return ExpectedTraits(
        last_seen_ms=last_seen,
        orders=n_orders,
        revenue_cents=revenue,
        purchase_day_cents=dict(sorted(spend_by_day.items())),
        recency_days=recency,
        purchase_days=n_days,
        avg_order_value_cents=rounded_cents(revenue, n_orders) if n_orders else None,
        avg_day_spend_cents=rounded_cents(revenue, n_days) if n_days else None,
        repeat_day_spend_cents=repeat,
        top_categories=tuple(ranked[:TOP_N]),
        category_shares=shares,
    )


def differences(want: ExpectedTraits, got: Mapping[str, Any], rel_tol: float = 1e-9) -> list[str]:
    """Where trait columns ``got`` (column name -> value, as CQL returns them) differ from ``want``.

    Everything is compared exactly (money as integers and Decimals, days as dates, recency
    as the same double), except the category shares: affinity is a float sum, so a share
    may differ by ``rel_tol`` and categories whose shares are that close may rank either way.
    ``purchase_day_cents`` keys may be :class:`datetime.date` or anything with
    ``days_from_epoch`` (the driver's ``cassandra.util.Date``) or an int day number.

    Returns
    -------
    list of str
        Empty when equal.
    """
    out = []
    cols = want.as_columns()
    for name in (
        "orders",
        "revenue_cents",
        "purchase_days",
        "recency_days",
        "avg_order_value_cents",
        "avg_day_spend_cents",
        "repeat_day_spend_cents",
    ):
        if name in got and (got[name] != cols[name] or type(got[name]) is not type(cols[name])):
            out.append(f"{name}: got {got[name]!r}, want {cols[name]!r}")
    if "purchase_day_cents" in got:
        days = {_as_date(k): v for k, v in (got["purchase_day_cents"] or {}).items()}
        if days != want.purchase_day_cents:
            out.append(f"purchase_day_cents: got {days}, want {want.purchase_day_cents}")
    if "top_categories" in got:
        out += _top_differences(want, list(got["top_categories"] or ()), rel_tol)
    return out


def _as_date(key: Any) -> date:
    if isinstance(key, date):
        return key
    days = getattr(key, "days_from_epoch", key)
    return date(1970, 1, 1) + timedelta(days=int(days))


def _top_differences(want: ExpectedTraits, got: list, rel_tol: float) -> list[str]:
    shares = want.category_shares
    close = lambda a, b: math.isclose(a, b, rel_tol=rel_tol, abs_tol=1e-300)  # noqa: E731
    if len(got) != len(want.top_categories):
        return [f"top_categories: got {got}, want {list(want.top_categories)}"]
    out = []
    for name, share in got:
        if name not in shares or not close(share, shares[name]) or not 0.0 <= share <= 1.0:
            out.append(f"top_categories: {name} has share {share}, want {shares.get(name)}")
    if out:
        return out
    for (a, sa), (b, sb) in zip(got, got[1:]):  # ranked: share descending, then name
        if not ((shares[a], b) > (shares[b], a) or close(shares[a], shares[b])):
            out.append(f"top_categories: {a} ranked before {b}: {got}")
    chosen = {c for c, _ in got}
    cut = min((shares[c] for c in chosen), default=math.inf)
    for c, s in shares.items():  # nothing left out that is clearly above the last one kept
        if c not in chosen and s > cut and not close(s, cut):
            out.append(f"top_categories: {c} ({s}) is missing from {got}")
    return out


def raw_event(
    event_id: str,
    event_type: str,
    occurred_at: int,
    channel: str = "web",
    total: float = 0.0,
    items: list[tuple[str, int]] | None = None,
    category: str = "shoes",
    dwell_ms: int = 0,
    **identifiers: str,
) -> dict[str, Any]:
    """A hand-made decoded ``NormalizedEvent`` (tests' own builder, independent of models/)."""
    ids = {t: None for t in ("customer_id", "email_hash", "phone_hash", "device_id", "cookie_id", "loyalty_id")}
    ids.update(identifiers or {"cookie_id": "ck-1"})
    if event_type in ORDER_TYPES:
        lines = [
            {"product_id": f"sku-{c}", "category": c, "quantity": q, "unit_price": 1.0}
            for c, q in (items if items is not None else [("shoes", 1)])
        ]
        payload: tuple[str, dict[str, Any]] = (
            "journey.v1.Purchase",
            {
                "order_id": f"o-{event_id}",
                "cart_id": None,
                "currency": "USD",
                "total": total,
                "items": lines,
                "store_id": None,
            },
        )
    elif event_type == "product_view":
        payload = (
            "journey.v1.ProductView",
            {"product_id": "sku", "category": category, "price": 1.0, "dwell_ms": dwell_ms},
        )
    elif event_type == "add_to_cart":
        payload = (
            "journey.v1.CartChange",
            {"cart_id": "c", "product_id": "sku", "category": category, "quantity": 1, "unit_price": 1.0},
        )
    else:
        payload = ("journey.v1.PageView", {"url": "https://shop.example.com/", "referrer": None, "title": None})
    return {
        "event_id": event_id,
        "event_type": event_type,
        "channel": channel,
        "occurred_at": occurred_at,
        "schema_version": 1,
        "identifiers": ids,
        "context": {},
        "payload": payload,
        "source_topic": f"journey.events.{channel}",
        "source_partition": 0,
        "source_offset": 0,
        "warnings": [],
    }
