"""Unified customer profile as a mergeable aggregate (a commutative monoid).

Every field combines with an associative, commutative operation (sum, min, max, set union,
last-writer-wins by ``(at_ms, event_id)``), so folding the same events in any order, or
merging two profiles when identity resolution joins them, gives the same result: nothing
lost, nothing counted twice (each event is folded exactly once: the ingestion stage
deduplicates by event_id).

Money is kept in integer cents so sums are exact. Category affinity decays exponentially
with a half-life; it is stored as ``sum(weight * 2 ** ((t - DECAY_EPOCH_MS) / half_life))``,
a plain sum that merges by addition, and is scaled to "now" only when read.

Traits that downstream readers get from plain CQL (recency, purchase days, average spends,
normalized top categories; ``docs/profiles.md``) are a function of the aggregate, computed
as of its last event by :meth:`ProfileAggregate.stored_traits` whenever the row is written;
they are never merged themselves. What they need beyond the other fields is the spend per
UTC purchase day (``purchase_day_cents``), which merges by addition per day like the
channel counts.

Fields (all required; see :class:`ProfileAggregate`):

=====================  =====================================  ==========================
field                  meaning                                merge
=====================  =====================================  ==========================
profile_id             canonical profile id                   the surviving id (caller)
identifiers            {type: sorted tuple of values}         union per type
first_seen_ms          min occurred_at                        min
last_seen_ms           max occurred_at                        max
events                 events folded in                       sum
orders                 purchase + store_purchase events       sum
revenue_cents          sum of order totals, in cents          sum
first_order_ms         min occurred_at of an order (or None)  min (None = absent)
last_order_ms          max occurred_at of an order (or None)  max
channel_counts         {channel: events}                      sum per key
category_affinity      {category: decayed weight sum}         sum per key
consent                {purpose: (granted, at_ms, event_id)}  last writer wins
crm_attributes         {name: (value, at_ms, event_id)}       last writer wins
purchase_day_cents     {UTC day number: order cents that day} sum per key
=====================  =====================================  ==========================

A UTC day number is ``occurred_at // DAY_MS`` (days since 1970-01-01, UTC).

``events`` is not the Cassandra row version: the profiles job writes each row at
:func:`models.profile_fold.row_version` (``2**60 + piece version * 2**22 + events_folded``), at
``USING TIMESTAMP 2 * version + 1``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from decimal import Decimal
from typing import Any, TypeVar

from models.contract import HASHED_IDENTIFIER_TYPES

DECAY_EPOCH_MS = 1_577_836_800_000  # 2020-01-01T00:00:00Z
DEFAULT_HALF_LIFE_MS = 30 * 24 * 3600 * 1000
#: Identifier types of a NormalizedEvent (:data:`models.contract.HASHED_IDENTIFIER_TYPES`).
IDENTIFIER_TYPES: tuple[str, ...] = HASHED_IDENTIFIER_TYPES

DAY_MS = 24 * 3600 * 1000
#: Event types that are orders (both carry a ``journey.v1.Purchase`` payload).
ORDER_EVENT_TYPES: tuple[str, ...] = ("purchase", "store_purchase")
#: Category-affinity weights (before time decay).
PRODUCT_VIEW_WEIGHT = 1.0
#: A product view earns ``dwell_ms / DWELL_MS_PER_POINT`` extra, at most :data:`MAX_DWELL_BONUS`.
DWELL_MS_PER_POINT = 60_000
MAX_DWELL_BONUS = 2.0
ADD_TO_CART_WEIGHT = 3.0
#: Per unit bought (``quantity`` of a line item).
PURCHASE_UNIT_WEIGHT = 5.0
#: How many categories :attr:`ProfileTraits.top_categories` lists.
TOP_CATEGORIES = 5
#: Every value :attr:`ProfileTraits.rfm_segment` can take.
RFM_SEGMENTS: tuple[str, ...] = ("prospect", "new", "active", "loyal", "at_risk")

_N = TypeVar("_N", int, float)
_K = TypeVar("_K", str, int)


@dataclass(frozen=True)
class ProfileAggregate:
    """The mergeable profile of one canonical profile id (see the module docstring table).

    Instances are immutable by convention: no method mutates ``self``, an argument or a
    container of either; every operation returns a new aggregate with fresh containers whose
    keys are sorted when the operands' are (every constructor here sorts them; :meth:`to_dict`
    output is canonical in any case).

    Examples
    --------
    >>> a = ProfileAggregate.from_event(_example_event("e1", "purchase", 1_790_000_000_000, total=20.5), "p1")
    >>> b = ProfileAggregate.from_event(_example_event("e2", "page_view", 1_790_000_060_000, channel="app"), "p1")
    >>> m = a.merge(b)
    >>> (m.events, m.orders, m.revenue_cents, m.first_seen_ms, m.last_seen_ms)
    (2, 1, 2050, 1790000000000, 1790000060000)
    >>> m.channel_counts
    {'app': 1, 'web': 1}
    >>> m == b.merge(a) and m.merge(ProfileAggregate.empty("p1")) == m
    True
    """

    profile_id: str
    identifiers: dict[str, tuple[str, ...]] = field(default_factory=dict)
    first_seen_ms: int | None = None
    last_seen_ms: int | None = None
    events: int = 0
    orders: int = 0
    revenue_cents: int = 0
    first_order_ms: int | None = None
    last_order_ms: int | None = None
    channel_counts: dict[str, int] = field(default_factory=dict)
    category_affinity: dict[str, float] = field(default_factory=dict)
    consent: dict[str, tuple[bool, int, str]] = field(default_factory=dict)
    crm_attributes: dict[str, tuple[str, int, str]] = field(default_factory=dict)
    purchase_day_cents: dict[int, int] = field(default_factory=dict)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickle, giving fields that a pickle from an older version lacks their default.

        Flink state holds pickled aggregates; one written before ``purchase_day_cents``
        existed loads with ``{}`` (its earlier orders are then missing from the day map).

        Examples
        --------
        >>> old = ProfileAggregate.__new__(ProfileAggregate)
        >>> old.__setstate__({"profile_id": "p1", "events": 2})
        >>> (old.events, old.orders, old.purchase_day_cents) == (2, 0, {})
        True
        """
        for f in fields(self):
            if f.name not in state:
                state[f.name] = f.default_factory() if f.default is MISSING else f.default  # type: ignore[operator]
        self.__dict__.update(state)

    # ------------------------------------------------------------------ construction

    @classmethod
    def empty(cls, profile_id: str) -> ProfileAggregate:
        """The identity element of :meth:`merge`: no events, nothing known.

        Parameters
        ----------
        profile_id : str
            The canonical profile id.

        Returns
        -------
        ProfileAggregate
            ``x.merge(empty(x.profile_id)) == x`` for every ``x``.

        Examples
        --------
        >>> e = ProfileAggregate.empty("p1")
        >>> (e.events, e.orders, e.first_seen_ms, e.identifiers)
        (0, 0, None, {})
        """
        return cls(profile_id)

    @classmethod
    def from_event(
        cls, event: Mapping[str, Any], profile_id: str, half_life_ms: int = DEFAULT_HALF_LIFE_MS
    ) -> ProfileAggregate:
        """The aggregate of exactly one decoded ``NormalizedEvent``.

        * identifiers: every non-``None`` value of ``event["identifiers"]`` (types of
          :data:`IDENTIFIER_TYPES`), as a 1-tuple per type;
        * first/last seen: ``occurred_at``; ``events``: 1;
        * ``purchase`` and ``store_purchase``: one order of ``total`` converted to cents
          exactly through :class:`decimal.Decimal` (half-cents round half to even),
          first/last order time ``occurred_at``, and ``purchase_day_cents`` =
          ``{occurred_at // DAY_MS: cents}`` (the order's UTC day; a zero total still
          makes it a purchase day);
        * ``channel_counts``: ``{channel: 1}``;
        * category affinity: ``product_view`` weighs ``1 + min(dwell_ms / 60000, 2)``,
          ``add_to_cart`` 3, each order line item ``5 * quantity`` for its category; a weight
          ``w`` at time ``t`` is stored as ``w * 2 ** ((t - DECAY_EPOCH_MS) / half_life_ms)``;
        * ``consent_update``: ``{purpose: (granted, occurred_at, event_id)}``;
        * ``crm_update``: ``{name: (value, occurred_at, event_id)}`` for every attribute.

        Any other event type only counts as an event seen on its channel.

        Parameters
        ----------
        event : mapping
            A decoded ``NormalizedEvent``; ``payload`` is ``(record name, dict)`` (a bare
            dict is accepted too). It is not modified.
        profile_id : str
            The canonical profile id the event was resolved to.
        half_life_ms : int, optional
            Half-life of category affinity; every aggregate that is merged must use the same.

        Returns
        -------
        ProfileAggregate

        Raises
        ------
        ValueError
            If ``half_life_ms`` is not positive.
        OverflowError
            If ``occurred_at`` is so far after :data:`DECAY_EPOCH_MS` that the decay factor
            exceeds the float range (about 84 years with the default half-life).

        Examples
        --------
        >>> ev = _example_event("e1", "store_purchase", DECAY_EPOCH_MS, channel="pos", total=19.99,
        ...                     items=[("shoes", 2), ("books", 1), ("shoes", 1)])
        >>> a = ProfileAggregate.from_event(ev, "p1")
        >>> (a.orders, a.revenue_cents, a.first_order_ms == a.last_order_ms == DECAY_EPOCH_MS)
        (1, 1999, True)
        >>> a.purchase_day_cents  # 2020-01-01 is day 18262 since 1970-01-01
        {18262: 1999}
        >>> a.category_affinity  # at the decay epoch the factor is exactly 1
        {'books': 5.0, 'shoes': 15.0}
        >>> a.identifiers
        {'cookie_id': ('ck-1',), 'customer_id': ('c-1',)}
        >>> ProfileAggregate.from_event(_example_event("e2", "product_view", DECAY_EPOCH_MS + DEFAULT_HALF_LIFE_MS,
        ...                             dwell_ms=90_000), "p1").category_affinity
        {'shoes': 5.0}
        """
        _check_half_life(half_life_ms)
        at = int(event["occurred_at"])
        event_id = str(event["event_id"])
        event_type = str(event["event_type"])
        raw_payload = event.get("payload")
        payload: Mapping[str, Any] = (raw_payload[1] if isinstance(raw_payload, tuple) else raw_payload) or {}
        ids = event.get("identifiers") or {}
        identifiers: dict[str, tuple[str, ...]] = {
            t: (str(ids[t]),) for t in sorted(IDENTIFIER_TYPES) if ids.get(t) is not None
        }

        orders, revenue_cents, order_ms = 0, 0, None
        weights: dict[str, float] = {}
        consent: dict[str, tuple[bool, int, str]] = {}
        crm: dict[str, tuple[str, int, str]] = {}
        if event_type in ORDER_EVENT_TYPES:
            orders, order_ms = 1, at
            revenue_cents = int(round(Decimal(str(payload["total"])) * 100))
            for item in payload.get("items") or ():
                cat = str(item["category"])
                weights[cat] = weights.get(cat, 0.0) + PURCHASE_UNIT_WEIGHT * int(item["quantity"])
        elif event_type == "product_view":
            bonus = min(max(float(payload.get("dwell_ms") or 0) / DWELL_MS_PER_POINT, 0.0), MAX_DWELL_BONUS)
            weights[str(payload["category"])] = PRODUCT_VIEW_WEIGHT + bonus
        elif event_type == "add_to_cart":
            weights[str(payload["category"])] = ADD_TO_CART_WEIGHT
        elif event_type == "consent_update":
            consent[str(payload["purpose"])] = (bool(payload["granted"]), at, event_id)
        elif event_type == "crm_update":
            crm = {str(k): (str(v), at, event_id) for k, v in sorted((payload.get("attributes") or {}).items())}

        factor = decay_factor(at, half_life_ms) if weights else 1.0
        return cls(
            profile_id=profile_id,
            identifiers=identifiers,
            first_seen_ms=at,
            last_seen_ms=at,
            events=1,
            orders=orders,
            revenue_cents=revenue_cents,
            first_order_ms=order_ms,
            last_order_ms=order_ms,
            channel_counts={str(event["channel"]): 1},
            category_affinity={c: w * factor for c, w in sorted(weights.items())},
            consent=consent,
            crm_attributes=crm,
            purchase_day_cents={} if order_ms is None else {order_ms // DAY_MS: revenue_cents},
        )

    # ------------------------------------------------------------------ the monoid

    def merge(self, other: ProfileAggregate, profile_id: str | None = None) -> ProfileAggregate:
        """Combine two aggregates field by field (associative, commutative, unit :meth:`empty`).

        Identifier tuples are unioned (sorted, deduplicated); times take min/max with ``None``
        as absent; counts and money add; per-key maps add per key; ``consent`` and
        ``crm_attributes`` keep, per key, the entry with the greatest ``(at_ms, event_id)``,
        ties on both broken by the value itself. ``purchase_day_cents`` adds per day (exact
        integers), so the purchase days of a merge are the union of both sides' days.
        Category affinity is a float sum, so it is associative only up to rounding (relative
        error around 1e-16).

        Parameters
        ----------
        other : ProfileAggregate
            The other aggregate (same affinity half-life).
        profile_id : str, optional
            Id of the result (the surviving profile of an identity merge); by default
            ``min(self.profile_id, other.profile_id)``.

        Returns
        -------
        ProfileAggregate
            A new aggregate; neither operand is modified.

        Examples
        --------
        >>> grant = ProfileAggregate.from_event(_example_event("e1", "consent_update", 1_000, granted=True), "p2")
        >>> revoke = ProfileAggregate.from_event(_example_event("e2", "consent_update", 2_000, granted=False), "p1")
        >>> m = revoke.merge(grant)
        >>> m.profile_id, m.consent
        ('p1', {'marketing': (False, 2000, 'e2')})
        >>> grant.merge(revoke, profile_id="p9").profile_id
        'p9'
        """
        return ProfileAggregate(
            profile_id=min(self.profile_id, other.profile_id) if profile_id is None else profile_id,
            identifiers=_union(self.identifiers, other.identifiers),
            first_seen_ms=_min_opt(self.first_seen_ms, other.first_seen_ms),
            last_seen_ms=_max_opt(self.last_seen_ms, other.last_seen_ms),
            events=self.events + other.events,
            orders=self.orders + other.orders,
            revenue_cents=self.revenue_cents + other.revenue_cents,
            first_order_ms=_min_opt(self.first_order_ms, other.first_order_ms),
            last_order_ms=_max_opt(self.last_order_ms, other.last_order_ms),
            channel_counts=_add(self.channel_counts, other.channel_counts),
            category_affinity=_add(self.category_affinity, other.category_affinity),
            consent=_last_writer_wins(self.consent, other.consent),
            crm_attributes=_last_writer_wins(self.crm_attributes, other.crm_attributes),
            purchase_day_cents=_add(self.purchase_day_cents, other.purchase_day_cents),
        )

    # ------------------------------------------------------------------ reading

    def traits(self, as_of_ms: int, half_life_ms: int = DEFAULT_HALF_LIFE_MS) -> ProfileTraits:
        """Derived traits (RFM, LTV, AOV, channel mix, top categories, consent) as of a time.

        Parameters
        ----------
        as_of_ms : int
            "Now" in epoch ms (event time or processing time, as the caller decides).
        half_life_ms : int, optional
            The half-life the aggregate was built with.

        Returns
        -------
        ProfileTraits

        Examples
        --------
        >>> day = 86_400_000
        >>> evs = [_example_event(f"e{i}", "purchase", DECAY_EPOCH_MS + i * day, total=t)
        ...        for i, t in enumerate([10.0, 25.5, 14.5])]
        >>> t = fold(evs, "p1").traits(as_of_ms=DECAY_EPOCH_MS + 12 * day)
        >>> (t.recency_days, t.frequency, t.monetary, t.average_order_value, t.rfm_segment)
        (10.0, 3, 50.0, 16.666666666666668, 'loyal')
        >>> [(c, round(v, 2)) for c, v in t.top_categories]  # 5 * (2**-10/30 + 2**-11/30 + 2**-12/30)
        [('shoes', 11.64)]
        """
        _check_half_life(half_life_ms)
        recency = None if self.last_order_ms is None else max(as_of_ms - self.last_order_ms, 0) / DAY_MS
        monetary = self.revenue_cents / 100
        total_events = sum(self.channel_counts.values())
        mix = {c: n / total_events for c, n in sorted(self.channel_counts.items())} if total_events else {}
        scale = decay_factor(as_of_ms, half_life_ms)
        scored = sorted(((c, v / scale) for c, v in self.category_affinity.items()), key=lambda cv: (-cv[1], cv[0]))
        return ProfileTraits(
            profile_id=self.profile_id,
            as_of_ms=as_of_ms,
            recency_days=recency,
            frequency=self.orders,
            monetary=monetary,
            lifetime_value=monetary,
            average_order_value=self.revenue_cents / self.orders / 100 if self.orders else None,
            channel_mix=mix,
            top_categories=tuple(scored[:TOP_CATEGORIES]),
            consent={p: granted for p, (granted, _, _) in sorted(self.consent.items())},
            is_buyer=self.orders > 0,
            is_multichannel=sum(1 for n in self.channel_counts.values() if n > 0) >= 2,
            rfm_segment=rfm_segment(self.orders, recency),
        )

    def stored_traits(self) -> StoredTraits:
        """The traits stored as columns of the profile row, as of the profile's last event.

        "As of the last event" means at ``last_seen_ms``, the greatest ``occurred_at`` of the
        events folded in (event time, any event type): the result is a function of the set
        of events only, never of the arrival order or the wall clock. Definitions, units and
        rounding are those of :class:`StoredTraits` (and ``docs/profiles.md``).

        Returns
        -------
        StoredTraits

        Examples
        --------
        >>> day = DAY_MS
        >>> evs = [_example_event("e1", "purchase", DECAY_EPOCH_MS + 10 * 3_600_000, total=10.0),
        ...        _example_event("e2", "purchase", DECAY_EPOCH_MS + 20 * 3_600_000, total=5.0),  # same UTC day
        ...        _example_event("e3", "purchase", DECAY_EPOCH_MS + 3 * day, total=20.0, items=[("books", 1)]),
        ...        _example_event("e4", "page_view", DECAY_EPOCH_MS + 4 * day + 12 * 3_600_000)]
        >>> t = fold(evs, "p1").stored_traits()
        >>> (t.recency_days, t.purchase_days)
        (1.5, 2)
        >>> (t.avg_order_value_cents, t.avg_day_spend_cents, t.repeat_day_spend_cents)
        (Decimal('1166.67'), Decimal('1750.00'), Decimal('2000.00'))
        >>> [(c, round(s, 4)) for c, s in t.top_categories]  # two shoe orders, 3 days later one book order
        [('shoes', 0.6544), ('books', 0.3456)]
        >>> ProfileAggregate.empty("p1").stored_traits()
        StoredTraits(recency_days=None, purchase_days=0, avg_order_value_cents=None, avg_day_spend_cents=None, repeat_day_spend_cents=None, top_categories=())
        """
        days = len(self.purchase_day_cents)
        recency = None
        if self.last_order_ms is not None and self.last_seen_ms is not None:
            recency = (self.last_seen_ms - self.last_order_ms) / DAY_MS
        repeat = None
        if days >= 2:
            first_day = min(self.purchase_day_cents)
            repeat = cents_quotient(self.revenue_cents - self.purchase_day_cents[first_day], days - 1)
        # the decay factor to last_seen is common to every category: it cancels in the shares
        total = math.fsum(self.category_affinity.values())
        shares = (
            sorted(((c, v / total) for c, v in self.category_affinity.items()), key=lambda cs: (-cs[1], cs[0]))
            if total > 0
            else []
        )
        return StoredTraits(
            recency_days=recency,
            purchase_days=days,
            avg_order_value_cents=cents_quotient(self.revenue_cents, self.orders) if self.orders else None,
            avg_day_spend_cents=cents_quotient(self.revenue_cents, days) if days else None,
            repeat_day_spend_cents=repeat,
            top_categories=tuple(shares[:TOP_CATEGORIES]),
        )

    # ------------------------------------------------------------------ serialization

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (for Flink state and Cassandra): tuples become lists, day numbers strings.

        Keys are exactly the field names; ``from_dict(to_dict(x)) == x``.

        Returns
        -------
        dict
            Only ``dict``, ``list``, ``str``, ``int``, ``float``, ``bool`` and ``None``.

        Examples
        --------
        >>> a = ProfileAggregate.from_event(_example_event("e1", "consent_update", 5, granted=True), "p1")
        >>> d = a.to_dict()
        >>> d["consent"], d["identifiers"]["cookie_id"]
        ({'marketing': [True, 5, 'e1']}, ['ck-1'])
        >>> import json
        >>> ProfileAggregate.from_dict(json.loads(json.dumps(d))) == a
        True
        """
        return {
            "profile_id": self.profile_id,
            "identifiers": {t: list(v) for t, v in sorted(self.identifiers.items())},
            "first_seen_ms": self.first_seen_ms,
            "last_seen_ms": self.last_seen_ms,
            "events": self.events,
            "orders": self.orders,
            "revenue_cents": self.revenue_cents,
            "first_order_ms": self.first_order_ms,
            "last_order_ms": self.last_order_ms,
            "channel_counts": dict(sorted(self.channel_counts.items())),
            "category_affinity": dict(sorted(self.category_affinity.items())),
            "consent": {p: [g, at, eid] for p, (g, at, eid) in sorted(self.consent.items())},
            "crm_attributes": {k: [v, at, eid] for k, (v, at, eid) in sorted(self.crm_attributes.items())},
            "purchase_day_cents": {str(day): c for day, c in sorted(self.purchase_day_cents.items())},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ProfileAggregate:
        """Rebuild an aggregate from :meth:`to_dict` output (lists become tuples again).

        Missing keys other than ``profile_id`` take the :meth:`empty` value, so state written
        before a field existed still loads.

        Parameters
        ----------
        d : mapping
            A :meth:`to_dict` result, possibly after a JSON round trip.

        Returns
        -------
        ProfileAggregate

        Examples
        --------
        >>> ProfileAggregate.from_dict({"profile_id": "p1"}) == ProfileAggregate.empty("p1")
        True
        """
        return cls(
            profile_id=str(d["profile_id"]),
            identifiers={str(t): tuple(str(x) for x in v) for t, v in sorted((d.get("identifiers") or {}).items())},
            first_seen_ms=_opt_int(d.get("first_seen_ms")),
            last_seen_ms=_opt_int(d.get("last_seen_ms")),
            events=int(d.get("events") or 0),
            orders=int(d.get("orders") or 0),
            revenue_cents=int(d.get("revenue_cents") or 0),
            first_order_ms=_opt_int(d.get("first_order_ms")),
            last_order_ms=_opt_int(d.get("last_order_ms")),
            channel_counts={str(c): int(n) for c, n in sorted((d.get("channel_counts") or {}).items())},
            category_affinity={str(c): float(v) for c, v in sorted((d.get("category_affinity") or {}).items())},
            consent={
                str(p): (bool(g), int(at), str(eid)) for p, (g, at, eid) in sorted((d.get("consent") or {}).items())
            },
            crm_attributes={
                str(k): (str(v), int(at), str(eid))
                for k, (v, at, eid) in sorted((d.get("crm_attributes") or {}).items())
            },
            purchase_day_cents={
                day: c
                for day, c in sorted((int(day), int(c)) for day, c in (d.get("purchase_day_cents") or {}).items())
            },
        )


@dataclass(frozen=True)
class ProfileTraits:
    """Traits derived from a :class:`ProfileAggregate` at one point in time.

    Attributes
    ----------
    profile_id : str
        The canonical profile id.
    as_of_ms : int
        The time the traits were computed for.
    recency_days : float or None
        Days (fractional) from the last order to ``as_of_ms``, never negative; ``None``
        without orders.
    frequency : int
        Number of orders.
    monetary : float
        Total order revenue in currency units.
    lifetime_value : float
        Same as ``monetary`` (historical LTV).
    average_order_value : float or None
        ``monetary / frequency``; ``None`` without orders.
    channel_mix : dict of str to float
        Share of events per channel (sums to 1; empty without events).
    top_categories : tuple of (str, float)
        Up to 5 ``(category, affinity)`` pairs, affinity decayed to ``as_of_ms``, highest
        first, ties by name.
    consent : dict of str to bool
        Latest consent decision per purpose.
    is_buyer : bool
        At least one order.
    is_multichannel : bool
        Events on at least two channels.
    rfm_segment : str
        One of :data:`RFM_SEGMENTS`, see :func:`rfm_segment`.
    """

    profile_id: str
    as_of_ms: int
    recency_days: float | None
    frequency: int
    monetary: float
    lifetime_value: float
    average_order_value: float | None
    channel_mix: dict[str, float]
    top_categories: tuple[tuple[str, float], ...]
    consent: dict[str, bool]
    is_buyer: bool
    is_multichannel: bool
    rfm_segment: str

    def consented(self, purpose: str) -> bool:
        """Whether the latest consent decision for ``purpose`` is a grant.

        No decision at all counts as *not* consented (deny by default).

        Parameters
        ----------
        purpose : str
            e.g. ``"marketing"``, ``"personalization"``, ``"analytics"``.

        Returns
        -------
        bool

        Examples
        --------
        >>> t = ProfileAggregate.from_event(_example_event("e1", "consent_update", 5, granted=True), "p1").traits(10)
        >>> t.consented("marketing"), t.consented("personalization")
        (True, False)
        """
        return self.consent.get(purpose, False)


@dataclass(frozen=True)
class StoredTraits:
    """Traits of a profile as of its last event (``last_seen``), one per ``journey.profiles`` column.

    Money is in cents; an average is the exact quotient rounded half to even to 0.01 cent
    (:func:`cents_quotient`). A "purchase day" is a UTC calendar day (``occurred_at //
    DAY_MS``) with at least one ``purchase`` or ``store_purchase``. The other RFM inputs are
    columns of the aggregate already: ``orders`` (frequency in orders), ``revenue_cents``
    (monetary total), ``first_order`` / ``last_order`` and ``purchase_day_cents``.

    Attributes
    ----------
    recency_days : float or None
        ``(last_seen_ms - last_order_ms) / 86_400_000``: fractional days from the last order
        to the last event, never negative (the double nearest the exact quotient); ``None``
        without orders.
    purchase_days : int
        Distinct UTC days with an order (frequency as BG/NBD counts it, plus one: BG/NBD's
        ``frequency`` is ``purchase_days - 1``); 0 without orders.
    avg_order_value_cents : Decimal or None
        ``revenue_cents / orders`` (AOV); ``None`` without orders.
    avg_day_spend_cents : Decimal or None
        ``revenue_cents / purchase_days``: mean spend per purchase day; ``None`` without orders.
    repeat_day_spend_cents : Decimal or None
        ``(revenue_cents - spend on the first purchase day) / (purchase_days - 1)``: mean spend
        per repeat purchase day (the Gamma-Gamma model's input); ``None`` with fewer than two
        purchase days.
    top_categories : tuple of (str, float)
        Up to :data:`TOP_CATEGORIES` ``(category, share)``: the category's affinity divided by
        the sum of all its categories' affinities, both decayed to ``last_seen`` (so in [0, 1]
        and summing to at most 1); highest first, ties by name; empty without any category.
    """

    recency_days: float | None
    purchase_days: int
    avg_order_value_cents: Decimal | None
    avg_day_spend_cents: Decimal | None
    repeat_day_spend_cents: Decimal | None
    top_categories: tuple[tuple[str, float], ...]


# ---------------------------------------------------------------------- module functions


def cents_quotient(numerator_cents: int, denominator: int) -> Decimal:
    """``numerator_cents / denominator`` rounded half to even to two decimals (0.01 cent), exactly.

    Integer arithmetic only (no float, no decimal context), so the result is the exact
    quotient correctly rounded whatever its size.

    Parameters
    ----------
    numerator_cents : int
        An amount in cents.
    denominator : int
        A positive count (orders, days).

    Returns
    -------
    Decimal
        With exponent -2, e.g. ``Decimal('1666.67')``.

    Raises
    ------
    ValueError
        If ``denominator`` is not positive.

    Examples
    --------
    >>> cents_quotient(5000, 3), cents_quotient(1, 8), cents_quotient(3, 8), cents_quotient(7, 1)
    (Decimal('1666.67'), Decimal('0.12'), Decimal('0.38'), Decimal('7.00'))
    """
    if denominator <= 0:
        raise ValueError(f"denominator must be positive, got {denominator}")
    q, r = divmod(numerator_cents * 100, denominator)
    if 2 * r > denominator or (2 * r == denominator and q % 2 == 1):
        q += 1
    return Decimal(f"{q}E-2")


def fold(
    events: Iterable[Mapping[str, Any]], profile_id: str, half_life_ms: int = DEFAULT_HALF_LIFE_MS
) -> ProfileAggregate:
    """Merge of :meth:`ProfileAggregate.from_event` over ``events`` (empty: :meth:`~ProfileAggregate.empty`).

    Parameters
    ----------
    events : iterable of mapping
        Decoded ``NormalizedEvent`` dicts, each event once (deduplicated by ``event_id``).
    profile_id : str
        Id of the result.
    half_life_ms : int, optional
        Half-life of category affinity.

    Returns
    -------
    ProfileAggregate
        The same (up to float rounding in ``category_affinity``) for any order of ``events``.

    Examples
    --------
    >>> evs = [_example_event(f"e{i}", "page_view", 1_000 * i, channel=ch) for i, ch in enumerate("web app web".split())]
    >>> agg = fold(evs, "p1")
    >>> agg.events, agg.first_seen_ms, agg.last_seen_ms, agg.channel_counts
    (3, 0, 2000, {'app': 1, 'web': 2})
    >>> fold(reversed(evs), "p1") == agg
    True
    """
    acc = ProfileAggregate.empty(profile_id)
    for ev in events:
        acc = acc.merge(ProfileAggregate.from_event(ev, profile_id, half_life_ms), profile_id)
    return acc


def decay_factor(at_ms: int, half_life_ms: int = DEFAULT_HALF_LIFE_MS) -> float:
    """``2 ** ((at_ms - DECAY_EPOCH_MS) / half_life_ms)``: stored affinity = weight * this.

    To read an affinity as of time ``T``, divide the stored value by ``decay_factor(T)``.

    Parameters
    ----------
    at_ms : int
        Epoch ms.
    half_life_ms : int, optional
        Positive half-life.

    Returns
    -------
    float

    Examples
    --------
    >>> decay_factor(DECAY_EPOCH_MS), decay_factor(DECAY_EPOCH_MS + 2 * DEFAULT_HALF_LIFE_MS)
    (1.0, 4.0)
    """
    _check_half_life(half_life_ms)
    return 2.0 ** ((at_ms - DECAY_EPOCH_MS) / half_life_ms)


def rfm_segment(orders: int, recency_days: float | None) -> str:
    """A coarse RFM segment.

    ``"prospect"`` without orders; ``"new"`` with exactly one order at most 30 days ago;
    ``"loyal"`` with three or more orders, the last at most 60 days ago; ``"at_risk"`` when
    the last order is more than 90 days ago; ``"active"`` otherwise.

    Parameters
    ----------
    orders : int
        Number of orders.
    recency_days : float or None
        Days since the last order (``None`` without orders).

    Returns
    -------
    str
        One of :data:`RFM_SEGMENTS`.

    Examples
    --------
    >>> [rfm_segment(0, None), rfm_segment(1, 30), rfm_segment(3, 60), rfm_segment(5, 90.5), rfm_segment(2, 10)]
    ['prospect', 'new', 'loyal', 'at_risk', 'active']
    """
    if orders <= 0 or recency_days is None:
        return "prospect"
    if orders == 1 and recency_days <= 30:
        return "new"
    if orders >= 3 and recency_days <= 60:
        return "loyal"
    if recency_days > 90:
        return "at_risk"
    return "active"


# ---------------------------------------------------------------------- helpers


def _check_half_life(half_life_ms: int) -> None:
    if half_life_ms <= 0:
        raise ValueError(f"half_life_ms must be positive, got {half_life_ms}")


def _opt_int(v: Any) -> int | None:
    return None if v is None else int(v)


def _min_opt(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _max_opt(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def _union(a: Mapping[str, tuple[str, ...]], b: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    return {t: tuple(sorted(set(a.get(t, ())) | set(b.get(t, ())))) for t in sorted(a.keys() | b.keys())}


def _add(a: Mapping[_K, _N], b: Mapping[_K, _N]) -> dict[_K, _N]:
    # A value missing on one side is taken as is (never ``0 + v``), which keeps sums exact.
    # Linear in the larger side, which is copied (an atom's map; the other is usually one
    # event's): keys stay sorted when both inputs are, re-sorted only if a new key lands
    # before the larger side's last key (x + y == y + x exactly, also for floats).
    big, small = (a, b) if len(a) >= len(b) else (b, a)
    out = dict(big)
    if not small:
        return out
    last = next(reversed(out)) if out else None
    resort = False
    for k, v in small.items():
        if k in out:
            out[k] = out[k] + v
        else:
            resort = resort or (last is not None and k < last)
            out[k] = v
            last = k if not resort else last
    return dict(sorted(out.items())) if resort else out


def _lww_key(entry: tuple[Any, int, str]) -> tuple[int, str, Any]:
    value, at_ms, event_id = entry
    return at_ms, event_id, value


def _last_writer_wins(a: Mapping[str, tuple[Any, int, str]], b: Mapping[str, tuple[Any, int, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in sorted(a.keys() | b.keys()):
        x, y = a.get(k), b.get(k)
        out[k] = y if x is None else x if y is None else max(x, y, key=_lww_key)
    return out


def _example_event(
    event_id: str,
    event_type: str,
    occurred_at: int,
    channel: str = "web",
    total: float = 0.0,
    items: list[tuple[str, int]] | None = None,
    granted: bool = True,
    dwell_ms: int = 0,
) -> dict[str, Any]:
    """A small hand-made ``NormalizedEvent`` for the doctests (not part of the API)."""
    ids = {t: None for t in IDENTIFIER_TYPES} | {"customer_id": "c-1", "cookie_id": "ck-1"}
    if event_type in ORDER_EVENT_TYPES:
        lines = [
            {"product_id": f"sku-{i}", "category": c, "quantity": q, "unit_price": 1.0}
            for i, (c, q) in enumerate(items if items is not None else [("shoes", 1)])
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
            {"product_id": "sku-0", "category": "shoes", "price": 1.0, "dwell_ms": dwell_ms},
        )
    elif event_type == "consent_update":
        payload = ("journey.v1.ConsentUpdate", {"purpose": "marketing", "granted": granted})
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
