"""The profile stage: one canonical profile's data, folded from the router's commands (pure).

A profile holds the aggregates of its **atoms** (one per identifier that was some event's
highest-priority identifier) and their merge, the profile aggregate. Atoms never split, so
when identity resolution moves identifiers to another profile (a merge or a split), their
atoms move whole: :meth:`ProfileFold.apply` removes them and returns them for the feedback
topic, and the router hands them to the surviving profile as ``state`` commands. The
aggregates are a commutative monoid (:class:`models.profile.ProfileAggregate`), so the end
result does not depend on when the moved state arrives: nothing lost, nothing counted twice.

Row versions (Cassandra ``USING TIMESTAMP``)
--------------------------------------------
:func:`row_version` = ``2**60 + version * 2**22 + events_folded``: the highest version of the
router's commands for the profile (:func:`models.identity.piece_version`: the shared
identifiers of its raw identity component, then the events of its piece; it only grows, and
its final value does not depend on the order) and, within one version, the events folded into
the row so far (grows as moved state arrives; at most the piece's events). Writes use
``2 * version + 1`` and deletions ``2 * version``, so within one version a write beats a
deletion. A live profile's last write carries its piece's final version and all its events,
so it beats every write of any earlier moment, including writes made before a failure under
another arrival order. The ``2**60`` puts every row version above those of the releases
before piece versions (``component_events * 2**31 + folded``, below ``2**60`` for components
of fewer than ``2**29`` events), whose rows the first write of this release replaces.

Examples
--------
>>> from models.identity_router import CommandKind, ProfileCommand
>>> state = FoldState()
>>> f = ProfileFold("p-1", {}, state)
>>> ev = {"event_id": "e1", "event_type": "page_view", "channel": "web", "occurred_at": 1_700_000_000_000,
...       "identifiers": {"cookie_id": "ck1"}, "payload": ("journey.v1.PageView", {"url": "/"})}
>>> f.apply(ProfileCommand(profile_id="p-1", kind=CommandKind.EVENT, version=1, atom=("cookie_id", "ck1"),
...                        payload=ev, members=(("cookie_id", "ck1"),)))
[]
>>> w = f.flush()
>>> (w.profile.events, w.profile.identifiers, w.version == row_version(1, 1), state.dirty)
(1, {'cookie_id': ('ck1',)}, True, False)
>>> f.apply(ProfileCommand(profile_id="p-1", kind=CommandKind.TOUCH, version=2, members=(),
...                        evict=(("cookie_id", "ck1"),)))[0][1].events
1
>>> f.flush().profile is None  # merged away: delete the row
True
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, MutableMapping

from models.identity import PIECE_EVENT_BITS, Node
from models.identity_router import CommandKind, ProfileCommand
from models.profile import DEFAULT_HALF_LIFE_MS, ProfileAggregate

FOLDED_BITS = PIECE_EVENT_BITS  # the events folded into a profile are at most its piece's
ROW_VERSION_EPOCH = 1 << 60  # above the row versions of the releases before piece versions
VERSION_BITS = 38  # piece_version: 16 bits of shared identifiers, 22 of piece events


def row_version(version: int, folded: int) -> int:
    """``2**60 + version * 2**22 + folded`` (see the module docs); below ``2**61``, so writes
    (``2 * v + 1``) stay below the erasure's timestamp (``models.erasure.ERASED_TIMESTAMP``).

    >>> row_version(3, 2) > row_version(3, 1) > row_version(2, 1_000)
    True
    """
    if not 0 <= version < (1 << VERSION_BITS) or not 0 <= folded < (1 << FOLDED_BITS):
        raise ValueError(f"version out of range: version={version}, folded={folded}")
    return ROW_VERSION_EPOCH | (version << FOLDED_BITS) | folded


@dataclass
class FoldState:
    """All of one profile's state, kept in one Flink ValueState record (one read and one
    write per command): its atoms, its identity as the router last said, and where its
    write lifecycle stands (:mod:`models.write_lifecycle`)."""

    members: tuple[Node, ...] = ()
    ghosts: tuple[str, ...] = ()
    version: int = 0  # the highest piece version of the commands (models.identity.piece_version)
    folded: int = 0  # events in the atoms (= the profile aggregate's ``events``)
    dirty: bool = False  # changed since the last write was issued
    writing: int | None = None  # version of a write issued and not yet confirmed by the sink
    timers: tuple[int, ...] = ()  # pending lifecycle timers (models.write_lifecycle)
    #: an erasure (models.erasure) to write: its request, when it took effect, the profile's
    #: place in its component and the erased identifiers (first profile only)
    erasure: ErasureWrite | None = None
    #: atom -> aggregate (usually one to three). None: a release before this one kept them in
    #: the MapState ``profile-atoms``; the operator moves them here on the profile's next command
    atoms: dict[Node, ProfileAggregate] | None = None
    next_write_at: int = 0  # processing time before which no write may be issued (coalescing)


@dataclass(frozen=True)
class ErasureWrite:
    """What an erased profile's last write removes (:data:`models.erasure.ERASED_TIMESTAMP`):
    its row and ``ghosts`` (every id of the component), the ``identity_links`` of ``nodes``,
    and it records their tombstones (the erasure ledger) and the audit row of ``part``."""

    request_id: str
    at: int
    part: int
    nodes: tuple[Node, ...] = ()


@dataclass(frozen=True)
class ProfileWrite:
    """What to write for one profile: the row (None: delete it) and ghost ids to delete."""

    profile_id: str
    version: int
    profile: ProfileAggregate | None
    ghosts: tuple[str, ...]
    ghost_version: int
    erasure: ErasureWrite | None = None  # set: an erased profile (everything deleted for good)


class ProfileFold:
    """Apply :class:`~models.identity_router.ProfileCommand` s to one profile.

    ``atoms`` is any mutable mapping of atom -> :class:`~models.profile.ProfileAggregate`
    (the operator passes ``state.atoms``, so both are stored as one record); ``state`` is
    mutated in place (the operator stores it back). ``decode`` turns an ``event`` command's
    payload into a decoded event. Per event only the event's atom changes; the profile
    aggregate (the merge of the atoms, usually one to three) is computed when the row is
    written.
    """

    def __init__(
        self,
        profile_id: str,
        atoms: MutableMapping[Node, ProfileAggregate],
        state: FoldState,
        half_life_ms: int = DEFAULT_HALF_LIFE_MS,
        decode: Callable[[Any], Mapping[str, Any]] = lambda e: e,
    ) -> None:
        self.profile_id, self.atoms, self.state = profile_id, atoms, state
        self.half_life_ms, self.decode = half_life_ms, decode

    def apply(self, cmd: ProfileCommand) -> list[tuple[Node, ProfileAggregate]]:
        """Apply one command; returns the evicted atoms ``(atom, aggregate)`` to send back."""
        if cmd.profile_id != self.profile_id:
            raise ValueError(f"command for {cmd.profile_id!r} applied to profile {self.profile_id!r}")
        st, pid = self.state, self.profile_id
        if cmd.kind is CommandKind.ERASE:  # nothing of the profile is kept, nothing moves
            for atom in list(self.atoms):
                del self.atoms[atom]
            ghosts, prev = tuple(cmd.ghosts or (pid,)), st.erasure
            if prev is None:
                st.erasure = ErasureWrite(cmd.request or "", cmd.at, cmd.version, cmd.erased)
            else:  # erased again before its write (a shared identifier's piece lives at every
                # home that holds it, and each erases it): the write removes what both name
                ghosts = tuple(sorted({*st.ghosts, *ghosts}))
                st.erasure = replace(prev, nodes=tuple(sorted({*prev.nodes, *cmd.erased})))
            st.members, st.ghosts, st.folded, st.dirty = (), ghosts, 0, True
            return []
        if st.erasure is not None:
            return []  # (cannot happen: the router drops what an erased profile would get)
        st.version = max(st.version, cmd.version)
        if cmd.members is not None:
            st.members = tuple(cmd.members)
        if cmd.ghosts is not None:
            st.ghosts = tuple(cmd.ghosts)
        evicted = [(n, self.atoms.pop(n)) for n in cmd.evict if n in self.atoms]
        st.folded -= sum(agg.events for _, agg in evicted)
        kind = CommandKind(cmd.kind)
        if kind is CommandKind.EVENT:
            delta = ProfileAggregate.from_event(self.decode(cmd.payload), pid, self.half_life_ms)
        elif kind is CommandKind.STATE:
            delta = (
                cmd.payload if isinstance(cmd.payload, ProfileAggregate) else ProfileAggregate.from_dict(cmd.payload)
            )
        else:
            delta = None
        if delta is not None:
            assert cmd.atom is not None, f"{kind.value} command without an atom"
            before = self.atoms.get(cmd.atom)
            self.atoms[cmd.atom] = delta if before is None else before.merge(delta, pid)
            st.folded += delta.events
        st.dirty = True
        return evicted

    def profile(self) -> ProfileAggregate:
        """The merge of the atoms, with the members as identifiers."""
        pid = self.profile_id
        agg = ProfileAggregate.empty(pid)
        for node in sorted(self.atoms):
            agg = agg.merge(self.atoms[node], pid)
        ids: dict[str, list[str]] = {}
        for t, v in self.state.members:
            ids.setdefault(t, []).append(v)
        return dataclasses.replace(agg, identifiers={t: tuple(sorted(vs)) for t, vs in sorted(ids.items())})

    def flush(self) -> ProfileWrite:
        """The row to write now (the profile's current state); clears ``dirty``."""
        st = self.state
        st.dirty = False
        ghost_version = row_version(st.version, 0)
        if st.erasure is not None:
            return ProfileWrite(self.profile_id, ghost_version, None, st.ghosts, ghost_version, st.erasure)
        if not st.members:
            return ProfileWrite(self.profile_id, ghost_version, None, (), ghost_version)
        profile = self.profile()
        if profile.events != st.folded:
            raise AssertionError(f"profile {self.profile_id}: atoms hold {profile.events} events, counted {st.folded}")
        return ProfileWrite(self.profile_id, row_version(st.version, st.folded), profile, st.ghosts, ghost_version)
