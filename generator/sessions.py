"""The kinds of session a journey is made of: one burst of activity of a person on a channel.

Each ``<kind>_session(g, p, t, ...)`` plays a session of person ``p`` starting at ``t`` (epoch
ms) and returns the time of its last event. Sessions link identifiers the way real journeys do:
anonymous browsing on a cookie then a signup or login (:func:`signup_session`), first use of
a device (:func:`app_first_session`), CRM updates with email and phone (:func:`crm_session`),
store visits scanning the loyalty card (:func:`store_session`), email campaigns
(:func:`email_session`), and the erasure request that ends some journeys.

For the journeys stage (docs/journeys.md): a marketing opt-in early in some journeys
(:func:`marketing_optin_session`), products viewed three times in a visit (:func:`revisit`),
and open carts followed up by a reminder and/or a later purchase
(:func:`generator.carts.play_cart`). A visitor who browses anonymously and logs in at checkout
only glances at products (:func:`glances`): no high-intent decision falls minutes before that
identity link.

Examples
--------
>>> from generator.context import Generation
>>> from generator.persons import make_person
>>> g = Generation(seed=5, persons=1, base_time_ms=0, days=1, bad_ratio=0.0, dup_ratio=0.0, late_ratio=0.0,
...                reorder_ratio=0.0)
>>> p = make_person(g, 0, "bargain_hunter")
>>> end = signup_session(g, p, 1_000)
>>> p.events[0].identifiers["customer_id"] is None  # anonymous at first
True
>>> any(e.event_type == "identify" and e.identifiers["customer_id"] == p.truth.customer_id for e in p.events)
True
>>> end == p.events[-1].occurred_at or end > p.events[-1].occurred_at
True
"""

from __future__ import annotations

from generator.actions import Ids, app_open_payload, emit, identify, page_view, view, views
from generator.carts import play_cart
from generator.catalog import CAMPAIGNS, CITIES, CURRENCY, REFERRERS, STORES, money
from generator.context import Generation
from generator.encoding import identifiers
from generator.persons import Person, raw_email, raw_phone
from generator.timing import SECOND_MS

#: Share of web and app visits in which one product is viewed three times (:func:`revisit`).
REVISIT_RATIO = 0.15


def signup_session(g: Generation, p: Person, t: int) -> int:
    """Anonymous browsing on the first cookie, then signup/login linking cookie, account and email."""
    tr = p.truth
    anon = identifiers(cookie_id=tr.cookie_ids[0])
    page_view(g, p, t, anon, g.rng.choice(REFERRERS))
    t = views(g, p, t, "web", anon, g.rng.randint(1, 3))
    t = g.step(t)
    identify(
        g,
        p,
        t,
        "web",
        g.rng.choice(("signup", "login", "newsletter")),
        identifiers(customer_id=tr.customer_id, email=raw_email(g, p), cookie_id=tr.cookie_ids[0]),
    )
    if g.rng.random() < 0.3:
        t = g.step(t)
        emit(
            g,
            p,
            t,
            "consent_update",
            "web",
            identifiers(customer_id=tr.customer_id, cookie_id=tr.cookie_ids[0]),
            {"purpose": "marketing", "granted": g.rng.random() < 0.7},
        )
    known = identifiers(customer_id=tr.customer_id, cookie_id=tr.cookie_ids[0])
    return views(g, p, t, "web", known, g.rng.randint(0, 2))


def marketing_optin_session(g: Generation, p: Person, t: int) -> int:
    """A visit to the preference centre granting marketing consent (one ``consent_update`` on
    the signup cookie, already linked to the account: it links nothing new)."""
    tr = p.truth
    ids = identifiers(customer_id=tr.customer_id, cookie_id=tr.cookie_ids[0])
    emit(g, p, t, "consent_update", "web", ids, {"purpose": "marketing", "granted": True})
    return t


def revisit(g: Generation, p: Person, t: int, channel: str, ids: Ids, device: str | None = None) -> int:
    """One product viewed three times in a row, each time briefly (a comparison: high intent by
    views, not by dwell); returns the time after the last view."""
    prod = g.product(p.truth.behaviour == "bargain_hunter")
    for _ in range(3):
        t = g.step(t)
        t = view(g, p, t, channel, ids, prod, g.rng.randint(2_000, 25_000), device)
    return t


def glances(g: Generation, p: Person, t: int, channel: str, ids: Ids, n: int, bargain: bool = False) -> int:
    """``n`` brief views of distinct products (no high intent); returns the time after the last."""
    pool = g.cheap if bargain else g.products
    for prod in g.rng.sample(pool, min(n, len(pool))):
        t = g.step(t)
        t = view(g, p, t, channel, ids, prod, g.rng.randint(2_000, 25_000))
    return t


def crm_session(g: Generation, p: Person, t: int) -> int:
    """A CRM update carrying the account, email and phone, and CRM attributes."""
    tr = p.truth
    ids = identifiers(customer_id=tr.customer_id, email=raw_email(g, p), phone=raw_phone(g, p))
    attributes = {
        "tier": g.rng.choice(("bronze", "silver", "gold")),
        "city": g.rng.choice(CITIES),
        "preferred_store": p.home_store,
    }
    emit(g, p, t, "crm_update", "crm", ids, {"attributes": attributes})
    return t


def anon_cookie_session(g: Generation, p: Person, t: int, cookie: str) -> int:
    """Browsing on a not-yet-identified cookie (another browser)."""
    anon = identifiers(cookie_id=cookie)
    page_view(g, p, t, anon, g.rng.choice(REFERRERS))
    return views(g, p, t, "web", anon, g.rng.randint(1, 4))


def cookie_login_session(g: Generation, p: Person, t: int, cookie: str) -> int:
    """A login on ``cookie``, linking it to the account and email, then product views."""
    tr = p.truth
    page_view(g, p, t, identifiers(cookie_id=cookie))
    t = g.step(t)
    identify(g, p, t, "web", "login", identifiers(customer_id=tr.customer_id, email=raw_email(g, p), cookie_id=cookie))
    return views(g, p, t, "web", identifiers(customer_id=tr.customer_id, cookie_id=cookie), g.rng.randint(1, 3))


def app_first_session(g: Generation, p: Person, t: int, device: str) -> int:
    """First use of a device: anonymous app_open, then login linking device and account."""
    tr = p.truth
    emit(g, p, t, "app_open", "app", identifiers(device_id=device), app_open_payload(g, p, device), device)
    t = g.step(t)
    identify(
        g,
        p,
        t,
        "app",
        g.rng.choice(("login", "login", "signup")),
        identifiers(customer_id=tr.customer_id, email=raw_email(g, p), device_id=device),
        device,
    )
    known = identifiers(customer_id=tr.customer_id, device_id=device)
    return views(g, p, t, "app", known, g.rng.randint(0, 2), device=device)


def consent_session(g: Generation, p: Person, t: int) -> int:
    """One to three consent updates, on the web or in the app."""
    tr = p.truth
    if g.rng.random() < 0.5:
        ids = identifiers(customer_id=tr.customer_id, cookie_id=g.rng.choice(tr.cookie_ids))
        channel, device = "web", None
        page_view(g, p, t, ids)
        t = g.step(t)
    else:
        device = g.rng.choice(tr.device_ids)
        ids, channel = identifiers(customer_id=tr.customer_id, device_id=device), "app"
    for purpose in g.rng.sample(("personalization", "marketing", "analytics"), g.rng.randint(1, 3)):
        emit(g, p, t, "consent_update", channel, ids, {"purpose": purpose, "granted": g.rng.random() < 0.75}, device)
        t = g.step(t)
    return t


def store_session(g: Generation, p: Person, t: int, purchase: bool, with_phone: bool) -> int:
    """A store visit: loyalty scan, then (maybe) a store purchase."""
    rng, tr = g.rng, p.truth
    assert tr.loyalty_id is not None
    store = p.home_store if rng.random() < 0.8 else rng.choice(STORES)
    ids = identifiers(loyalty_id=tr.loyalty_id, phone=raw_phone(g, p) if with_phone else None)
    items = [(g.product(tr.behaviour == "bargain_hunter"), rng.randint(1, 3)) for _ in range(rng.randint(1, 5))]
    total = money(sum(q * pr.price for pr, q in items))
    points = int(total) if purchase else -rng.choice((0, 50, 100, 200))
    emit(g, p, t, "loyalty_scan", "pos", ids, {"store_id": store, "points": points})
    if purchase:
        t = g.step(t, 30 * SECOND_MS, 200 * SECOND_MS)
        buyer = identifiers(loyalty_id=tr.loyalty_id, phone=raw_phone(g, p) if with_phone else None)
        emit(
            g,
            p,
            t,
            "store_purchase",
            "pos",
            buyer,
            {
                "order_id": f"so-{g.seed}-{g.next('store_order'):07d}",
                "cart_id": None,
                "currency": CURRENCY,
                "total": total,
                "items": [
                    {"product_id": pr.product_id, "category": pr.category, "quantity": q, "unit_price": pr.price}
                    for pr, q in items
                ],
                "store_id": store,
            },
        )
        tr.store_orders += 1
        tr.revenue = money(tr.revenue + total)
    return t


def web_session(
    g: Generation,
    p: Person,
    t: int,
    cart: str | None = None,
    bargain: bool = False,
    long_dwell: bool = False,
    anonymous: bool = False,
    referrer: str | None = None,
    followup: str | None = None,
    reorder: bool = False,
) -> int:
    """A web visit on one of the person's cookies, logged in unless ``anonymous``.

    ``cart``: play a cart with this outcome (:func:`generator.carts.play_cart`, with
    ``followup``) at the end; ``reorder``: then a second cart, purchased minutes later (two
    orders on one day). Some visits view one product three times (:func:`revisit`).
    """
    tr = p.truth
    cookie = g.rng.choice(tr.cookie_ids)
    anon = identifiers(cookie_id=cookie)
    ids = identifiers(customer_id=tr.customer_id, cookie_id=cookie)
    page_view(g, p, t, anon if anonymous else ids, referrer)
    if anonymous and cart in ("checkout", "purchase"):
        # the visitor logs in at checkout, minutes later: no journey decision (high intent)
        # just before that link (docs/journeys.md, "Identity changes")
        t = glances(g, p, t, "web", anon, g.rng.randint(1, 4), bargain)
    else:
        t = views(g, p, t, "web", anon if anonymous else ids, g.rng.randint(1, 5), bargain, long_dwell)
        if g.rng.random() < REVISIT_RATIO:
            t = revisit(g, p, t, "web", anon if anonymous else ids)
    if cart is not None:
        t = g.step(t)
        t = play_cart(g, p, t, "web", ids, cart, bargain, anonymous_ids=anon if anonymous else None, followup=followup)
    if reorder:
        t = play_cart(g, p, g.step(t), "web", ids, "purchase", bargain)
    return t


def app_session(
    g: Generation,
    p: Person,
    t: int,
    cart: str | None = None,
    bargain: bool = False,
    followup: str | None = None,
    reorder: bool = False,
) -> int:
    """An app visit on one of the person's devices (logged in), maybe ending with a cart
    (and ``reorder``: a second one purchased, as in :func:`web_session`)."""
    tr = p.truth
    device = g.rng.choice(tr.device_ids)
    ids = identifiers(customer_id=tr.customer_id, device_id=device)
    emit(g, p, t, "app_open", "app", ids, app_open_payload(g, p, device), device)
    t = views(g, p, t, "app", ids, g.rng.randint(1, 4), bargain, device=device)
    if g.rng.random() < REVISIT_RATIO:
        t = revisit(g, p, t, "app", ids, device)
    if cart is not None:
        t = g.step(t)
        t = play_cart(g, p, t, "app", ids, cart, bargain, device=device, followup=followup)
    if reorder:
        t = play_cart(g, p, g.step(t), "app", ids, "purchase", bargain, device=device)
    return t


def push_session(g: Generation, p: Person, t: int, bargain: bool = False) -> int:
    """A push notification opened, then an app visit."""
    tr = p.truth
    device = g.rng.choice(tr.device_ids)
    ids = identifiers(customer_id=tr.customer_id, device_id=device)
    emit(
        g,
        p,
        t,
        "push_open",
        "app",
        ids,
        {"campaign_id": g.rng.choice(CAMPAIGNS), "message_id": f"push-{g.seed}-{g.next('push'):07d}", "link_url": None},
        device,
    )
    t = g.step(t)
    return app_session(g, p, t, bargain=bargain)


def email_session(g: Generation, p: Person, t: int, click: bool, visit: bool = False, bargain: bool = False) -> int:
    """Email open (and click, and the resulting site visit)."""
    campaign = g.rng.choice(CAMPAIGNS)
    message = f"msg-{g.seed}-{g.next('message'):07d}"
    emit(
        g,
        p,
        t,
        "email_open",
        "email",
        identifiers(email=raw_email(g, p)),
        {"campaign_id": campaign, "message_id": message, "link_url": None},
    )
    if not click:
        return t
    t = g.step(t)
    link = f"https://shop.example.com/{'sale' if bargain else 'new'}?utm_campaign={campaign}"
    emit(
        g,
        p,
        t,
        "email_click",
        "email",
        identifiers(email=raw_email(g, p)),
        {"campaign_id": campaign, "message_id": message, "link_url": link},
    )
    if visit:
        t = g.step(t)
        t = web_session(g, p, t, bargain=bargain, referrer=link)
    return t


def erasure_session(g: Generation, p: Person, t: int) -> int:
    """An erasure request (GDPR or CCPA): the person's last event."""
    tr = p.truth
    channel = g.rng.choice(("crm", "web"))
    emit(
        g,
        p,
        t,
        "erasure_request",
        channel,
        identifiers(
            customer_id=tr.customer_id, email=raw_email(g, p), cookie_id=tr.cookie_ids[0] if channel == "web" else None
        ),
        {"request_id": f"er-{g.seed}-{g.next('erasure'):05d}", "regulation": g.rng.choice(("gdpr", "ccpa"))},
    )
    tr.erased = True
    return t
