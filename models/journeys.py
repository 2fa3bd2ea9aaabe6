"""The journeys stage: sessions, carts (CEP with timers), cart triggers and high intent (pure).

One :class:`Journey` per canonical profile works on a :class:`JourneyState` (one Flink
ValueState record in the operator). The semantics are specified in ``docs/journeys.md``; in
short:

* events are buffered and processed in event-time order ``(occurred_at, event_id)`` once the
  watermark has passed them (:meth:`Journey.advance`); a due time ``D`` (a trigger of an
  event at ``D``, session close, cart deadline, escalation) is handled after every event at
  or before ``D``;
* an event already behind the watermark is *late*: applied at once within the allowed
  lateness, otherwise reported (:class:`LateOut`) and not applied;
* sessions are per stream (device: the web cookie, the app device, else the event's atom);
  carts per ``cart_id``; the *person* at time ``t`` (whose consent, engagement and message
  opens count for a decision at ``t``) is what the profile's events had linked by ``t``;
* identity changes move the parts of the state tagged with the evicted identifiers
  (:meth:`Journey.split_off`), and the receiving profile holds every decision until all the
  parts it expects have arrived (:meth:`Journey.expect`, :meth:`Journey.absorb`).

Examples
--------
>>> s = JourneySettings()
>>> j = Journey("p-1", JourneyState(), s)
>>> add = Fact("e1", 0, "add_to_cart", "web", ("cookie_id", "ck1"), ("cookie_id", "ck1"), cart_id="c1",
...            product_id="sku-1", quantity=2, price_cents=1250)
>>> j.on_event(add, watermark=-1)
[]
>>> j.next_due()  # the event itself, once the watermark passes it
0
>>> outs = j.advance(s.cart_timeout_ms)  # 30 min later: the session closes, the cart is abandoned
>>> [type(o).__name__ for o in outs]  # (ConsentOut: the profile's suppressed trigger, docs/privacy.md)
['SessionOut', 'TriggerOut', 'CartOut', 'ConsentOut']
>>> outs[0].session["cart_adds"], outs[0].session["engagement"]
(1, 5)
>>> (outs[1].trigger["kind"], outs[1].trigger["value"], outs[1].trigger["suppressed"])  # no marketing consent
('cart_abandoned', 25.0, True)
>>> outs[2].row["status"], j.next_due() == s.session_gap_ms + s.allowed_lateness_ms  # kept for late events
('abandoned', True)
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping
from urllib.parse import parse_qs

from models.identity import IdentityRules, Node
from models.samples import MIN_SESSIONS_TO_CLUSTER, ChurnCheck, History, Sample, churn_features, propensity_features
from models.segments import (
    PURPOSES,
    SESSION_HORIZON_MS,
    Evaluation,
    RuleSet,
    SegmentFacts,
    SegmentOut,
    evaluate,
    facts_of_record,
    facts_record,
    next_change,
    retire_all,
)

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

#: channels whose events are not interactions on a device (no session)
NON_SESSION_CHANNELS = frozenset({"email", "crm"})
#: event types that are records, not interactions (no session)
NON_SESSION_TYPES = frozenset({"consent_update", "erasure_request", "crm_update"})
#: a person engaging with a message (starts the escalation clock of an abandoned cart)
MESSAGE_OPENS = frozenset({"email_open", "email_click", "push_open"})
PURCHASES = frozenset({"purchase", "store_purchase"})
#: stream of an event on these channels: this identifier when present
DEVICE_STREAM = {"web": "cookie_id", "app": "device_id"}
STRONGER_ACTION = {"reminder": "offer", "offer": "offer_plus"}
TRIGGER_KINDS = ("cart_abandoned", "cart_abandoned_escalation", "cart_recovered", "high_intent")
CART_STATUSES = ("open", "emptied", "checkout", "purchased", "abandoned", "recovered")
NO_CONSENT = "no_marketing_consent"
_CAMPAIGN = re.compile(r"[?&]utm_campaign=([^&#]*)")


@dataclass(frozen=True)
class JourneySettings:
    """The stage's parameters (``docs/journeys.md``; env ``JOURNEY_<NAME>`` in the job)."""

    session_gap_ms: int = 30 * MINUTE_MS
    allowed_lateness_ms: int = HOUR_MS
    cart_timeout_ms: int = 30 * MINUTE_MS
    escalation_timeout_ms: int = DAY_MS
    recovery_window_ms: int = 7 * DAY_MS
    high_intent_dwell_ms: int = 30_000
    high_intent_views: int = 3
    offer_engagement: int = 40
    engagement_window_ms: int = 7 * DAY_MS
    marketing_consent_default: bool = False
    personalization_consent_default: bool = True  # consent when a person has no record (docs/privacy.md)
    analytics_consent_default: bool = True
    churn_window_ms: int = 7 * DAY_MS  # a closed session is churned with no event this long after it

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.type in ("int", int) and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise ValueError(f"{f.name} must be a non-negative integer, got {v!r}")
        for name in ("session_gap_ms", "cart_timeout_ms", "high_intent_views", "escalation_timeout_ms"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


def node_key(node: Node) -> str:
    """``"<type>:<value>"``, the form streams and moved parts are keyed by."""
    return f"{node[0]}:{node[1]}"


def _hash_id(prefix: str, text: str) -> str:
    return prefix + hashlib.sha256(text.encode()).hexdigest()[:20]


def session_id(stream: str, started_at: int) -> str:
    """>>> session_id("cookie_id:ck1", 0)
    's-8705400e69bf1ebb3a86'
    """
    return _hash_id("s-", f"{stream}:{started_at}")


def trigger_id(kind: str, *parts: str) -> str:
    return _hash_id("t-", ":".join((kind, *parts)))


def cents(amount: float) -> int:
    """Money as integer cents (amounts in events have at most two decimals)."""
    return int(round(amount * 100))


@dataclass(frozen=True)
class Fact:
    """What the stage needs of one event (decoded once, kept in the buffer)."""

    event_id: str
    at: int
    kind: str
    channel: str
    stream: Node | None  # None: not a session event
    atom: Node  # the router's atom: where a buffered event moves on a split
    ids: tuple[str, ...] = ()  # its usable identifiers (node keys): the links it makes
    cart_id: str | None = None
    product_id: str | None = None
    quantity: int = 0
    price_cents: int = 0
    dwell_ms: int = 0
    total_cents: int = 0
    referrer: str | None = None
    campaign: str | None = None
    purpose: str | None = None
    granted: bool = False

    def order(self) -> tuple[int, str]:
        """Processing order: time, then event id."""
        return self.at, self.event_id


def _campaign(*urls: str | None) -> str | None:
    for u in urls:
        if u:
            m = _CAMPAIGN.search(u)
            if m:
                return parse_qs(f"c={m.group(1)}").get("c", [m.group(1)])[0]
    return None


def stream_of(event: Mapping[str, Any], atom: Node, rules: IdentityRules) -> Node | None:
    """The session stream of a decoded NormalizedEvent (``docs/journeys.md``, Sessions)."""
    if event["channel"] in NON_SESSION_CHANNELS or event["event_type"] in NON_SESSION_TYPES:
        return None
    id_type = DEVICE_STREAM.get(event["channel"])
    if id_type is not None:
        v = event["identifiers"].get(id_type)
        if v is not None and not rules.is_blocked(v):
            return (id_type, v)
    return atom


def fact_of(event: Mapping[str, Any], atom: Node, rules: IdentityRules = IdentityRules()) -> Fact:
    """The :class:`Fact` of a decoded NormalizedEvent routed to ``atom``.

    >>> ev = {"event_id": "e1", "event_type": "product_view", "channel": "app", "occurred_at": 5,
    ...       "identifiers": {"device_id": "d1", "customer_id": "c1"},
    ...       "payload": ("journey.v1.ProductView", {"product_id": "p", "category": "x", "price": 9.5,
    ...                                              "dwell_ms": 40_000})}
    >>> f = fact_of(ev, ("customer_id", "c1"))
    >>> (f.stream, f.product_id, f.dwell_ms)
    (('device_id', 'd1'), 'p', 40000)
    """
    kind = event["event_type"]
    payload = event["payload"][1] if event.get("payload") else {}
    extra: dict[str, Any] = {}
    if kind in ("add_to_cart", "remove_from_cart"):
        extra = {
            "cart_id": payload["cart_id"],
            "product_id": payload["product_id"],
            "quantity": int(payload["quantity"]),
            "price_cents": cents(payload["unit_price"]),
        }
    elif kind == "checkout_started":
        extra = {"cart_id": payload["cart_id"]}
    elif kind in PURCHASES:
        extra = {"cart_id": payload.get("cart_id"), "total_cents": cents(payload["total"])}
    elif kind == "product_view":
        extra = {"product_id": payload["product_id"], "dwell_ms": int(payload["dwell_ms"])}
    elif kind == "page_view":
        extra = {
            "referrer": payload.get("referrer"),
            "campaign": _campaign(payload.get("url"), payload.get("referrer")),
        }
    elif kind == "consent_update":
        extra = {"purpose": payload["purpose"], "granted": bool(payload["granted"])}
    ids = tuple(
        sorted(
            (f"{t}:{v}" for t, v in event["identifiers"].items() if v is not None and not rules.is_blocked(v)),
            key=lambda k: (rules.priority.index(k.split(":", 1)[0]), k),
        )
    )
    return Fact(
        event["event_id"],
        int(event["occurred_at"]),
        kind,
        event["channel"],
        stream_of(event, atom, rules),
        atom,
        ids,
        **extra,
    )


@dataclass
class Session:
    """An open or retained session of one stream (counters as in ``docs/journeys.md``)."""

    session_id: str
    stream: str
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
    revenue_cents: int = 0
    channels: list[str] = field(default_factory=list)
    first_referrer: str | None = None
    first_page_view_at: int | None = None
    first_campaign: str | None = None
    first_campaign_at: int | None = None
    product_counts: dict[str, int] = field(default_factory=dict)
    intent_products: list[str] = field(default_factory=list)
    version: int = 0  # 0: not published yet
    closed: bool = False
    published_started_at: int | None = None  # started_at of the row last written

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

    def summary(self, profile_id: str) -> dict[str, Any]:
        """The ``journey.sessions`` record (``schemas/session.avsc``)."""
        return {
            "session_id": self.session_id,
            "profile_id": profile_id,
            "stream": self.stream,
            "version": self.version,
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
            "revenue": self.revenue_cents / 100,
            "channels": sorted(self.channels),
            "first_referrer": self.first_referrer,
            "first_campaign": self.first_campaign,
            "engagement": self.engagement(),
        }


@dataclass
class CartLine:
    product_id: str
    quantity: int
    price_cents: int


@dataclass
class Cart:
    """One cart (``cart_id``) and where it stands (``docs/journeys.md``, Carts)."""

    cart_id: str
    stream: str
    opened_at: int
    last_change_at: int
    lines: list[CartLine] = field(default_factory=list)
    status: str = "open"
    deadline: int | None = None
    completed_at: int | None = None
    abandoned_at: int | None = None
    abandon_published: bool = False
    action: str | None = None
    opened_message_at: int | None = None
    escalation_due: int | None = None
    escalated: bool = False
    recovered_at: int | None = None
    recovery_due: int | None = None  # the purchase that recovered it: its trigger is due then
    drop_at: int | None = None
    version: int = 0  # Cassandra row version (one more per change)

    def value_cents(self) -> int:
        return sum(ln.quantity * ln.price_cents for ln in self.lines)

    def items(self) -> list[dict[str, Any]]:
        return [
            {"product_id": ln.product_id, "quantity": ln.quantity, "unit_price": ln.price_cents / 100}
            for ln in sorted(self.lines, key=lambda ln: ln.product_id)
        ]

    def row(self, profile_id: str) -> dict[str, Any]:
        """The Cassandra ``carts`` row."""
        return {
            "profile_id": profile_id,
            "cart_id": self.cart_id,
            "stream": self.stream,
            "status": self.status,
            "opened_at": self.opened_at,
            "last_change_at": self.last_change_at,
            "items": self.items(),
            "value": self.value_cents() / 100,
            "deadline": self.deadline,
            "completed_at": self.completed_at,
            "abandoned_at": self.abandoned_at,
            "escalated": self.escalated,
            "recovered_at": self.recovered_at,
            "version": self.version,
        }


@dataclass
class ConsentMark:
    """The latest consent for one purpose an identifier's events gave (``JourneyState.consent``
    by :func:`consent_key`; ``source``: the ``consent_update``'s channel)."""

    at: int
    event_id: str
    granted: bool
    purpose: str = "marketing"
    source: str = ""


@dataclass
class ConsentShown:
    """What Cassandra ``profile_consent`` holds for one purpose of the profile (as last written):
    the consent (``changed_at``/``event_id`` ``None`` and ``source`` ``default``: no update yet)
    and how many of its triggers were suppressed for want of it."""

    granted: bool
    changed_at: int | None
    source: str
    event_id: str | None
    suppressed: int


@dataclass
class PendingErase:
    """An erasure of the profile (docs/privacy.md), carried out when event time reaches ``at``:
    ``ids`` are every profile id its rows can be under, ``part`` its place in the component."""

    request_id: str
    at: int
    part: int
    ids: list[str]


def consent_key(purpose: str, node: str) -> str:
    """>>> consent_key("analytics", "customer_id:c1")
    'analytics|customer_id:c1'
    """
    return f"{purpose}|{node}"


@dataclass
class Link:
    """Two identifiers first linked by an event at ``at``."""

    a: str
    b: str
    at: int


@dataclass
class Open:
    """A message engagement (``email_open``, ``email_click``, ``push_open``) by ``node``."""

    node: str
    at: int


@dataclass
class RecentSession:
    """A session dropped from the state whose score still counts for engagement."""

    session_id: str
    stream: str
    started_at: int
    engagement: int


@dataclass
class PendingIntent:
    """A ``high_intent`` decided by a view at ``at``, published once every event at ``at`` is in."""

    session_id: str
    stream: str
    product_id: str
    reason: str
    at: int


@dataclass
class JourneyState:
    """Everything a profile's journey keeps (one Flink ValueState: ``JourneyState`` record)."""

    buffer: list[Fact] = field(default_factory=list)  # sorted by Fact.order()
    sessions: list[Session] = field(default_factory=list)
    carts: list[Cart] = field(default_factory=list)
    intents: list[PendingIntent] = field(default_factory=list)
    # the person over time: links, consent by identifier, message opens, past session scores
    links: list[Link] = field(default_factory=list)
    consent: dict[str, ConsentMark] = field(default_factory=dict)
    opens: list[Open] = field(default_factory=list)
    recent: list[RecentSession] = field(default_factory=list)
    pending: dict[str, int] = field(default_factory=dict)  # node key -> moved parts still to arrive
    segments: SegmentFacts = field(default_factory=SegmentFacts)  # the rule segments' facts (docs/segments.md)
    learning: History = field(default_factory=History)  # the closed sessions, summed (docs/learning.md)
    churn: list[ChurnCheck] = field(default_factory=list)  # closed sessions waiting for their churn label
    # the profile's consent view (docs/privacy.md): triggers suppressed by purpose, what
    # profile_consent holds by purpose, and that table's write count (the rows' version)
    suppressed: dict[str, int] = field(default_factory=dict)
    consent_view: dict[str, ConsentShown] = field(default_factory=dict)
    consent_writes: int = 0
    erasure: PendingErase | None = None

    def is_empty(self) -> bool:
        return not (
            self.buffer
            or self.sessions
            or self.carts
            or self.intents
            or self.links
            or self.consent
            or self.opens
            or self.recent
            or self.pending
            or not self.segments.is_empty()
            or self.learning.sessions > 0
            or self.churn
            or self.suppressed
            or self.consent_view
            or self.consent_writes > 0
            or self.erasure is not None
        )

    def holds_journey(self) -> bool:
        """Whether anything but the person's history is left (sessions, carts, events, timers)."""
        return bool(self.buffer or self.sessions or self.carts or self.intents or self.pending)


# ---- outputs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionOut:
    """A session summary to publish and write (``replaces_started_at``: delete that row)."""

    session: dict[str, Any]
    replaces_started_at: int | None = None


@dataclass(frozen=True)
class TriggerOut:
    trigger: dict[str, Any]

    @property
    def published(self) -> bool:
        return not self.trigger["suppressed"]


@dataclass(frozen=True)
class CartOut:
    """A cart row to write (``row``) or, when the cart left this profile, to delete."""

    profile_id: str
    cart_id: str
    version: int
    row: dict[str, Any] | None


@dataclass(frozen=True)
class LateOut:
    """An event beyond the allowed lateness (``journey.late``)."""

    record: dict[str, Any]


@dataclass(frozen=True)
class SampleOut:
    """A closed session for the online models (``docs/learning.md``)."""

    sample: Sample


@dataclass(frozen=True)
class ConsentOut:
    """A ``profile_consent`` row to write (``row``) or, when the profile was merged away, to delete."""

    profile_id: str
    purpose: str
    version: int
    row: dict[str, Any] | None


@dataclass(frozen=True)
class ErasedOut:
    """The profile was erased (docs/privacy.md): delete every row of ``ids`` in the journeys'
    tables (``segments``: the rule segments whose ``segment_members`` rows to delete) and
    write the audit row ``part`` of ``request_id``."""

    profile_id: str
    request_id: str
    at: int
    part: int
    ids: tuple[str, ...]
    segments: tuple[str, ...]


@dataclass(frozen=True)
class ConsentAuditOut:
    """A consent change for the privacy audit (no personal data: the event, purpose, source)."""

    event_id: str
    at: int
    purpose: str
    granted: bool
    source: str


Out = SessionOut | TriggerOut | CartOut | LateOut | SegmentOut | SampleOut | ConsentOut | ErasedOut | ConsentAuditOut

# due kinds, in the order they are handled at one time (segments last: docs/segments.md)
_INTENT, _RECOVER, _CLOSE, _ABANDON, _ESCALATE, _DROP_SESSION, _DROP_CART, _CHURN, _SEGMENTS = range(9)


class Journey:
    """One profile's journey over its :class:`JourneyState` (mutated in place); with ``rules``,
    its rule segments too (``docs/segments.md``; their evaluation errors count in ``rule_stats``)."""

    def __init__(
        self,
        profile_id: str,
        state: JourneyState,
        settings: JourneySettings,
        rules: RuleSet | None = None,
        samples: bool = False,
    ) -> None:
        self.profile_id, self.state, self.s = profile_id, state, settings
        self.rules = rules
        self.samples = samples  # emit a SampleOut at each session's close
        self.rule_stats = Evaluation()
        self._changed_carts: dict[str, Cart] = {}

    # ---- arrival -------------------------------------------------------------------------

    def apply_command(
        self,
        watermark: int,
        incoming: Iterable[tuple[Node, int]] = (),
        evict: Iterable[Node] = (),
        merged_away: bool = False,
        fact: Fact | None = None,
        moved: tuple[Node, JourneyState] | None = None,
    ) -> tuple[list[tuple[Node, JourneyState]], list[Out]]:
        """One command of the identity router, as the operator applies it: the moved parts to
        expect, the identifiers that leave (their parts are returned, to send on), then the
        event or the moved part that arrived. Returns ``(parts to send, outputs)``."""
        outs: list[Out] = []
        incoming = list(incoming)
        if incoming:
            self.expect({node_key(n): k for n, k in incoming})
        parts: list[tuple[Node, JourneyState]] = []
        evict = list(evict)
        if evict:
            parts, deletions = self.split_off(evict, everything=merged_away, at=watermark)
            outs += deletions
        if fact is not None:
            outs += self.on_event(fact, watermark)
        elif moved is not None:
            outs += self.absorb(*moved)
        return parts, outs

    def on_event(self, fact: Fact, watermark: int) -> list[Out]:
        """An event arrived while event time is at ``watermark``: buffer it, or handle it late."""
        if fact.at > watermark:
            self.buffer_event(fact)
            return []
        if fact.at <= watermark - self.s.allowed_lateness_ms:
            self._link(fact)  # not applied, but what it says about identity still holds
            return [LateOut(self._late_record(fact, watermark))]
        if self.state.pending:  # held: it is processed first when the parts have arrived
            self.buffer_event(fact)
            return []
        return self._process(fact) + self.advance(watermark)

    def _late_record(self, fact: Fact, watermark: int) -> dict[str, Any]:
        return {
            "event_id": fact.event_id,
            "profile_id": self.profile_id,
            "event_type": fact.kind,
            "occurred_at": fact.at,
            "watermark": watermark,
            "lateness_ms": watermark - fact.at,
            "reason": "beyond_allowed_lateness",
        }

    def buffer_event(self, fact: Fact) -> None:
        """Keep an event for :meth:`advance` (the operator hands over the ones it kept itself)."""
        buf = self.state.buffer
        if any(f.event_id == fact.event_id for f in buf):
            return
        keys = [f.order() for f in buf]
        buf.insert(bisect.bisect(keys, fact.order()), fact)

    # ---- event time ----------------------------------------------------------------------

    def next_due(self) -> int | None:
        """The earliest event time at which :meth:`settle` has something to do."""
        times = [t for t, _, _ in self._dues()]
        if self.state.buffer:
            times.append(self.state.buffer[0].at)
        if self.state.erasure is not None:
            times.append(self.state.erasure.at)
        return min(times) if times else None

    def _dues(self) -> list[tuple[int, int, str]]:
        st, s = self.state, self.s
        dues = [(i.at, _INTENT, f"{i.session_id}:{i.product_id}") for i in st.intents]
        for ses in st.sessions:
            if not ses.closed:
                dues.append((ses.ended_at + s.session_gap_ms, _CLOSE, ses.session_id))
            else:
                dues.append((ses.ended_at + s.session_gap_ms + s.allowed_lateness_ms, _DROP_SESSION, ses.session_id))
        for c in st.carts:
            if c.recovery_due is not None:
                dues.append((c.recovery_due, _RECOVER, c.cart_id))
            if c.status == "open" and c.deadline is not None:
                dues.append((c.deadline, _ABANDON, c.cart_id))
            if c.escalation_due is not None and not c.escalated and c.status == "abandoned":
                dues.append((c.escalation_due, _ESCALATE, c.cart_id))
            if c.drop_at is not None:
                dues.append((c.drop_at, _DROP_CART, c.cart_id))
        wait = s.churn_window_ms + s.allowed_lateness_ms
        dues += [(ch.close + wait, _CHURN, ch.session_id) for ch in st.churn]
        facts = st.segments
        if self.rules is not None and self.rules.features and facts.evaluated_at is not None:
            starts = [x.started_at for x in st.sessions] + [r.started_at for r in st.recent]
            flip = next_change(facts, starts, facts.evaluated_at, self.rules.features)
            if flip is not None:
                dues.append((flip, _SEGMENTS, ""))
        return dues

    def until(self, watermark: int) -> int:
        """How far event time may go for the profile: the watermark, or a pending erasure's time."""
        er = self.state.erasure
        return watermark if er is None else min(watermark, er.at)

    def settle(self, watermark: int, segments: Iterable[str] = ()) -> list[Out]:
        """:meth:`advance` to the watermark; with an erasure pending, to its time only, and once
        the watermark has reached it, :meth:`erase` (``segments``: the rule segments' names)."""
        out = self.advance(self.until(watermark))
        er = self.state.erasure
        if er is not None and watermark >= er.at:
            out += self.erase(segments)
        return out

    def erase(self, segments: Iterable[str]) -> list[Out]:
        """Carry out the pending erasure: everything of the profile goes (state, rows, the
        learner's memory of it); the state is left empty. Call after :meth:`advance` to its time."""
        er = self.state.erasure
        assert er is not None, "no erasure pending"
        ids = tuple(sorted(set(er.ids) | {self.profile_id}))
        out: list[Out] = [ErasedOut(self.profile_id, er.request_id, er.at, er.part, ids, tuple(sorted(segments)))]
        if self.samples:
            out.append(SampleOut(Sample.erasure(self.profile_id, er.at, er.request_id, ids, er.part)))
        self.state = JourneyState()
        return out

    def advance(self, to: int) -> list[Out]:
        """Process every buffered event and due time up to event time ``to`` (the watermark),
        in order; nothing while moved parts are still expected."""
        out: list[Out] = []
        if self.state.pending:
            return out
        st = self.state
        while True:
            dues = [d for d in self._dues() if d[0] <= to]
            due = min(dues) if dues else None
            if st.buffer and st.buffer[0].at <= to and (due is None or st.buffer[0].at <= due[0]):
                out += self._process(st.buffer.pop(0))
            elif due is not None:
                out += self._handle_due(*due)
            else:
                break
        # what no decision at or after ``to`` can need (a late event within the lateness included)
        margin = self.s.allowed_lateness_ms
        keep = max(self.s.engagement_window_ms, SESSION_HORIZON_MS)  # segments look back 3 weeks
        st.recent = [r for r in st.recent if r.started_at > to - keep - margin]
        st.segments.prune(to, margin)
        st.opens = [o for o in st.opens if o.at > to - self.s.recovery_window_ms - margin]
        return out + self._flush()

    # ---- one event -----------------------------------------------------------------------

    def _process(self, f: Fact) -> list[Out]:
        out: list[Out] = []
        st = self.state
        self._link(f)
        st.segments.on_event(f.at, f.total_cents if f.kind in PURCHASES else None)
        for ch in st.churn:
            if ch.close < f.at <= ch.close + self.s.churn_window_ms:
                ch.active = True
        node = f.ids[0] if f.ids else node_key(f.atom)
        if f.kind == "consent_update" and f.purpose in PURPOSES:
            key = consent_key(f.purpose, node)
            mark = st.consent.get(key)
            if mark is None or (f.at, f.event_id) > (mark.at, mark.event_id):
                st.consent[key] = ConsentMark(f.at, f.event_id, f.granted, f.purpose, f.channel)
            out.append(ConsentAuditOut(f.event_id, f.at, f.purpose, bool(f.granted), f.channel))
        if f.kind in MESSAGE_OPENS:
            self._message_opened(node, f.at)
        if f.stream is not None:
            out += self._session_event(f)
        if f.cart_id is not None:
            out += self._cart_event(f)
        return out + self._evaluate(f.at)

    def _evaluate(self, now: int) -> list[Out]:
        """The rule segments at ``now`` (nothing without rules)."""
        if self.rules is None:
            return []
        st = self.state
        sessions = [(x.started_at, x.engagement()) for x in st.sessions]
        sessions += [(r.started_at, r.engagement) for r in st.recent]
        consent = self.profile_consent(now)
        return list(evaluate(self.rules, st.segments, sessions, now, self.profile_id, self.rule_stats, consent))

    def _session_event(self, f: Fact) -> list[Out]:
        assert f.stream is not None
        stream, gap = node_key(f.stream), self.s.session_gap_ms
        candidates = [
            ses
            for ses in self.state.sessions
            if ses.stream == stream and ses.started_at - gap <= f.at <= ses.ended_at + gap
        ]
        if candidates:
            ses = min(candidates, key=lambda x: (abs(f.at - x.ended_at), x.session_id))
        else:
            ses = Session(session_id(stream, f.at), stream, f.at, f.at)
            self.state.sessions.append(ses)
        ses.started_at, ses.ended_at = min(ses.started_at, f.at), max(ses.ended_at, f.at)
        ses.events += 1
        if f.channel not in ses.channels:
            ses.channels.append(f.channel)
        k = f.kind
        if k == "page_view":
            ses.page_views += 1
            if ses.first_page_view_at is None or f.at < ses.first_page_view_at:
                ses.first_page_view_at, ses.first_referrer = f.at, f.referrer
            if f.campaign is not None and (ses.first_campaign_at is None or f.at < ses.first_campaign_at):
                ses.first_campaign_at, ses.first_campaign = f.at, f.campaign
        elif k == "product_view":
            ses.product_views += 1
            ses.dwell_ms += f.dwell_ms
            assert f.product_id is not None
            n = ses.product_counts[f.product_id] = ses.product_counts.get(f.product_id, 0) + 1
            dwell = f.dwell_ms >= self.s.high_intent_dwell_ms
            if f.product_id not in ses.intent_products and (dwell or n >= self.s.high_intent_views):
                ses.intent_products.append(f.product_id)
                reason = "dwell" if dwell else "views"
                self.state.intents.append(PendingIntent(ses.session_id, ses.stream, f.product_id, reason, f.at))
        elif k == "search":
            ses.searches += 1
        elif k == "add_to_cart":
            ses.cart_adds += 1
        elif k == "checkout_started":
            ses.checkouts += 1
        elif k in PURCHASES:
            ses.purchases += 1
            ses.revenue_cents += f.total_cents
        if ses.closed:  # a late event updated a published session: publish it again
            return [self._publish(ses)]
        return []

    def _publish(self, ses: Session) -> SessionOut:
        ses.version += 1
        replaces = ses.published_started_at if ses.published_started_at not in (None, ses.started_at) else None
        ses.published_started_at = ses.started_at
        return SessionOut(ses.summary(self.profile_id), replaces)

    def _learn_from(self, ses: Session, summary: Mapping[str, Any], close: int) -> list[Out]:
        """The closed session (``summary``: as published) into the profile's history, and
        (``samples``) a sample: the propensity features from the history before it, the
        behaviour vector after it."""
        st = self.state
        h = st.learning
        x = propensity_features(h, summary, ses.started_at)
        h.add(summary, close)
        if not self.samples:
            return []
        vec = h.cluster_features() if h.sessions >= MIN_SESSIONS_TO_CLUSTER else None
        held = [(o.started_at, o.engagement()) for o in st.sessions if o.started_at <= close]
        held += [(r.started_at, r.engagement) for r in st.recent if r.started_at <= close]
        churn = churn_features(h, held, close, x["h_days_since"])
        st.churn.append(ChurnCheck(ses.session_id, close, churn))
        consent = self.profile_consent(close)
        sample = Sample(
            self.profile_id,
            close,
            ses.session_id,
            vec,
            x,
            ses.purchases > 0,
            churn,
            learn=consent["analytics"],
            publish=consent["personalization"],
        )
        return [SampleOut(sample)]

    def _cart(self, cart_id: str) -> Cart | None:
        return next((c for c in self.state.carts if c.cart_id == cart_id), None)

    def _touch(self, c: Cart, at: int) -> None:
        c.last_change_at = max(c.last_change_at, at)
        c.version += 1
        self._changed_carts[c.cart_id] = c

    def _cart_event(self, f: Fact) -> list[Out]:
        assert f.cart_id is not None
        s, c = self.s, self._cart(f.cart_id)
        k = f.kind
        if k == "add_to_cart":
            assert f.product_id is not None
            if c is None:
                stream = node_key(f.stream if f.stream is not None else f.atom)
                c = Cart(f.cart_id, stream, f.at, f.at)
                self.state.carts.append(c)
            line = next((ln for ln in c.lines if ln.product_id == f.product_id), None)
            if line is None:
                c.lines.append(CartLine(f.product_id, f.quantity, f.price_cents))
            else:
                line.quantity += f.quantity
                line.price_cents = f.price_cents
            if c.status in ("open", "emptied"):
                c.status, c.deadline, c.drop_at = "open", f.at + s.cart_timeout_ms, None
            self._touch(c, f.at)
        elif c is None:
            pass  # a cart this profile never saw filled (or long gone)
        elif k == "remove_from_cart":
            line = next((ln for ln in c.lines if ln.product_id == f.product_id), None)
            if line is not None:
                line.quantity -= f.quantity
                if line.quantity <= 0:
                    c.lines.remove(line)
            if c.status == "open" and not c.lines:
                c.status, c.deadline, c.drop_at = "emptied", None, f.at + s.recovery_window_ms
            self._touch(c, f.at)
        elif k == "checkout_started":
            if c.status in ("open", "emptied"):
                c.status, c.deadline, c.completed_at = "checkout", None, f.at
                c.drop_at = f.at + s.recovery_window_ms  # a purchase may still follow
                self._touch(c, f.at)
        elif k == "purchase":
            if c.status in ("open", "emptied", "checkout"):
                c.status, c.deadline, c.completed_at = "purchased", None, f.at
                c.drop_at = f.at + s.allowed_lateness_ms
                self._touch(c, f.at)
            elif c.status == "abandoned" and c.abandoned_at is not None:
                c.escalation_due = None  # bought: never escalated
                if f.at <= c.abandoned_at + s.recovery_window_ms:
                    c.status, c.recovered_at, c.recovery_due = "recovered", f.at, f.at
                    c.drop_at = f.at + s.allowed_lateness_ms
                self._touch(c, f.at)
        return []

    def _message_opened(self, node: str, at: int) -> None:
        s, st = self.s, self.state
        st.opens = [o for o in st.opens if o.at > at - s.recovery_window_ms] + [Open(node, at)]
        for c in st.carts:
            if (
                c.status == "abandoned"
                and c.abandon_published
                and c.opened_message_at is None
                and c.abandoned_at is not None
                and c.abandoned_at < at <= c.abandoned_at + s.recovery_window_ms
                and node in self.person(c.stream, at)
            ):
                c.opened_message_at = at
                c.escalation_due = at + s.escalation_timeout_ms
                c.drop_at = max(c.drop_at or 0, c.escalation_due)
                self._touch(c, at)

    # ---- due times -----------------------------------------------------------------------

    def _handle_due(self, at: int, kind: int, ref: str) -> list[Out]:
        st, s = self.state, self.s
        if kind == _SEGMENTS:
            return self._evaluate(at)
        if kind == _CHURN:
            check = next(ch for ch in st.churn if ch.session_id == ref)
            st.churn.remove(check)
            learn = self.profile_consent(at)["analytics"]
            return [SampleOut(Sample.churn_label(self.profile_id, at, check, learn))]
        if kind == _INTENT:
            i = next(x for x in st.intents if f"{x.session_id}:{x.product_id}" == ref)
            st.intents.remove(i)
            return [
                self._trigger(
                    "high_intent", at, i.stream, session_id=i.session_id, product_id=i.product_id, reason=i.reason
                )
            ]
        if kind in (_CLOSE, _DROP_SESSION):
            ses = next(x for x in st.sessions if x.session_id == ref)
            if kind == _CLOSE:
                ses.closed = True
                published = self._publish(ses)
                return [published, *self._learn_from(ses, published.session, at)]
            st.sessions.remove(ses)
            st.recent.append(RecentSession(ses.session_id, ses.stream, ses.started_at, ses.engagement()))
            return []
        c = self._cart(ref)
        assert c is not None
        if kind == _RECOVER:
            c.recovery_due = None
            assert c.abandoned_at is not None
            person = self.person(c.stream, at)
            opened = any(o.node in person and c.abandoned_at < o.at <= at for o in st.opens)
            return [
                self._cart_trigger(
                    "cart_recovered", at, c, time_to_recovery_ms=at - c.abandoned_at, message_opened=opened
                )
            ]
        if kind == _ABANDON:
            c.status, c.deadline, c.abandoned_at = "abandoned", None, at
            c.drop_at = at + s.recovery_window_ms
            engagement = self.engagement(c.stream, at)
            c.action = "offer" if engagement >= s.offer_engagement else "reminder"
            self._touch(c, at)
            t = self._cart_trigger("cart_abandoned", at, c, engagement=engagement, action=c.action)
            c.abandon_published = not t.trigger["suppressed"]
            st.segments.abandoned_times.append(at)
            out: list[Out] = [t]
            if self.samples:  # the learner recommends an action from the person's propensity
                tid = t.trigger["trigger_id"]
                out.append(SampleOut(Sample.abandonment(self.profile_id, at, tid, c.cart_id, c.abandon_published)))
            return out + self._evaluate(at)
        if kind == _ESCALATE:
            c.escalated = True
            self._touch(c, at)
            assert c.action is not None
            return [
                self._cart_trigger(
                    "cart_abandoned_escalation",
                    at,
                    c,
                    engagement=self.engagement(c.stream, at),
                    action=STRONGER_ACTION[c.action],
                )
            ]
        st.carts.remove(c)  # _DROP_CART: its final row is written (or still to be, with this step's)
        return []

    # ---- the person ----------------------------------------------------------------------

    def _link(self, f: Fact) -> None:
        """Record the links the event makes (only those that join what was not joined yet)."""
        if len(f.ids) < 2:
            return
        first = f.ids[0]
        for other in f.ids[1:]:
            if other not in self.person(first, f.at):
                self.state.links.append(Link(first, other, f.at))

    def person(self, node: str, at: int) -> set[str]:
        """The identifiers linked to ``node`` by the events at or before ``at``."""
        adj: dict[str, list[str]] = {}
        for ln in self.state.links:
            if ln.at <= at:
                adj.setdefault(ln.a, []).append(ln.b)
                adj.setdefault(ln.b, []).append(ln.a)
        seen, todo = {node}, [node]
        while todo:
            for nb in adj.get(todo.pop(), ()):
                if nb not in seen:
                    seen.add(nb)
                    todo.append(nb)
        return seen

    def engagement(self, stream: str, at: int) -> int:
        """The person's engagement at ``at``: their sessions started within the window, capped at 100."""
        since = at - self.s.engagement_window_ms
        st = self.state  # (advance() drops the scores no decision can need any more)
        person = self.person(stream, at)
        total = sum(r.engagement for r in st.recent if r.started_at > since and r.stream in person)
        total += sum(x.engagement() for x in st.sessions if x.started_at > since and x.stream in person)
        return min(total, 100)

    def consent_default(self, purpose: str) -> bool:
        return bool(getattr(self.s, f"{purpose}_consent_default"))

    def consented(self, stream: str, at: int, purpose: str = "marketing") -> bool:
        """The person's consent for ``purpose`` at ``at``: their latest consent update for it,
        else the purpose's default."""
        person = self.person(stream, at)
        marks = [
            m
            for k, m in self.state.consent.items()
            if m.purpose == purpose and k.split("|", 1)[1] in person and m.at <= at
        ]
        if not marks:
            return self.consent_default(purpose)
        return max(marks, key=lambda m: (m.at, m.event_id)).granted

    def profile_consent(self, at: int) -> dict[str, bool]:
        """The profile's consent by purpose at ``at``: the latest consent update of any of its
        identifiers for each purpose, else the purpose's default (``docs/privacy.md``)."""
        latest = self._latest_consent(at)
        return {p: latest[p].granted if p in latest else self.consent_default(p) for p in PURPOSES}

    def _latest_consent(self, at: int | None = None) -> dict[str, ConsentMark]:
        """The latest consent update (by ``(at, event_id)``) of each purpose among all the
        profile's identifiers, up to ``at`` (``None``: every one applied)."""
        latest: dict[str, ConsentMark] = {}
        for m in self.state.consent.values():
            have = latest.get(m.purpose)
            if (at is None or m.at <= at) and (have is None or (m.at, m.event_id) > (have.at, have.event_id)):
                latest[m.purpose] = m
        return latest

    def _trigger(self, kind: str, at: int, stream: str, **fields: Any) -> TriggerOut:
        ok = self.consented(stream, at)
        key = (fields["cart_id"],) if "cart_id" in fields else (fields["session_id"], fields["product_id"])
        rec: dict[str, Any] = {
            "trigger_id": trigger_id(kind, *key),
            "kind": kind,
            "profile_id": self.profile_id,
            "fired_at": at,
            "stream": stream,
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
            "suppressed": not ok,
            "suppression_reason": None if ok else NO_CONSENT,
        }
        if not ok:
            self.state.suppressed["marketing"] = self.state.suppressed.get("marketing", 0) + 1
        rec.update(fields)
        return TriggerOut(rec)

    def _cart_trigger(self, kind: str, at: int, c: Cart, **fields: Any) -> TriggerOut:
        return self._trigger(
            kind, at, c.stream, cart_id=c.cart_id, value=c.value_cents() / 100, items=c.items(), **fields
        )

    def _flush(self) -> list[Out]:
        return self._flush_carts() + self._flush_consent()

    def _flush_consent(self) -> list[Out]:
        """The ``profile_consent`` rows that changed since last written: for each purpose with a
        consent update or a suppressed trigger, the latest update (else the default) and the
        suppressed count."""
        st = self.state
        latest = self._latest_consent()
        changed: dict[str, ConsentShown] = {}
        for p in PURPOSES:
            mark, count = latest.get(p), st.suppressed.get(p, 0)
            if mark is None and count == 0:
                continue
            if mark is None:
                shown = ConsentShown(self.consent_default(p), None, "default", None, count)
            else:
                shown = ConsentShown(mark.granted, mark.at, mark.source, mark.event_id, count)
            if st.consent_view.get(p) != shown:
                changed[p] = shown
        if not changed:
            return []
        st.consent_writes += 1
        st.consent_view.update(changed)
        return [
            ConsentOut(
                self.profile_id,
                p,
                st.consent_writes,
                {"profile_id": self.profile_id, "purpose": p} | dataclasses.asdict(shown),
            )
            for p, shown in sorted(changed.items())
        ]

    def _flush_carts(self) -> list[Out]:
        out: list[Out] = [
            CartOut(self.profile_id, c.cart_id, c.version, c.row(self.profile_id)) for c in self._changed_carts.values()
        ]
        self._changed_carts.clear()
        return out

    # ---- identity changes ----------------------------------------------------------------

    def expect(self, incoming: Mapping[str, int]) -> None:
        """The router says how many moved parts of each identifier are on their way here."""
        for k, n in incoming.items():
            if n > 0:
                self.state.pending[k] = n

    def split_off(
        self, evicted: Iterable[Node], everything: bool, at: int = 0
    ) -> tuple[list[tuple[Node, JourneyState]], list[Out]]:
        """Take out the parts of the state that leave with ``evicted`` (all of it when the profile
        is merged away: the person's history, segment facts included, goes with the first
        identifier; on a split it stays).

        Returns one part per evicted identifier (possibly empty: the receiver counts them) and
        the deletions of the moved carts' rows here; a profile merged away also leaves its
        segments (at ``at``, the stage's event time).
        """
        nodes = list(evicted)
        st = self.state
        parts: list[tuple[Node, JourneyState]] = []
        deletions: list[Out] = []
        for i, node in enumerate(nodes):
            k = node_key(node)
            take_all = everything and i == 0

            def mine(tag: str) -> bool:
                return take_all or tag == k

            part = JourneyState(
                buffer=[f for f in st.buffer if mine(node_key(f.atom))],
                sessions=[x for x in st.sessions if mine(x.stream)],
                carts=[c for c in st.carts if mine(c.stream)],
                intents=[x for x in st.intents if mine(x.stream)],
            )
            st.buffer = [f for f in st.buffer if not mine(node_key(f.atom))]
            st.sessions = [x for x in st.sessions if not mine(x.stream)]
            st.carts = [c for c in st.carts if not mine(c.stream)]
            st.intents = [x for x in st.intents if not mine(x.stream)]
            if take_all:
                part.links, part.consent, part.opens, part.recent = st.links, st.consent, st.opens, st.recent
                st.links, st.consent, st.opens, st.recent = [], {}, [], []
                deletions += retire_all(st.segments, self.profile_id, at)
                part.learning, st.learning = st.learning, History()
                part.churn, st.churn = st.churn, []
                part.suppressed, st.suppressed = st.suppressed, {}
                if st.consent_view:  # its profile_consent rows go: the survivor writes its own
                    st.consent_writes += 1
                    deletions += [
                        ConsentOut(self.profile_id, p, st.consent_writes, None) for p in sorted(st.consent_view)
                    ]
                    st.consent_view = {}
                part.segments, st.segments = st.segments, SegmentFacts()  # (merge() takes facts only)
            for c in part.carts:
                deletions.append(CartOut(self.profile_id, c.cart_id, c.version + 1, None))
                c.version += 2  # the receiver's write beats this deletion
                self._changed_carts.pop(c.cart_id, None)
            parts.append((node, part))
        for node in nodes:
            st.pending.pop(node_key(node), None)  # parts still on their way go to the new owner
        if everything:
            st.pending.clear()
        return parts, deletions

    def absorb(self, node: Node, part: JourneyState) -> list[Out]:
        """A moved part arrived (through the feedback topic) for ``node``, now in this profile."""
        st = self.state
        k = node_key(node)
        if k in st.pending:
            st.pending[k] -= 1
            if st.pending[k] <= 0:
                del st.pending[k]
        for f in part.buffer:
            self.buffer_event(f)
        known = {x.session_id for x in st.sessions}
        st.sessions += [x for x in part.sessions if x.session_id not in known]
        for c in part.carts:
            mine = self._cart(c.cart_id)
            if mine is None:
                st.carts.append(c)
                self._changed_carts[c.cart_id] = c
            else:
                _merge_carts(mine, c)
                self._changed_carts[c.cart_id] = mine
        known_intents = {(x.session_id, x.product_id) for x in st.intents}
        st.intents += [x for x in part.intents if (x.session_id, x.product_id) not in known_intents]
        for ln in part.links:
            if ln.b not in self.person(ln.a, ln.at):
                st.links.append(ln)
        for n, mark in part.consent.items():
            have = st.consent.get(n)
            if have is None or (mark.at, mark.event_id) > (have.at, have.event_id):
                st.consent[n] = mark
        seen_opens = {(o.node, o.at) for o in st.opens}
        st.opens += [o for o in part.opens if (o.node, o.at) not in seen_opens]
        known_recent = {r.session_id for r in st.recent}
        st.recent += [r for r in part.recent if r.session_id not in known_recent]
        st.segments.merge(part.segments)
        st.learning.merge(part.learning)
        waiting = {ch.session_id for ch in st.churn}
        st.churn += [ch for ch in part.churn if ch.session_id not in waiting]
        for purpose, count in part.suppressed.items():
            st.suppressed[purpose] = st.suppressed.get(purpose, 0) + count
        return self._flush()


def _merge_carts(mine: Cart, other: Cart) -> None:
    """One cart whose events reached two profiles before they merged (rare): lines summed,
    the later deadline, the most advanced status."""
    for ln in other.lines:
        have = next((x for x in mine.lines if x.product_id == ln.product_id), None)
        if have is None:
            mine.lines.append(dataclasses.replace(ln))
        else:
            have.quantity += ln.quantity
    rank = {s: i for i, s in enumerate(CART_STATUSES)}
    if rank[other.status] > rank[mine.status]:
        for f in dataclasses.fields(Cart):
            if f.name not in ("lines", "cart_id", "stream", "version"):
                setattr(mine, f.name, getattr(other, f.name))
    elif mine.status == "open" and other.deadline is not None:
        mine.deadline = max(mine.deadline or 0, other.deadline)
    mine.opened_at = min(mine.opened_at, other.opened_at)
    mine.version = max(mine.version, other.version) + 1


# ---- the state as a record (``journey.state.JourneyState``, state/records.py) -------------


def node_of_key(key: str) -> Node:
    """>>> node_of_key("cookie_id:a:b")
    ('cookie_id', 'a:b')
    """
    t, v = key.split(":", 1)
    return (t, v)


def fact_record(f: Fact) -> dict[str, Any]:
    """A buffered event as a ``journey.state.JourneyFact`` record."""
    return dataclasses.asdict(f) | {
        "stream": None if f.stream is None else node_key(f.stream),
        "atom": node_key(f.atom),
        "ids": list(f.ids),
    }


def fact_of_record(f: Mapping[str, Any]) -> Fact:
    """>>> f = Fact("e1", 5, "page_view", "web", ("cookie_id", "c"), ("cookie_id", "c"), ("cookie_id:c",))
    >>> fact_of_record(fact_record(f)) == f
    True
    """
    return Fact(
        **(
            dict(f)
            | {
                "stream": None if f["stream"] is None else node_of_key(f["stream"]),
                "atom": node_of_key(f["atom"]),
                "ids": tuple(f["ids"]),
            }
        )
    )


def buffer_key(f: Fact) -> str:
    """A buffered event's key in the operator's MapState: time (20 digits), then event id.

    >>> buffer_key(Fact("e1", 5, "page_view", "web", None, ("cookie_id", "c")))
    '00000000000000000005:e1'
    """
    return f"{f.at:020d}:{f.event_id}"


def state_record(st: JourneyState) -> dict[str, Any]:
    """The state as a ``journey.state.JourneyState`` record (plain dicts and lists).

    >>> st = JourneyState(consent={"marketing|customer_id:c1": ConsentMark(3, "e3", True)}, pending={"cookie_id:c": 1},
    ...                   links=[Link("customer_id:c1", "cookie_id:c", 2)])
    >>> state_of_record(state_record(st)) == st
    True
    """
    return {
        "buffer": [fact_record(f) for f in st.buffer],
        "sessions": [dataclasses.asdict(x) for x in st.sessions],
        "carts": [dataclasses.asdict(c) for c in st.carts],
        "intents": [dataclasses.asdict(x) for x in st.intents],
        "links": [dataclasses.asdict(x) for x in st.links],
        "consent": {n: dataclasses.asdict(m) for n, m in st.consent.items()},
        "opens": [dataclasses.asdict(x) for x in st.opens],
        "recent": [dataclasses.asdict(r) for r in st.recent],
        "pending": dict(st.pending),
        "segments": facts_record(st.segments),
        "learning": dataclasses.asdict(st.learning),
        "churn": [dataclasses.asdict(ch) for ch in st.churn],
        "suppressed": dict(st.suppressed),
        "consent_view": {p: dataclasses.asdict(v) for p, v in st.consent_view.items()},
        "consent_writes": st.consent_writes,
        "erasure": None if st.erasure is None else dataclasses.asdict(st.erasure),
    }


def state_of_record(rec: Mapping[str, Any]) -> JourneyState:
    """The inverse of :func:`state_record` (records of older versions come resolved)."""
    return JourneyState(
        buffer=[fact_of_record(f) for f in rec["buffer"]],
        sessions=[Session(**x) for x in rec["sessions"]],
        carts=[Cart(**(c | {"lines": [CartLine(**ln) for ln in c["lines"]]})) for c in rec["carts"]],
        intents=[PendingIntent(**x) for x in rec["intents"]],
        links=[Link(**x) for x in rec["links"]],
        # keys before consent per purpose were node keys (marketing)
        consent={(n if "|" in n else consent_key("marketing", n)): ConsentMark(**m) for n, m in rec["consent"].items()},
        opens=[Open(**x) for x in rec["opens"]],
        recent=[RecentSession(**r) for r in rec["recent"]],
        pending=dict(rec["pending"]),
        segments=facts_of_record(rec["segments"]),
        learning=History(**rec["learning"]),
        churn=[ChurnCheck(**ch) for ch in rec["churn"]],
        suppressed=dict(rec["suppressed"]),
        consent_view={p: ConsentShown(**v) for p, v in rec["consent_view"].items()},
        consent_writes=rec["consent_writes"],
        erasure=None if rec.get("erasure") is None else PendingErase(**rec["erasure"]),
    )
