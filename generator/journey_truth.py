"""Offline oracle of the journeys stage: sessions, carts and triggers from the events alone.

:func:`journey_truth` replays every event in event-time order ``(occurred_at, event_id)`` in
plain Python and returns what the journeys stage must conclude (:class:`JourneyTruth`): the
sessions, the carts' final status, every trigger (published and suppressed) and the late
events it dropped. It is written from ``docs/journeys.md`` only, independently of the job's
code (``models/journeys.py``, ``operators/``), so the two can be compared.

Semantics, in the order the replay applies them:

* **Time.** Events are applied in ``(occurred_at, event_id)`` order, duplicates (same
  ``event_id``) once. A due time ``D`` (cart deadline, escalation, and the evaluation of every
  trigger) is handled after every event with ``occurred_at <= D``. At the end of the input,
  event time is complete up to the newest event (the job's idle advance): due times after it
  never fire (those carts stay ``open``).
* **Person at time t.** The connected component of identifiers linked by the events with
  ``occurred_at <= t`` (an event carrying two or more identifiers links them all; blocked
  values never link). Consent, opens and engagement are the person's. Two ``customer_id`` in
  one component raise :class:`ValueError` (the generated journeys plant none).
* **Late events** (``late_event_ids``) are not applied to sessions, carts, consent or opens;
  they still link identifiers (identity resolution sees every event).
* **Sessions** per stream (``cookie_id`` on ``web``, ``device_id`` on ``app``, else the
  atom), a new one after a gap ``> session_gap_ms``.
* **Carts** by ``cart_id``; every trigger's consent is the person's at its ``fired_at``.

Where ``docs/journeys.md`` is silent, these choices are made (and tested):

* an event without any usable (non-blocked) identifier is in no session and no cart;
* ``remove_from_cart``, ``checkout_started`` and ``purchase`` of a cart never added are ignored;
* ``checkout_started`` after an abandonment changes nothing; ``purchase`` after a checkout
  makes the cart ``purchased``; an emptied cart that is checked out or purchased is completed;
* the "opens" that start an escalation and make ``message_opened`` are ``email_open``,
  ``email_click`` and ``push_open``;
* a purchase of the cart after the recovery window is no recovery, but still cancels an
  escalation due at or after it ("not purchased by ``open + T2``");
* ``first_campaign`` skips an empty ``utm_campaign=`` value.

The job applies an identity merge from about the time its router saw the link, not exactly at
it; :func:`ambiguous_trigger_ids` lists the triggers whose outcome depends on that (none of the
generator's planted carts; compare the job with the oracle on the others).

Examples
--------
>>> T = 1_790_000_000_000
>>> def ev(i, t, typ, payload, channel="web", **ids):
...     return {"event_id": f"e{i}", "event_type": typ, "channel": channel, "occurred_at": t,
...             "identifiers": ids, "payload": ("journey.v1.X", payload)}
>>> events = [
...     ev(1, T, "consent_update", {"purpose": "marketing", "granted": True}, customer_id="c1", cookie_id="k1"),
...     ev(2, T + 60_000, "add_to_cart", {"cart_id": "cart-1", "product_id": "p1", "quantity": 2,
...                                       "unit_price": 9.5}, customer_id="c1", cookie_id="k1"),
...     ev(3, T + 7_200_000, "page_view", {"url": "https://shop.example/?utm_campaign=back"}, cookie_id="k1"),
... ]
>>> jt = journey_truth(events)
>>> [(t["kind"], t["fired_at"] - T, t["value"], t["action"], t["suppressed"]) for t in jt.triggers]
[('cart_abandoned', 1860000, 19.0, 'reminder', False)]
>>> jt.carts[0]["status"], [(s["stream"], s["engagement"], s["first_campaign"]) for s in jt.sessions]
('abandoned', [('cookie_id:k1', 5, None), ('cookie_id:k1', 1, 'back')])
>>> jt.counts()["carts_abandoned"], jt.counts()["published_triggers"]
(1, 1)
"""

from __future__ import annotations

import hashlib
import heapq
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Collection, Iterable, Mapping
from urllib.parse import parse_qsl, urlsplit

#: Identifier types, highest priority first (the atom of an event is its first present one).
PRIORITY: tuple[str, ...] = ("customer_id", "loyalty_id", "email_hash", "phone_hash", "device_id", "cookie_id")
#: Raw event field names accepted for the hashed types (the generator's raw events).
ALIASES: dict[str, str] = {"email": "email_hash", "phone": "phone_hash"}
#: Values that never link nor make a stream (docs/identity.md rule 1, plus ``nil``/``na``/``-``).
BLOCKED_VALUES: frozenset[str] = frozenset(
    {"", "null", "none", "nil", "anonymous", "undefined", "unknown", "n/a", "na", "-"}
)
#: Channels and event types that are no interaction on a device: in no session.
NON_SESSION_CHANNELS: frozenset[str] = frozenset({"email", "crm"})
NON_SESSION_TYPES: frozenset[str] = frozenset({"consent_update", "erasure_request", "crm_update"})
#: Message engagements that start an escalation timer and count as "message opened".
OPEN_TYPES: frozenset[str] = frozenset({"email_open", "email_click", "push_open"})
#: Trigger kinds.
KINDS: tuple[str, ...] = ("cart_abandoned", "cart_abandoned_escalation", "cart_recovered", "high_intent")
#: Final statuses of a cart.
CART_STATUSES: tuple[str, ...] = ("open", "checkout", "purchased", "abandoned", "recovered", "emptied")
STRONGER_ACTION: dict[str, str] = {"reminder": "offer", "offer": "offer_plus"}
CENT = Decimal("0.01")

Node = tuple[str, str]


@dataclass(frozen=True)
class JourneySettings:
    """The journeys stage's parameters (defaults as in ``docs/journeys.md``), in ms."""

    session_gap_ms: int = 30 * 60_000
    cart_timeout_ms: int = 30 * 60_000
    escalation_timeout_ms: int = 24 * 3_600_000
    recovery_window_ms: int = 7 * 86_400_000
    allowed_lateness_ms: int = 3_600_000
    high_intent_dwell_ms: int = 30_000
    high_intent_views: int = 3
    offer_engagement: int = 40
    engagement_window_ms: int = 7 * 86_400_000
    marketing_consent_default: bool = False


@dataclass
class JourneyTruth:
    """What the journeys stage must conclude from a set of events.

    Attributes
    ----------
    sessions : list of dict
        One per session, final state, by ``(started_at, session_id)``: ``session_id``,
        ``stream``, ``started_at``, ``ended_at``, ``duration_ms``, ``events``, ``page_views``,
        ``product_views``, ``dwell_ms``, ``searches``, ``cart_adds``, ``checkouts``,
        ``purchases``, ``revenue``, ``channels``, ``first_referrer``, ``first_campaign``,
        ``engagement``, and ``closed`` (event time passed ``ended_at + G`` by the end).
    triggers : list of dict
        Every trigger, published and suppressed, in the order they fire (see module doc).
    carts : list of dict
        One per ``cart_id`` in order of first add: ``cart_id``, ``status``, ``value``,
        ``items``, ``stream``, and ``abandoned_at``/``recovered_at`` (or ``None``).
    late_dropped : list of str
        Ids of the events not applied (the given late ids present in the input), in event order.
    """

    sessions: list[dict[str, Any]] = field(default_factory=list)
    triggers: list[dict[str, Any]] = field(default_factory=list)
    carts: list[dict[str, Any]] = field(default_factory=list)
    late_dropped: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Counts for a summary (trigger kinds count published and suppressed ones).

        Returns
        -------
        dict
            ``sessions``, ``sessions_closed``, ``carts``, ``carts_open``, ``carts_emptied``,
            ``carts_checkout``, ``carts_purchased``, ``carts_abandoned``, ``carts_recovered``
            (final statuses), ``abandonments`` (``cart_abandoned`` triggers), ``escalations``,
            ``recoveries``, ``high_intent``, ``suppressed``, ``published_triggers``, ``late``.
        """
        status = [c["status"] for c in self.carts]
        kinds = [t["kind"] for t in self.triggers]
        return {
            "sessions": len(self.sessions),
            "sessions_closed": sum(1 for s in self.sessions if s["closed"]),
            "carts": len(self.carts),
            "carts_open": status.count("open"),
            "carts_emptied": status.count("emptied"),
            "carts_checkout": status.count("checkout"),
            "carts_purchased": status.count("purchased"),
            "carts_abandoned": status.count("abandoned"),
            "carts_recovered": status.count("recovered"),
            "abandonments": kinds.count("cart_abandoned"),
            "escalations": kinds.count("cart_abandoned_escalation"),
            "recoveries": kinds.count("cart_recovered"),
            "high_intent": kinds.count("high_intent"),
            "suppressed": sum(1 for t in self.triggers if t["suppressed"]),
            "published_triggers": sum(1 for t in self.triggers if not t["suppressed"]),
            "late": len(self.late_dropped),
        }


def is_blocked(value: str) -> bool:
    """Placeholder values that never link (docs/identity.md rule 1).

    >>> [is_blocked(v) for v in ("Unknown ", "0000", "00000000-0000-0000-0000-000000000000", "aaaaaaa", "ck.1")]
    [True, True, True, False, False]
    """
    v = value.strip().lower()
    if v in BLOCKED_VALUES:
        return True
    chars = v.replace("-", "")
    return len(set(chars)) == 1 and (chars[0].isdigit() or len(chars) >= 8)


def session_id(stream: Node, started_at: int) -> str:
    """``s-`` + 20 hex digits of SHA-256 of ``<type>:<value>:<started_at>``."""
    return "s-" + hashlib.sha256(f"{stream[0]}:{stream[1]}:{started_at}".encode()).hexdigest()[:20]


def trigger_id(kind: str, cart_id: str | None = None, session: str | None = None, product: str | None = None) -> str:
    """``t-`` + 20 hex digits of SHA-256 of ``<kind>:<cart_id>`` or ``<kind>:<session_id>:<product_id>``."""
    key = f"{kind}:{session}:{product}" if kind == "high_intent" else f"{kind}:{cart_id}"
    return "t-" + hashlib.sha256(key.encode()).hexdigest()[:20]


def stream_name(node: Node) -> str:
    """``<identifier type>:<value>``."""
    return f"{node[0]}:{node[1]}"


def money(x: Any) -> Decimal:
    """A JSON number as an exact decimal."""
    return Decimal(repr(float(x))) if not isinstance(x, Decimal) else x


def identifiers_of(ev: Mapping[str, Any]) -> list[Node]:
    """The event's usable identifiers (type, value), distinct, highest priority first."""
    raw = ev.get("identifiers") or {}
    found: set[Node] = set()
    for k, v in raw.items():
        t = ALIASES.get(k, k)
        if t in PRIORITY and isinstance(v, str) and not is_blocked(v):
            found.add((t, v))
    return sorted(found, key=lambda n: (PRIORITY.index(n[0]), n[1]))


def stream_of(ev: Mapping[str, Any], ids: list[Node]) -> Node | None:
    """``cookie_id`` on web, ``device_id`` on app, else the atom (``None`` without identifiers)."""
    wanted = {"web": "cookie_id", "app": "device_id"}.get(ev["channel"])
    for n in ids:
        if n[0] == wanted:
            return n
    return ids[0] if ids else None


def campaign_of(url: str | None) -> str | None:
    """The first non-empty ``utm_campaign`` query value of ``url``.

    >>> campaign_of("https://x.example/a?b=1&utm_campaign=spring&utm_campaign=x"), campaign_of(None)
    ('spring', None)
    """
    if not url:
        return None
    try:
        query = urlsplit(url).query
    except ValueError:
        return None
    for k, v in parse_qsl(query):
        if k == "utm_campaign" and v:
            return v
    return None


class _People:
    """Union-find of identifiers over time, with each component's consent and members."""

    def __init__(self) -> None:
        self.parent: dict[Node, Node] = {}
        self.members: dict[Node, list[Node]] = {}
        self.consent: dict[Node, tuple[int, str, bool]] = {}  # root -> (occurred_at, event_id, granted)

    def find(self, x: Node) -> Node:
        if x not in self.parent:
            self.parent[x] = x
            self.members[x] = [x]
            return x
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def link(self, nodes: list[Node]) -> None:
        roots = [self.find(n) for n in nodes]
        for r in roots[1:]:
            a, b = self.find(roots[0]), self.find(r)
            if a == b:
                continue
            if len(self.members[a]) < len(self.members[b]):
                a, b = b, a
            customers = {n for n in self.members[a] + self.members[b] if n[0] == "customer_id"}
            if len(customers) > 1:
                raise ValueError(f"one person would hold two customer_id values: {sorted(v for _, v in customers)}")
            self.parent[b] = a
            self.members[a] += self.members.pop(b)
            cb = self.consent.pop(b, None)
            if cb is not None and (a not in self.consent or cb > self.consent[a]):
                self.consent[a] = cb

    def set_consent(self, node: Node, record: tuple[int, str, bool]) -> None:
        root = self.find(node)
        if root not in self.consent or record > self.consent[root]:
            self.consent[root] = record


@dataclass
class _Session:
    sid: str
    stream: Node
    started_at: int
    ended_at: int
    events: int = 0
    page_views: int = 0
    product_views: int = 0
    dwell_ms: int = 0
    searches: int = 0
    cart_adds: int = 0
    checkouts: int = 0
    purchases: int = 0
    revenue: Decimal = Decimal(0)
    channels: set[str] = field(default_factory=set)
    first_referrer: str | None = None
    seen_page_view: bool = False
    first_campaign: str | None = None
    views_of: dict[str, int] = field(default_factory=dict)
    intent_fired: set[str] = field(default_factory=set)

    def engagement(self) -> int:
        return (
            self.page_views
            + 2 * self.product_views
            + 2 * self.searches
            + 5 * self.cart_adds
            + 10 * self.checkouts
            + 20 * self.purchases
            + min(self.dwell_ms // 30_000, 20)
        )

    def as_dict(self, closed: bool) -> dict[str, Any]:
        return {
            "session_id": self.sid,
            "stream": stream_name(self.stream),
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration_ms": self.ended_at - self.started_at,
            "events": self.events,
            "page_views": self.page_views,
            "product_views": self.product_views,
            "dwell_ms": self.dwell_ms,
            "searches": self.searches,
            "cart_adds": self.cart_adds,
            "checkouts": self.checkouts,
            "purchases": self.purchases,
            "revenue": float(self.revenue.quantize(CENT, ROUND_HALF_EVEN)),
            "channels": sorted(self.channels),
            "first_referrer": self.first_referrer,
            "first_campaign": self.first_campaign,
            "engagement": self.engagement(),
            "closed": closed,
        }


@dataclass
class _Cart:
    cart_id: str
    stream: Node
    lines: dict[str, list[Any]] = field(default_factory=dict)  # product -> [quantity, unit_price]
    status: str = "open"
    deadline: int | None = None
    abandoned_at: int | None = None
    published: bool = False
    action: str | None = None
    opened_at: int | None = None
    purchased_after_abandon_at: int | None = None
    recovered_at: int | None = None

    def value(self) -> float:
        total = sum((q * money(p) for q, p in self.lines.values()), Decimal(0))
        return float(total.quantize(CENT, ROUND_HALF_EVEN))

    def items(self) -> list[tuple[str, int, float]]:
        return sorted((prod, q, float(p)) for prod, (q, p) in self.lines.items())


class _Replay:
    def __init__(self, settings: JourneySettings) -> None:
        self.s = settings
        self.people = _People()
        self.sessions: list[_Session] = []
        self.current: dict[Node, _Session] = {}  # stream -> its latest session
        self.by_stream: dict[Node, list[_Session]] = {}
        self.carts: dict[str, _Cart] = {}
        self.opens: dict[Node, list[int]] = {}  # identifier -> times of its opens
        self.awaiting_open: dict[str, _Cart] = {}  # published abandonments without an open yet
        self.timers: list[tuple[int, int, str, tuple[Any, ...]]] = []
        self.seq = 0
        self.triggers: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ time

    def at(self, due: int, kind: str, *args: Any) -> None:
        self.seq += 1
        heapq.heappush(self.timers, (due, self.seq, kind, args))

    def fire_until(self, t: int, inclusive: bool) -> None:
        while self.timers and (self.timers[0][0] <= t if inclusive else self.timers[0][0] < t):
            due, _, kind, args = heapq.heappop(self.timers)
            getattr(self, "_due_" + kind)(due, *args)

    # ------------------------------------------------------------------ person

    def granted(self, node: Node) -> bool:
        rec = self.people.consent.get(self.people.find(node))
        return rec[2] if rec is not None else self.s.marketing_consent_default

    def engagement(self, node: Node, t: int) -> int:
        total = 0
        for member in self.people.members[self.people.find(node)]:
            for sess in reversed(self.by_stream.get(member, ())):
                if sess.started_at <= t - self.s.engagement_window_ms:
                    break
                total += sess.engagement()
        return min(100, total)

    def emit(self, kind: str, fired_at: int, node: Node, **fields: Any) -> dict[str, Any]:
        ok = self.granted(node)
        trig: dict[str, Any] = {
            "trigger_id": trigger_id(kind, fields.get("cart_id"), fields.get("session_id"), fields.get("product_id")),
            "kind": kind,
            "fired_at": fired_at,
            "stream": stream_name(node),
            "cart_id": None,
            "session_id": None,
            "product_id": None,
            "reason": None,
            "action": None,
            "engagement": None,
            "value": None,
            "items": None,
            "time_to_recovery_ms": None,
            "message_opened": None,
        }
        trig.update(fields)
        trig["suppressed"] = not ok
        trig["suppression_reason"] = None if ok else "no_marketing_consent"
        self.triggers.append(trig)
        return trig

    def cart_fields(self, cart: _Cart) -> dict[str, Any]:
        return {"cart_id": cart.cart_id, "value": cart.value(), "items": cart.items()}

    # ------------------------------------------------------------------ due times

    def _due_deadline(self, due: int, cart_id: str) -> None:
        cart = self.carts[cart_id]
        if cart.status != "open" or cart.deadline != due or not cart.lines:
            return
        cart.status, cart.abandoned_at, cart.deadline = "abandoned", due, None
        eng = self.engagement(cart.stream, due)
        action = "offer" if eng >= self.s.offer_engagement else "reminder"
        trig = self.emit("cart_abandoned", due, cart.stream, action=action, engagement=eng, **self.cart_fields(cart))
        cart.published, cart.action = not trig["suppressed"], action
        if cart.published:
            self.awaiting_open[cart_id] = cart

    def _due_escalation(self, due: int, cart_id: str, action: str) -> None:
        cart = self.carts[cart_id]
        if cart.purchased_after_abandon_at is not None and cart.purchased_after_abandon_at <= due:
            return
        eng = self.engagement(cart.stream, due)
        self.emit(
            "cart_abandoned_escalation",
            due,
            cart.stream,
            action=STRONGER_ACTION[action],
            engagement=eng,
            **self.cart_fields(cart),
        )

    def _due_recovery(self, due: int, cart_id: str) -> None:
        cart = self.carts[cart_id]
        assert cart.abandoned_at is not None
        root = self.people.find(cart.stream)
        opened = any(
            cart.abandoned_at < t <= due for member in self.people.members[root] for t in self.opens.get(member, ())
        )
        self.emit(
            "cart_recovered",
            due,
            cart.stream,
            time_to_recovery_ms=due - cart.abandoned_at,
            message_opened=opened,
            **self.cart_fields(cart),
        )

    def _due_high_intent(self, due: int, sid: str, stream: Node, product: str, reason: str) -> None:
        self.emit("high_intent", due, stream, session_id=sid, product_id=product, reason=reason)

    # ------------------------------------------------------------------ events

    def apply(self, ev: Mapping[str, Any], ids: list[Node]) -> None:
        t, typ = ev["occurred_at"], ev["event_type"]
        payload = _payload(ev)
        if typ == "consent_update" and payload.get("purpose") == "marketing" and ids:
            self.people.set_consent(ids[0], (t, ev["event_id"], bool(payload.get("granted"))))
        if typ in OPEN_TYPES and ids:
            self.open(t, ids)
        stream = stream_of(ev, ids)
        if stream is None:
            return
        if ev["channel"] not in NON_SESSION_CHANNELS and typ not in NON_SESSION_TYPES:
            self.session_event(ev, t, typ, payload, stream)
        if typ in ("add_to_cart", "remove_from_cart", "checkout_started", "purchase") and payload.get("cart_id"):
            self.cart_event(t, typ, payload, stream)

    def open(self, t: int, ids: list[Node]) -> None:
        for n in ids:
            self.opens.setdefault(n, []).append(t)
        root = self.people.find(ids[0])
        for cart_id, cart in list(self.awaiting_open.items()):
            assert cart.abandoned_at is not None
            if t > cart.abandoned_at + self.s.recovery_window_ms or cart.status == "recovered":
                del self.awaiting_open[cart_id]
            elif t > cart.abandoned_at and self.people.find(cart.stream) == root:
                del self.awaiting_open[cart_id]
                cart.opened_at = t
                self.at(t + self.s.escalation_timeout_ms, "escalation", cart_id, cart.action)

    def session_event(self, ev: Mapping[str, Any], t: int, typ: str, payload: dict[str, Any], stream: Node) -> None:
        sess = self.current.get(stream)
        if sess is None or t - sess.ended_at > self.s.session_gap_ms:
            sess = _Session(session_id(stream, t), stream, t, t)
            self.current[stream] = sess
            self.by_stream.setdefault(stream, []).append(sess)
            self.sessions.append(sess)
        sess.ended_at = t
        sess.events += 1
        sess.channels.add(ev["channel"])
        if typ == "page_view":
            sess.page_views += 1
            if not sess.seen_page_view:
                sess.seen_page_view = True
                sess.first_referrer = payload.get("referrer")
            if sess.first_campaign is None:
                sess.first_campaign = campaign_of(payload.get("url")) or campaign_of(payload.get("referrer"))
        elif typ == "product_view":
            sess.product_views += 1
            dwell = int(payload.get("dwell_ms") or 0)
            sess.dwell_ms += dwell
            product = payload.get("product_id")
            if product is not None:
                n = sess.views_of[product] = sess.views_of.get(product, 0) + 1
                if product not in sess.intent_fired:
                    reason = (
                        "dwell"
                        if dwell >= self.s.high_intent_dwell_ms
                        else "views"
                        if n >= self.s.high_intent_views
                        else None
                    )
                    if reason is not None:
                        sess.intent_fired.add(product)
                        self.at(t, "high_intent", sess.sid, stream, product, reason)
        elif typ == "search":
            sess.searches += 1
        elif typ == "add_to_cart":
            sess.cart_adds += 1
        elif typ == "checkout_started":
            sess.checkouts += 1
        elif typ in ("purchase", "store_purchase"):
            sess.purchases += 1
            sess.revenue += money(payload.get("total") or 0)

    def cart_event(self, t: int, typ: str, payload: dict[str, Any], stream: Node) -> None:
        cart_id = payload["cart_id"]
        cart = self.carts.get(cart_id)
        if cart is None:
            if typ != "add_to_cart":
                return  # a cart starts with its first add
            cart = self.carts[cart_id] = _Cart(cart_id, stream)
        if typ == "add_to_cart":
            line = cart.lines.setdefault(payload["product_id"], [0, payload["unit_price"]])
            line[0] += int(payload["quantity"])
            line[1] = payload["unit_price"]
            if cart.status in ("open", "emptied"):
                cart.status = "open"
                cart.deadline = t + self.s.cart_timeout_ms
                self.at(cart.deadline, "deadline", cart_id)
        elif typ == "remove_from_cart":
            left = cart.lines.get(payload["product_id"])
            if left is not None:
                left[0] -= int(payload["quantity"])
                if left[0] <= 0:
                    del cart.lines[payload["product_id"]]
            if cart.status == "open" and not cart.lines:
                cart.status, cart.deadline = "emptied", None
        elif typ == "checkout_started":
            if cart.status in ("open", "emptied"):
                cart.status, cart.deadline = "checkout", None
        else:  # purchase
            if cart.status in ("open", "emptied", "checkout"):
                cart.status, cart.deadline = "purchased", None
            elif cart.status == "abandoned" and cart.purchased_after_abandon_at is None:
                cart.purchased_after_abandon_at = t
                assert cart.abandoned_at is not None
                if t <= cart.abandoned_at + self.s.recovery_window_ms:
                    cart.status, cart.recovered_at = "recovered", t
                    self.awaiting_open.pop(cart_id, None)
                    self.at(t, "recovery", cart_id)


def _payload(ev: Mapping[str, Any]) -> dict[str, Any]:
    p = ev.get("payload")
    if isinstance(p, tuple) and len(p) == 2:
        return dict(p[1] or {})
    return dict(p or {})


def _replay(
    events: Iterable[Mapping[str, Any]],
    late: Collection[str],
    settings: JourneySettings,
    link_lead_ms: int = 0,
    late_links: bool = True,
) -> tuple[list[Mapping[str, Any]], _Replay, list[str]]:
    """The replay; ``link_lead_ms`` makes every link take effect that much earlier, and
    ``late_links=False`` makes late events link nothing (the variants of :func:`ambiguous_trigger_ids`)."""
    unique: dict[str, Mapping[str, Any]] = {}
    for ev in events:
        unique.setdefault(ev["event_id"], ev)
    ordered = sorted(unique.values(), key=lambda e: (e["occurred_at"], e["event_id"]))
    # (time, event_id, 0 = link / 1 = event, event, identifiers)
    steps: list[tuple[int, str, int, Mapping[str, Any], list[Node]]] = []
    for ev in ordered:
        ids = identifiers_of(ev)
        if len(ids) > 1 and (late_links or ev["event_id"] not in late):
            steps.append((ev["occurred_at"] - link_lead_ms, ev["event_id"], 0, ev, ids))
        steps.append((ev["occurred_at"], ev["event_id"], 1, ev, ids))
    if link_lead_ms:
        steps.sort(key=lambda s: s[:3])
    r = _Replay(settings)
    dropped: list[str] = []
    for t, event_id, what, ev, ids in steps:
        r.fire_until(t, inclusive=False)
        if what == 0:
            r.people.link(ids)
            continue
        for n in ids:
            r.people.find(n)
        if event_id in late:
            dropped.append(event_id)
        else:
            r.apply(ev, ids)
    r.fire_until(ordered[-1]["occurred_at"] if ordered else 0, inclusive=True)
    return ordered, r, dropped


def journey_truth(
    events: Iterable[Mapping[str, Any]],
    late_event_ids: Collection[str] = (),
    settings: JourneySettings = JourneySettings(),
) -> JourneyTruth:
    """Sessions, carts and triggers of ``events`` (see the module doc for the semantics).

    Parameters
    ----------
    events : iterable of mapping
        Decoded ``NormalizedEvent`` s (or the generator's raw events: ``email``/``phone`` are
        read as ``email_hash``/``phone_hash``, values as opaque strings), in any order;
        duplicates (same ``event_id``) count once.
    late_event_ids : collection of str
        Events beyond the allowed lateness: not applied (they still link identifiers).
    settings : JourneySettings
        The stage's parameters.

    Returns
    -------
    JourneyTruth

    Raises
    ------
    ValueError
        If the events put two ``customer_id`` values into one person.
    """
    late = set(late_event_ids)
    ordered, r, dropped = _replay(events, late, settings)
    end = ordered[-1]["occurred_at"] if ordered else 0
    sessions = sorted(r.sessions, key=lambda s: (s.started_at, s.sid))
    return JourneyTruth(
        sessions=[s.as_dict(closed=end > s.ended_at + settings.session_gap_ms) for s in sessions],
        triggers=r.triggers,
        carts=[
            {
                "cart_id": c.cart_id,
                "status": c.status,
                "value": c.value(),
                "items": c.items(),
                "stream": stream_name(c.stream),
                "abandoned_at": c.abandoned_at,
                "recovered_at": c.recovered_at,
            }
            for c in r.carts.values()
        ],
        late_dropped=dropped,
    )


def ambiguous_trigger_ids(
    events: Iterable[Mapping[str, Any]],
    late_event_ids: Collection[str] = (),
    settings: JourneySettings = JourneySettings(),
    link_lead_ms: int = 10 * 60_000,
) -> set[str]:
    """Triggers whose outcome depends on exactly when an identity link takes effect.

    The job applies a merge from the event time its router had reached when it saw the
    linking event: up to the out-of-orderness bound before the link, and for a late event
    only when it arrives. A trigger is *ambiguous* when the replay gives it another outcome
    (existence, ``suppressed``, ``engagement``, ``action``, ``message_opened``) with every
    link taking effect ``link_lead_ms`` earlier, or with late events linking nothing. Compare
    the job with :func:`journey_truth` on the other triggers.

    Returns
    -------
    set of str
        Trigger ids (of any of the variants).
    """
    evs = list(events)
    late = set(late_event_ids)
    keys = ("suppressed", "engagement", "action", "message_opened", "fired_at")

    def outcome(link_lead_ms: int, late_links: bool) -> dict[str, tuple[Any, ...]]:
        _, r, _ = _replay(evs, late, settings, link_lead_ms, late_links)
        return {t["trigger_id"]: tuple(t[k] for k in keys) for t in r.triggers}

    base = outcome(0, True)
    out: set[str] = set()
    for variant in (outcome(link_lead_ms, True), outcome(0, False)):
        out |= {k for k in base.keys() | variant.keys() if base.get(k) != variant.get(k)}
    return out
