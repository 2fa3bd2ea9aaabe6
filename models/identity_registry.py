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
    a joining component's entry.

Each root tells its homes the new ``S`` (:class:`Told`) whenever it grows: a new shared
identifier, or a join that brings identifiers the other side lacked (then only the side that
lacked them is told). A home keeps the highest ``S`` it was told. ``S`` only grows, and at the
end every registered home has been told its component's count, whatever the order and delays
of the messages (``tests/unit/test_identity_registry.py``). The fan-out is the one cost left
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
(Told(home=('customer_id', 'c1'), shared=1),)
>>> at(tablet, Register(("customer_id", "c2"))).told
()
>>> at(tablet, Counted(tablet)).told
(Told(home=('customer_id', 'c2'), shared=1),)
>>> (fwd,) = at(kiosk, Join(tablet)).forward                        # the kiosk's key ranks better:
>>> fwd                                                             # the tablet's component comes here
Forward(address=('device_id', 'tab-7'), message=Join(other=('device_id', 'kiosk-1')))
>>> (move,) = at(tablet, fwd.message).forward
>>> move.message.homes, reg[tablet].forward
(frozenset({('customer_id', 'c2')}), ('device_id', 'kiosk-1'))
>>> at(kiosk, move.message).told                                    # both homes now count 2
(Told(home=('customer_id', 'c1'), shared=2), Told(home=('customer_id', 'c2'), shared=2))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import MutableMapping, Union

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
class Absorb:
    """A component's whole entry, for the root it joined."""

    shared: frozenset[Node]
    homes: frozenset[Node]


RegistryMessage = Union[Counted, Register, Join, Absorb]


@dataclass(frozen=True)
class Forward:
    """A registry message for the key ``address`` (through the feedback topic in the job)."""

    address: Node
    message: RegistryMessage


@dataclass(frozen=True)
class Told:
    """For the home ``home``: its raw component has ``shared`` shared identifiers (so far)."""

    home: Node
    shared: int


@dataclass
class RegistryState:
    """One key's state: a forward pointer, or (a root) the component's counted shared
    identifiers and its registered homes. ``shared`` and ``homes`` are any mutable mappings
    (MapStates in the job: a registration or a count is one entry, whatever the size)."""

    forward: Node | None = None
    shared: MutableMapping[Node, bool] = field(default_factory=dict)
    homes: MutableMapping[Node, bool] = field(default_factory=dict)


@dataclass(frozen=True)
class RegistryOutput:
    told: tuple[Told, ...] = ()
    forward: tuple[Forward, ...] = ()


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
            return RegistryOutput(told=(Told(msg.home, len(st.shared)),) if st.shared else ())
        if isinstance(msg, Join):
            return self._join(msg.other)
        if isinstance(msg, Absorb):
            return self._absorb(msg)
        raise TypeError(f"a registry key does not take {type(msg).__name__}")

    def _join(self, other: Node) -> RegistryOutput:
        if other == self.key:
            return RegistryOutput()
        if self.rules.rank(self.key) < self.rules.rank(other):  # this root ranks better: the other comes here
            return RegistryOutput(forward=(Forward(other, Join(self.key)),))
        st = self.state
        entry = Absorb(frozenset(st.shared), frozenset(st.homes))
        st.forward = other
        st.shared.clear()
        st.homes.clear()
        return RegistryOutput(forward=(Forward(other, entry),))

    def _absorb(self, msg: Absorb) -> RegistryOutput:
        st = self.state
        theirs = len(msg.shared)
        new_homes = [h for h in sorted(msg.homes) if h not in st.homes]
        for h in new_homes:
            st.homes[h] = True
        out = self._count(tuple(sorted(msg.shared)), new_homes)
        # the homes that came with the entry (the count told only this root's): told if behind
        total = len(st.shared)
        extra = tuple(Told(h, total) for h in new_homes if total > theirs)
        return RegistryOutput(out.told + extra, out.forward)

    def _count(self, nodes: tuple[Node, ...], quiet: list[Node] | tuple[Node, ...]) -> RegistryOutput:
        """Count ``nodes``; if ``S`` grew, tell every home but ``quiet`` (the caller's)."""
        st = self.state
        new = [n for n in nodes if n not in st.shared]
        if not new:
            return RegistryOutput()
        for n in new:
            st.shared[n] = True
        total, skip = len(st.shared), set(quiet)
        return RegistryOutput(told=tuple(Told(h, total) for h in sorted(st.homes) if h not in skip))
