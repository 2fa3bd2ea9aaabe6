"""Offline oracle of the rule segments: every membership change, from the events and the rules alone.

:func:`segment_truth` replays each person's journey in event time in plain Python and evaluates
the CEL rules (``docs/segments.md``) with the ``cel`` package at every evaluation instant the
specification lists, returning each ``entered`` / ``exited`` the journeys stage must publish on
``journey.segments``. It is written from ``docs/segments.md`` (and ``docs/journeys.md`` for
sessions and carts) only, independently of the stage's code (``models/segments.py``,
``models/journeys.py``, ``operators/``); it reuses the journeys oracle
(:mod:`generator.journey_truth`) for identifiers, streams and the carts' abandonments.

Semantics
---------
* **Person.** A profile is the person's *final* connected component of identifiers, linked by
  every input event as :func:`generator.journey_truth.journey_truth` links them (late events
  included; blocked values never link). Its key, ``person`` in the output, is the smallest node
  key ``<type>:<value>`` of the component (string order). All of the person's events count from
  the beginning, also those seen before the link: the oracle knows no interim profile, so it
  has no ``exited`` of a merged-away profile (``docs/segments.md``, Identity changes); compare the
  job's changes per final person with that in mind.
* **Applied events.** The person's events (duplicates by ``event_id`` once) not in
  ``late_event_ids``, in ``(occurred_at, event_id)`` order. An event without a usable identifier
  belongs to no person. Late events are not applied and trigger no evaluation (they still link).
* **Features** (``FEATURES``) at an evaluation are computed over the events applied so far and
  the abandonments decided so far, with half-open windows ``now - w < t <= now``:

  - purchases are ``purchase`` and ``store_purchase`` events (any channel); each ``total`` is
    rounded to cents (half-even), summed as an integer, and ``lifetime_value`` is that sum / 100;
  - ``first_purchase_30d``: the earliest applied purchase is within 30 days;
  - sessions are the journeys sessions (per stream, new after a gap ``> session_gap_ms``; email,
    crm and ``consent_update``/``erasure_request``/``crm_update`` events in none); a session's
    engagement "as it stands" is the journeys formula over its events applied so far;
  - ``carts_abandoned_7d`` counts the ``cart_abandoned`` triggers (published or suppressed) of
    :func:`~generator.journey_truth.journey_truth` whose cart stream belongs to the person, by
    ``fired_at`` (the deadline);
  - ``active_7d`` / ``active_30d``: the latest applied event of any type and channel.

* **Evaluation order** (per person, ``docs/journeys.md`` Time): every applied event, after it is
  applied, with ``now = occurred_at``; every abandonment at its deadline, after the events at or
  before it (several at one deadline in the journeys oracle's trigger order); then the
  time-only instants of that time. Each evaluation runs every enabled rule, in rule-name order.
* **Time-only instants**: ``t + 7 d`` and ``t + 30 d`` of every purchase, ``+ 30 d`` of the first
  purchase, ``+ 7/14/21 d`` of every session start, ``+ 7 d`` of every abandonment, and
  ``+ 7/30 d`` of the latest event (an event time ``t`` whose next applied event of the person
  comes after ``t + w``, or never). Only instants ``<=`` the end of event time, the newest
  ``occurred_at`` of *all* input events (every person, late ones included), are reached.
* **Consent** (per purpose: ``personalization``, ``marketing``, ``analytics``, :data:`PURPOSES`).
  The person's consent for purpose ``P`` at an evaluation: among the person's
  ``consent_update`` events with ``payload["purpose"] == P`` *applied so far* (in the
  ``(occurred_at, event_id)`` order of application: at the evaluation of an event, those up to
  and including it; at an abandonment or a time-only instant, every event at or before it), the
  last one decides, ``bool(payload["granted"])``; with none,
  the default for ``P`` (``consent_defaults``, :data:`CONSENT_DEFAULTS` when not given:
  personalization and analytics granted, marketing denied). A ``consent_update`` is an applied
  event, so it triggers an evaluation at its ``occurred_at``: an opt-out makes a member leave
  then, an opt-in can make the person enter then. A late ``consent_update`` changes nothing.
* **Changes.** A rule's *effective* value is its expression's value and the consent for its
  purpose at ``now``. A rule enters the person when its effective value is true and the person
  is no member, and leaves when it is false and the person is a member; ``rule_version`` is the
  rule's version and ``at`` the evaluation's ``now``. A rule that raises, or returns a
  non-``bool``, keeps the membership whatever the consent, and is counted
  (:attr:`SegmentTruth.rule_errors`).
* **Withheld entries** (:attr:`SegmentTruth.withheld`, by purpose). Per person and rule a flag:
  at an evaluation whose expression gives a ``bool``, if the expression is true, the consent for
  the rule's purpose is false and the person is no member after this evaluation's change (also
  right after an opt-out made them leave), the flag is set, and if it was not set already 1 is
  added to the purpose's count; otherwise (expression false, or consent true) the flag is
  cleared. So an entry withheld is counted once per stretch of "true without consent".

Where ``docs/segments.md`` is silent or ambiguous, these choices are made:

* the rules are static (one file, no hot reload); only enabled rules are evaluated, so a
  disabled rule produces nothing (it never had members);
* a rule file is validated as a whole: an invalid definition (name, version, purpose, an
  expression that does not compile, or that does not give a ``bool`` on the all-zero profile and
  on a typical one) or two definitions with one name raise :class:`ValueError` (the job rejects
  such a rule and runs the others; the oracle models valid rule sets only). Names that
  ``Program.variables()`` lists but that are no feature pass validation only if the expression
  binds them itself (comprehension macros): an unbound one fails the sample evaluation;
* only the features a rule names are passed to it (``lifetime_value`` always a ``float``);
* evaluating at more instants than the listed ones changes nothing (features are constant
  between listed instants, so a rule gives the same answer); the oracle uses exactly the list;
* consent is a function of ``now`` alone, unlike the features (applied so far): every
  evaluation at one ``occurred_at`` sees the same consent, decided by the ``consent_update``
  with the greatest ``event_id`` there, also the evaluations of that time's events with a
  smaller ``event_id`` (applied before it);
* a ``consent_update`` without ``granted`` denies (``bool(None)``); one whose ``purpose`` is no
  purpose changes nothing; ``consent_defaults`` given without some purpose takes that purpose's
  :data:`CONSENT_DEFAULTS` (a key that is no purpose, or a value that is no ``bool``, raises
  :class:`ValueError`).

Examples
--------
>>> T = 1_790_000_000_000
>>> DAY = 86_400_000
>>> def ev(i, t, typ, payload, channel="web", **ids):
...     return {"event_id": f"e{i}", "event_type": typ, "channel": channel, "occurred_at": t,
...             "identifiers": ids, "payload": ("journey.v1.X", payload)}
>>> rules = [{"name": "high_value", "version": 1, "purpose": "marketing",
...           "expression": "purchases_7d >= 1 && lifetime_value > 300.0"},
...          {"name": "lapsed", "version": 2, "purpose": "marketing", "expression": "purchases >= 1 && !active_7d"}]
>>> events = [
...     ev(0, T - DAY, "consent_update", {"purpose": "marketing", "granted": True}, customer_id="c1"),
...     ev(1, T, "purchase", {"order_id": "o1", "total": 350.0}, customer_id="c1", cookie_id="k1"),
...     ev(2, T + 10 * DAY, "page_view", {"url": "https://shop.example/"}, cookie_id="other"),
... ]
>>> [(c["person"], c["segment"], c["change"], c["rule_version"], (c["at"] - T) // DAY) for c in segment_truth(events, rules)]
[('cookie_id:k1', 'high_value', 'entered', 1, 0), ('cookie_id:k1', 'high_value', 'exited', 1, 7), ('cookie_id:k1', 'lapsed', 'entered', 2, 7)]

Without the opt-in marketing is denied (the default): nothing enters, the entries are withheld.

>>> truth = segment_replay(events[1:], rules)
>>> truth.changes, truth.withheld
([], {'personalization': 0, 'marketing': 2, 'analytics': 0})
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any, Collection, Iterable, Mapping

import cel
import yaml

from generator.journey_truth import (
    NON_SESSION_CHANNELS,
    NON_SESSION_TYPES,
    JourneySettings,
    Node,
    _payload,
    _People,
    identifiers_of,
    journey_truth,
    money,
    stream_name,
    stream_of,
)

DAY_MS = 86_400_000
W7, W14, W21, W30 = 7 * DAY_MS, 14 * DAY_MS, 21 * DAY_MS, 30 * DAY_MS

#: The features a rule can use, with their Python (CEL) type.
FEATURES: dict[str, type] = {
    "lifetime_value": float,
    "purchases": int,
    "purchases_7d": int,
    "purchases_30d": int,
    "first_purchase_30d": bool,
    "sessions_7d": int,
    "engagement_7d": int,
    "engagement_prev_7d": int,
    "engagement_prev2_7d": int,
    "carts_abandoned_7d": int,
    "active_7d": bool,
    "active_30d": bool,
}
#: Consent purposes a rule can declare.
PURPOSES: tuple[str, ...] = ("personalization", "marketing", "analytics")
#: The consent for each purpose of a person without a ``consent_update`` for it.
CONSENT_DEFAULTS: Mapping[str, bool] = MappingProxyType(
    {"personalization": True, "analytics": True, "marketing": False}
)
NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,62}")
PURCHASE_TYPES: frozenset[str] = frozenset({"purchase", "store_purchase"})
#: Profiles a rule must evaluate to a ``bool`` on to be valid: all zero/false, and typical values.
SAMPLE_PROFILES: tuple[dict[str, Any], ...] = (
    {k: t() for k, t in FEATURES.items()},
    {
        "lifetime_value": 250.0,
        "purchases": 2,
        "purchases_7d": 1,
        "purchases_30d": 2,
        "first_purchase_30d": True,
        "sessions_7d": 3,
        "engagement_7d": 40,
        "engagement_prev_7d": 30,
        "engagement_prev2_7d": 20,
        "carts_abandoned_7d": 1,
        "active_7d": True,
        "active_30d": True,
    },
)


# ---------------------------------------------------------------------- rules


def validate_rule(definition: Mapping[str, Any]) -> dict[str, Any]:
    """Check one rule definition and return it with its defaults.

    Parameters
    ----------
    definition : mapping
        ``name``, ``version``, ``purpose``, ``expression``, optional ``description`` and
        ``enabled`` (default ``True``).

    Returns
    -------
    dict
        ``name``, ``version``, ``purpose``, ``expression``, ``description``, ``enabled``.

    Raises
    ------
    ValueError
        If a field is missing or malformed, the expression does not compile, or it does not
        evaluate to a ``bool`` on :data:`SAMPLE_PROFILES`.

    Examples
    --------
    >>> validate_rule({"name": "engaged", "version": 1, "purpose": "analytics", "expression": "sessions_7d >= 3"})
    {'name': 'engaged', 'version': 1, 'purpose': 'analytics', 'expression': 'sessions_7d >= 3', 'description': None, 'enabled': True}
    >>> validate_rule({"name": "x", "version": 1, "purpose": "analytics", "expression": "lifetime_value + 1 > 2.0"})
    Traceback (most recent call last):
    ...
    ValueError: rule 'x': does not evaluate to a bool on a sample profile: ...
    """
    if not isinstance(definition, Mapping):
        raise ValueError(f"a rule is a mapping, not {type(definition).__name__}")
    name = definition.get("name")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ValueError(f"rule name {name!r} does not match {NAME_RE.pattern}")
    version = definition.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"rule {name!r}: version {version!r} is not an integer >= 1")
    purpose = definition.get("purpose")
    if purpose not in PURPOSES:
        raise ValueError(f"rule {name!r}: purpose {purpose!r} is not one of {PURPOSES}")
    expression = definition.get("expression")
    if not isinstance(expression, str) or not expression.strip():
        raise ValueError(f"rule {name!r}: no expression")
    enabled = definition.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ValueError(f"rule {name!r}: enabled {enabled!r} is not a bool")
    description = definition.get("description")
    if description is not None and not isinstance(description, str):
        raise ValueError(f"rule {name!r}: description {description!r} is not a string")
    program = _compile(name, expression)
    names = _feature_names(program)
    for sample in SAMPLE_PROFILES:
        try:
            result = program.execute({k: sample[k] for k in names})
        except Exception as exc:  # noqa: BLE001 - any CEL failure makes the rule invalid
            raise ValueError(f"rule {name!r}: does not evaluate to a bool on a sample profile: {exc}") from exc
        if not isinstance(result, bool):
            raise ValueError(f"rule {name!r}: does not evaluate to a bool on a sample profile: {result!r}")
    return {
        "name": name,
        "version": version,
        "purpose": purpose,
        "expression": expression,
        "description": description,
        "enabled": enabled,
    }


def validate_rules(definitions: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """:func:`validate_rule` each definition; two definitions with one name raise :class:`ValueError`."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for d in definitions:
        rule = validate_rule(d)
        if rule["name"] in seen:
            raise ValueError(f"rule {rule['name']!r} is defined twice")
        seen.add(rule["name"])
        out.append(rule)
    return out


def load_rules(path: str | Path) -> list[dict[str, Any]]:
    """Read and validate a rule file.

    Parameters
    ----------
    path : str or Path
        A YAML or JSON file (``.json`` is read as JSON, anything else as YAML): a list of rule
        definitions or ``{"rules": [...]}``.

    Returns
    -------
    list of dict
        The definitions in file order, as :func:`validate_rule` returns them (disabled ones
        included; :func:`segment_truth` evaluates only the enabled ones).

    Raises
    ------
    ValueError
        If the file is not such a list or a definition is invalid.
    """
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    if isinstance(data, Mapping):
        data = data.get("rules")
    if not isinstance(data, list):
        raise ValueError(f"{p}: expected a list of rules or {{'rules': [...]}}")
    return validate_rules(data)


def _compile(name: str, expression: str) -> Any:
    try:
        return cel.compile(expression)
    except Exception as exc:  # noqa: BLE001 - the cel package raises ValueError, be broad
        raise ValueError(f"rule {name!r}: does not compile: {exc}") from exc


def _feature_names(program: Any) -> tuple[str, ...]:
    """The features among the names an expression references (comprehension variables are not)."""
    return tuple(n for n in program.variables() if n in FEATURES)


@dataclass(frozen=True)
class _Rule:
    name: str
    version: int
    purpose: str
    program: Any
    names: tuple[str, ...]


# ---------------------------------------------------------------------- person state


@dataclass
class _Session:
    """A journeys session's engagement counters, as they stand after the events applied so far."""

    started_at: int
    stream: Node
    page_views: int = 0
    product_views: int = 0
    dwell_ms: int = 0
    searches: int = 0
    cart_adds: int = 0
    checkouts: int = 0
    purchases: int = 0

    def add(self, typ: str, payload: Mapping[str, Any]) -> None:
        if typ == "page_view":
            self.page_views += 1
        elif typ == "product_view":
            self.product_views += 1
            self.dwell_ms += int(payload.get("dwell_ms") or 0)
        elif typ == "search":
            self.searches += 1
        elif typ == "add_to_cart":
            self.cart_adds += 1
        elif typ == "checkout_started":
            self.checkouts += 1
        elif typ in PURCHASE_TYPES:
            self.purchases += 1

    def engagement(self) -> int:
        """``page_views + 2·product_views + 2·searches + 5·cart_adds + 10·checkouts + 20·purchases
        + min(dwell_ms // 30 000, 20)`` (``docs/journeys.md``, Sessions)."""
        return (
            self.page_views
            + 2 * self.product_views
            + 2 * self.searches
            + 5 * self.cart_adds
            + 10 * self.checkouts
            + 20 * self.purchases
            + min(self.dwell_ms // 30_000, 20)
        )


@dataclass
class _Person:
    """One person's journey; the replay applies events and abandonments in order."""

    key: str
    events: list[Mapping[str, Any]] = field(default_factory=list)  # applied, in (occurred_at, event_id) order
    abandonments: list[int] = field(default_factory=list)  # deadlines, in the journeys oracle's order
    # the state "so far" during the replay
    purchases: list[tuple[int, int]] = field(default_factory=list)  # (occurred_at, cents)
    sessions: list[_Session] = field(default_factory=list)
    current: dict[Node, _Session] = field(default_factory=dict)  # stream -> its latest session
    last_at: dict[Node, int] = field(default_factory=dict)  # stream -> its latest session event
    decided: list[int] = field(default_factory=list)  # abandonment times decided so far
    latest: int | None = None

    def apply(self, ev: Mapping[str, Any], gap_ms: int) -> None:
        t, typ = ev["occurred_at"], ev["event_type"]
        payload = _payload(ev)
        self.latest = t
        if typ in PURCHASE_TYPES:
            self.purchases.append((t, _cents(payload.get("total"))))
        stream = stream_of(ev, identifiers_of(ev))
        if stream is None or ev["channel"] in NON_SESSION_CHANNELS or typ in NON_SESSION_TYPES:
            return
        sess = self.current.get(stream)
        if sess is None or t - self.last_at[stream] > gap_ms:
            sess = self.current[stream] = _Session(t, stream)
            self.sessions.append(sess)
        self.last_at[stream] = t
        sess.add(typ, payload)

    def features(self, now: int, names: Collection[str]) -> dict[str, Any]:
        """The features ``names`` at ``now`` over what was applied so far."""

        def within(t: int, w: int) -> bool:
            return now - w < t <= now

        def engagement(lo: int, hi: int) -> int:  # sessions started in (now - hi, now - lo]
            return sum(s.engagement() for s in self.sessions if now - hi < s.started_at <= now - lo)

        out: dict[str, Any] = {}
        for n in names:
            if n == "lifetime_value":
                out[n] = sum(c for _, c in self.purchases) / 100
            elif n == "purchases":
                out[n] = len(self.purchases)
            elif n == "purchases_7d":
                out[n] = sum(1 for t, _ in self.purchases if within(t, W7))
            elif n == "purchases_30d":
                out[n] = sum(1 for t, _ in self.purchases if within(t, W30))
            elif n == "first_purchase_30d":
                out[n] = bool(self.purchases) and within(self.purchases[0][0], W30)
            elif n == "sessions_7d":
                out[n] = sum(1 for s in self.sessions if within(s.started_at, W7))
            elif n == "engagement_7d":
                out[n] = engagement(0, W7)
            elif n == "engagement_prev_7d":
                out[n] = engagement(W7, W14)
            elif n == "engagement_prev2_7d":
                out[n] = engagement(W14, W21)
            elif n == "carts_abandoned_7d":
                out[n] = sum(1 for t in self.decided if within(t, W7))
            elif n == "active_7d":
                out[n] = self.latest is not None and within(self.latest, W7)
            elif n == "active_30d":
                out[n] = self.latest is not None and within(self.latest, W30)
            else:  # pragma: no cover - validation admits feature names only
                raise KeyError(n)
        return out


def _cents(total: Any) -> int:
    """A purchase's ``total`` in integer cents (half-even; missing = 0)."""
    if total is None:
        return 0
    return int((money(total) * 100).quantize(Decimal(1), ROUND_HALF_EVEN))


def _session_starts(events: list[Mapping[str, Any]], gap_ms: int) -> list[tuple[Node, int, int]]:
    """Every session of ``events`` (applied, in order) as ``(stream, started_at, final engagement)``."""
    p = _Person("")
    for ev in events:
        p.apply(ev, gap_ms)
    return [(s.stream, s.started_at, s.engagement()) for s in p.sessions]


def _instants(person: _Person, gap_ms: int, end: int) -> list[int]:
    """The person's time-only evaluation instants ``<= end`` (see the module doc), sorted."""
    times = [ev["occurred_at"] for ev in person.events]
    purchases = [ev["occurred_at"] for ev in person.events if ev["event_type"] in PURCHASE_TYPES]
    out: set[int] = set()
    for t in purchases:
        out |= {t + W7, t + W30}
    if purchases:
        out.add(min(purchases) + W30)
    for _, start, _ in _session_starts(person.events, gap_ms):
        out |= {start + W7, start + W14, start + W21}
    out |= {t + W7 for t in person.abandonments}
    distinct = sorted(set(times))
    for i, t in enumerate(distinct):
        following = distinct[i + 1] if i + 1 < len(distinct) else None
        for w in (W7, W30):
            if following is None or following > t + w:
                out.add(t + w)
    return sorted(t for t in out if t <= end)


def consent_defaults_of(consent_defaults: Mapping[str, bool] | None) -> dict[str, bool]:
    """The consent of each purpose without a ``consent_update``: ``consent_defaults`` over
    :data:`CONSENT_DEFAULTS`.

    Raises
    ------
    ValueError
        If a key is no purpose or a value no ``bool``.

    Examples
    --------
    >>> consent_defaults_of(None)
    {'personalization': True, 'marketing': False, 'analytics': True}
    >>> consent_defaults_of({"marketing": True})
    {'personalization': True, 'marketing': True, 'analytics': True}
    """
    out = {p: CONSENT_DEFAULTS[p] for p in PURPOSES}
    for purpose, granted in (consent_defaults or {}).items():
        if purpose not in PURPOSES:
            raise ValueError(f"consent default for {purpose!r}: not one of {PURPOSES}")
        if not isinstance(granted, bool):
            raise ValueError(f"consent default for {purpose!r}: {granted!r} is not a bool")
        out[purpose] = granted
    return out


# ---------------------------------------------------------------------- the replay


@dataclass
class SegmentTruth:
    """What the segments stage must conclude.

    Attributes
    ----------
    changes : list of dict
        Every membership change (see :func:`segment_truth`).
    rule_errors : dict
        Rule name -> evaluations that raised or gave a non-``bool`` (membership kept).
    evaluations : int
        Rule evaluations run (one per enabled rule per evaluation instant of a person).
    sessions : list of dict
        The sessions the features used, final: ``person``, ``stream``, ``started_at``,
        ``engagement``, by person then start (to compare with the journeys oracle).
    withheld : dict
        Purpose -> entries withheld for want of consent (every purpose a key; see the module doc).
    """

    changes: list[dict[str, Any]] = field(default_factory=list)
    rule_errors: dict[str, int] = field(default_factory=dict)
    evaluations: int = 0
    sessions: list[dict[str, Any]] = field(default_factory=list)
    withheld: dict[str, int] = field(default_factory=lambda: {p: 0 for p in PURPOSES})


def _persons(
    events: Iterable[Mapping[str, Any]], late: Collection[str], settings: JourneySettings
) -> tuple[dict[str, _Person], int | None]:
    """The persons (by key) with their applied events and abandonments, and the end of event time."""
    unique: dict[str, Mapping[str, Any]] = {}
    for ev in events:
        unique.setdefault(ev["event_id"], ev)
    ordered = sorted(unique.values(), key=lambda e: (e["occurred_at"], e["event_id"]))
    if not ordered:
        return {}, None
    people = _People()
    for ev in ordered:
        ids = identifiers_of(ev)
        if ids:
            people.link(ids)  # one identifier: just registers it
    keys = {root: min(stream_name(n) for n in members) for root, members in people.members.items()}
    persons: dict[str, _Person] = {}

    def person_of(node: Node) -> _Person:
        key = keys[people.find(node)]
        return persons.setdefault(key, _Person(key))

    for ev in ordered:
        ids = identifiers_of(ev)
        if ids and ev["event_id"] not in late:
            person_of(ids[0]).events.append(ev)
    for trig in journey_truth(ordered, late, settings).triggers:
        if trig["kind"] == "cart_abandoned":
            typ, value = trig["stream"].split(":", 1)
            person_of((typ, value)).abandonments.append(trig["fired_at"])
    return persons, ordered[-1]["occurred_at"]


def segment_replay(
    events: Iterable[Mapping[str, Any]],
    rules: Iterable[Mapping[str, Any]],
    late_event_ids: Collection[str] = (),
    settings: JourneySettings = JourneySettings(),
    *,
    consent_defaults: Mapping[str, bool] | None = None,
) -> SegmentTruth:
    """The membership changes of ``events`` under ``rules``, with the error, evaluation and
    withheld-entry counts.

    Parameters and semantics as :func:`segment_truth`.

    Returns
    -------
    SegmentTruth
    """
    compiled: list[_Rule] = []
    for r in sorted(validate_rules(rules), key=lambda r: r["name"]):
        if r["enabled"]:
            program = cel.compile(r["expression"])
            compiled.append(_Rule(r["name"], r["version"], r["purpose"], program, _feature_names(program)))
    wanted = sorted({n for r in compiled for n in r.names})
    defaults = consent_defaults_of(consent_defaults)
    late = set(late_event_ids)
    persons, end = _persons(events, late, settings)
    truth = SegmentTruth(rule_errors={r.name: 0 for r in compiled})
    gap = settings.session_gap_ms
    for key in sorted(persons):
        person = persons[key]
        assert end is not None
        truth.sessions += [
            {"person": key, "stream": stream_name(s), "started_at": t, "engagement": e}
            for s, t, e in sorted(_session_starts(person.events, gap), key=lambda x: (x[1], x[0]))
        ]
        # (time, phase: 0 event / 1 abandonment / 2 time only, order within the phase, what)
        steps: list[tuple[int, int, int, Any]] = [(ev["occurred_at"], 0, i, ev) for i, ev in enumerate(person.events)]
        steps += [(t, 1, i, t) for i, t in enumerate(person.abandonments)]
        steps += [(t, 2, 0, None) for t in _instants(person, gap, end)]
        steps.sort(key=lambda s: s[:3])
        consent = dict(defaults)  # by purpose, as the events applied so far say
        member: dict[str, bool] = {}
        withheld: set[str] = set()  # rules whose entry is withheld for want of consent, counted
        for now, phase, _, what in steps:
            if phase == 0:
                person.apply(what, gap)
                if what["event_type"] == "consent_update":
                    payload = _payload(what)
                    if payload.get("purpose") in consent:
                        consent[payload["purpose"]] = bool(payload.get("granted"))
            elif phase == 1:
                person.decided.append(what)
            values = person.features(now, wanted) if compiled else {}
            for rule in compiled:
                truth.evaluations += 1
                try:
                    result = rule.program.execute({n: values[n] for n in rule.names})
                except Exception:  # noqa: BLE001 - a run-time failure keeps the membership
                    truth.rule_errors[rule.name] += 1
                    continue
                if not isinstance(result, bool):
                    truth.rule_errors[rule.name] += 1
                    continue
                granted = consent[rule.purpose]
                effective = result and granted
                if effective != member.get(rule.name, False):
                    member[rule.name] = effective
                    truth.changes.append(
                        {
                            "person": key,
                            "segment": rule.name,
                            "change": "entered" if effective else "exited",
                            "rule_version": rule.version,
                            "at": now,
                            "purpose": rule.purpose,
                        }
                    )
                if result and not granted and not member.get(rule.name, False):
                    if rule.name not in withheld:  # once per stretch of "true without consent"
                        withheld.add(rule.name)
                        truth.withheld[rule.purpose] += 1
                else:
                    withheld.discard(rule.name)
    return truth


def segment_truth(
    events: Iterable[Mapping[str, Any]],
    rules: Iterable[Mapping[str, Any]],
    late_event_ids: Collection[str] = (),
    settings: JourneySettings = JourneySettings(),
    *,
    consent_defaults: Mapping[str, bool] | None = None,
) -> list[dict[str, Any]]:
    """Every membership change of ``events`` under ``rules`` (see the module doc for the semantics).

    Parameters
    ----------
    events : iterable of mapping
        Decoded ``NormalizedEvent`` s, in any order; duplicates (same ``event_id``) count once.
    rules : iterable of mapping
        Rule definitions (as :func:`load_rules` returns them, or raw); only enabled ones run.
    late_event_ids : collection of str
        Events beyond the allowed lateness: not applied (they still link identifiers).
    settings : JourneySettings
        The journeys stage's parameters (session gap, cart timeout).
    consent_defaults : mapping of str to bool, optional
        The consent of each purpose for a person without a ``consent_update`` for it; purposes
        missing take :data:`CONSENT_DEFAULTS` (all of it when ``None``: personalization and
        analytics granted, marketing denied).

    Returns
    -------
    list of dict
        ``person``, ``segment``, ``change`` (``entered``/``exited``), ``rule_version``, ``at``,
        ``purpose``; by person, then in evaluation order (several at one evaluation in
        rule-name order).

    Raises
    ------
    ValueError
        If a rule is invalid, a consent default malformed, or the events put two
        ``customer_id`` values into one person.
    """
    return segment_replay(events, rules, late_event_ids, settings, consent_defaults=consent_defaults).changes
