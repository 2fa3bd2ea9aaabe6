"""Journeys: which sessions a person has, in which order, and when.

:func:`plan` lists a person's sessions: a signup first, then the sessions that link every
identifier they have (the "core") interleaved with sessions typical of their behaviour
(browsing, bargain hunting, loyal buying, cart abandoning, offline shopping), and for some
an erasure request last. :func:`play` runs them at random start times over the calendar, at
least :data:`generator.timing.SESSION_GAP_MS` apart. :func:`play_journeys` plants every
person and plays their journey (with planted supernodes, every person is drawn first, then the
supernodes, then the journeys, whose core gains the supernode visits: :mod:`generator.supernodes`).

Examples
--------
>>> from generator.context import Generation
>>> g = Generation(seed=5, persons=6, base_time_ms=1_790_000_000_000, days=3, bad_ratio=0.0, dup_ratio=0.0,
...                late_ratio=0.0, reorder_ratio=0.0)
>>> events = play_journeys(g)
>>> sorted({p.truth.behaviour for p in g.persons}) == sorted(BEHAVIOURS)
True
>>> events == sorted(events, key=lambda e: (e.occurred_at, e.person, e.pos))
True
>>> all(p.events[0].event_type in ("page_view", "product_view", "search") for p in g.persons)  # signup first
True
"""

from __future__ import annotations

import random
from typing import Callable

from generator.carts import FOLLOWUP_WEIGHTS, FOLLOWUPS
from generator.context import Generation
from generator.encoding import JourneyEvent
from generator.journey_truth import OPEN_TYPES, JourneySettings
from generator.persons import BEHAVIOUR_WEIGHTS, Person, make_person
from generator.supernodes import SESSIONS as SUPERNODE_SESSIONS
from generator.supernodes import plant
from generator.sessions import (
    anon_cookie_session,
    app_first_session,
    app_session,
    consent_session,
    cookie_login_session,
    crm_session,
    email_session,
    erasure_session,
    marketing_optin_session,
    push_session,
    signup_session,
    store_session,
    web_session,
)
from generator.timing import DAY_MS, HOUR_MS, MINUTE_MS, SESSION_GAP_MS
from generator.truth import BEHAVIOURS

#: Share of bargain hunters and cart abandoners who grant marketing consent right after signup
#: (:func:`generator.sessions.marketing_optin_session`), so that their abandoned carts are published.
OPTIN_RATIO = 0.6
#: Share of a loyal buyer's purchase visits with a second order minutes after the first.
REORDER_RATIO = 0.2
#: The journeys stage's defaults (docs/journeys.md) the planted carts are timed against.
JOURNEY = JourneySettings()
#: Nothing of a person happens this close to a journey decision (escalation) planted in their journey.
DECISION_MARGIN_MS = 10 * MINUTE_MS

#: Share of persons planted as churners: their sessions thin out and stop for good part-way
#: through the calendar (:func:`churn_point`), the signal the churn model learns (docs/learning.md).
CHURN_RATIO = 0.3
#: A churner's session starts are ``stop * (1 - (1 - u) ** CHURN_SHAPE)`` for uniform ``u``: a
#: density falling as ``(1 - t / stop) ** (1 / CHURN_SHAPE - 1)``, so their gaps grow before they stop.
CHURN_SHAPE = 0.25

#: A session to play: start time -> time of its last event.
Session = Callable[[int], int]


def interleave(g: Generation, a: list[Session], b: list[Session]) -> list[Session]:
    """Random merge keeping the order within ``a`` and within ``b``."""
    out: list[Session] = []
    i = j = 0
    while i < len(a) or j < len(b):
        left_a, left_b = len(a) - i, len(b) - j
        if left_b == 0 or (left_a and g.rng.random() < left_a / (left_a + left_b)):
            out.append(a[i])
            i += 1
        else:
            out.append(b[j])
            j += 1
    return out


def followup(g: Generation, outcome: str) -> str | None:
    """How a cart with ``outcome`` is followed up (:data:`generator.carts.FOLLOWUPS`; only open carts)."""
    return g.rng.choices(FOLLOWUPS, weights=FOLLOWUP_WEIGHTS)[0] if outcome == "open" else None


def plan(g: Generation, p: Person, erase: bool) -> list[Session]:
    """The sessions of ``p``'s journey, in order (``erase``: end with an erasure request)."""
    rng, tr = g.rng, p.truth
    core: list[Session] = [lambda t: crm_session(g, p, t)]
    for c in tr.cookie_ids[1:]:
        core += [lambda t, c=c: anon_cookie_session(g, p, t, c), lambda t, c=c: cookie_login_session(g, p, t, c)]
    for d in tr.device_ids:
        core.append(lambda t, d=d: app_first_session(g, p, t, d))
    core.append(lambda t: consent_session(g, p, t))
    if tr.loyalty_id is not None:
        first_buy = tr.behaviour == "offline_shopper" or rng.random() < 0.5
        core.append(lambda t, b=first_buy: store_session(g, p, t, purchase=b, with_phone=True))
    for kind, value in g.supernode_visits.get(p.index, ()):
        core.append(lambda t, k=kind, v=value: SUPERNODE_SESSIONS[k](g, p, t, v))

    beh: list[Session] = []
    kind = tr.behaviour
    if kind == "browser":
        beh += [
            lambda t: web_session(g, p, t, long_dwell=True, anonymous=rng.random() < 0.3)
            for _ in range(rng.randint(3, 6))
        ]
        if rng.random() < 0.3:
            beh.append(lambda t, f=followup(g, "open"): web_session(g, p, t, cart="open", long_dwell=True, followup=f))
        beh += [lambda t: app_session(g, p, t) for _ in range(rng.randint(0, 2))]
        beh += [lambda t: email_session(g, p, t, click=False) for _ in range(rng.randint(1, 3))]
        if rng.random() < 0.4:
            beh.append(lambda t: email_session(g, p, t, click=True, visit=True))
    elif kind == "bargain_hunter":
        beh += [lambda t: web_session(g, p, t, bargain=True) for _ in range(rng.randint(2, 4))]
        outcomes = ["purchase"] + [
            rng.choice(("purchase", "checkout", "open", "open")) for _ in range(rng.randint(1, 2))
        ]
        rng.shuffle(outcomes)
        beh += [
            lambda t, o=o, f=followup(g, o): web_session(g, p, t, cart=o, bargain=True, followup=f) for o in outcomes
        ]
        beh += [
            lambda t: email_session(g, p, t, click=True, visit=True, bargain=True) for _ in range(rng.randint(2, 4))
        ]
        beh += [lambda t: push_session(g, p, t, bargain=True) for _ in range(rng.randint(0, 2))]
    elif kind == "loyal_buyer":
        for _ in range(rng.randint(3, 6)):
            again = rng.random() < REORDER_RATIO
            if rng.random() < 0.5:
                beh.append(lambda t, r=again: web_session(g, p, t, cart="purchase", reorder=r))
            else:
                beh.append(lambda t, r=again: app_session(g, p, t, cart="purchase", reorder=r))
        beh += [lambda t: app_session(g, p, t) for _ in range(rng.randint(1, 3))]
        beh += [lambda t: push_session(g, p, t) for _ in range(rng.randint(1, 3))]
        beh += [lambda t: email_session(g, p, t, click=rng.random() < 0.3) for _ in range(rng.randint(1, 3))]
        if tr.loyalty_id is not None:
            beh += [
                lambda t: store_session(g, p, t, purchase=True, with_phone=rng.random() < 0.3)
                for _ in range(rng.randint(1, 2))
            ]
    elif kind == "cart_abandoner":
        outcomes = ["checkout"] + [rng.choice(("open", "checkout")) for _ in range(rng.randint(1, 3))]
        rng.shuffle(outcomes)
        for o in outcomes:
            f = followup(g, o)
            if rng.random() < 0.7:
                beh.append(lambda t, o=o, f=f: web_session(g, p, t, cart=o, anonymous=rng.random() < 0.4, followup=f))
            else:
                beh.append(lambda t, o=o, f=f: app_session(g, p, t, cart=o, followup=f))
        beh += [lambda t: web_session(g, p, t) for _ in range(rng.randint(1, 2))]
        beh += [
            lambda t: email_session(g, p, t, click=True, visit=rng.random() < 0.5) for _ in range(rng.randint(1, 2))
        ]
    else:  # offline_shopper
        beh += [
            lambda t: store_session(g, p, t, purchase=rng.random() < 0.75, with_phone=rng.random() < 0.3)
            for _ in range(rng.randint(2, 5))
        ]
        beh.append(lambda t: web_session(g, p, t))
        beh += [lambda t: email_session(g, p, t, click=False) for _ in range(rng.randint(1, 2))]
        beh.append(lambda t: crm_session(g, p, t))
    rng.shuffle(beh)
    sessions: list[Session] = [lambda t: signup_session(g, p, t)]
    if kind in ("bargain_hunter", "cart_abandoner") and rng.random() < OPTIN_RATIO:
        sessions.append(lambda t: marketing_optin_session(g, p, t))
    sessions += interleave(g, core, beh)
    if erase:
        sessions.append(lambda t: erasure_session(g, p, t))
    return sessions


def play(g: Generation, p: Person, sessions: list[Session]) -> None:
    """Run the sessions at increasing start times, at least :data:`generator.timing.SESSION_GAP_MS` apart.

    A message opened after a cart's deadline may start an escalation timer
    (docs/journeys.md): the person then does nothing until :data:`DECISION_MARGIN_MS` after
    it would fire, so that no identity or consent change falls near the decision.
    """
    horizon = g.days * DAY_MS
    starts = sorted(g.rng.randrange(0, horizon) for _ in sessions)
    stop = churn_point(g, p.index)
    if stop is not None:  # a churner: fewer and fewer sessions, none after ``stop`` (docs/learning.md)
        starts = [int(stop * horizon * (1 - (1 - s / horizon) ** CHURN_SHAPE)) for s in starts]
    end = None
    deadlines: dict[str, int] = {}  # open cart -> its deadline, until bought or its first later open
    for start, session in zip(starts, sessions, strict=True):
        t = g.base + start
        if end is not None:
            t = max(t, end + SESSION_GAP_MS + g.rng.randrange(0, HOUR_MS))
        first = len(p.events)
        end = session(t)
        end = max(end, quiet_until(p.events[first:], deadlines))
    p.truth.sessions += len(sessions)
    if stop is not None:
        p.truth.churned_at = end


def churn_point(g: Generation, index: int) -> float | None:
    """Whether person ``index`` is a planted churner (:data:`CHURN_RATIO` of them), and if so
    the share of the calendar after which they are never active again (0.35 to 0.75).

    Drawn from a generator of its own, so planting churners changes nothing else: every other
    draw, and so every other person's journey, is what it was without them.

    >>> from generator.context import Generation
    >>> g = Generation(seed=5, persons=200, base_time_ms=0, days=1, bad_ratio=0.0, dup_ratio=0.0,
    ...                late_ratio=0.0, reorder_ratio=0.0)
    >>> points = [churn_point(g, i) for i in range(200)]
    >>> 0.2 < sum(p is not None for p in points) / 200 < 0.4, all(0.35 <= p <= 0.75 for p in points if p)
    (True, True)
    """
    rnd = random.Random(f"churn:{g.seed}:{index}")
    if rnd.random() >= CHURN_RATIO:
        return None
    return rnd.uniform(0.35, 0.75)


def quiet_until(events: list[JourneyEvent], deadlines: dict[str, int]) -> int:
    """Time until which a person must stay quiet after ``events``: the margin after every
    escalation that an open among them may start. Updates ``deadlines`` (cart -> deadline)."""
    due: dict[str, int] = {}
    for ev in events:
        pl = ev.payload[1]
        if ev.event_type == "add_to_cart":
            deadlines[pl["cart_id"]] = ev.occurred_at + JOURNEY.cart_timeout_ms
        elif ev.event_type in ("checkout_started", "purchase") and pl.get("cart_id"):
            deadlines.pop(pl["cart_id"], None)
            due.pop(pl["cart_id"], None)
        elif ev.event_type in OPEN_TYPES:
            for cart_id, deadline in list(deadlines.items()):
                if deadline < ev.occurred_at <= deadline + JOURNEY.recovery_window_ms:
                    due[cart_id] = ev.occurred_at + JOURNEY.escalation_timeout_ms
                    del deadlines[cart_id]
    return max(due.values(), default=0) + DECISION_MARGIN_MS


def play_journeys(g: Generation) -> list[JourneyEvent]:
    """Plant ``g.n_persons`` persons (every behaviour once, if there are enough; 2 % erased from
    20 persons on) and ``g.supernodes`` if any, play their journeys, and return every event in
    event-time order."""
    rng = g.rng
    behaviours = list(BEHAVIOURS[: min(g.n_persons, len(BEHAVIOURS))])
    behaviours += rng.choices(BEHAVIOURS, weights=BEHAVIOUR_WEIGHTS, k=g.n_persons - len(behaviours))
    rng.shuffle(behaviours)
    n_erase = round(g.n_persons * 0.02) if g.n_persons >= 20 else 0
    n_erase = max(n_erase, 1) if g.n_persons >= 20 else 0
    erased = set(rng.sample(range(g.n_persons), n_erase))
    if g.supernodes is None:
        for i, b in enumerate(behaviours):
            p = make_person(g, i, b)
            g.persons.append(p)
            play(g, p, plan(g, p, i in erased))
    else:  # who shares what depends on the persons (callers need a phone): draw them all first
        g.persons.extend(make_person(g, i, b) for i, b in enumerate(behaviours))
        plant(g, g.supernodes, erased)
        for p in g.persons:
            play(g, p, plan(g, p, p.index in erased))
    events = [ev for p in g.persons for ev in p.events]
    events.sort(key=lambda e: (e.occurred_at, e.person, e.pos))
    return events
