"""The raw-component registry of the supernode design (issue 16; pure, not wired into the job yet).

A profile's version starts with ``S``, the number of shared identifiers of its raw identity
component (:func:`models.identity.piece_version`). Once homes hold *linked* components instead
of raw ones (``docs/identity.md``, "Supernodes"), no home sees a whole raw component: a store
kiosk's thousands of customers live at thousands of homes. The registry keeps ``S`` for them.

Only raw components with a shared identifier need an entry (``S = 0`` is what a home assumes),
so a registry key is a shared identifier. Each key (a keyed record in the job, like a home) is
either a **root**, holding the component's counted shared identifiers and its registered
homes, or a **forward** pointer to the root it joined. Messages, each addressed to a key:

``Counted(node)``
    a home found ``node`` shared in this component: counted once (a second home finding the
    same identifier, during a race, changes nothing);
``Register(home)``
    ``home`` belongs to this component: it is told ``S`` now and whenever it grows;
``Join(other)``
    this component and the one of key ``other`` are one (an event linked them): the root
    that ranks lower (:meth:`models.identity.IdentityRules.rank`) sends its whole entry to
    the other (``Absorb``) and forwards from then on, so forward chains end, as with homes;
``Absorb(shared, homes)``
    a joining component's entry;
``EraseAll(request)``
    the raw component was erased (its key's identifier was tombstoned): every registered home
    is erased, and so is every home that registers later or arrives with a joining entry
    (erasure takes the raw component, ``docs/privacy.md``, wherever its homes are).

Each root tells its homes the component's shared identifiers (:class:`Told`) whenever ``S``
grows: a new shared identifier, or a join that brings identifiers the other side lacked (then
only the side that lacked them is told). A home keeps the union of what it was told and what
it found shared itself (:func:`learnt`). The set only grows, and at the end every
registered home has been told its component's whole set, whatever the order and delays of the
messages (``tests/unit/test_identity_registry.py``). The fan-out is the one cost left
that grows with a component: at most once per shared identifier per home, so amortised over
the events.

Examples
--------
>>> reg, rules = {}, IdentityRules()
>>> kiosk, tablet = ("device_id", "kiosk-1"), ("device_id", "tab-7")
>>> def at(key, msg):
...     return RegistryKey(rules, key, reg.setdefault(key, RegistryState())).on_message(msg)
>>> at(kiosk, Register(("customer_id", "c1"))).told               # S = 0 so far: nothing to tell
()
>>> at(kiosk, Counted(kiosk)).told
(Told(home=('customer_id', 'c1'), shared=frozenset({('device_id', 'kiosk-1')})),)
>>> at(tablet, Register(("customer_id", "c2"))).told
()
>>> [len(t.shared) for t in at(tablet, Counted(tablet)).told]
[1]
>>> (fwd,) = at(kiosk, Join(tablet)).forward                        # the kiosk's key ranks better:
>>> fwd                                                             # the tablet's component comes here
Forward(address=('device_id', 'tab-7'), message=Join(other=('device_id', 'kiosk-1')))
>>> (move,) = at(tablet, fwd.message).forward
>>> move.message.homes, reg[tablet].forward
(frozenset({('customer_id', 'c2')}), ('device_id', 'kiosk-1'))
>>> [(t.home[1], len(t.shared)) for t in at(kiosk, move.message).told]  # both homes now count 2
[('c1', 2), ('c2', 2)]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import AbstractSet, MutableMapping, Union

from models.identity import IdentityRules, Node


@dataclass(frozen=True)
class Counted:
    """``node`` is a shared identifier of the component at this key."""

    node: Node


@dataclass(frozen=True)
class Register:
    """``home`` is in the component at this key: tell it ``S``, now and when it grows."""

    home: Node


@dataclass(frozen=True)
class Join:
    """The component at this key and the component at key ``other`` are one."""

    other: Node


@dataclass(frozen=True)
class EraseAll:
    """The raw component was erased (request ``request_id``, carried out at event time ``at``;
    ``docs/privacy.md``): every home registered with it is erased, now and whenever one
    registers later (sent by the locate stage when it tombstones a key's identifier)."""

    request_id: str
    event_id: str
    at: int


@dataclass(frozen=True)
class Absorb:
    """A component's whole entry, for the root it joined (``erased``: the joining root was)."""

    shared: frozenset[Node]
    homes: frozenset[Node]
    erased: EraseAll | None = None


RegistryMessage = Union[Counted, Register, Join, Absorb, EraseAll]


@dataclass(frozen=True)
class Forward:
    """A registry message for the key ``address`` (through the feedback topic in the job)."""

    address: Node
    message: RegistryMessage


@dataclass(frozen=True)
class Told:
    """For the home ``home``: its raw component's shared identifiers (so far).

    The set, not only its size ``S``: a home may hold one of them and still link through it (it
    joined the identifier before the identifier became shared elsewhere); told the set, it
    stops linking through it at once, so ``S`` never counts an identifier the home still links
    through, and a home's own new shared identifier, which no registry can have counted yet,
    raises its ``S`` by one (the argument is in :func:`learnt`)."""

    home: Node
    shared: frozenset[Node]


@dataclass
class RegistryState:
    """One key's state: a forward pointer, or (a root) the component's counted shared
    identifiers and its registered homes. ``shared`` and ``homes`` are any mutable mappings
    (MapStates in the job: a registration or a count is one entry, whatever the size)."""

    forward: Node | None = None
    shared: MutableMapping[Node, bool] = field(default_factory=dict)
    homes: MutableMapping[Node, bool] = field(default_factory=dict)
    #: the raw component was erased: every home that registers is erased
    erased: EraseAll | None = None


@dataclass(frozen=True)
class RegistryOutput:
    """``told``: tells for homes; ``forward``: messages for other keys; ``erase``: homes to
    erase for the request ``erasure``."""

    told: tuple[Told, ...] = ()
    forward: tuple[Forward, ...] = ()
    erase: tuple[Node, ...] = ()
    erasure: EraseAll | None = None


@dataclass
class RegistryKey:
    """The registry's logic for the key ``key`` (state mutated in place)."""

    rules: IdentityRules
    key: Node
    state: RegistryState

    def on_message(self, msg: RegistryMessage) -> RegistryOutput:
        st = self.state
        if st.forward is not None:  # joined another root: everything goes there
            if isinstance(msg, Join) and msg.other == st.forward:
                return RegistryOutput()
            return RegistryOutput(forward=(Forward(st.forward, msg),))
        if isinstance(msg, Counted):
            return self._count((msg.node,), ())
        if isinstance(msg, Register):
            if msg.home in st.homes:
                return RegistryOutput()
            st.homes[msg.home] = True
            if st.erased is not None:
                return RegistryOutput(erase=(msg.home,), erasure=st.erased)
            return RegistryOutput(told=(Told(msg.home, frozenset(st.shared)),) if st.shared else ())
        if isinstance(msg, Join):
            return self._join(msg.other)
        if isinstance(msg, Absorb):
            return self._absorb(msg)
        if isinstance(msg, EraseAll):
            if st.erased is not None:
                return RegistryOutput()
            st.erased = msg
            return RegistryOutput(erase=tuple(sorted(st.homes)), erasure=msg)
        raise TypeError(f"a registry key does not take {type(msg).__name__}")

    def _join(self, other: Node) -> RegistryOutput:
        if other == self.key:
            return RegistryOutput()
        if self.rules.rank(self.key) < self.rules.rank(other):  # this root ranks better: the other comes here
            return RegistryOutput(forward=(Forward(other, Join(self.key)),))
        st = self.state
        entry = Absorb(frozenset(st.shared), frozenset(st.homes), st.erased)
        st.forward, st.erased = other, None
        st.shared.clear()
        st.homes.clear()
        return RegistryOutput(forward=(Forward(other, entry),))

    def _absorb(self, msg: Absorb) -> RegistryOutput:
        st = self.state
        theirs = len(msg.shared)
        new_homes = [h for h in sorted(msg.homes) if h not in st.homes]
        if st.erased is None and msg.erased is not None:  # the joining side was erased: so is all of this
            old_homes = tuple(sorted(st.homes))
            st.erased = msg.erased
            for h in new_homes:
                st.homes[h] = True
            self._count(tuple(sorted(msg.shared)), ())
            return RegistryOutput(erase=old_homes, erasure=st.erased)
        for h in new_homes:
            st.homes[h] = True
        if st.erased is not None:  # the joining side's homes are erased with this component
            self._count(tuple(sorted(msg.shared)), ())
            return RegistryOutput(erase=tuple(new_homes), erasure=st.erased)
        out = self._count(tuple(sorted(msg.shared)), new_homes)
        # the homes that came with the entry (the count told only this root's): told if behind
        total = frozenset(st.shared)
        extra = tuple(Told(h, total) for h in new_homes if len(total) > theirs)
        return RegistryOutput(out.told + extra, out.forward)

    def _count(self, nodes: tuple[Node, ...], quiet: list[Node] | tuple[Node, ...]) -> RegistryOutput:
        """Count ``nodes``; if ``S`` grew, tell every home but ``quiet`` (the caller's)."""
        st = self.state
        new = [n for n in nodes if n not in st.shared]
        if not new:
            return RegistryOutput()
        for n in new:
            st.shared[n] = True
        total, skip = frozenset(st.shared), set(quiet)
        return RegistryOutput(told=tuple(Told(h, total) for h in sorted(st.homes) if h not in skip))


def learnt(
    home: Node, known: AbstractSet[Node], new: AbstractSet[Node], found: AbstractSet[Node]
) -> tuple[Forward, ...]:
    """The registry messages of a home that learns the shared identifiers ``new`` of its raw
    component (``known``: those it knew before; ``found``: those of ``new`` it found shared
    itself, their limit passed among its own signatures, which no key can have counted yet).

    Each new identifier's key counts it (if found here) and registers the home, and joins the
    component's first known key, so every key of a raw component ends in one registry
    component: the keys of a raw component are its shared identifiers, and the component is
    connected through homes, each holding some of them.

    Why a home's ``S = len(known)`` versions its profiles (:func:`models.identity.piece_version`)
    with the homes of one raw component spread over many keys: ``known`` is a subset of the
    raw component's final shared set (an identifier is found shared only past its limit, which
    more events cannot undo; a claim is answered shared only for one found; the registry counts
    only found ones), so ``S`` is at most the final count; it ends equal to it (every home
    holding a shared identifier registers, and the registry tells every registered home the
    whole set); and a home's piece shrinks only when it stops linking through an identifier,
    which is then new to ``known``, so ``S`` grows at that step. Hence on any prefix of any order
    a profile's version is at most its final one, as with the count over a whole component.
    The set, not a count, must be told: a count cannot tell a home whether an identifier it
    still links through is among those counted.

    >>> kiosk, tablet, c1 = ("device_id", "kiosk-1"), ("device_id", "tab-7"), ("customer_id", "c1")
    >>> learnt(c1, set(), {kiosk}, {kiosk})
    (Forward(address=('device_id', 'kiosk-1'), message=Counted(node=('device_id', 'kiosk-1'))), Forward(address=('device_id', 'kiosk-1'), message=Register(home=('customer_id', 'c1'))))
    >>> [(f.address[1], type(f.message).__name__) for f in learnt(c1, {kiosk}, {tablet}, set())]
    [('tab-7', 'Register'), ('tab-7', 'Join')]
    """
    out: list[Forward] = []
    first = min(known) if known else None
    for n in sorted(new - known):
        if n in found:
            out.append(Forward(n, Counted(n)))
        out.append(Forward(n, Register(home)))
        if first is None:
            first = n
        else:
            out.append(Forward(n, Join(first)))
    return tuple(out)
