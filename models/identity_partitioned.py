"""Identity resolution partitioned by raw component: the routing protocol (pure).

:mod:`models.identity_router` resolves identity in one place because a link can join any two
identifiers. But resolution only ever looks inside one *raw* connected component (all links,
refused or not), so the graph can be split by component over any number of subtasks, each
component living at one **home** (one of its identifiers), as long as two components that an
event joins end up at one home. Two keyed stages do it:

**Locate** (keyed by identifier, :class:`Locator`)
    keeps for each identifier a *pointer* to the home of its component (a hint: it may lag a
    move) and sends each event to the home of its atom (the event's highest-priority
    identifier; an identifier never seen becomes its own home). It also routes everything
    that comes back on the feedback topic.

**Resolve** (keyed by home, :class:`ComponentHome`)
    keeps the component's whole router state (:class:`~models.identity_router.RouterStore`
    of that one component) and runs :class:`~models.identity_router.IdentityRouter` on it,
    so each event is resolved exactly as the single router would, with the same commands for
    the profiles.

When an event brings an identifier the component did not have, its home sends a
:class:`Claim` for it to the locate stage (through the feedback topic). If the identifier
already pointed at another home, the two components must join: the one whose home ranks
lower (:meth:`models.identity.IdentityRules.rank`) sends its whole state (:class:`Move`) to
the other and leaves a forward pointer behind. The surviving home merges both states
(:func:`absorb`): a resolution of the pieces the moved signatures reach (of the union when
the merge makes an identifier shared), commands that evict what moved and set the members of
every live profile of the pieces that changed, and claims that repoint the moved identifiers.
Homes only ever move to a better-ranked home, so forward chains end and every component
ends at one home. An event that reaches a home that moved away (its pointer lagged) is
resolved there against nothing but itself and its result sent after the component
(:class:`Move`): its profile commands go out at once, and the merge at the component's home
corrects them like any other merge.

The result is :func:`models.identity.resolve` of the set of events, whatever the order, the
number of subtasks and the delays of the feedback topic (``tests/unit/test_identity_partitioned.py``).
The costs and the conditions the Flink job must meet are in ``docs/identity.md``
("Partitioned identity").

Examples
--------
>>> rules = IdentityRules()
>>> loc, homes = Locator(rules, {}), {}
>>> def run(atom, identifiers, eid):
...     ev = {"event_id": eid, "occurred_at": 1, "identifiers": identifiers}
...     (to,) = loc.route_event(atom, ev).to_home
...     return homes.setdefault(to.home, ComponentHome(rules, to.home, HomeState())).on_event(ev, eid)
>>> out = run(("cookie_id", "ck1"), {"cookie_id": "ck1"}, "e1")
>>> out = run(("customer_id", "c1"), {"customer_id": "c1", "cookie_id": "ck1"}, "e2")
>>> out.feedback  # c1's new home claims the cookie, which points at its own home
(Feedback(address=('cookie_id', 'ck1'), message=Claim(node=('cookie_id', 'ck1'), home=('customer_id', 'c1'), event_id='e2', at=1, seen=())),)
>>> [(t.home, type(t.message).__name__) for t in loc.route_feedback(out.feedback[0]).to_home]
[(('cookie_id', 'ck1'), 'MergeInto')]
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import AbstractSet, Any, Callable, Iterable, Mapping, MutableMapping, Union

from models.erasure import Erased, PendingErasure, Tombstone, tombstone_key
from models.identity import (
    IdentityRules,
    Node,
    Observation,
    PieceStep,
    ProfileChange,
    Signature,
    SignatureIndex,
    canonical_profile_id,
    changed_pieces,
    makes_shared,
    node_version,
    observation_of,
    piece_events,
    piece_signatures,
    pieces,
    regroup,
    resolve,
    shared_changes,
    shared_identifiers,
)
from models.identity_registry import (
    Absorb,
    Counted,
    EraseAll,
    Forward,
    Join,
    Register,
    RegistryKey,
    RegistryMessage,
    RegistryState,
    Told,
    learnt,
)
from models.identity_router import (
    CommandKind,
    IdentityEvent,
    IdentityRouter,
    ProfileCommand,
    Routed,
    RouterStore,
    identity_events,
    regrouped_live,
    targets,
)


@dataclass(frozen=True)
class Claim:
    """``node`` belongs to the component at ``home`` (caused by event ``event_id`` at ``at``);
    ``seen``: the identifiers the component shows with it that count towards its limits
    (:func:`co_observed`), so that the locate stage can find it shared (:attr:`~models.identity.IdentityRules.shared_homes`)."""

    node: Node
    home: Node
    event_id: str
    at: int
    seen: tuple[Node, ...] = ()


def co_observed(rules: IdentityRules, node: Node, signatures: Iterable[Signature]) -> tuple[Node, ...]:
    """The identifiers ``signatures`` show with ``node`` whose type has a limit for ``node``'s
    type (:meth:`~models.identity.IdentityRules.limits_of`), at most one past the limit per type.

    >>> kiosk = ("device_id", "kiosk")
    >>> rules = IdentityRules(shared_limits=(("device_id", "customer_id", 1),))
    >>> co_observed(rules, kiosk, [(("customer_id", f"c{i}"), kiosk, ("cookie_id", "x")) for i in range(4)])
    (('customer_id', 'c0'), ('customer_id', 'c1'))
    """
    limits = dict(rules.limits_of(node[0]))
    if not limits:
        return ()
    out: dict[str, set[Node]] = {}
    for sig in signatures:
        for m in sig:
            if m != node and m[0] in limits:
                values = out.setdefault(m[0], set())
                if len(values) <= limits[m[0]]:
                    values.add(m)
    return tuple(sorted(m for values in out.values() for m in values))


def past_limit(rules: IdentityRules, node: Node, seen: Iterable[Node]) -> str | None:
    """The type, first by priority, whose limit for ``node`` the identifiers ``seen`` with it
    pass (:func:`models.identity.shared_identifiers` over any signatures that show them with
    it: more signatures only add values, so the finding is final); None: none.

    >>> kiosk = ("device_id", "kiosk")
    >>> past_limit(IdentityRules(), kiosk, [("customer_id", f"c{i}") for i in range(5)]) is None
    True
    >>> past_limit(IdentityRules(), kiosk, [("customer_id", f"c{i}") for i in range(6)])
    'customer_id'
    """
    return shared_identifiers([(node, *seen)], rules).get(node)


@dataclass(frozen=True)
class MergeInto:
    """For the component at the message's address: join the component at ``home``."""

    home: Node
    event_id: str
    at: int


@dataclass(frozen=True)
class Move:
    """A whole component's router state, for the component at the message's address."""

    store: RouterStore
    event_id: str
    at: int


@dataclass(frozen=True)
class Moved:
    """An evicted atom's aggregate (``kind`` state) or journey part (``journey``) for the
    current profile of ``node``; addressed to the home that evicted it."""

    kind: CommandKind
    node: Node
    payload: Any


@dataclass(frozen=True)
class EraseDue:
    """For the component at the message's address: event time has passed the erasure request
    ``request_id`` (sent by the clock stage, :mod:`models.identity_clock`); carry it out."""

    request_id: str


@dataclass(frozen=True)
class EraseHome:
    """For the component at the message's address: it is linked to an erased identifier
    (the closure, :mod:`models.erasure`): erase it for request ``request_id``."""

    request_id: str
    event_id: str
    at: int


@dataclass(frozen=True)
class EraseClosure:
    """For the locate stage: ``node`` came with an erased identifier; erase its component (or,
    if no component has it, tombstone it alone)."""

    node: Node
    request_id: str
    event_id: str
    at: int


@dataclass(frozen=True)
class Tombstoned:
    """For the locate stage: ``node`` was erased (by the erasure of a component caused by
    ``event_id``); drop every event that comes with it, and erase the component its pointer
    names (one that holds ``node`` and that no claim has joined to the erased one yet)."""

    node: Node
    request_id: str
    at: int
    event_id: str = ""


@dataclass(frozen=True)
class MarkShared:
    """For the locate stage: ``node`` is shared (found past its limit for the type ``co`` at
    the home ``home``): a claim for it is answered :class:`SharedIs` from now on."""

    node: Node
    co: str
    home: Node


@dataclass(frozen=True)
class SharedIs:
    """For the component at the message's address: ``node`` is shared (for the type ``co``);
    it links nothing there from now on (caused by ``event_id``). ``found``: the locate stage
    found it so from the claims, and the component is where the identifier lives: it
    announces the finding and has it counted."""

    node: Node
    co: str
    event_id: str
    at: int
    found: bool = False  # the locate stage has had it counted (models.identity_registry.Counted)


Message = Union[
    Claim,
    MergeInto,
    Move,
    Moved,
    EraseDue,
    EraseHome,
    EraseClosure,
    Tombstoned,
    MarkShared,
    SharedIs,
    Counted,
    Register,
    Join,
    Absorb,
    EraseAll,
    Told,
]


@dataclass(frozen=True)
class Feedback:
    """A record for the feedback topic, read back by the locate stage keyed by ``address``."""

    address: Node
    message: Message


@dataclass(frozen=True)
class EventIn:
    """A source event on its way to its atom's home."""

    event: Mapping[str, Any]
    payload: Any


@dataclass(frozen=True)
class ToHome:
    """A record from the locate stage to the resolve stage, keyed by ``home``."""

    home: Node
    message: Union[Message, EventIn]


@dataclass(frozen=True)
class LocateEntry:
    """The locate stage's state for one identifier: the home of its component, or its
    tombstone (an erased identifier)."""

    home: Node | None = None
    erased: Tombstone | None = None
    #: the type whose limit made the identifier shared (None: not shared); a claim for it is
    #: answered :class:`SharedIs` (:attr:`~models.identity.IdentityRules.shared_homes`)
    shared: str | None = None
    #: what the claims showed with it (:func:`co_observed`; at most one past each limit)
    seen: tuple[Node, ...] = ()


@dataclass(frozen=True)
class Located:
    """What one record at the locate stage produced: records for the resolve stage, records
    for the feedback topic, and whether an event was dropped (``erased``)."""

    to_home: tuple[ToHome, ...] = ()
    feedback: tuple[Feedback, ...] = ()
    erased: bool = False


class Locator:
    """The locate stage's logic for any key.

    ``entries`` maps identifier -> :class:`LocateEntry` (a Flink ValueState per identifier in
    the job; a dict in tests). ``ledger`` says whether an identifier is tombstoned in the
    erasure ledger (by :func:`models.erasure.tombstone_key`); it is asked only about
    identifiers that have no entry yet (what an earlier run erased: a new job replaying old
    events).
    """

    def __init__(
        self,
        rules: IdentityRules,
        entries: MutableMapping[Node, LocateEntry],
        ledger: Callable[[str], bool] | None = None,
        registry: MutableMapping[Node, RegistryState] | None = None,
    ) -> None:
        self.rules, self.entries, self.ledger = rules, entries, ledger
        #: the registry's keys (:mod:`models.identity_registry`), keyed like the entries: a
        #: registry key is a shared identifier
        self.registry = registry if registry is not None else {}

    def atom_of(self, event: Mapping[str, Any]) -> Node | None:
        """The event's highest-priority identifier that is not blocked (None: all blocked)."""
        kept = self.rules.kept(observation_of(event).identifiers)
        return kept[0] if kept else None

    def entry(self, node: Node) -> LocateEntry | None:
        entry = self.entries.get(node)
        if entry is None and self.ledger is not None and self.ledger(tombstone_key(node)):
            self.entries[node] = entry = LocateEntry(erased=Tombstone("ledger", 0))
        return entry

    def home_of(self, address: Node) -> Node:
        """Where a message for the component at ``address`` goes: the home its pointer names,
        or the address itself (a home, or an identifier erased or never seen)."""
        entry = self.entries.get(address)
        return entry.home if entry is not None and entry.home is not None else address

    def route_event(self, atom: Node, event: Mapping[str, Any], payload: Any = None) -> Located:
        """Send an event to its atom's home (an atom never seen becomes its own home); an
        event whose atom is erased is dropped, and what else it carries is erased (closure)."""
        entry = self.entry(atom)
        if entry is not None and entry.erased is not None:
            eid, at, rid = str(event["event_id"]), int(event["occurred_at"]), entry.erased.request_id
            others = [n for n in self.rules.kept(observation_of(event).identifiers) if n != atom]
            return Located(feedback=tuple(Feedback(n, EraseClosure(n, rid, eid, at)) for n in others), erased=True)
        if entry is None:
            self.entries[atom] = entry = LocateEntry(home=atom)
        assert entry.home is not None
        return Located(to_home=(ToHome(entry.home, EventIn(event, payload)),))

    def route_feedback(self, fb: Feedback) -> Located:
        """A claim updates the pointer (and asks two components to join when it pointed
        elsewhere); erasure messages tombstone identifiers or reach their component; anything
        else goes on to the home the address points at."""
        msg = fb.message
        if isinstance(msg, (Counted, Register, Join, Absorb, EraseAll)):
            return self._registry(fb.address, msg)
        if isinstance(msg, MarkShared):
            entry = self.entry(msg.node)
            if entry is None:  # the finding home's claim is still on its way
                self.entries[msg.node] = LocateEntry(home=msg.home, shared=msg.co)
            elif entry.erased is None and entry.shared is None:
                self.entries[msg.node] = replace(entry, shared=msg.co)
            return Located()
        if isinstance(msg, Tombstoned):
            return self._tombstone(msg)
        if isinstance(msg, EraseClosure):
            entry = self.entry(msg.node)
            if entry is None:  # an identifier no component has: tombstoned, erased alone at its own key
                self.entries[msg.node] = LocateEntry(erased=Tombstone(msg.request_id, msg.at))
                return Located(to_home=(ToHome(msg.node, EraseHome(msg.request_id, msg.event_id, msg.at)),))
            if entry.home is None:
                return Located()
            return Located(to_home=(ToHome(entry.home, EraseHome(msg.request_id, msg.event_id, msg.at)),))
        if not isinstance(msg, Claim):
            return Located(to_home=(ToHome(self.home_of(fb.address), msg),))
        entry = self.entry(msg.node)
        if entry is None:
            entry = LocateEntry(home=msg.home)
        if entry.erased is not None:  # the component took an erased identifier: erase it
            return Located(to_home=(ToHome(msg.home, EraseHome(entry.erased.request_id, msg.event_id, msg.at)),))
        pointer = entry.home
        assert pointer is not None
        if self.rules.shared_homes and entry.shared is None and msg.seen:
            entry = self._seen(msg, entry)
            if entry.shared is not None:  # found shared from the claims: counted, its home announces it
                found = SharedIs(msg.node, entry.shared, msg.event_id, msg.at, found=True)
                to: tuple[ToHome, ...] = (ToHome(pointer, found),)
                if pointer != msg.home:
                    to += (ToHome(msg.home, replace(found, found=False)),)
                return Located(to_home=to, feedback=(Feedback(msg.node, Counted(msg.node)),))
        if self.entries.get(msg.node) is None:
            self.entries[msg.node] = entry
            return Located()
        if pointer == msg.home:
            return Located()
        if entry.shared is not None:  # no join through a shared identifier: the claimant stops linking it
            return Located(to_home=(ToHome(msg.home, SharedIs(msg.node, entry.shared, msg.event_id, msg.at)),))
        if self.rules.rank(msg.home) < self.rules.rank(pointer):
            self.entries[msg.node] = LocateEntry(home=msg.home)  # homes only move to better-ranked homes
        return Located(to_home=(ToHome(pointer, MergeInto(msg.home, msg.event_id, msg.at)),))

    def _tombstone(self, msg: Tombstoned) -> Located:
        """Tombstone ``msg.node``. Its pointer may name a component that no claim has joined to
        the erased one yet (the identifier's own, from an event that came alone): that is
        erased too (where it is the erased one, nothing happens). With homes per linked
        component, if the identifier is a registry key, every home of its raw component goes."""
        entry = self.entry(msg.node)
        self.entries[msg.node] = LocateEntry(erased=Tombstone(msg.request_id, msg.at))
        to: tuple[ToHome, ...] = ()
        if entry is not None and entry.erased is None and entry.home is not None:
            to = (ToHome(entry.home, EraseHome(msg.request_id, msg.event_id, msg.at)),)
        if not self.rules.shared_homes:
            return Located(to_home=to)
        erase_all = self._registry(msg.node, EraseAll(msg.request_id, msg.event_id, msg.at))
        return Located(to_home=to, feedback=erase_all.feedback)

    def _seen(self, msg: Claim, entry: LocateEntry) -> LocateEntry:
        """The entry with what the claim showed with its identifier (kept: it changed), shared
        if that passes a limit (in a burst the claims of a kiosk's customers reach the locate
        stage long before their homes have merged enough of them for one to find it)."""
        seen = co_observed(self.rules, msg.node, [entry.seen + msg.seen])
        if seen == entry.seen:
            return entry
        entry = replace(entry, seen=seen, shared=past_limit(self.rules, msg.node, seen))
        self.entries[msg.node] = entry
        return entry

    def _registry(self, key: Node, msg: RegistryMessage) -> Located:
        """A registry message for the key ``key``: what it tells homes goes to them, what it
        sends other keys goes back on the feedback topic."""
        out = RegistryKey(self.rules, key, self.registry.setdefault(key, RegistryState())).on_message(msg)
        erase = out.erasure
        erased = (
            ()
            if erase is None
            else tuple(Feedback(h, EraseHome(erase.request_id, erase.event_id, erase.at)) for h in out.erase)
        )
        return Located(feedback=registry_feedback(out.forward) + tuple(Feedback(t.home, t) for t in out.told) + erased)


def registry_feedback(forwards: Iterable[Forward]) -> tuple[Feedback, ...]:
    """Registry messages (:mod:`models.identity_registry`) as feedback-topic records."""
    return tuple(Feedback(f.address, f.message) for f in forwards)


@dataclass
class HomeState:
    """The resolve stage's state for one home: the component living there, where it went
    (``forward``), or the erasure that removed it (``erased``)."""

    store: RouterStore | None = None
    forward: Node | None = None
    erased: Tombstone | None = None


@dataclass
class HomeOutput:
    """What one record at a home produced: profile commands (each with ``home`` set),
    ``journey.identity`` records, feedback records, the resolution changes (counters) and,
    for the clock stage, the erasure requests now pending (``pending``) and the ones carried
    out or found void (``done``)."""

    commands: tuple[ProfileCommand, ...] = ()
    identity_events: tuple[IdentityEvent, ...] = ()
    feedback: tuple[Feedback, ...] = ()
    changes: tuple[ProfileChange, ...] = ()
    resolved: bool = True
    orphan: bool = False  # a message for a component that is not here
    retried: bool = False  # moved state or a journey part that arrived before its identifier: sent again
    moved: bool = False  # the component left for another home
    erased_event: bool = False  # the event reached an erased component: dropped
    erasures: tuple[Erased, ...] = ()
    pending: tuple[PendingErasure, ...] = ()
    done: tuple[str, ...] = ()


@dataclass
class ComponentHome:
    """The resolve stage's logic for the home ``home`` (state mutated in place)."""

    rules: IdentityRules
    home: Node
    state: HomeState = field(default_factory=HomeState)

    def on_event(self, event: Mapping[str, Any], payload: Any = None) -> HomeOutput:
        st = self.state
        eid, at = str(event["event_id"]), int(event["occurred_at"])
        if st.erased is not None:  # the component was erased: drop the event, erase what it carries
            kept = self.rules.kept(observation_of(event).identifiers)
            rid = st.erased.request_id
            fb = tuple(Feedback(n, EraseClosure(n, rid, eid, at)) for n in kept if n != self.home)
            return HomeOutput(feedback=fb, erased_event=True)
        if st.forward is not None:  # the component moved on: resolve the event alone, send it after
            router = IdentityRouter(self.rules)
            routed = router.route_event(event, payload)
            fb = (Feedback(st.forward, Move(router.store, eid, at)),)
            return self._output(routed, fb if routed.resolved else (), router.store, eid)
        if st.store is None:
            st.store = RouterStore()
        store = st.store
        router = IdentityRouter(self.rules, store)
        sig = self.rules.kept(observation_of(event).identifiers)
        new = [n for n in sig if n not in store.parent and n != self.home and n not in store.shared]
        known = set(store.shared)
        routed = router.route_event(event, payload)
        claims = tuple(
            Feedback(
                n, Claim(n, self.home, eid, at, co_observed(self.rules, n, [sig]) if self.rules.shared_homes else ())
            )
            for n in new
        )
        return self._output(routed, claims + self._found_shared(store, known, routed.changes), store, eid)

    def _found_shared(
        self, store: RouterStore, known: AbstractSet[Node], changes: tuple[ProfileChange, ...]
    ) -> tuple[Feedback, ...]:
        """With :attr:`~models.identity.IdentityRules.shared_homes`: the messages of identifiers new to the home's shared set
        (``known``: the set before): each one found shared here is marked so at the locate
        stage, and the registry hears of every new one (:func:`models.identity_registry.learnt`)."""
        if not self.rules.shared_homes:
            return ()
        new = set(store.shared) - known
        if not new:
            return ()
        found = {n: c.reason for c in changes if c.kind == "shared" for n in c.members}
        marks = tuple(Feedback(n, MarkShared(n, co, self.home)) for n, co in sorted(found.items()))
        return marks + registry_feedback(learnt(self.home, known, new, set(found)))

    def _learn_shared(
        self, learnt_now: Mapping[Node, str], event_id: str, at: int, register: bool, found: bool
    ) -> HomeOutput:
        """Identifiers of the raw component found shared elsewhere (:class:`SharedIs`, or the
        registry's :class:`~models.identity_registry.Told`): they link nothing here from now
        on and count in ``S``; the home re-resolves its component and every live profile hears
        the new version. ``register``: the registry does not know the home has them yet."""
        store = self.state.store
        if store is None:  # nothing lives here
            return HomeOutput()
        known = set(store.shared)
        if all(n in known for n in learnt_now) and not found:
            return HomeOutput()
        routed = IdentityRouter(self.rules, store).learn_shared(learnt_now, event_id, at, announce=found)
        fb: tuple[Feedback, ...] = ()
        if register:
            fb = registry_feedback(learnt(self.home, known, set(learnt_now), set()))
        return self._output(routed, fb, store, event_id)

    def on_message(self, msg: Message) -> HomeOutput:
        st = self.state
        if st.erased is not None:
            return self._after_erasure(msg, st.erased)
        if st.forward is not None:
            if isinstance(msg, MergeInto) and msg.home == st.forward:
                return HomeOutput()
            return HomeOutput(feedback=(Feedback(st.forward, msg),))
        if isinstance(msg, Moved):
            return self._moved(msg)
        if isinstance(msg, MergeInto):
            return self._merge_into(msg)
        if isinstance(msg, Move):
            return self._absorb(msg)
        if isinstance(msg, EraseDue):
            return self._erase_due(msg)
        if isinstance(msg, SharedIs):
            if msg.found and (st.store is None or msg.node not in st.store.profile_of):
                return self._not_here(msg, msg.node)  # to be announced where the identifier lives
            return self._learn_shared({msg.node: msg.co}, msg.event_id, msg.at, register=True, found=msg.found)
        if isinstance(msg, Told):
            # registered: the tell may have come along a forward pointer from a home that
            # joined this one, whose registry component need not hold this home's others yet
            return self._learn_shared({n: "" for n in msg.shared}, "", 0, register=True, found=False)
        if isinstance(msg, EraseHome):
            if st.store is None:
                return self._erase_alone(msg)
            return self._erase(st.store, None, msg.request_id, msg.event_id, msg.at, closure=True)
        raise TypeError(f"a home does not take {type(msg).__name__}")

    def _after_erasure(self, msg: Message, stone: Tombstone) -> HomeOutput:
        """Messages for an erased component: whatever links to it is erased too."""
        if isinstance(msg, EraseDue):
            return HomeOutput(done=(msg.request_id,))
        if isinstance(msg, MergeInto):
            return HomeOutput(feedback=(Feedback(msg.home, EraseHome(stone.request_id, msg.event_id, msg.at)),))
        if isinstance(msg, Move):
            return self._erase(msg.store, None, stone.request_id, msg.event_id, msg.at, closure=True, keep=True)
        return HomeOutput(orphan=isinstance(msg, Moved))

    def _erase_alone(self, msg: EraseHome) -> HomeOutput:
        """Erase an identifier no component has (a closure reached it): whatever an earlier,
        failed attempt may have written under it goes too (its profile id alone, its link)."""
        pid = canonical_profile_id([self.home], self.rules)
        done = Erased(msg.request_id, msg.event_id, msg.at, (pid,), (pid,), (self.home,), closure=True)
        routed = IdentityRouter._erasure_routed([done])
        self.state.erased = Tombstone(msg.request_id, msg.at)
        return HomeOutput(
            tuple(replace(c, home=self.home) for c in routed.commands), routed.identity_events, erasures=(done,)
        )

    def _erase_due(self, msg: EraseDue) -> HomeOutput:
        store = self.state.store
        if store is None:  # nothing lives here
            return HomeOutput(done=(msg.request_id,))
        pending = store.pending.get(msg.request_id)
        if pending is None:  # its pending part is on its way here in a move: carried out on arrival
            store.due[msg.request_id] = True
            return HomeOutput()
        return self._erase(store, pending.nodes, msg.request_id, pending.event_id, pending.at, closure=False)

    def _erase(
        self,
        store: RouterStore,
        nodes: tuple[Node, ...] | None,
        request_id: str,
        event_id: str,
        at: int,
        closure: bool,
        keep: bool = False,
    ) -> HomeOutput:
        """Erase the component of ``store`` (all of it: every node of a home's store is one
        component) and tombstone its identifiers at the locate stage. ``keep``: the home's own
        erasure stays as it was (an arriving component erased after it)."""
        if nodes is None:
            nodes = tuple(sorted({n for sigs in store.signatures.values() for sig in sigs for n in sig}))
        # this request (unless a closure) and every other request of the component are over
        finished = tuple(sorted({*(() if closure else (request_id,)), *store.pending, *store.due}))
        done = IdentityRouter(self.rules, store).erase(nodes, request_id, event_id, at, closure)
        routed = IdentityRouter._erasure_routed(done)
        if not keep:
            self.state.store, self.state.erased = None, Tombstone(request_id, at)
        fb = tuple(Feedback(n, Tombstoned(n, request_id, at, event_id)) for e in done for n in e.nodes)
        return HomeOutput(
            tuple(replace(c, home=self.home) for c in routed.commands),
            routed.identity_events,
            fb,
            erasures=tuple(done),
            done=finished,
        )

    def _moved(self, msg: Moved) -> HomeOutput:
        store = self.state.store
        if store is None or msg.node not in store.profile_of:
            return self._not_here(msg, msg.node)
        router = IdentityRouter(self.rules, store)
        route = router.route_journey if msg.kind is CommandKind.JOURNEY else router.route_state
        cmd = route(msg.node, msg.payload)
        return HomeOutput(commands=(replace(cmd, home=self.home),) if cmd is not None else ())

    def _not_here(self, msg: Message, node: Node) -> HomeOutput:
        """A message for the component of ``node``, which is not here.

        Usually it is on its way here: the pointer of an identifier that moved can name the
        new home before the move arrives (claims repoint it), and the forward pointers of a
        chain of moves lead here ahead of a move still going along the chain. Sent again to
        the identifier's own address, the message comes back to wherever the component is by
        then (a component leaves a home only with a forward pointer). It is an orphan when it
        reached the identifier's own key with nothing there: no component ever held the
        identifier (or one that did was erased)."""
        if self.state.store is None and node == self.home:
            return HomeOutput(orphan=True)
        return HomeOutput(feedback=(Feedback(node, msg),), retried=True)

    def _merge_into(self, msg: MergeInto) -> HomeOutput:
        st = self.state
        if st.store is None:
            return HomeOutput(orphan=True)
        if msg.home == self.home:
            return HomeOutput()
        if self.rules.rank(msg.home) > self.rules.rank(self.home):  # the other one comes here
            return HomeOutput(feedback=(Feedback(msg.home, MergeInto(self.home, msg.event_id, msg.at)),))
        moving, st.store, st.forward = st.store, None, msg.home
        return HomeOutput(feedback=(Feedback(msg.home, Move(moving, msg.event_id, msg.at)),), moved=True)

    def _absorb(self, msg: Move) -> HomeOutput:
        st = self.state
        if st.store is None:  # nothing here yet: the component settles here as it is
            st.store = msg.store
            nodes = {n for sigs in msg.store.signatures.values() for sig in sigs for n in sig}
            return HomeOutput(
                feedback=tuple(
                    Feedback(n, Claim(n, self.home, msg.event_id, msg.at)) for n in sorted(nodes) if n != self.home
                )
            )
        known = set(st.store.shared)
        commands, events, changes, new = absorb(self.rules, st.store, msg.store, msg.event_id, msg.at)
        fb = tuple(
            Feedback(n, Claim(n, self.home, msg.event_id, msg.at))
            for n in new
            if n != self.home and not (self.rules.shared_homes and n in known)
        )
        fb += self._found_shared(st.store, known, changes)
        out = HomeOutput(tuple(replace(c, home=self.home) for c in commands), events, fb, changes)
        due = sorted(r for r in st.store.due if r in st.store.pending)
        if not due:
            return out
        pending = st.store.pending[due[0]]  # a request found due before it arrived: carried out now
        erased = self._erase(st.store, pending.nodes, pending.request_id, pending.event_id, pending.at, closure=False)
        return HomeOutput(
            out.commands + erased.commands,
            out.identity_events + erased.identity_events,
            out.feedback + erased.feedback,
            out.changes,
            erasures=erased.erasures,
            done=erased.done,
        )

    def _output(self, routed: Routed, feedback: tuple[Feedback, ...], store: RouterStore, eid: str) -> HomeOutput:
        pending: tuple[PendingErasure, ...] = ()
        if routed.requested:  # the event was an erasure request: the clock stage says when it is due
            pending = tuple(p for p in store.pending.values() if p.event_id == eid)
        return HomeOutput(
            tuple(replace(c, home=self.home) for c in routed.commands),
            routed.identity_events,
            feedback,
            routed.changes,
            routed.resolved,
            pending=pending,
        )


def component_store(
    signatures: frozenset[tuple[Node, ...]],
    events: int,
    members: Mapping[str, frozenset[Node]],
    signature_events: Mapping[tuple[Node, ...], int] | None = None,
    shared: Mapping[Node, str] | None = None,
) -> RouterStore:
    """A store holding one raw component: every identifier under the first (by ``sorted``) in
    its union-find, its signatures (with their events: ``signature_events``, absent: 1) and
    event count, its shared identifiers, its pieces, and its profiles' members (and so each
    identifier's profile and each piece's live profiles). The rest (refused links, parts in
    flight, erasure requests) the caller adds."""
    store = RouterStore()
    nodes = sorted({n for sig in signatures for n in sig})
    if not nodes:
        return store
    root = nodes[0]
    for n in nodes:
        store.parent[n], store.size[n] = root, 1
    store.size[root] = len(nodes)
    store.signatures[root], store.events[root] = signatures, events
    for sig, k in (signature_events or {}).items():
        if sig in signatures:
            store.signature_events[sig] = k
    store.shared.update(shared or {})
    for pid, ms in members.items():
        store.members[pid] = ms
        for n in ms:
            store.profile_of[n] = pid
    for p, group in regroup(store, root, sorted(signatures), store.shared).items():
        store.live[p] = tuple(sorted({store.profile_of[n] for n in group}))
    return store


def _only_root(store: RouterStore) -> Node:
    roots = list(store.signatures)
    if len(roots) != 1:
        raise ValueError(f"a home holds one raw component, found {len(roots)}")
    return roots[0]


#: merge a moved component by re-resolving only the pieces its signatures reach when the merge
#: makes no identifier shared (:func:`absorbed_pieces`); False: resolve the whole union every
#: time (the reference the piece path is tested against)
PIECE_ABSORB = True


def absorbed_pieces(
    rules: IdentityRules, store: RouterStore, index: SignatureIndex, other: RouterStore, theirs: AbstractSet[Signature]
) -> list[Signature] | None:
    """The signatures to resolve again when the component ``other`` (its signatures
    ``theirs``) joins the component of ``store`` (its :class:`~models.identity.SignatureIndex`
    ``index``): all of ``theirs`` and every signature of ``store`` reachable from them through
    identifiers that link. None when the merge makes an identifier shared that ``store`` did
    not have as shared (then every piece's version changes and the union is resolved).

    Why that is enough: an identifier's co-observed values come from the signatures that hold
    it, so only an identifier both sides have can become shared; if none does and ``other``
    brings no shared identifier ``store`` lacks, the union's shared set (and so the raw
    component's count in every version) is ``store``'s, :func:`~models.identity.resolve`
    decomposes over the pieces given that set, and the pieces no signature of ``theirs``
    reaches keep their identifiers, events and profiles. The cost is ``theirs``, the pieces
    they reach and the signatures of the identifiers both sides have, never the rest of the
    component (a kiosk's thousands of persons when one more person's component joins it).
    """
    shared = store.shared
    if any(n not in shared for n in other.shared):
        return None
    common = {n for sig in theirs for n in sig if n in index.by_node and n not in shared and rules.limits_of(n[0])}
    if makes_shared([index], theirs, common, rules):
        return None
    return piece_signatures([index], theirs, shared)


def absorb(
    rules: IdentityRules, store: RouterStore, other: RouterStore, event_id: str, at: int
) -> tuple[tuple[ProfileCommand, ...], tuple[IdentityEvent, ...], tuple[ProfileChange, ...], tuple[Node, ...]]:
    """Merge the component ``other`` into the component of ``store`` (mutated in place).

    The two may share identifiers (an event resolved at a home its component had left). The
    merged component is resolved again: only the pieces ``other``'s signatures reach
    (:func:`absorbed_pieces`) when the merge makes no identifier shared, else the whole union.
    Every profile that either side had and that lost identifiers gets them evicted (their
    atoms come back on the feedback topic), and every live profile of a piece whose version
    or profile changed gets its members and ghosts and a ``touch`` with the piece's version,
    so each live profile's last command carries it again. Returns the commands, the
    ``journey.identity`` records, the changes and the identifiers new to ``store`` (to be
    claimed).
    """
    root, other_root = _only_root(store), _only_root(other)
    theirs_sigs = other.signatures[other_root]
    index = SignatureIndex.of_component(store, root)
    mine = index.by_node  # every identifier of store's component
    theirs = {n for sig in theirs_sigs for n in sig}
    piece_sigs = absorbed_pieces(rules, store, index, other, theirs_sigs) if PIECE_ABSORB else None
    scope = theirs | set(mine) if piece_sigs is None else {n for sig in piece_sigs for n in sig}
    new = tuple(sorted((n for n in theirs if n not in mine), key=rules.rank))
    # the versions each side's profiles last carried (an identifier both sides have changed)
    before_version = {
        n: node_version(store, root, n) if n in mine else node_version(other, other_root, n)
        for n in scope
        if (n in mine) != (n in theirs)
    }
    router = IdentityRouter(rules, store)
    uf = router.resolver._raw
    for n in new:
        uf.add(n)
        uf.union(root, n)
    # a shared identifier stays a piece of its own: its events so far on either side
    shared_events = {
        n: store.piece_events.get(n, 0) + sum(other.signature_events.get(sig, 1) for sig in theirs_sigs if n in sig)
        for n in (() if piece_sigs is None else scope & store.shared.keys())
    }
    for sig in theirs_sigs:
        have = store.signature_events.get(sig, 1) if sig in index.signatures else 0
        store.signature_events[sig] = have + other.signature_events.get(sig, 1)
    dropped = {store.piece[n] for n in scope if n in mine}
    for p in dropped:
        store.piece_events.pop(p, None)
        store.live.pop(p, None)
    component_shared = store.component_shared.pop(root, 0)
    for sig in theirs_sigs:  # store's set and index grow in place: O(theirs)
        if sig not in index.signatures:
            index.add(sig)
    store.pop_signatures(root)
    count = store.events.pop(root) + other.events[other_root]
    merged_root = uf.find(root)
    store.signatures[merged_root], store.index[merged_root] = index.signatures, index
    store.events[merged_root] = count

    before: dict[str, set[Node]] = {}
    for n in scope:
        for side, has in ((store, n in mine), (other, n in theirs)):
            pid = side.profile_of.get(n) if has else None
            if pid is not None:
                before.setdefault(pid, set()).add(n)
    for link in other.refused:
        store.refused[link] = True
    for n, k in other.inflight.items():
        store.inflight[n] = store.inflight.get(n, 0) + k
    for rid, pending in other.pending.items():
        store.pending[rid] = pending
    for rid in other.due:
        store.due[rid] = True
    for n, co in other.shared.items():
        store.shared.setdefault(n, co)

    sigs = sorted(index.signatures if piece_sigs is None else piece_sigs)
    sub = resolve(
        [Observation("", sig) for sig in sigs],
        rules,
        shared=None if piece_sigs is None else store.shared,
        known=store.shared,
    )
    changes: list[ProfileChange] = []
    for link in sub.refused:
        if link not in store.refused:
            store.refused[link] = True
            changes.append(ProfileChange("refused", None, link=link))
    changes.extend(shared_changes(sub, store.shared, sub.profile_of, store.refused))
    # a link either side refused while an identifier it holds was not shared there yet is no
    # refusal once the merged component has it shared: the refusals are the resolution's
    for link in [link for link in store.refused if link.a in sub.profile_of and link not in sub.refused]:
        del store.refused[link]
    for pid, members in sorted(sub.members.items()):
        had = before.get(pid)
        # announced again: identifiers that either side had put in another profile (a lagging
        # home announced its own view of them)
        moved_in = {n for n in members if any(side.profile_of.get(n, pid) != pid for side in (store, other))} | (
            members - (had or set())
        )
        if had is None:
            changes.append(ProfileChange("created", pid, members=members))
        elif moved_in:
            changes.append(ProfileChange("grown", pid, members=frozenset(moved_in)))
    evict: dict[str, set[Node]] = {}
    for old, had in sorted(before.items()):
        left = {n for n in had if sub.profile_of[n] != old}
        if not left:
            continue
        evict[old] = left
        if old not in sub.members:
            went = {sub.profile_of[n] for n in had}
            into = went.pop() if len(went) == 1 else None
            changes.append(ProfileChange("merged" if into else "split", into, (old,), members=frozenset(had)))
        else:
            changes.append(ProfileChange("split", old, (old,), members=frozenset(left)))
    for pid in before:
        store.members.pop(pid, None)
    for pid, members in sub.members.items():
        store.members[pid] = members
    for n, pid in sub.profile_of.items():
        store.profile_of[n] = pid
    if piece_sigs is None:
        groups = regroup(store, merged_root, sigs, sub.shared)
    else:  # the pieces the moved signatures reach; the component's shared count is unchanged
        groups = pieces(sigs, sub.shared)
        for p, ns in groups.items():
            for n in ns:
                store.piece[n] = p
        for p, k in {**piece_events(sigs, store.signature_events, store.piece), **shared_events}.items():
            store.piece_events[p] = k
        store.component_shared[merged_root] = component_shared
    # the pieces whose version changed (an identifier both sides had counts as changed) hear
    # of the merge, and so does every piece with a profile that changed
    changed = {c.into for c in changes if c.kind in ("created", "grown")} | set(evict)
    touched = frozenset(
        changed_pieces(store, merged_root, groups, before_version)
        | {p for p, ns in groups.items() if any(sub.profile_of[n] in changed for n in ns)}
    )
    step = PieceStep(touched, groups, frozenset())
    ghosts = regrouped_live(store, step, rules)

    incoming: dict[str, dict[Node, int]] = {}
    for old, nodes in evict.items():
        for n in nodes:  # every eviction sends one journey part per identifier
            store.inflight[n] = store.inflight.get(n, 0) + 1
            incoming.setdefault(sub.profile_of[n], {})[n] = store.inflight[n]
    version_of = router.resolver.version_of
    commands = [
        ProfileCommand(
            profile_id=pid,
            kind=CommandKind.TOUCH,
            version=version,
            members=tuple(sorted(sub.members.get(pid, frozenset()), key=rules.rank)),
            evict=tuple(sorted(evict.get(pid, ()), key=rules.rank)),
            ghosts=None if piece is None else ghosts.get(piece),
            incoming=tuple(sorted(incoming.get(pid, {}).items())),
            at=at,
        )
        for pid, (version, piece) in sorted(targets(store, step, evict, version_of).items())
    ]
    records = identity_events(tuple(changes), {"event_id": event_id, "occurred_at": at}, store.profile_of)
    return tuple(commands), records, tuple(changes), new
