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
(:func:`absorb`): one resolution over the union of their signatures, commands that evict what
moved and set every live profile's members, and claims that repoint the moved identifiers.
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
...     to = loc.route_event(atom, ev)
...     return homes.setdefault(to.home, ComponentHome(rules, to.home, HomeState())).on_event(ev, eid)
>>> out = run(("cookie_id", "ck1"), {"cookie_id": "ck1"}, "e1")
>>> out = run(("customer_id", "c1"), {"customer_id": "c1", "cookie_id": "ck1"}, "e2")
>>> out.feedback  # c1's new home claims the cookie, which points at its own home
(Feedback(address=('cookie_id', 'ck1'), message=Claim(node=('cookie_id', 'ck1'), home=('customer_id', 'c1'), event_id='e2', at=1)),)
>>> [(t.home, type(t.message).__name__) for t in loc.route_feedback(out.feedback[0])]
[(('cookie_id', 'ck1'), 'MergeInto')]
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, MutableMapping, Union

from models.identity import IdentityRules, Node, Observation, ProfileChange, canonical_profile_id, resolve
from models.identity_router import (
    CommandKind,
    IdentityEvent,
    IdentityRouter,
    ProfileCommand,
    Routed,
    RouterStore,
    identity_events,
)


@dataclass(frozen=True)
class Claim:
    """``node`` belongs to the component at ``home`` (caused by event ``event_id`` at ``at``)."""

    node: Node
    home: Node
    event_id: str
    at: int


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


Message = Union[Claim, MergeInto, Move, Moved]


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


class Locator:
    """The locate stage's logic for any key: ``pointers`` maps identifier -> home (a Flink
    ValueState per identifier in the job; a dict in tests)."""

    def __init__(self, rules: IdentityRules, pointers: MutableMapping[Node, Node]) -> None:
        self.rules, self.pointers = rules, pointers

    def atom_of(self, event: Mapping[str, Any]) -> Node | None:
        """The event's highest-priority identifier that is not blocked (None: all blocked)."""
        kept = sorted(
            {(t, v) for t, v in event["identifiers"].items() if v is not None and not self.rules.is_blocked(v)},
            key=self.rules.rank,
        )
        return kept[0] if kept else None

    def route_event(self, atom: Node, event: Mapping[str, Any], payload: Any = None) -> ToHome:
        """Send an event to its atom's home (an atom never seen becomes its own home)."""
        home = self.pointers.get(atom)
        if home is None:
            self.pointers[atom] = home = atom
        return ToHome(home, EventIn(event, payload))

    def route_feedback(self, fb: Feedback) -> list[ToHome]:
        """A claim updates the pointer (and asks two components to join when it pointed
        elsewhere); anything else goes on to the home the address points at."""
        msg = fb.message
        if not isinstance(msg, Claim):
            return [ToHome(self.pointers.get(fb.address, fb.address), msg)]
        pointer = self.pointers.get(msg.node)
        if pointer is None:
            self.pointers[msg.node] = msg.home
            return []
        if pointer == msg.home:
            return []
        if self.rules.rank(msg.home) < self.rules.rank(pointer):
            self.pointers[msg.node] = msg.home  # homes only move to better-ranked homes
        return [ToHome(pointer, MergeInto(msg.home, msg.event_id, msg.at))]


@dataclass
class HomeState:
    """The resolve stage's state for one home: the component living there, or where it went."""

    store: RouterStore | None = None
    forward: Node | None = None


@dataclass
class HomeOutput:
    """What one record at a home produced: profile commands (each with ``home`` set),
    ``journey.identity`` records, feedback records and the resolution changes (counters)."""

    commands: tuple[ProfileCommand, ...] = ()
    identity_events: tuple[IdentityEvent, ...] = ()
    feedback: tuple[Feedback, ...] = ()
    changes: tuple[ProfileChange, ...] = ()
    resolved: bool = True
    orphan: bool = False  # moved state or a message for a component that is not here
    moved: bool = False  # the component left for another home


@dataclass
class ComponentHome:
    """The resolve stage's logic for the home ``home`` (state mutated in place)."""

    rules: IdentityRules
    home: Node
    state: HomeState = field(default_factory=HomeState)

    def on_event(self, event: Mapping[str, Any], payload: Any = None) -> HomeOutput:
        st = self.state
        if st.forward is not None:  # the component moved on: resolve the event alone, send it after
            router = IdentityRouter(self.rules)
            routed = router.route_event(event, payload)
            fb = (Feedback(st.forward, Move(router.store, str(event["event_id"]), int(event["occurred_at"]))),)
            return self._output(routed, fb if routed.resolved else ())
        if st.store is None:
            st.store = RouterStore()
        store = st.store
        router = IdentityRouter(self.rules, store)
        new = [n for n in router.resolver.kept(_observation(event)) if n not in store.parent and n != self.home]
        routed = router.route_event(event, payload)
        at, eid = int(event["occurred_at"]), str(event["event_id"])
        return self._output(routed, tuple(Feedback(n, Claim(n, self.home, eid, at)) for n in new))

    def on_message(self, msg: Message) -> HomeOutput:
        st = self.state
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
        raise TypeError(f"a home does not take {type(msg).__name__}")

    def _moved(self, msg: Moved) -> HomeOutput:
        store = self.state.store
        if store is None or msg.node not in store.profile_of:
            return HomeOutput(orphan=True)
        router = IdentityRouter(self.rules, store)
        route = router.route_journey if msg.kind is CommandKind.JOURNEY else router.route_state
        cmd = route(msg.node, msg.payload)
        return HomeOutput(commands=(replace(cmd, home=self.home),) if cmd is not None else ())

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
        if st.store is None:  # nothing here (erased meanwhile): the component settles here as it is
            st.store = msg.store
            nodes = {n for sigs in msg.store.signatures.values() for sig in sigs for n in sig}
            return HomeOutput(
                feedback=tuple(Feedback(n, Claim(n, self.home, msg.event_id, msg.at)) for n in sorted(nodes))
            )
        commands, events, changes, new = absorb(self.rules, st.store, msg.store, msg.event_id, msg.at)
        fb = tuple(Feedback(n, Claim(n, self.home, msg.event_id, msg.at)) for n in new if n != self.home)
        return HomeOutput(tuple(replace(c, home=self.home) for c in commands), events, fb, changes)

    def _output(self, routed: Routed, feedback: tuple[Feedback, ...]) -> HomeOutput:
        return HomeOutput(
            tuple(replace(c, home=self.home) for c in routed.commands),
            routed.identity_events,
            feedback,
            routed.changes,
            routed.resolved,
        )


def _observation(event: Mapping[str, Any]) -> Observation:
    ids = event["identifiers"]
    return Observation(str(event["event_id"]), tuple((t, v) for t, v in ids.items() if v is not None))


def _only_root(store: RouterStore) -> Node:
    roots = list(store.signatures)
    if len(roots) != 1:
        raise ValueError(f"a home holds one raw component, found {len(roots)}")
    return roots[0]


def absorb(
    rules: IdentityRules, store: RouterStore, other: RouterStore, event_id: str, at: int
) -> tuple[tuple[ProfileCommand, ...], tuple[IdentityEvent, ...], tuple[ProfileChange, ...], tuple[Node, ...]]:
    """Merge the component ``other`` into the component of ``store`` (mutated in place).

    The two may share identifiers (an event resolved at a home its component had left). The
    merged component is resolved again over the union of both signatures; every profile that
    either side had and that lost identifiers gets them evicted (their atoms come back on the
    feedback topic), every live profile gets its members and ghosts and a ``touch`` with the
    summed event count, so each live profile's last command carries the count again. Returns
    the commands, the ``journey.identity`` records, the changes and the identifiers new to
    ``store`` (to be claimed).
    """
    root, other_root = _only_root(store), _only_root(other)
    mine = {n for sig in store.signatures[root] for n in sig}
    theirs = {n for sig in other.signatures[other_root] for n in sig}
    new = tuple(sorted(theirs - mine, key=rules.rank))
    router = IdentityRouter(rules, store)
    uf = router.resolver._raw
    for n in new:
        uf.add(n)
        uf.union(root, n)
    signatures = store.signatures.pop(root) | other.signatures[other_root]
    count = store.events.pop(root) + other.events[other_root]
    store.live.pop(root, None)
    merged_root = uf.find(root)
    store.signatures[merged_root], store.events[merged_root] = signatures, count

    before: dict[str, set[Node]] = {}
    for side in (store, other):
        for n in mine if side is store else theirs:
            pid = side.profile_of.get(n)
            if pid is not None:
                before.setdefault(pid, set()).add(n)
    for link in other.refused:
        store.refused[link] = True
    for n, k in other.inflight.items():
        store.inflight[n] = store.inflight.get(n, 0) + k
    for rid, pending in other.pending.items():
        store.pending[rid] = pending

    sub = resolve([Observation("", sig) for sig in sorted(signatures)], rules)
    changes: list[ProfileChange] = []
    for link in sub.refused:
        if link not in store.refused:
            store.refused[link] = True
            changes.append(ProfileChange("refused", None, link=link))
    for pid, members in sorted(sub.members.items()):
        had = before.get(pid)
        if had is None:
            changes.append(ProfileChange("created", pid, members=members))
        elif members - had:
            changes.append(ProfileChange("grown", pid, members=frozenset(members - had)))
    evict: dict[str, set[Node]] = {}
    for old, had in sorted(before.items()):
        left = {n for n in had if sub.profile_of[n] != old}
        if not left:
            continue
        evict[old] = left
        if old not in sub.members:
            targets = {sub.profile_of[n] for n in had}
            into = targets.pop() if len(targets) == 1 else None
            changes.append(ProfileChange("merged" if into else "split", into, (old,), members=frozenset(had)))
        else:
            changes.append(ProfileChange("split", old, (old,), members=frozenset(left)))
    for pid in before:
        store.members.pop(pid, None)
    for pid, members in sub.members.items():
        store.members[pid] = members
    for n, pid in sub.profile_of.items():
        store.profile_of[n] = pid
    live = tuple(sorted(sub.members))
    store.live[merged_root] = live
    ghosts = tuple(sorted({canonical_profile_id([n], rules) for n in sub.profile_of} - set(live)))

    incoming: dict[str, dict[Node, int]] = {}
    for old, nodes in evict.items():
        for n in nodes:  # every eviction sends one journey part per identifier
            store.inflight[n] = store.inflight.get(n, 0) + 1
            incoming.setdefault(sub.profile_of[n], {})[n] = store.inflight[n]
    commands = [
        ProfileCommand(
            profile_id=pid,
            kind=CommandKind.TOUCH,
            version=count,
            members=tuple(sorted(sub.members.get(pid, frozenset()), key=rules.rank)),
            evict=tuple(sorted(evict.get(pid, ()), key=rules.rank)),
            ghosts=ghosts if pid in sub.members else None,
            incoming=tuple(sorted(incoming.get(pid, {}).items())),
            at=at,
        )
        for pid in sorted(set(evict) | set(live))
    ]
    records = identity_events(tuple(changes), {"event_id": event_id, "occurred_at": at}, store.profile_of)
    return tuple(commands), records, tuple(changes), new


def copy_store(store: RouterStore) -> RouterStore:
    """A detached copy of a component's state (what a :class:`Move` carries)."""
    return copy.deepcopy(store)
