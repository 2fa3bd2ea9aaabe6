"""Identity resolution semantics: the reference (offline) resolver.

Events carrying two or more identifiers link them; profiles are the connected components of
the resulting identity graph, subject to rules in the spirit of Segment's identity
resolution. This module defines the result as a pure function of the **set** of
observations, never of their order, so it is the oracle the streaming operator is tested
against (``docs/identity.md`` explains the streaming plan).

Rules
-----
* **Blocked values** (``""``, ``null``, ``anonymous``, ``undefined``, all-zero or
  all-same-digit values, configurable regexes) are dropped before anything: they never link.
* **Unique types** (default: ``customer_id``) may hold at most one value per profile. Limits
  are enforced without looking at arrival order:

  1. *Free clusters*: union-find over links between non-unique identifiers only.
  2. A free cluster linked to two or more values of one unique type is *ambiguous* (a shared
     device, a family email): all its links to unique identifiers are refused.
  3. A direct link between two values of the same unique type is refused.
  4. Components of the accepted links. With several unique types a chain can still join two
     values of one type (``c1 - x - l1`` and ``c1 - y - l2`` for unique loyalty ids); such a
     component falls back to its free clusters (all its links to unique identifiers are
     refused) and components are computed again.

  Refusals are reported (:class:`RefusedLink`), never silently merged.
* **Shared identifiers** (a store kiosk, a family tablet, a call-centre login): an identifier
  seen on events together with more than ``limit`` distinct values of a type
  (:data:`DEFAULT_SHARED_LIMITS`, e.g. a ``device_id`` with more than 5 customer ids) is
  *shared*: it links nothing, it is its own profile, and the identifiers it was seen with
  resolve as if it were absent. It is a function of the set of observations (distinct values
  only grow), so it is order independent like the rest. Reported in
  :attr:`Resolution.shared`.
* **Canonical profile id**: derived from the component's highest-priority identifier (type
  priority, then value), so it is a function of the component only and replays give the
  same ids.

Examples
--------
>>> rules = IdentityRules()
>>> obs = [Observation("e1", (("cookie_id", "ck1"), ("email_hash", "h1"))),
...        Observation("e2", (("email_hash", "h1"), ("customer_id", "c1"))),
...        Observation("e3", (("cookie_id", "anonymous"), ("customer_id", "c2")))]
>>> r = resolve(obs, rules)
>>> r.profile_of[("cookie_id", "ck1")] == r.profile_of[("customer_id", "c1")]
True
>>> ("cookie_id", "anonymous") in r.profile_of
False
>>> len(r.members)
2
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import AbstractSet, Any, Iterable, Mapping, MutableMapping

#: identifier types of a NormalizedEvent, highest priority first (decides the canonical id): a
#: policy over :data:`models.contract.HASHED_IDENTIFIER_TYPES`, whose every type it must rank
#: (tests/unit/test_contract.py)
DEFAULT_PRIORITY: tuple[str, ...] = ("customer_id", "loyalty_id", "email_hash", "phone_hash", "device_id", "cookie_id")
DEFAULT_BLOCKED_VALUES: frozenset[str] = frozenset(
    {"", "null", "none", "nil", "anonymous", "undefined", "unknown", "n/a", "na", "-"}
)

#: ``(identifier type or "*", co-observed type, limit)``: an identifier of the first type (any
#: type for ``*``) seen on events together with more than ``limit`` distinct values of the
#: second is shared. The limits are about how many of a type one person plausibly has; a
#: specific type's row overrides the ``*`` row of the same co-observed type.
DEFAULT_SHARED_LIMITS: tuple[tuple[str, str, int], ...] = (
    ("*", "customer_id", 5),
    ("*", "loyalty_id", 5),
    ("*", "email_hash", 10),
    ("*", "phone_hash", 10),
    ("*", "device_id", 50),
    ("*", "cookie_id", 1000),
)

Node = tuple[str, str]  # (identifier type, value)


@dataclass(frozen=True)
class IdentityRules:
    """Which values never link, which types are unique per profile, and type priority."""

    unique_types: tuple[str, ...] = ("customer_id",)
    priority: tuple[str, ...] = DEFAULT_PRIORITY
    blocked_values: frozenset[str] = DEFAULT_BLOCKED_VALUES
    blocked_patterns: tuple[str, ...] = ()
    #: when an identifier is shared (see :data:`DEFAULT_SHARED_LIMITS`); ``()``: never
    shared_limits: tuple[tuple[str, str, int], ...] = DEFAULT_SHARED_LIMITS
    #: homes per linked component (issue 16, ``docs/identity.md``, "Supernodes"): the
    #: partitioned stages answer a claim for a shared identifier "shared" instead of joining
    #: two homes (:mod:`models.identity_partitioned`); False: a raw component lives at one home
    shared_homes: bool = False
    _compiled: tuple[re.Pattern[str], ...] = field(default=(), init=False, repr=False, compare=False)
    #: per identifier type, its (co-observed type, limit) pairs (from ``shared_limits``)
    _limits: dict[str, tuple[tuple[str, int], ...]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        unknown = [t for t in self.unique_types if t not in self.priority]
        if unknown:
            raise ValueError(f"unique_types {unknown} are not identifier types {self.priority}")
        try:
            compiled = tuple(re.compile(p) for p in self.blocked_patterns)
        except re.error as e:
            raise ValueError(f"blocked_patterns: {e}") from None
        object.__setattr__(self, "_compiled", compiled)
        object.__setattr__(self, "_limits", self._limits_by_type())

    def _limits_by_type(self) -> dict[str, tuple[tuple[str, int], ...]]:
        given: dict[tuple[str, str], int] = {}
        for row in self.shared_limits:
            if len(row) != 3:
                raise ValueError(f"shared_limits: {row!r} is not (type or '*', co-observed type, limit)")
            t, co, limit = row
            if t != "*" and t not in self.priority or co not in self.priority:
                raise ValueError(f"shared_limits: {row!r} names a type that is not one of {self.priority}")
            if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
                raise ValueError(f"shared_limits: {row!r}: the limit must be an integer >= 1")
            if (t, co) in given:
                raise ValueError(f"shared_limits: ({t!r}, {co!r}) is given twice")
            given[(t, co)] = limit
        out = {}
        for t in self.priority:
            pairs = {co: limit for (tt, co), limit in given.items() if tt == "*"}
            pairs.update({co: limit for (tt, co), limit in given.items() if tt == t})
            out[t] = tuple(sorted(pairs.items()))
        return out

    def limits_of(self, type_: str) -> tuple[tuple[str, int], ...]:
        """``(co-observed type, limit)`` pairs past which an identifier of ``type_`` is shared."""
        return self._limits.get(type_, ())

    def is_blocked(self, value: str) -> bool:
        """Blocked values never link (placeholder ids, zeros, configured patterns)."""
        v = value.strip().lower()
        if v in self.blocked_values:
            return True
        digits = v.replace("-", "")
        if digits and len(set(digits)) == 1 and (digits[0].isdigit() or len(digits) >= 8):
            return True  # 0000..., 1111111, 00000000-0000-0000-0000-000000000000, ffffffff...
        return any(p.fullmatch(value) for p in self._compiled)

    def rank(self, node: Node) -> tuple[int, str]:
        return self.priority.index(node[0]), node[1]

    def kept(self, identifiers: Iterable[Node]) -> tuple[Node, ...]:
        """The identifiers that are not blocked, distinct, highest priority first."""
        return tuple(sorted({n for n in identifiers if not self.is_blocked(n[1])}, key=self.rank))


@dataclass(frozen=True)
class Observation:
    """The identifiers one event carries (already normalized: PII as salted hashes)."""

    event_id: str
    identifiers: tuple[Node, ...]


@dataclass(frozen=True)
class RefusedLink:
    """A link the rules refused: ``reason`` is ``unique:<type>`` or ``unique:<type>:chain``."""

    a: Node
    b: Node
    reason: str


@dataclass
class Resolution:
    """Canonical profile per identifier, members per profile, refused links, blocked count,
    and the shared identifiers with the co-observed type that made each one shared."""

    profile_of: dict[Node, str]
    members: dict[str, frozenset[Node]]
    refused: list[RefusedLink]
    blocked: int
    shared: dict[Node, str] = field(default_factory=dict)

    def components(self) -> frozenset[frozenset[Node]]:
        return frozenset(self.members.values())


def observation_of(event: Mapping[str, Any]) -> Observation:
    """The identifiers of a decoded NormalizedEvent (None values skipped)."""
    ids = event["identifiers"]
    return Observation(event["event_id"], tuple((t, v) for t, v in ids.items() if v is not None))


def canonical_profile_id(nodes: Iterable[Node], rules: IdentityRules) -> str:
    """``p-`` + 20 hex digits of SHA-256 of the component's highest-priority identifier.

    >>> canonical_profile_id([("cookie_id", "b"), ("customer_id", "z"), ("cookie_id", "a")], IdentityRules())
    'p-9ff0f1edca4f94bab12b'
    """
    t, v = min(nodes, key=rules.rank)
    return "p-" + hashlib.sha256(f"{t}:{v}".encode()).hexdigest()[:20]


class UnionFind:
    """Disjoint sets with path halving and union by size.

    ``parent`` and ``size`` may be any mutable mappings (Flink MapState adapters in the
    streaming operator); plain dicts by default.
    """

    def __init__(
        self, parent: MutableMapping[Node, Node] | None = None, size: MutableMapping[Node, int] | None = None
    ) -> None:
        self.parent: MutableMapping[Node, Node] = {} if parent is None else parent
        self.size: MutableMapping[Node, int] = {} if size is None else size

    def add(self, x: Node) -> None:
        if x not in self.parent:
            self.parent[x] = x
            self.size[x] = 1

    def find(self, x: Node) -> Node:
        parent = self.parent
        p = parent[x]
        while p != x:
            gp = parent[p]
            if gp != p:
                parent[x] = gp
            x, p = p, gp
        return x

    def union(self, a: Node, b: Node) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]

    def groups(self) -> dict[Node, set[Node]]:
        out: dict[Node, set[Node]] = {}
        for x in self.parent:
            out.setdefault(self.find(x), set()).add(x)
        return out


def shared_identifiers(signatures: Iterable[Iterable[Node]], rules: IdentityRules) -> dict[Node, str]:
    """The identifiers that are shared (module docs) given the identifier sets of the events
    (non-blocked identifiers), each with the co-observed type whose limit it passed (the first
    such type by priority). A function of the set of signatures.

    >>> rules = IdentityRules(shared_limits=(("device_id", "customer_id", 2),))
    >>> sigs = [(("customer_id", c), ("device_id", "kiosk")) for c in "abc"] + [(("customer_id", "a"), ("device_id", "tab"))]
    >>> shared_identifiers(sigs, rules)
    {('device_id', 'kiosk'): 'customer_id'}
    """
    seen: dict[tuple[Node, str], set[str]] = {}
    over: dict[Node, set[str]] = {}
    for sig in signatures:
        sig = tuple(sig)
        for node in sig:
            limits = rules.limits_of(node[0])
            if not limits:
                continue
            for co, limit in limits:
                key = (node, co)
                values = seen.get(key)
                if values is not None and len(values) > limit:
                    continue  # already past the limit: no need to count further
                for t, v in sig:
                    if t == co and (t, v) != node:
                        if values is None:
                            values = seen[key] = set()
                        values.add(v)
                if values is not None and len(values) > limit:
                    over.setdefault(node, set()).add(co)
    return {n: min(cos, key=rules.priority.index) for n, cos in sorted(over.items())}


def linking(kept: tuple[Node, ...] | list[Node], shared: Mapping[Node, Any]) -> list[Node]:
    """The identifiers of an event that link (its kept identifiers minus the shared ones)."""
    return [n for n in kept if n not in shared] if shared else list(kept)


#: bits of a piece's event count in a version (:func:`piece_version`)
PIECE_EVENT_BITS = 22
MAX_PIECE_EVENTS = 1 << PIECE_EVENT_BITS
#: shared identifiers one raw component may hold (:func:`piece_version`)
MAX_COMPONENT_SHARED = 1 << 16
#: the event count in the version of a shared identifier's own piece (:func:`node_version`)
SHARED_PIECE_EVENTS = MAX_PIECE_EVENTS - 1


def piece_version(shared: int, events: int) -> int:
    """The version of a piece's profiles: ``(shared identifiers of its raw component, events
    of the piece)`` compared lexicographically, as one integer.

    A *piece* is a connected component of the links without the shared identifiers (each
    shared identifier is a piece of its own); an event belongs to every piece it has an
    identifier in. Over any prefix of any order of the same events, a node's version is at
    most its final one: the raw component and its shared identifiers only grow, and while
    their number stays the same no link inside the node's piece was cut, so the piece (and
    its events) can only have grown. A profile is thus versioned by what it can depend on,
    not by the whole raw component (a kiosk's thousands of persons, issue 16).

    >>> piece_version(1, 0) > piece_version(0, 5_000) > piece_version(0, 4_999)
    True
    """
    if not 0 <= shared < MAX_COMPONENT_SHARED or not 0 <= events < MAX_PIECE_EVENTS:
        raise ValueError(
            f"version out of range: {shared} shared identifiers in the raw component (at most "
            f"{MAX_COMPONENT_SHARED - 1}), {events} events of one piece (at most {MAX_PIECE_EVENTS - 1})"
        )
    return (shared << PIECE_EVENT_BITS) | events


def pieces(signatures: Iterable[tuple[Node, ...]], shared: Mapping[Node, Any]) -> dict[Node, frozenset[Node]]:
    """The pieces (:func:`piece_version`) of the identifiers of ``signatures``, each named by
    its smallest identifier.

    >>> sigs = [(("customer_id", "a"), ("device_id", "k")), (("customer_id", "b"), ("device_id", "k"))]
    >>> sorted(pieces(sigs, {})), sorted(pieces(sigs, {("device_id", "k"): "customer_id"}))
    ([('customer_id', 'a')], [('customer_id', 'a'), ('customer_id', 'b'), ('device_id', 'k')])
    """
    uf = UnionFind()
    for sig in signatures:
        for n in sig:
            uf.add(n)
        links = linking(sig, shared)
        for other in links[1:]:
            uf.union(links[0], other)
    return {min(group): frozenset(group) for group in uf.groups().values()}


def piece_events(
    signatures: Iterable[tuple[Node, ...]], events: Mapping[tuple[Node, ...], int], piece_of: Mapping[Node, Node]
) -> dict[Node, int]:
    """Events per piece: each signature's events (``events``; absent: 1, state kept before the
    counts) in every piece it has an identifier in."""
    out: dict[Node, int] = {}
    for sig in signatures:
        k = events.get(sig, 1)
        for p in {piece_of[n] for n in sig}:
            out[p] = out.get(p, 0) + k
    return out


def resolve(
    observations: Iterable[Observation],
    rules: IdentityRules,
    shared: Mapping[Node, str] | None = None,
    known: Mapping[Node, str] | None = None,
) -> Resolution:
    """Profiles as a function of the set of observations (see the module docstring).

    ``shared``: the shared identifiers when known from more observations than these (the
    pieces of a raw component resolved alone, :meth:`IncrementalResolver.add`); by default
    computed from these observations, plus ``known``: identifiers found shared among
    observations elsewhere (a home of part of a raw component, :mod:`models.identity_partitioned`).
    Only those among the observations' identifiers count.
    """
    given = shared
    unique = set(rules.unique_types)
    nodes: set[Node] = set()
    edges: set[tuple[Node, Node]] = set()
    blocked = 0
    signatures: set[tuple[Node, ...]] = set()
    for ob in observations:
        kept = []
        for node in ob.identifiers:
            if rules.is_blocked(node[1]):
                blocked += 1
            else:
                kept.append(node)
        kept = sorted(set(kept), key=rules.rank)
        nodes.update(kept)
        signatures.add(tuple(kept))
    if given is None:
        shared = shared_identifiers(signatures, rules)
        for n, co in (known or {}).items():
            if n in nodes:
                shared.setdefault(n, co)
    else:
        shared = {n: co for n, co in given.items() if n in nodes}
    for sig in signatures:
        links = linking(sig, shared)
        for other in links[1:]:  # a star over the event's identifiers spans the same component
            edges.add((links[0], other))

    free = UnionFind()
    for n in nodes:
        if n[0] not in unique:
            free.add(n)
    anchored: list[tuple[Node, Node]] = []
    for a, b in edges:
        if a[0] in unique or b[0] in unique:
            anchored.append((a, b))
        else:
            free.union(a, b)

    refused: list[RefusedLink] = []
    # 2. ambiguous free clusters: linked to two values of one unique type
    anchors: dict[Node, dict[str, set[str]]] = {}
    for a, b in anchored:
        for x, y in ((a, b), (b, a)):
            if x[0] not in unique and y[0] in unique:
                anchors.setdefault(free.find(x), {}).setdefault(y[0], set()).add(y[1])
    ambiguous = {
        root: next(t for t in rules.unique_types if len(by_type.get(t, ())) > 1)
        for root, by_type in anchors.items()
        if any(len(vs) > 1 for vs in by_type.values())
    }
    accepted: list[tuple[Node, Node]] = []
    for a, b in anchored:
        if a[0] in unique and b[0] in unique:
            if a[0] == b[0]:  # 3. two values of one unique type on one event
                refused.append(RefusedLink(a, b, f"unique:{a[0]}"))
                continue
        else:
            x = a if a[0] not in unique else b
            root = free.find(x)
            if root in ambiguous:
                refused.append(RefusedLink(a, b, f"unique:{ambiguous[root]}"))
                continue
        accepted.append((a, b))

    # 4. chains across several unique types: fall back to free clusters, then recompute
    while True:
        uf = UnionFind()
        for n in nodes:
            uf.add(n)
        for n in free.parent:
            uf.union(n, free.find(n))
        for a, b in accepted:
            uf.union(a, b)
        groups = uf.groups()
        bad: dict[Node, str] = {}
        for root, group_nodes in groups.items():
            for t in rules.unique_types:
                if len({v for typ, v in group_nodes if typ == t}) > 1:
                    bad[root] = t
                    break
        if not bad:
            break
        keep = []
        for a, b in accepted:
            root = uf.find(a)
            if root in bad:
                refused.append(RefusedLink(a, b, f"unique:{bad[root]}:chain"))
            else:
                keep.append((a, b))
        accepted = keep

    profile_of: dict[Node, str] = {}
    members: dict[str, frozenset[Node]] = {}
    for group in groups.values():
        pid = canonical_profile_id(group, rules)
        members[pid] = frozenset(group)
        for n in group:
            profile_of[n] = pid
    refused.sort(key=lambda r: (rules.rank(r.a), rules.rank(r.b), r.reason))
    return Resolution(profile_of, members, refused, blocked, shared)


@dataclass(frozen=True)
class ProfileChange:
    """A change of the resolution caused by one observation.

    ``kind`` is ``created`` (a new profile: ``into`` with its ``members``), ``grown``
    (``members`` joined the existing profile ``into``: new identifiers or a merge), ``merged``
    (every member of ``from_ids[0]`` now belongs to ``into``; several ``merged`` rows when
    several profiles join), ``split`` (the members of ``from_ids[0]`` are now spread over
    other profiles, e.g. a cluster became ambiguous), ``refused`` (a link the rules refused)
    or ``shared`` (the one member of ``members`` became a shared identifier: it no longer
    links; ``reason`` is the co-observed identifier type that made it shared).
    """

    kind: str
    into: str | None
    from_ids: tuple[str, ...] = ()
    members: frozenset[Node] = frozenset()
    link: RefusedLink | None = None
    reason: str = ""


@dataclass
class ResolverStore:
    """Where :class:`IncrementalResolver` keeps its state: any mutable mappings.

    ``signatures`` holds, per raw component root, the distinct identifier sets seen (events
    with the same identifiers add nothing to the graph) and ``signature_events`` the events of
    each (absent: 1, state kept before the counts); ``events`` counts the events of each raw
    component; ``shared`` the shared identifiers (with the co-observed type that made each one
    shared) and ``component_shared`` their number per raw component root; ``piece`` each
    identifier's piece and ``piece_events`` the events of each piece (they version the
    piece's profiles, :func:`piece_version`).
    """

    parent: MutableMapping[Node, Node] = field(default_factory=dict)
    size: MutableMapping[Node, int] = field(default_factory=dict)
    signatures: MutableMapping[Node, AbstractSet[tuple[Node, ...]]] = field(default_factory=dict)
    events: MutableMapping[Node, int] = field(default_factory=dict)
    profile_of: MutableMapping[Node, str] = field(default_factory=dict)
    members: MutableMapping[str, frozenset[Node]] = field(default_factory=dict)
    refused: MutableMapping[RefusedLink, bool] = field(default_factory=dict)
    shared: MutableMapping[Node, str] = field(default_factory=dict)
    signature_events: MutableMapping[tuple[Node, ...], int] = field(default_factory=dict)
    component_shared: MutableMapping[Node, int] = field(default_factory=dict)
    piece: MutableMapping[Node, Node] = field(default_factory=dict)
    piece_events: MutableMapping[Node, int] = field(default_factory=dict)
    #: derived, never state (not compared, not encoded): per raw component root, its
    #: signatures by identifier (:class:`SignatureIndex`), rebuilt whenever the component's
    #: signature set was replaced
    index: dict[Node, SignatureIndex] = field(default_factory=dict, compare=False, repr=False)

    def pop_signatures(self, root: Node) -> AbstractSet[Signature]:
        """Take the raw component ``root``'s signatures out (none: empty), and its index with
        them (every merge, erasure or re-resolution replaces a component's set this way)."""
        self.index.pop(root, None)
        return self.signatures.pop(root, frozenset())


Signature = tuple[Node, ...]


@dataclass
class SignatureIndex:
    """The signatures of one raw component by identifier, so that a new signature finds the
    signatures of its own piece without a pass over the component (issue 16).

    ``signatures`` *is* the component's set in :attr:`ResolverStore.signatures`, grown in
    place only by :meth:`add`. The index is valid while the store still holds that very set
    (:meth:`of_component`); any other change to the component replaces the set
    (:meth:`ResolverStore.pop_signatures`) and so rebuilds the index on next use.

    >>> store = ResolverStore(signatures={("cookie_id", "a"): frozenset({(("cookie_id", "a"),)})})
    >>> idx = SignatureIndex.of_component(store, ("cookie_id", "a"))
    >>> idx.add((("cookie_id", "a"), ("email", "x")))
    >>> sorted(len(s) for s in idx.by_node[("cookie_id", "a")]), len(store.signatures[("cookie_id", "a")])
    ([1, 2], 2)
    """

    signatures: set[Signature]
    by_node: dict[Node, list[Signature]]

    @classmethod
    def of_component(cls, store: ResolverStore, root: Node) -> SignatureIndex:
        """The index of the component ``root`` of ``store`` (built, O(signatures), if the
        component's set changed since; the set becomes a mutable one then)."""
        sigs = store.signatures.get(root)
        if sigs is None:  # a new identifier: no component yet
            return cls(set(), {})
        idx = store.index.get(root)
        if idx is not None and idx.signatures is sigs:
            return idx
        own = set(sigs)
        store.signatures[root] = own  # grown in place from now on
        by_node: dict[Node, list[Signature]] = {}
        for sig in own:
            for n in sig:
                by_node.setdefault(n, []).append(sig)
        store.index[root] = idx = cls(own, by_node)
        return idx

    def add(self, sig: Signature) -> None:
        """A new signature (not in the set yet)."""
        self.signatures.add(sig)
        for n in sig:
            self.by_node.setdefault(n, []).append(sig)

    def absorb(self, other: SignatureIndex) -> None:
        """Every signature of another (disjoint) component."""
        for sig in other.signatures:
            self.add(sig)


def piece_signatures(
    indexes: Iterable[SignatureIndex], start: Iterable[Signature], shared: Mapping[Node, Any]
) -> list[Signature]:
    """``start`` and every signature of the components ``indexes`` reachable from them through
    identifiers that link (a ``shared`` identifier links nothing): the signatures of the
    pieces ``start`` lands in, found without a pass over the components."""
    indexes = list(indexes)
    out = list(start)
    seen_sigs = set(out)
    seen = {n for sig in out for n in sig if n not in shared}
    todo = list(seen)
    while todo:
        n = todo.pop()
        for idx in indexes:
            for sig in idx.by_node.get(n, ()):
                if sig in seen_sigs:
                    continue
                seen_sigs.add(sig)
                out.append(sig)
                for m in sig:
                    if m not in seen and m not in shared:
                        seen.add(m)
                        todo.append(m)
    return out


def makes_shared(
    indexes: Iterable[SignatureIndex], new: Iterable[Signature], candidates: AbstractSet[Node], rules: IdentityRules
) -> bool:
    """Whether the signatures ``new`` joining the components ``indexes`` take one of
    ``candidates`` past its limit. Only the candidates' own signatures are looked at: an
    identifier's co-observed values come from the signatures that hold it."""
    if not candidates:
        return False
    near = {sig for idx in indexes for n in candidates for sig in idx.by_node.get(n, ())}
    return not candidates.isdisjoint(shared_identifiers([*new, *near], rules))


@dataclass(frozen=True)
class PieceStep:
    """What one observation did to the pieces (:func:`piece_version`): ``touched``, the pieces
    whose version changed (each of their live profiles must hear it); after a re-resolution,
    ``regrouped`` (every piece of the component now, with its identifiers) and ``dropped``
    (the piece ids the component had before)."""

    touched: frozenset[Node] = frozenset()
    regrouped: Mapping[Node, frozenset[Node]] | None = None
    dropped: frozenset[Node] = frozenset()


def regroup(
    store: ResolverStore, root: Node, signatures: Iterable[tuple[Node, ...]], shared: Mapping[Node, Any]
) -> dict[Node, frozenset[Node]]:
    """Recompute the pieces of the raw component ``root`` (its ``signatures``, its ``shared``
    identifiers) in ``store``; returns each piece with its identifiers."""
    sigs = list(signatures)
    groups = pieces(sigs, shared)
    for p, ns in groups.items():
        for n in ns:
            store.piece[n] = p
    for p, k in piece_events(sigs, store.signature_events, store.piece).items():
        store.piece_events[p] = k
    store.component_shared[root] = shared_count(store, len(shared))
    return groups


def shared_count(store: ResolverStore, held: int) -> int:
    """``S`` of a raw component of ``store`` that holds ``held`` shared identifiers. A home of
    part of a raw component that knows shared identifiers it does not hold
    (:func:`outside_shared`) holds one raw component (all it was told belongs to it): its ``S``
    is every shared identifier it knows, whichever of its components holds them for now (an
    event joining two counts each once)."""
    return len(store.shared) if outside_shared(store) else held


def outside_shared(store: ResolverStore) -> list[Node]:
    """The shared identifiers ``store`` knows of that none of its components holds: a home of
    part of a raw component told of them (:mod:`models.identity_partitioned`); they count in
    its ``S``. A store that holds whole raw components has none."""
    return [n for n in store.shared if n not in store.parent]


def node_version(store: ResolverStore, root: Node, node: Node) -> int:
    """The version of ``node``'s piece (``root``: its raw component's root).

    A shared identifier is a piece of its own, whose profile holds only the events it is the
    atom of and never changes members; its version is ``(S, SHARED_PIECE_EVENTS)``: above every
    version it had while it linked (``S`` grew when it became shared, and the count is the
    largest), constant while ``S`` is, so its rows are ordered by the events folded alone. So
    its version needs no count of the events that hold it, which the homes of a kiosk's
    customers do not have (issue 16), and an event that merely holds it changes nothing
    there (no command).
    """
    shared = store.component_shared.get(root, 0)
    if node in store.shared:
        return piece_version(shared, SHARED_PIECE_EVENTS)
    return piece_version(shared, store.piece_events[store.piece[node]])


def changed_pieces(
    store: ResolverStore, root: Node, groups: Mapping[Node, frozenset[Node]], before: Mapping[Node, int]
) -> set[Node]:
    """The pieces of ``groups`` (after :func:`regroup` of the component ``root``) with an
    identifier whose version is not the one in ``before`` (absent: new, so changed)."""
    return {p for p, ns in groups.items() if any(before.get(n) != node_version(store, root, n) for n in ns)}


def shared_changes(
    sub: Resolution,
    known: MutableMapping[Node, str],
    profile_of: Mapping[Node, str],
    refused: MutableMapping[RefusedLink, bool],
) -> list[ProfileChange]:
    """A ``shared`` change for every identifier ``sub`` found shared that ``known`` did not
    have yet (added to it); ``profile_of`` gives its profile. A new shared identifier links
    nothing from then on, which can lift refusals within its component (its own links, and
    those of a cluster it made ambiguous): ``refused`` keeps only the component's refusals
    that ``sub`` still has, so the state stays a function of the set of observations (the
    announcements already made stay in the log)."""
    out = []
    new = set()
    for n, co in sorted(sub.shared.items()):
        if n not in known:
            known[n] = co
            new.add(n)
            out.append(ProfileChange("shared", profile_of[n], members=frozenset({n}), reason=co))
    if new:
        for link in [link for link in refused if link.a in sub.profile_of and link not in sub.refused]:
            del refused[link]
    return out


class IncrementalResolver:
    """The resolution of :func:`resolve`, maintained one observation at a time.

    A profile can only change inside its raw connected component (all links, refused or
    not), and :func:`resolve` of a component depends only on the observations inside it. So
    each observation merges the raw components it touches and re-resolves just that one;
    the result after any sequence of observations equals ``resolve`` of the same set, for
    every order. An event whose identifiers were all seen together before changes nothing
    and takes a fast path. A new set of identifiers that makes none of them shared re-resolves
    only the piece it lands in (:meth:`_add_within_pieces`, at a cost that does not grow with
    the rest of the component); one that makes an identifier shared re-resolves the component.

    Examples
    --------
    >>> inc = IncrementalResolver(IdentityRules())
    >>> [c.kind for c in inc.add(Observation("e1", (("cookie_id", "ck1"),)))]
    ['created']
    >>> [c.kind for c in inc.add(Observation("e2", (("cookie_id", "ck1"), ("customer_id", "c1"))))]
    ['created', 'merged']
    >>> inc.add(Observation("e3", (("customer_id", "c1"), ("cookie_id", "ck1"))))
    []
    >>> inc.version_of(("cookie_id", "ck1"))
    3
    """

    #: re-resolve only the piece a new signature lands in when it makes no identifier shared
    #: (:meth:`_add_within_pieces`); False: the whole raw component every time (the reference
    #: the fast path is tested against)
    fast_reresolve: bool = True

    def __init__(self, rules: IdentityRules, store: ResolverStore | None = None) -> None:
        self.rules = rules
        self.store = store or ResolverStore()
        self._raw = UnionFind(self.store.parent, self.store.size)
        self.profile_of = self.store.profile_of
        self.members = self.store.members
        self.refused = self.store.refused
        self.blocked = 0
        #: what the last :meth:`add` did to the pieces
        self.step = PieceStep()

    def kept(self, ob: Observation) -> tuple[Node, ...]:
        """The observation's non-blocked identifiers, distinct, highest priority first."""
        return self.rules.kept(ob.identifiers)

    def root_of(self, node: Node) -> Node:
        """The root of the node's raw component (changes when components merge)."""
        return self._raw.find(node)

    def component_nodes(self, root: Node) -> set[Node]:
        """Every identifier of the raw component rooted at ``root``."""
        return {n for sig in self.store.signatures[root] for n in sig}

    def version_of(self, node: Node) -> int:
        """The version of the node's piece (:func:`piece_version`): grows with every event of
        the piece and whenever the raw component gets a shared identifier, never shrinks."""
        return node_version(self.store, self._raw.find(node), node)

    def add(self, ob: Observation) -> list[ProfileChange]:
        kept = self.kept(ob)
        self.blocked += len(set(ob.identifiers)) - len(kept)
        self.step = PieceStep()
        if not kept:
            return []
        store = self.store
        known = all(n in store.parent for n in kept)
        roots = set()
        for n in kept:
            self._raw.add(n)
            roots.add(self._raw.find(n))
        if known and len(roots) == 1:
            root = next(iter(roots))
            if kept in store.signatures.get(root, frozenset()):
                store.events[root] = store.events.get(root, 0) + 1
                store.signature_events[kept] = store.signature_events.get(kept, 1) + 1
                hit = frozenset(store.piece[n] for n in kept)
                for p in hit:
                    store.piece_events[p] += 1
                # a shared identifier's version does not count events: only its own events reach it
                self.step = PieceStep(frozenset(p for p in hit if p not in store.shared or p == kept[0]))
                return []
        if self.fast_reresolve:
            fast = self._add_within_pieces(kept, roots)
            if fast is not None:
                return fast
        pooled = {kept}
        count = 1
        before: dict[Node, int] = {}  # the versions the joined components' identifiers had
        dropped: set[Node] = set()
        for r in roots:
            had = store.pop_signatures(r)
            for sig in had:
                for n in sig:
                    if n not in before:
                        before[n] = node_version(store, r, n)
                        dropped.add(store.piece[n])
            pooled |= had
            count += store.events.pop(r, 0)
            store.component_shared.pop(r, None)
        for p in dropped:
            store.piece_events.pop(p, None)
        for n in kept[1:]:
            self._raw.union(kept[0], n)
        root = self._raw.find(kept[0])
        store.signatures[root] = frozenset(pooled)
        store.events[root] = count
        store.signature_events[kept] = 1
        sigs = sorted(pooled)
        sub = resolve([Observation("", sig) for sig in sigs], self.rules, known=store.shared)
        changes = self._reresolve(sub)
        groups = regroup(store, root, sigs, sub.shared)
        # a shared identifier the set merely holds keeps its version (node_version): untouched
        own = {store.piece[n] for n in kept if n == kept[0] or n not in store.shared}
        touched = own | changed_pieces(store, root, groups, before)
        self.step = PieceStep(frozenset(touched), groups, frozenset(dropped))
        return changes

    def _add_within_pieces(self, kept: tuple[Node, ...], roots: set[Node]) -> list[ProfileChange] | None:
        """:meth:`add` of a new signature ``kept`` (joining the raw components ``roots``) that
        makes no identifier shared, re-resolving only the piece it lands in; None (nothing
        changed) when it makes one shared, which changes every piece's version.

        Why it is the same as resolving the whole component: an identifier's co-observed
        values come from the signatures that hold it, so only ``kept``'s identifiers can become
        shared; if none does, the shared set is the union of the components' (they are
        disjoint), :func:`resolve` decomposes over the pieces given that set (a shared
        identifier links nothing and is a profile of its own; every rule looks inside one
        cluster of links), and only the piece ``kept`` links, the shared identifiers it holds
        (one event more) and the pieces of components whose shared count changes (their
        version's ``S``) change. The cost is the signatures of that piece (found through the
        components' :class:`SignatureIndex`) and of ``kept``'s identifiers that may become
        shared, resolving the one piece, and merging the smaller components into the largest's
        set: none of it grows with the rest of the component.
        """
        store, rules = self.store, self.rules
        index = {r: SignatureIndex.of_component(store, r) for r in roots}
        # would this signature take one of its identifiers past its limit?
        candidates = {n for n in kept if n not in store.shared and rules.limits_of(n[0])}
        if makes_shared(index.values(), [kept], candidates, rules):
            return None
        psigs = piece_signatures(index.values(), [kept], store.shared)
        hit = {store.piece[n] for sig in psigs for n in sig if n in store.piece and n not in store.shared}
        old_shared = {r: store.component_shared.get(r, 0) for r in roots}
        total = shared_count(store, sum(old_shared.values()))
        # the signatures of components whose shared count changes (all their pieces' versions do)
        recount = [sig for r in roots if old_shared[r] != total for sig in index[r].signatures]
        # the union of the components, as the full path does it
        count = 1 + sum(store.events.pop(r, 0) for r in roots)
        # the largest component's set (and index) grows in place: O(the smaller ones)
        big = max(roots, key=lambda r: len(index[r].signatures))
        pooled = index[big]
        for r in roots:
            store.pop_signatures(r)
            store.component_shared.pop(r, None)
            if r != big:
                pooled.absorb(index[r])
        for n in kept[1:]:
            self._raw.union(kept[0], n)
        root = self._raw.find(kept[0])
        pooled.add(kept)
        store.signatures[root] = pooled.signatures
        store.index[root] = pooled
        store.events[root] = count
        store.signature_events[kept] = 1
        store.component_shared[root] = total
        given = {n: store.shared[n] for sig in psigs for n in sig if n in store.shared}
        sub = resolve([Observation("", sig) for sig in sorted(psigs)], rules, shared=given)
        changes = self._reresolve(sub)
        # the pieces: the one kept lands in, the shared identifiers it holds, and every piece of
        # a component whose shared count changed
        regrouped: dict[Node, frozenset[Node]] = {}
        dropped: set[Node] = set()
        members = frozenset(n for sig in psigs for n in sig if n not in given)
        if members:
            name = min(members)
            dropped = hit - {name}
            for p in dropped:
                store.piece_events.pop(p, None)
            for n in members:
                store.piece[n] = name
            store.piece_events[name] = sum(
                store.signature_events.get(sig, 1) for sig in psigs if any(n not in given for n in sig)
            )
            regrouped[name] = members
        for n in kept:
            if n in given:
                store.piece[n] = n
                store.piece_events[n] = store.piece_events.get(n, 0) + 1
                regrouped[n] = frozenset({n})
        others: dict[Node, set[Node]] = {}
        for sig in recount:
            for n in sig:
                others.setdefault(store.piece[n], set()).add(n)
        for p, ns in others.items():
            regrouped[p] = regrouped.get(p, frozenset()) | ns
        # a shared identifier the set merely holds keeps its version (node_version): untouched
        idle = {n for n in kept[1:] if n in given and n not in others}
        self.step = PieceStep(frozenset(p for p in regrouped if p not in idle), regrouped, frozenset(dropped))
        return changes

    def learn_shared(self, learnt: Mapping[Node, str]) -> list[ProfileChange]:
        """Identifiers of this store's raw component found shared elsewhere (a home of part of
        a raw component is told them, :mod:`models.identity_partitioned`), with the type that
        made each shared: they link nothing from now on and count in ``S``, also those the
        store does not hold (:func:`outside_shared`). Each component is resolved again (a
        home holds one); ``S`` grew, so every piece's version changes. No ``shared`` change
        is announced: the home that found the identifier shared did."""
        store, rules = self.store, self.rules
        self.step = PieceStep()
        new = {n: co for n, co in learnt.items() if n not in store.shared}
        if not new:
            return []
        roots = sorted(store.signatures)
        before: dict[Node, int] = {}
        dropped: set[Node] = set()
        for r in roots:
            for sig in store.signatures[r]:
                for n in sig:
                    if n not in before:
                        before[n] = node_version(store, r, n)
                        dropped.add(store.piece[n])
        store.shared.update(new)
        for p in dropped:
            store.piece_events.pop(p, None)
        changes: list[ProfileChange] = []
        groups: dict[Node, frozenset[Node]] = {}
        touched: set[Node] = set()
        for r in roots:
            sigs = sorted(store.pop_signatures(r))
            store.signatures[r] = frozenset(sigs)
            sub = resolve([Observation("", sig) for sig in sigs], rules, known=store.shared)
            changes.extend(self._reresolve(sub))
            # links refused only through an identifier that links no more are not refused
            for link in [link for link in self.refused if link.a in sub.profile_of and link not in sub.refused]:
                del self.refused[link]
            regrouped = regroup(store, r, sigs, sub.shared)
            touched |= changed_pieces(store, r, regrouped, before)
            groups.update(regrouped)
        self.step = PieceStep(frozenset(touched), groups, frozenset(dropped))
        return changes

    def _reresolve(self, sub: Resolution) -> list[ProfileChange]:
        old_pids = {self.profile_of[n] for n in sub.profile_of if n in self.profile_of}
        previous = {pid: self.members[pid] for pid in old_pids}
        changes: list[ProfileChange] = []
        for link in sub.refused:
            if link not in self.refused:
                self.refused[link] = True
                changes.append(ProfileChange("refused", None, link=link))
        changes.extend(shared_changes(sub, self.store.shared, sub.profile_of, self.refused))
        for pid, members in sorted(sub.members.items()):
            before = self.members.get(pid)
            if before is None:
                changes.append(ProfileChange("created", pid, members=members))
            elif members - before:
                changes.append(ProfileChange("grown", pid, members=members - before))
            self.members[pid] = members
        for old in sorted(old_pids - set(sub.members)):
            old_members = self.members.pop(old)
            targets = {sub.profile_of[n] for n in old_members}
            if len(targets) == 1:
                changes.append(ProfileChange("merged", targets.pop(), (old,), members=old_members))
            else:
                changes.append(ProfileChange("split", None, (old,), members=old_members))
        for old in sorted(old_pids & set(sub.members)):
            left = {n for n in previous[old] if sub.profile_of[n] != old}
            if left:
                changes.append(ProfileChange("split", old, (old,), members=frozenset(left)))
        for n, pid in sub.profile_of.items():
            if self.profile_of.get(n) != pid:
                self.profile_of[n] = pid
        return changes
