"""The identity stage of the profiles job: route each event to its profile, move state on merges.

The identity graph is global (one link can join any two identifiers), so it lives in one
place: :class:`IdentityRouter` wraps :class:`~models.identity.IncrementalResolver` and keeps
only identifiers and counts, never profile data. Profile data lives in the profile operator,
keyed by canonical profile id and partitioned over the job's parallelism
(:mod:`models.profile_fold`). The router tells it what to do with :class:`ProfileCommand`:

``event``
    fold this event into its *atom* (the event's highest-priority identifier) of profile P;
``evict`` (on any command)
    these identifiers left P (merge or split): send their atoms' aggregates back;
``state``
    an evicted atom's aggregate, arriving through the feedback topic, for its new profile.

Evicted state goes out on a feedback Kafka topic and comes back through the router, which
tags it with the atom's profile *at that moment*. All commands for one profile come from the
router in order (one channel per downstream subtask), so an atom's state can never arrive at
a profile that no longer owns it: it always ends up in the surviving profile, in one piece
(the aggregates are a commutative monoid, so an event folded before its atom's old state
arrives changes nothing in the end).

Versions
--------
Every command carries ``version``: its profile's *piece* version
(:func:`models.identity.piece_version`: the shared identifiers of the raw identity component,
then the events of the piece, a piece being a component of the links without the shared
identifiers). It only grows, and its final value does not depend on the order. Each event
also sends a ``touch`` to every other live profile of the pieces it has identifiers in
(usually none), and to every live profile of a piece whose raw component gained a shared
identifier, so every live profile's last command carries its piece's final version;
:func:`models.profile_fold.row_version` adds the events folded in to order writes within one
version.

A piece's ``ghosts`` are the ids its profiles *could* have had under some arrival order and
do not have now: the canonical id of each of its identifiers alone, minus the live ids (a
profile id is always the id of one identifier). Live profiles delete them again with
every write. A run that failed may have written a profile that the replay, seeing the events
in another order, never creates; nothing else would delete that row.

Examples
--------
>>> r = IdentityRouter(IdentityRules())
>>> out = r.route_event({"event_id": "e1", "occurred_at": 5,
...                      "identifiers": {"cookie_id": "ck1", "customer_id": None}}, payload="E1")
>>> [(c.kind.value, c.version, c.atom, c.members) for c in out.commands]
[('event', 1, ('cookie_id', 'ck1'), (('cookie_id', 'ck1'),))]
>>> out = r.route_event({"event_id": "e2", "occurred_at": 6,
...                      "identifiers": {"cookie_id": "ck1", "customer_id": "c1"}}, payload="E2")
>>> [(c.kind.value, c.evict, c.members) for c in out.commands]  # the cookie profile merges into c1's
[('touch', (('cookie_id', 'ck1'),), ()), ('event', (), (('customer_id', 'c1'), ('cookie_id', 'ck1')))]
>>> [e.kind for e in out.identity_events]
['identifier_linked', 'identifier_linked', 'profile_merged']
>>> r.route_state(("cookie_id", "ck1"), {"events": 1}).profile_id == out.commands[1].profile_id
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Callable, Mapping, MutableMapping

from models.identity import (
    IdentityRules,
    IncrementalResolver,
    Node,
    Observation,
    PieceStep,
    ProfileChange,
    ResolverStore,
    canonical_profile_id,
    observation_of,
    resolve,
)
from models.erasure import ERASURE_REQUEST, Erased, PendingErasure, Tombstone, request_id_of, tombstone_key, tombstoned


class CommandKind(StrEnum):
    """What a :class:`ProfileCommand` asks of its profile (see the module docs)."""

    EVENT = "event"
    STATE = "state"
    TOUCH = "touch"
    JOURNEY = "journey"  # a moved part of a journey state (models.journeys), for the journeys stage
    TICK = "tick"  # no profile: carries event time forward when the input is idle
    ERASE = "erase"  # the profile is erased (models.erasure): remove its state and rows
    #: no profile: a ``journey.identity`` record (payload: its bytes) the router emits from a
    #: timer, where PyFlink cannot emit side outputs; the journeys stage passes it on
    IDENTITY = "identity"
    #: no profile: a feedback-topic record (payload: its bytes) the identity clock sends from a
    #: timer; the journeys stage passes it on to the feedback topic
    FEEDBACK = "feedback"
    #: for the identity clock only (models.identity_clock): an erasure request now pending at
    #: the home ``atom`` (``request``, ``at``), and one carried out or found void (``request``)
    ERASURE_PENDING = "erasure_pending"
    ERASURE_DONE = "erasure_done"


@dataclass(frozen=True)
class ProfileCommand:
    """One instruction for the profile operator's key ``profile_id`` (see the module docs).

    ``members`` and ``ghosts`` are set only when they changed (``members == ()``: the profile
    was merged away or split up and must be deleted). The wire form between the operators
    is :mod:`models.profile_commands`.
    """

    profile_id: str
    kind: CommandKind
    version: int
    atom: Node | None = None
    payload: Any = None  # "event": the event as the caller passed it; "state": the moved aggregate
    members: tuple[Node, ...] | None = None
    evict: tuple[Node, ...] = ()
    ghosts: tuple[str, ...] | None = None
    #: identifiers moved into this profile by this command's event, with the number of moved
    #: journey parts of each still on their way (the journeys stage waits for them)
    incoming: tuple[tuple[Node, int], ...] = ()
    #: event time of the command (the event's ``occurred_at``; for a tick, the time it declares;
    #: for an erase, the time the erasure takes effect)
    at: int = 0
    #: ``erase``: the request's id and the erased identifiers (on the component's first profile
    #: only; ``ghosts`` then lists every profile id whose rows go, see models.erasure.Erased)
    request: str | None = None
    erased: tuple[Node, ...] = ()
    #: the home of the raw component that sent the command (partitioned identity,
    #: :mod:`models.identity_partitioned`): what the profile evicts goes back there
    home: Node | None = None


@dataclass(frozen=True)
class IdentityEvent:
    """A ``journey.identity`` record (``schemas/identity_event.avsc``)."""

    kind: str  # identifier_linked | link_refused | profile_merged | profile_erased | identifier_shared
    profile_id: str
    reason: str
    event_id: str
    occurred_at: int
    from_profile_id: str | None = None
    identifier_type: str | None = None
    identifier_hash: str | None = None

    def to_record(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Routed:
    commands: tuple[ProfileCommand, ...]
    identity_events: tuple[IdentityEvent, ...]
    changes: tuple[ProfileChange, ...]
    resolved: bool  # False: every identifier was blocked (counted, not folded)
    erased: bool = False  # the event carried a tombstoned identifier: dropped (models.erasure)
    erasures: tuple[Erased, ...] = ()  # components erased by this call
    requested: bool = False  # the event is an erasure request, now pending


@dataclass
class RouterStore(ResolverStore):
    """The resolver's mappings plus, per piece (:func:`models.identity.piece_version`), its live
    profile ids."""

    live: MutableMapping[Node, tuple[str, ...]] = field(default_factory=dict)
    #: per identifier, journey parts evicted and not yet routed back (one per eviction)
    inflight: MutableMapping[Node, int] = field(default_factory=dict)
    #: erased identifiers by :func:`models.erasure.tombstone_key`, and erasure requests not yet due
    erased: MutableMapping[str, Tombstone] = field(default_factory=dict)
    pending: MutableMapping[str, PendingErasure] = field(default_factory=dict)
    #: partitioned identity (models.identity_partitioned): requests found due before their
    #: pending part reached this component (it is on its way in a move)
    due: MutableMapping[str, bool] = field(default_factory=dict)


class IdentityRouter:
    def __init__(self, rules: IdentityRules, store: RouterStore | None = None) -> None:
        self.store = store or RouterStore()
        self.resolver = IncrementalResolver(rules, self.store)

    def route_event(self, event: Mapping[str, Any], payload: Any = None) -> Routed:
        """Resolve a decoded NormalizedEvent and say which profiles must do what.

        ``payload`` travels unchanged in the ``event`` command (the job passes the Avro bytes,
        so the profile operator decodes them itself).
        """
        store, resolver = self.store, self.resolver
        ob = observation_of(event)
        kept = resolver.kept(ob)
        stone = tombstoned(kept, store.erased) if kept and store.erased else None
        if stone is not None:  # dropped before resolution; its other identifiers go too
            return self._erasure_routed(
                self.erase(kept, stone.request_id, str(event["event_id"]), int(event["occurred_at"]), closure=True),
                erased=True,
            )
        requested = False
        if event.get("event_type") == ERASURE_REQUEST and kept:
            rid = request_id_of(event)
            store.pending[rid] = PendingErasure(rid, str(event["event_id"]), int(event["occurred_at"]), kept)
            requested = True
        changes = tuple(resolver.add(ob))
        if not kept:
            return Routed((), (), changes, False)
        return self._routed(changes, event, kept[0], payload, requested)

    def learn_shared(self, learnt: Mapping[Node, str], event_id: str, at: int, announce: bool = False) -> Routed:
        """Identifiers found shared elsewhere (:meth:`IncrementalResolver.learn_shared`): the
        commands and records of the re-resolution (``event_id`` and ``at``: what caused it).
        ``announce``: a ``shared`` change for each one held here (the finding is this
        component's to announce: the locate stage found it from the claims; if this
        component found it too, in a race, it is announced twice)."""
        resolved = self.resolver.learn_shared(learnt)
        profile_of = self.store.profile_of
        found = [
            ProfileChange("shared", profile_of[n], members=frozenset({n}), reason=co)
            for n, co in sorted(learnt.items())
            if announce and n in profile_of
        ]
        changes = tuple(found + resolved)
        return self._routed(changes, {"event_id": event_id, "occurred_at": at}, None, None, False)

    def _routed(
        self,
        changes: tuple[ProfileChange, ...],
        event: Mapping[str, Any],
        atom: Node | None,
        payload: Any,
        requested: bool,
    ) -> Routed:
        """The commands and ``journey.identity`` records after a resolution step: ``event``
        goes to the profile of its ``atom`` (None: no event, a re-resolution only), every
        live profile of a touched piece hears the step's version, and the profiles that lost
        identifiers evict them."""
        store, resolver = self.store, self.resolver
        owner = None if atom is None else store.profile_of[atom]
        step = resolver.step
        changed_members: dict[str, tuple[Node, ...]] = {}
        evict: dict[str, set[Node]] = {}
        incoming: dict[str, dict[Node, int]] = {}
        for c in changes:
            if c.kind in ("created", "grown"):
                assert c.into is not None  # created and grown changes name their profile
                changed_members[c.into] = _sorted_members(store.members[c.into], resolver)
            elif c.kind in ("merged", "split"):
                old = c.from_ids[0]
                evict.setdefault(old, set()).update(c.members)
                changed_members[old] = _sorted_members(store.members.get(old, frozenset()), resolver)
                # every eviction sends one journey part per identifier, to the identifier's
                # profile now (a split spreads them over several: `into` names none, or the
                # profile they left)
                for n in c.members:
                    store.inflight[n] = store.inflight.get(n, 0) + 1
                    incoming.setdefault(store.profile_of[n], {})[n] = store.inflight[n]
        ghosts = regrouped_live(store, step, resolver.rules)
        commands = []
        for pid, (version, piece) in sorted(targets(store, step, evict, resolver.version_of).items()):
            commands.append(
                ProfileCommand(
                    profile_id=pid,
                    kind=CommandKind.EVENT if pid == owner else CommandKind.TOUCH,
                    version=version,
                    atom=atom if pid == owner else None,
                    payload=payload if pid == owner else None,
                    members=changed_members.get(pid),
                    evict=tuple(sorted(evict.get(pid, ()), key=resolver.rules.rank)),
                    ghosts=None if piece is None else ghosts.get(piece),
                    incoming=tuple(sorted(incoming.get(pid, {}).items())),
                    at=int(event["occurred_at"]),
                )
            )
        commands.sort(key=lambda c: (c.kind is CommandKind.EVENT, c.profile_id))
        return Routed(
            tuple(commands), identity_events(changes, event, store.profile_of), changes, True, requested=requested
        )

    # ---- erasure (models.erasure) ------------------------------------------------------------

    def next_erasure(self) -> int | None:
        """When the earliest pending erasure request takes effect (None: none pending)."""
        return min((p.at for p in self.store.pending.values()), default=None)

    def due_erasures(self, watermark: int) -> Routed:
        """Execute every pending erasure request at or before ``watermark``, oldest first."""
        due = sorted((p for p in self.store.pending.values() if p.at <= watermark), key=lambda p: (p.at, p.request_id))
        done: list[Erased] = []
        for p in due:
            del self.store.pending[p.request_id]
            done.extend(self.erase(p.nodes, p.request_id, p.event_id, p.at, closure=False))
        return self._erasure_routed(done)

    def erase(self, nodes: tuple[Node, ...], request_id: str, event_id: str, at: int, closure: bool) -> list[Erased]:
        """Remove the raw component of each of ``nodes`` from the graph and tombstone its
        identifiers (an identifier the graph does not know is tombstoned alone)."""
        store, resolver = self.store, self.resolver
        stone = Tombstone(request_id, at)
        out = []
        for n in nodes:
            if tombstone_key(n) in store.erased:
                continue
            if n not in store.parent:
                store.erased[tombstone_key(n)] = stone
                continue
            root = resolver.root_of(n)
            comp = sorted(resolver.component_nodes(root), key=resolver.rules.rank)
            signatures = store.pop_signatures(root)
            for link in resolve([Observation("", sig) for sig in sorted(signatures)], resolver.rules).refused:
                store.refused.pop(link, None)
            live = tuple(sorted({store.profile_of[m] for m in comp}))
            store.events.pop(root, None)
            store.component_shared.pop(root, None)
            for sig in signatures:
                store.signature_events.pop(sig, None)
            for p in {store.piece[m] for m in comp}:
                store.live.pop(p, None)
                store.piece_events.pop(p, None)
            for pid in live:
                store.members.pop(pid, None)
            for m in comp:
                for mapping in (store.parent, store.size, store.profile_of, store.inflight, store.shared, store.piece):
                    mapping.pop(m, None)
                store.erased[tombstone_key(m)] = stone
            ids = tuple(sorted(set(live) | {canonical_profile_id([m], resolver.rules) for m in comp}))
            out.append(Erased(request_id, event_id, at, tuple(live), ids, tuple(comp), closure))
        return out

    @staticmethod
    def _erasure_routed(done: list[Erased], erased: bool = False) -> Routed:
        """The commands and ``profile_erased`` records of executed erasures."""
        commands: list[ProfileCommand] = []
        events: list[IdentityEvent] = []
        for e in done:
            for i, pid in enumerate(e.profile_ids):
                commands.append(
                    ProfileCommand(
                        profile_id=pid,
                        kind=CommandKind.ERASE,
                        version=i,  # the profile's place in the component (audit rows)
                        ghosts=e.ids if i == 0 else (pid,),
                        erased=e.nodes if i == 0 else (),
                        request=e.request_id,
                        at=e.at,
                    )
                )
            reason = "erased_identifier" if e.closure else "erasure_request"
            events.extend(IdentityEvent("profile_erased", pid, reason, e.event_id, e.at) for pid in e.ids)
        return Routed(tuple(commands), tuple(events), (), True, erased=erased, erasures=tuple(done))

    def route_journey(self, node: Node, part: bytes) -> ProfileCommand | None:
        """Hand a moved journey part to ``node``'s profile now (None: an identifier the graph
        never saw)."""
        pid = self.store.profile_of.get(node)
        left = self.store.inflight.get(node, 0) - 1
        if left > 0:
            self.store.inflight[node] = left
        elif node in self.store.inflight:
            del self.store.inflight[node]
        if pid is None:
            return None
        return ProfileCommand(
            profile_id=pid, kind=CommandKind.JOURNEY, version=self.resolver.version_of(node), atom=node, payload=part
        )

    def route_state(self, atom: Node, aggregate: Any) -> ProfileCommand | None:
        """Tag an evicted atom's aggregate (passed through as given) with the atom's current
        profile (None: an identifier the graph never saw)."""
        pid = self.store.profile_of.get(atom)
        if pid is None:
            return None
        return ProfileCommand(
            profile_id=pid, kind=CommandKind.STATE, version=self.resolver.version_of(atom), atom=atom, payload=aggregate
        )


def regrouped_live(store: RouterStore, step: PieceStep, rules: IdentityRules) -> dict[Node, tuple[str, ...]]:
    """After a re-resolution (``step.regrouped``): the live profiles of every piece of the
    component, kept again in ``store.live``, and the ghosts of each touched piece (the ids
    its identifiers alone would have, minus its live ids: see the module docs)."""
    if step.regrouped is None:
        return {}
    for p in step.dropped:
        store.live.pop(p, None)
    ghosts = {}
    for p, nodes in step.regrouped.items():
        live = tuple(sorted({store.profile_of[n] for n in nodes}))
        store.live[p] = live
        if p in step.touched:
            ghosts[p] = tuple(sorted({canonical_profile_id([n], rules) for n in nodes} - set(live)))
    return ghosts


def targets(
    store: RouterStore, step: PieceStep, evict: Mapping[str, set[Node]], version_of: Callable[[Node], int]
) -> dict[str, tuple[int, Node | None]]:
    """Every profile that hears of an event, with its version and piece: the live profiles of
    the touched pieces (their piece's version), and the profiles that lost identifiers and
    are no longer live (the highest version of what they lost, piece None)."""
    out: dict[str, tuple[int, Node | None]] = {}
    for p in step.touched:
        v = version_of(p)
        for pid in store.live[p]:
            out[pid] = (v, p)
    for pid, nodes in evict.items():
        if pid not in out:
            out[pid] = (max(version_of(n) for n in nodes), None)
    return out


def _sorted_members(members: frozenset[Node], resolver: IncrementalResolver) -> tuple[Node, ...]:
    return tuple(sorted(members, key=resolver.rules.rank))


def identity_events(
    changes: tuple[ProfileChange, ...], event: Mapping[str, Any], profile_of: Mapping[Node, str]
) -> tuple[IdentityEvent, ...]:
    """``journey.identity`` records for one event's resolution changes.

    ``identifier_linked`` for every identifier that joined a profile (created, grown, or moved
    there by a merge or split: a consumer of these alone knows every identifier's profile),
    ``profile_merged`` (from -> into) when a whole profile joined another, ``link_refused``
    for a link the rules refused (``profile_id`` is the first identifier's profile),
    ``identifier_shared`` for an identifier that became shared (``reason``
    ``shared:<co-observed type>``; ``profile_id`` is its own profile from now on).
    """
    out = []
    eid, at = event["event_id"], event["occurred_at"]
    for c in changes:
        if c.kind in ("created", "grown"):
            assert c.into is not None
            for t, v in sorted(c.members):
                out.append(
                    IdentityEvent("identifier_linked", c.into, c.kind, eid, at, identifier_type=t, identifier_hash=v)
                )
        elif c.kind == "merged":
            assert c.into is not None
            out.append(IdentityEvent("profile_merged", c.into, "linked", eid, at, from_profile_id=c.from_ids[0]))
        elif c.kind == "shared":
            assert c.into is not None
            ((t, v),) = c.members
            out.append(
                IdentityEvent(
                    "identifier_shared", c.into, f"shared:{c.reason}", eid, at, identifier_type=t, identifier_hash=v
                )
            )
        elif c.kind == "refused":
            link = c.link
            assert link is not None  # a refusal names its link
            out.append(
                IdentityEvent(
                    "link_refused",
                    profile_of[link.a],
                    link.reason,
                    eid,
                    at,
                    identifier_type=link.b[0],
                    identifier_hash=link.b[1],
                )
            )
    return tuple(out)
