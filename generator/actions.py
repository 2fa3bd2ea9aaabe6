"""What a person does within a session, as events: the building blocks of sessions and carts.

:func:`emit` records one event of a person (with the channel's context); the others emit the
usual small sequences: a page view, product views (some after a search), an identify.
Times are epoch ms; a function that emits several events returns the time after the last.

Examples
--------
>>> from generator.context import Generation
>>> from generator.encoding import identifiers
>>> from generator.persons import make_person
>>> g = Generation(seed=5, persons=1, base_time_ms=0, days=1, bad_ratio=0.0, dup_ratio=0.0, late_ratio=0.0,
...                reorder_ratio=0.0)
>>> p = make_person(g, 0, "browser")
>>> end = views(g, p, 1_000, "web", identifiers(cookie_id=p.truth.cookie_ids[0]), n=3)
>>> [e.event_type for e in p.events if e.event_type == "product_view"]
['product_view', 'product_view', 'product_view']
>>> all(a.occurred_at < b.occurred_at for a, b in zip(p.events, p.events[1:])) and end > p.events[-1].occurred_at
True
"""

from __future__ import annotations

from typing import Any

from generator.catalog import CATEGORIES
from generator.context import Generation
from generator.encoding import NAMESPACE, JourneyEvent
from generator.persons import Person
from models.events import PAYLOAD_OF

#: An ``Identifiers`` record (:func:`generator.encoding.identifiers`).
Ids = dict[str, str | None]


def event_context(g: Generation, p: Person, channel: str, device: str | None = None) -> dict[str, str]:
    """The ``context`` map of an event of ``p`` on ``channel`` (``device``: the app's device)."""
    if channel == "web":
        return {"user_agent": p.user_agent, "locale": p.locale}
    if channel == "app":
        return {"locale": p.locale, "os": p.device_os.get(device or "", "ios")}
    if channel == "email":
        return {"esp": "mailer-1"}
    if channel == "pos":
        return {"terminal": f"t{g.rng.randint(1, 6)}"}
    return {"source": "crm-sync"}


def emit(
    g: Generation,
    p: Person,
    t: int,
    event_type: str,
    channel: str,
    ids: Ids,
    payload: dict[str, Any],
    device: str | None = None,
) -> JourneyEvent:
    """Append an event of ``p`` at ``t`` (its payload record named after ``event_type``)."""
    ev = JourneyEvent(
        p.index,
        len(p.events),
        event_type,
        channel,
        t,
        ids,
        (NAMESPACE + PAYLOAD_OF[event_type], payload),
        event_context(g, p, channel, device),
    )
    p.events.append(ev)
    return ev


def app_open_payload(g: Generation, p: Person, device: str) -> dict[str, Any]:
    """The ``AppOpen`` payload of ``p`` opening the app on ``device``."""
    return {"app_version": f"5.{g.rng.randint(0, 9)}.{g.rng.randint(0, 3)}", "os": p.device_os[device]}


def page_view(g: Generation, p: Person, t: int, ids: Ids, referrer: str | None = None) -> None:
    """A web page view of a random section of the shop at ``t``."""
    section = g.rng.choice(("", "new", "sale", "c/" + g.rng.choice(CATEGORIES)[0], "help/shipping"))
    emit(
        g,
        p,
        t,
        "page_view",
        "web",
        ids,
        {
            "url": f"https://shop.example.com/{section}",
            "referrer": referrer,
            "title": section.split("/")[-1].replace("-", " ").title() or "Home",
        },
    )


def views(
    g: Generation,
    p: Person,
    t: int,
    channel: str,
    ids: Ids,
    n: int,
    bargain: bool = False,
    long_dwell: bool = False,
    device: str | None = None,
) -> int:
    """``n`` product views (some preceded by a search); returns the time after the last."""
    rng = g.rng
    for _ in range(n):
        if rng.random() < (0.6 if bargain else 0.35):
            t = g.step(t)
            prod = g.product(bargain)
            q = f"{rng.choice(('sale', 'cheap', 'discount'))} {prod.name}" if bargain else prod.name
            emit(g, p, t, "search", channel, ids, {"query": q, "results": rng.randint(0, 180)}, device)
        t = g.step(t)
        prod = g.product(bargain)
        dwell = rng.randint(40_000, 220_000) if long_dwell else rng.randint(2_000, 25_000 if bargain else 60_000)
        t = view(g, p, t, channel, ids, prod, dwell, device)
    return t


def view(
    g: Generation, p: Person, t: int, channel: str, ids: Ids, prod: Any, dwell: int, device: str | None = None
) -> int:
    """A ``product_view`` of ``prod`` at ``t`` lasting ``dwell`` ms; returns when it ends."""
    emit(
        g,
        p,
        t,
        "product_view",
        channel,
        ids,
        {"product_id": prod.product_id, "category": prod.category, "price": prod.price, "dwell_ms": dwell},
        device,
    )
    return t + dwell


def identify(g: Generation, p: Person, t: int, channel: str, method: str, ids: Ids, device: str | None = None) -> None:
    """An ``identify`` (login, signup, ...) linking the identifiers in ``ids``."""
    emit(g, p, t, "identify", channel, ids, {"method": method}, device)
