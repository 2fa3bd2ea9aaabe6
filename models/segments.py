"""Rule segments: CEL rules over a profile's journey features, evaluated in event time.

The design of record is ``docs/segments.md``. This module holds the pure parts:

* :class:`SegmentRule` — one definition (name, version, purpose, expression), parsed from YAML
  or JSON by :func:`parse_rules` / :func:`load_rules`;
* :func:`compile_rule` — validation with the CEL reference library (syntax, unknown fields,
  non-boolean or ill-typed results) into a :class:`CompiledRule` that knows the features it
  uses (only those are computed and passed: CEL's cost grows with its context);
* :class:`RuleSet` — the running rules, updated by :meth:`RuleSet.apply` (hot reload: a
  higher version replaces, ``enabled: false`` retires, anything else is refused with an error);
* :class:`SegmentFacts` — what a profile's journey keeps for the features (purchases,
  abandonments, the latest event, the memberships), and :func:`features` /
  :func:`next_change` over it: the values at an event time and the next instant at which
  time alone changes one of them (the stage's timer);
* :func:`evaluate` — the membership changes at one evaluation.

Python ``eval`` is never used. A compiled CEL program does not pickle: a :class:`RuleSet` is
built where it runs (the operator compiles in ``open()`` and on each update).

Examples
--------
>>> rules = RuleSet.of(parse_rules('[{"name": "engaged", "version": 1, "purpose": "personalization",'
...                                '  "expression": "sessions_7d >= 3"}]'))
>>> facts = SegmentFacts()
>>> starts = [(0, 5), (HOUR_MS, 3), (2 * HOUR_MS, 1)]   # (started_at, engagement) of three sessions
>>> [c.record["change"] for c in evaluate(rules, facts, starts, 2 * HOUR_MS, "p1")]
['entered']
>>> next_change(facts, [s for s, _ in starts], 2 * HOUR_MS, rules.features) == 7 * DAY_MS   # the first session leaves the window
True
>>> [(c.record["change"], c.record["at"]) for c in evaluate(rules, facts, starts, 7 * DAY_MS, "p1")]
[('exited', 604800000)]
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import cel
import yaml

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
WEEK_MS = 7 * DAY_MS
MONTH_MS = 30 * DAY_MS
#: how long session starts are needed (engagement_prev2_7d looks back three weeks)
SESSION_HORIZON_MS = 3 * WEEK_MS
#: how long purchase times are needed (purchases_30d)
PURCHASE_HORIZON_MS = MONTH_MS
PURPOSES = ("personalization", "marketing", "analytics")
NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
#: the shipped rules (``docs/segments.md``), used until ``journey.control`` publishes others
DEFAULT_RULES_PATH = Path(__file__).resolve().parent.parent / "rules" / "segments.yaml"


@dataclass(frozen=True)
class Feature:
    """A variable rules may use: its CEL type, a sample value for validation, what it means."""

    cel_type: str
    sample: Any
    doc: str


#: The features a rule can name (docs/segments.md, Features). Windows are ``(now - w, now]``.
FEATURES: dict[str, Feature] = {
    "lifetime_value": Feature("double", 1234.5, "sum of the total of every purchase"),
    "purchases": Feature("int", 3, "number of purchases"),
    "purchases_7d": Feature("int", 1, "purchases within 7 days"),
    "purchases_30d": Feature("int", 2, "purchases within 30 days"),
    "first_purchase_30d": Feature("bool", True, "the first purchase is within 30 days"),
    "sessions_7d": Feature("int", 4, "sessions started within 7 days"),
    "engagement_7d": Feature("int", 35, "engagement of the sessions started within 7 days"),
    "engagement_prev_7d": Feature("int", 50, "the same, sessions started 7 to 14 days ago"),
    "engagement_prev2_7d": Feature("int", 60, "the same, sessions started 14 to 21 days ago"),
    "carts_abandoned_7d": Feature("int", 1, "carts abandoned within 7 days"),
    "active_7d": Feature("bool", True, "the latest event is within 7 days"),
    "active_30d": Feature("bool", True, "the latest event is within 30 days"),
}
_ZERO = {"double": 0.0, "int": 0, "bool": False}


class RuleError(ValueError):
    """A rule definition that cannot run (the message says which rule and why)."""


@dataclass(frozen=True)
class SegmentRule:
    """One segment definition (``docs/segments.md``, Rules)."""

    name: str
    version: int
    purpose: str
    expression: str
    description: str = ""
    enabled: bool = True

    @staticmethod
    def of(d: Mapping[str, Any]) -> SegmentRule:
        """A definition from a parsed mapping, its shape checked (the expression is checked by
        :func:`compile_rule`).

        >>> SegmentRule.of({"name": "x", "version": 0, "purpose": "marketing", "expression": "true"})
        Traceback (most recent call last):
        ...
        models.segments.RuleError: rule 'x': version must be an integer >= 1, got 0
        """
        if not isinstance(d, Mapping):
            raise RuleError(f"a rule must be a mapping, got {type(d).__name__}")
        name = d.get("name")
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise RuleError(f"rule name must match {NAME.pattern}, got {name!r}")
        unknown = set(d) - {"name", "version", "purpose", "expression", "description", "enabled"}
        if unknown:
            raise RuleError(f"rule {name!r}: unknown keys {sorted(unknown)}")
        version = d.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise RuleError(f"rule {name!r}: version must be an integer >= 1, got {version!r}")
        purpose = d.get("purpose")
        if purpose not in PURPOSES:
            raise RuleError(f"rule {name!r}: purpose must be one of {', '.join(PURPOSES)}, got {purpose!r}")
        expression = d.get("expression")
        if not isinstance(expression, str) or not expression.strip():
            raise RuleError(f"rule {name!r}: expression must be a non-empty string")
        enabled = d.get("enabled", True)
        if not isinstance(enabled, bool):
            raise RuleError(f"rule {name!r}: enabled must be true or false, got {enabled!r}")
        description = d.get("description", "") or ""
        return SegmentRule(name, version, purpose, expression.strip(), str(description), enabled)

    def record(self) -> dict[str, Any]:
        """The ``journey.state.SegmentRule`` record (broadcast state) and the JSON form."""
        return {
            "name": self.name,
            "version": self.version,
            "purpose": self.purpose,
            "expression": self.expression,
            "description": self.description,
            "enabled": self.enabled,
        }


def parse_rules(text: str) -> list[SegmentRule]:
    """Definitions from YAML or JSON text: a list, one mapping, or ``{"rules": [...]}``.

    >>> [r.name for r in parse_rules("rules:\\n  - {name: a, version: 1, purpose: analytics, expression: 'true'}")]
    ['a']
    """
    try:
        doc = yaml.safe_load(text)  # YAML is a superset of JSON
    except yaml.YAMLError as e:
        raise RuleError(f"not YAML or JSON: {e}") from None
    if isinstance(doc, Mapping) and "rules" in doc:
        doc = doc["rules"]
    items = [doc] if isinstance(doc, Mapping) else doc
    if not isinstance(items, list):
        raise RuleError("expected a rule, a list of rules or {rules: [...]}")
    rules = [SegmentRule.of(d) for d in items]
    names = [r.name for r in rules]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise RuleError(f"rules defined twice: {', '.join(dup)}")
    return rules


def load_rules(path: str | Path = DEFAULT_RULES_PATH) -> list[SegmentRule]:
    """:func:`parse_rules` of a file (a clear error when it is missing)."""
    p = Path(path)
    if not p.is_file():
        raise RuleError(f"rules file {str(p)!r} does not exist")
    try:
        return parse_rules(p.read_text())
    except RuleError as e:
        raise RuleError(f"{p}: {e}") from None


@dataclass(frozen=True)
class CompiledRule:
    rule: SegmentRule
    program: Any  # cel Program (not picklable)
    features: tuple[str, ...]  # the features it names, sorted

    def __call__(self, values: Mapping[str, Any]) -> bool:
        """The rule's value on ``values`` (the features it names; raises on an evaluation error)."""
        result = self.program.execute({k: values[k] for k in self.features})
        if not isinstance(result, bool):
            raise TypeError(f"rule {self.rule.name!r} gave {type(result).__name__}, not bool")
        return result


def compile_rule(rule: SegmentRule) -> CompiledRule:
    """Compile and validate ``rule`` (raises :class:`RuleError` naming the rule and the problem).

    >>> compile_rule(SegmentRule("a", 1, "marketing", "sessions_7d >= 3 && visits > 2"))
    Traceback (most recent call last):
    ...
    models.segments.RuleError: rule 'a' v1: unknown field(s) visits (known: active_30d, active_7d, ...)
    >>> compile_rule(SegmentRule("a", 1, "marketing", "lifetime_value + 1 > 2.0"))
    Traceback (most recent call last):
    ...
    models.segments.RuleError: rule 'a' v1: type error: ...
    >>> compile_rule(SegmentRule("a", 1, "marketing", "purchases")).rule.name
    Traceback (most recent call last):
    ...
    models.segments.RuleError: rule 'a' v1: type error: the expression gives int, not bool
    """
    where = f"rule {rule.name!r} v{rule.version}"
    try:
        program = cel.compile(rule.expression)
    except ValueError as e:
        raise RuleError(f"{where}: syntax error: {e}") from None
    named = set(program.variables())
    used = tuple(sorted(named & FEATURES.keys()))
    for sample in ({k: _ZERO[FEATURES[k].cel_type] for k in used}, {k: FEATURES[k].sample for k in used}):
        try:
            result = program.execute(sample)
        except RuntimeError as e:
            if "Undefined variable" in str(e):
                unknown = sorted(named - FEATURES.keys())
                known = ", ".join(sorted(FEATURES))
                raise RuleError(f"{where}: unknown field(s) {', '.join(unknown)} (known: {known})") from None
            raise RuleError(f"{where}: evaluation error on a sample profile: {e}") from None
        except TypeError as e:
            raise RuleError(f"{where}: type error: {e}") from None
        if not isinstance(result, bool):
            raise RuleError(f"{where}: type error: the expression gives {type(result).__name__}, not bool")
    return CompiledRule(rule, program, used)


class RuleSet:
    """The rules a subtask runs, by name (retired ones kept: their version still counts).

    >>> rs = RuleSet.of([SegmentRule("a", 1, "marketing", "sessions_7d >= 3")])
    >>> rs.apply(SegmentRule("a", 1, "marketing", "sessions_7d >= 4"))
    Traceback (most recent call last):
    ...
    models.segments.RuleError: rule 'a' v1: version must be higher than the running v1
    >>> rs.apply(SegmentRule("a", 2, "marketing", "sessions_7d >= 4")).rule.version, rs.versions()
    (2, {'a': 2})
    >>> _ = rs.apply(SegmentRule("a", 3, "marketing", "true", enabled=False)); rs.active(), rs.versions()
    ([], {'a': -3})
    """

    def __init__(self) -> None:
        self.rules: dict[str, CompiledRule] = {}
        self._active: list[CompiledRule] = []
        self.features: frozenset[str] = frozenset()

    @staticmethod
    def of(rules: Iterable[SegmentRule]) -> RuleSet:
        rs = RuleSet()
        for r in rules:
            rs.apply(r)
        return rs

    def apply(self, rule: SegmentRule) -> CompiledRule:
        """Add, replace (higher version) or retire (``enabled: false``) a rule; a refused
        update raises :class:`RuleError` and changes nothing."""
        have = self.rules.get(rule.name)
        if have is not None and rule.version <= have.rule.version:
            raise RuleError(
                f"rule {rule.name!r} v{rule.version}: version must be higher than the running v{have.rule.version}"
            )
        compiled = compile_rule(rule)
        self.rules[rule.name] = compiled
        self._active = [c for _, c in sorted(self.rules.items()) if c.rule.enabled]
        self.features = frozenset(f for c in self._active for f in c.features)
        return compiled

    def active(self) -> list[CompiledRule]:
        """The enabled rules, by name."""
        return self._active

    def versions(self) -> dict[str, int]:
        """Name -> running version (negative: retired at that version)."""
        return {n: c.rule.version if c.rule.enabled else -c.rule.version for n, c in sorted(self.rules.items())}


# ---- the profile's facts -------------------------------------------------------------------


@dataclass
class Membership:
    version: int  # the rule version that admitted the profile
    since: int
    purpose: str


@dataclass
class SegmentFacts:
    """What a profile's journey keeps for its segments (part of ``JourneyState``)."""

    purchases: int = 0
    value_cents: int = 0
    first_purchase_at: int | None = None
    last_event_at: int | None = None
    purchase_times: list[int] = field(default_factory=list)  # within PURCHASE_HORIZON_MS (+ lateness)
    abandoned_times: list[int] = field(default_factory=list)  # within a week (+ lateness)
    members: dict[str, Membership] = field(default_factory=dict)
    evaluated_at: int | None = None  # the latest evaluation's event time
    writes: int = 0  # membership rows written: the Cassandra write version
    withheld: list[str] = field(default_factory=list)  # rules true but not consented to (counted once)

    def is_empty(self) -> bool:
        return self.last_event_at is None and not self.members

    def on_event(self, at: int, purchase_cents: int | None) -> None:
        """An applied event at ``at`` (``purchase_cents``: the total when it is a purchase)."""
        self.last_event_at = at if self.last_event_at is None else max(self.last_event_at, at)
        if purchase_cents is not None:
            self.purchases += 1
            self.value_cents += purchase_cents
            self.purchase_times.append(at)
            self.first_purchase_at = at if self.first_purchase_at is None else min(self.first_purchase_at, at)

    def merge(self, other: SegmentFacts) -> None:
        """Add the facts of a profile merged into this one (its memberships end with it)."""
        self.purchases += other.purchases
        self.value_cents += other.value_cents
        self.purchase_times = sorted(self.purchase_times + other.purchase_times)
        self.abandoned_times = sorted(self.abandoned_times + other.abandoned_times)
        for name in ("first_purchase_at", "last_event_at"):
            a, b = getattr(self, name), getattr(other, name)
            pick = min if name == "first_purchase_at" else max
            setattr(self, name, b if a is None else a if b is None else pick(a, b))

    def prune(self, now: int, margin: int) -> None:
        """Drop the times no feature at or after ``now - margin`` can need."""
        self.purchase_times = [t for t in self.purchase_times if t > now - margin - PURCHASE_HORIZON_MS]
        self.abandoned_times = [t for t in self.abandoned_times if t > now - margin - WEEK_MS]


def _within(times: Iterable[int], now: int, lo: int, hi: int) -> list[int]:
    """The times ``t`` with ``now - hi < t <= now - lo``."""
    return [t for t in times if now - hi < t <= now - lo]


def features(
    facts: SegmentFacts, sessions: Sequence[tuple[int, int]], now: int, names: Iterable[str]
) -> dict[str, Any]:
    """The features ``names`` at event time ``now`` (``sessions``: ``(started_at, engagement)``
    of the profile's sessions, engagement as it stands).

    >>> f = SegmentFacts(); f.on_event(10, 12_345)
    >>> features(f, [(10, 7)], 10 + DAY_MS, ["lifetime_value", "purchases_7d", "engagement_7d", "active_7d"])
    {'lifetime_value': 123.45, 'purchases_7d': 1, 'engagement_7d': 7, 'active_7d': True}
    """
    out: dict[str, Any] = {}
    for name in names:
        if name == "lifetime_value":
            out[name] = facts.value_cents / 100
        elif name == "purchases":
            out[name] = facts.purchases
        elif name == "purchases_7d":
            out[name] = len(_within(facts.purchase_times, now, 0, WEEK_MS))
        elif name == "purchases_30d":
            out[name] = len(_within(facts.purchase_times, now, 0, MONTH_MS))
        elif name == "first_purchase_30d":
            out[name] = facts.first_purchase_at is not None and now - MONTH_MS < facts.first_purchase_at <= now
        elif name == "sessions_7d":
            out[name] = sum(1 for s, _ in sessions if now - WEEK_MS < s <= now)
        elif name.startswith("engagement_"):
            back = {"engagement_7d": 0, "engagement_prev_7d": 1, "engagement_prev2_7d": 2}[name]
            lo, hi = back * WEEK_MS, (back + 1) * WEEK_MS
            out[name] = sum(e for s, e in sessions if now - hi < s <= now - lo)
        elif name == "carts_abandoned_7d":
            out[name] = len(_within(facts.abandoned_times, now, 0, WEEK_MS))
        elif name in ("active_7d", "active_30d"):
            w = WEEK_MS if name == "active_7d" else MONTH_MS
            out[name] = facts.last_event_at is not None and now - w < facts.last_event_at <= now
        else:
            raise KeyError(f"unknown feature {name!r}")
    return out


def _changes(facts: SegmentFacts, session_starts: Iterable[int], name: str) -> Iterable[int]:
    """The instants at which ``name`` changes by time alone (``t + w``)."""
    if name in ("purchases_7d", "purchases_30d"):
        w = WEEK_MS if name == "purchases_7d" else MONTH_MS
        return (t + w for t in facts.purchase_times)
    if name == "first_purchase_30d":
        return () if facts.first_purchase_at is None else (facts.first_purchase_at + MONTH_MS,)
    if name in ("sessions_7d", "engagement_7d"):
        return (s + WEEK_MS for s in session_starts)
    if name == "engagement_prev_7d":
        return (s + k * WEEK_MS for s in session_starts for k in (1, 2))
    if name == "engagement_prev2_7d":
        return (s + k * WEEK_MS for s in session_starts for k in (2, 3))
    if name == "carts_abandoned_7d":
        return (t + WEEK_MS for t in facts.abandoned_times)
    if name in ("active_7d", "active_30d"):
        w = WEEK_MS if name == "active_7d" else MONTH_MS
        return () if facts.last_event_at is None else (facts.last_event_at + w,)
    return ()  # lifetime_value, purchases: only events change them


def next_change(facts: SegmentFacts, session_starts: Iterable[int], after: int, names: Iterable[str]) -> int | None:
    """The earliest instant after ``after`` at which one of the features ``names`` changes
    without a new event (None: none does).

    >>> f = SegmentFacts(); f.on_event(0, 100)
    >>> next_change(f, [], 0, ["purchases_7d", "active_30d"]) == WEEK_MS
    True
    """
    starts = list(session_starts)
    best: int | None = None
    for name in names:
        for t in _changes(facts, starts, name):
            if t > after and (best is None or t < best):
                best = t
    return best


@dataclass(frozen=True)
class SegmentOut:
    """A membership change: the ``SegmentChange`` record to publish, and the Cassandra row
    write (``row_version``: ``USING TIMESTAMP``; an ``entered`` change upserts the membership,
    an ``exited`` one deletes it)."""

    record: dict[str, Any]
    row_version: int


def _change(facts: SegmentFacts, profile_id: str, name: str, entered: bool, version: int, purpose: str, at: int):
    facts.writes += 1
    rec = {
        "profile_id": profile_id,
        "segment": name,
        "change": "entered" if entered else "exited",
        "rule_version": version,
        "at": at,
        "purpose": purpose,
        "sequence": facts.writes,
    }
    return SegmentOut(rec, facts.writes)


@dataclass
class Evaluation:
    """Counts of one or more evaluations (the operator's counters)."""

    errors: int = 0
    errors_by_rule: dict[str, str] = field(default_factory=dict)  # the latest error per rule
    withheld: dict[str, int] = field(default_factory=dict)  # entries withheld for want of consent, by purpose


def evaluate(
    rules: RuleSet,
    facts: SegmentFacts,
    sessions: Sequence[tuple[int, int]],
    now: int,
    profile_id: str,
    stats: Evaluation | None = None,
    consent: Mapping[str, bool] | None = None,
) -> list[SegmentOut]:
    """Evaluate every rule at ``now`` (never before the previous evaluation) and return the
    membership changes, in rule-name order; ``facts.members`` is updated.

    ``consent``: the profile's consent by purpose at ``now`` (``docs/privacy.md``): a rule holds
    a member only while its purpose is consented to (missing: consented). An entry withheld
    for want of consent is counted once in ``stats.withheld[purpose]`` until the rule turns
    false or consent is given."""
    if facts.evaluated_at is not None:
        now = max(now, facts.evaluated_at)
    facts.evaluated_at = now
    values = features(facts, sessions, now, rules.features)
    out: list[SegmentOut] = []
    active = {c.rule.name: c for c in rules.active()}
    for name in sorted(active.keys() | facts.members.keys()):
        c = active.get(name)
        member = facts.members.get(name)
        if c is None:  # retired (or unknown to this rule set): the membership ends
            assert member is not None
            known = rules.rules.get(name)
            version = known.rule.version if known is not None else member.version
            del facts.members[name]
            out.append(_change(facts, profile_id, name, False, version, member.purpose, now))
            continue
        try:
            value = c(values)
        except (RuntimeError, TypeError, ValueError, ArithmeticError) as e:
            if stats is not None:
                stats.errors += 1
                stats.errors_by_rule[name] = str(e)
            continue
        allowed = True if consent is None else consent.get(c.rule.purpose, True)
        if value and not allowed:
            if name not in facts.withheld:
                facts.withheld.append(name)
                if stats is not None:
                    stats.withheld[c.rule.purpose] = stats.withheld.get(c.rule.purpose, 0) + 1
        elif name in facts.withheld:
            facts.withheld.remove(name)
        value = value and allowed
        if value and member is None:
            facts.members[name] = Membership(c.rule.version, now, c.rule.purpose)
            out.append(_change(facts, profile_id, name, True, c.rule.version, c.rule.purpose, now))
        elif not value and member is not None:
            del facts.members[name]
            out.append(_change(facts, profile_id, name, False, c.rule.version, c.rule.purpose, now))
    return out


def retire_all(facts: SegmentFacts, profile_id: str, at: int) -> list[SegmentOut]:
    """The profile is merged away: every membership ends (``exited`` with the admitting version)."""
    at = at if facts.evaluated_at is None else max(at, facts.evaluated_at)
    out = [_change(facts, profile_id, n, False, m.version, m.purpose, at) for n, m in sorted(facts.members.items())]
    facts.members.clear()
    return out


# ---- the facts as a record (``journey.state.SegmentFacts``) ---------------------------------


def facts_record(f: SegmentFacts) -> dict[str, Any]:
    """>>> f = SegmentFacts(2, 500, 1, 9, [1, 9], [4], {"a": Membership(1, 9, "marketing")}, 9, 3)
    >>> facts_of_record(json.loads(json.dumps(facts_record(f)))) == f
    True
    """
    return {
        "purchases": f.purchases,
        "value_cents": f.value_cents,
        "first_purchase_at": f.first_purchase_at,
        "last_event_at": f.last_event_at,
        "purchase_times": list(f.purchase_times),
        "abandoned_times": list(f.abandoned_times),
        "members": {n: {"version": m.version, "since": m.since, "purpose": m.purpose} for n, m in f.members.items()},
        "evaluated_at": f.evaluated_at,
        "writes": f.writes,
        "withheld": list(f.withheld),
    }


def facts_of_record(r: Mapping[str, Any]) -> SegmentFacts:
    return SegmentFacts(
        purchases=r["purchases"],
        value_cents=r["value_cents"],
        first_purchase_at=r["first_purchase_at"],
        last_event_at=r["last_event_at"],
        purchase_times=list(r["purchase_times"]),
        abandoned_times=list(r["abandoned_times"]),
        members={n: Membership(m["version"], m["since"], m["purpose"]) for n, m in r["members"].items()},
        evaluated_at=r["evaluated_at"],
        writes=r["writes"],
        withheld=list(r["withheld"]),
    )


def rules_json(rules: Iterable[SegmentRule]) -> str:
    """Definitions as the JSON a ``journey.control`` record carries.

    >>> parse_rules(rules_json([SegmentRule("a", 2, "analytics", "true")]))[0].version
    2
    """
    return json.dumps({"rules": [r.record() for r in rules]}, sort_keys=True)
