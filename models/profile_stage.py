"""Identity resolution + unified profiles, one event at a time (pure; the Flink operator wraps it).

Each event is folded into the aggregate of its **atom**: its highest-priority non-blocked
identifier. Atoms never merge or split, profiles do: a profile's aggregate is the
:meth:`~models.profile.ProfileAggregate.merge` of the atoms of its member identifiers. So when
identity resolution merges two profiles (or splits one because a cluster became
ambiguous), the profiles are recomputed from atoms: nothing lost, nothing counted twice, and
the result is independent of arrival order (the monoid laws + :class:`IncrementalResolver`).

Every output row carries a version: the number of events seen by the profile's raw identity
component. It only grows (components only merge), and replaying the same events reproduces
it, so it is the Cassandra ``USING TIMESTAMP``: a stale replay never overwrites a newer row.

Examples
--------
>>> stage = ProfileStage(IdentityRules())
>>> ev = {"event_id": "e1", "event_type": "page_view", "channel": "web", "occurred_at": 1_700_000_000_000,
...       "identifiers": {"cookie_id": "ck1", "customer_id": None, "email_hash": None, "phone_hash": None,
...                       "device_id": None, "loyalty_id": None},
...       "payload": ("journey.v1.PageView", {"url": "/", "referrer": None, "title": None})}
>>> out = stage.process(ev)
>>> [(r.aggregate.events, r.version) for r in out.rows]
[(1, 1)]
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, MutableMapping

from models.identity import (IdentityRules, IncrementalResolver, Node, ProfileChange, ResolverStore,
                             observation_of)
from models.profile import DEFAULT_HALF_LIFE_MS, ProfileAggregate


@dataclass
class ProfileStageStore(ResolverStore):
    """The resolver's mappings plus the aggregates (as ``to_dict()`` values) per atom and profile."""

    atoms: MutableMapping[Node, dict[str, Any]] = field(default_factory=dict)
    profiles: MutableMapping[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class ProfileRow:
    """A profile's current state; ``aggregate.identifiers`` are its resolved members."""

    profile_id: str
    aggregate: ProfileAggregate
    version: int


@dataclass(frozen=True)
class StageResult:
    rows: tuple[ProfileRow, ...]
    deleted: tuple[tuple[str, int], ...]  # (profile id merged or split away, version)
    changes: tuple[ProfileChange, ...]
    resolved: bool  # False: every identifier of the event was blocked (counted, not folded)


def members_by_type(members: Iterable[Node]) -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {}
    for t, v in members:
        out.setdefault(t, []).append(v)
    return {t: tuple(sorted(vs)) for t, vs in sorted(out.items())}


class ProfileStage:
    """Resolve the event's identity, fold it into its atom, and return the touched profiles."""

    def __init__(self, rules: IdentityRules, store: ProfileStageStore | None = None,
                 half_life_ms: int = DEFAULT_HALF_LIFE_MS) -> None:
        self.store = store or ProfileStageStore()
        self.resolver = IncrementalResolver(rules, self.store)
        self.half_life_ms = half_life_ms

    def process(self, event: Mapping[str, Any]) -> StageResult:
        ob = observation_of(event)
        kept = self.resolver.kept(ob)
        changes = tuple(self.resolver.add(ob))
        if not kept:
            return StageResult((), (), (), False)
        store = self.store
        atom = kept[0]
        pid = store.profile_of[atom]
        delta = ProfileAggregate.from_event(event, pid, self.half_life_ms)
        before = store.atoms.get(atom)
        store.atoms[atom] = (delta if before is None else ProfileAggregate.from_dict(before).merge(delta, pid)).to_dict()
        vanished = sorted({c.from_ids[0] for c in changes if c.from_ids and c.from_ids[0] not in store.members})
        touched = {pid} | {c.into for c in changes if c.into is not None and c.into in store.members}
        touched |= {c.from_ids[0] for c in changes if c.kind == "split" and c.from_ids[0] in store.members}
        if not changes and pid in store.profiles:
            store.profiles[pid] = ProfileAggregate.from_dict(store.profiles[pid]).merge(delta, pid).to_dict()
        else:
            for p in touched:
                store.profiles[p] = self._from_atoms(p).to_dict()
        for v in vanished:
            store.profiles.pop(v, None)
        version = self.resolver.version_of(atom)
        rows = tuple(self._row(p, version) for p in sorted(touched))
        return StageResult(rows, tuple((v, version) for v in vanished), changes, True)

    def _from_atoms(self, pid: str) -> ProfileAggregate:
        agg = ProfileAggregate.empty(pid)
        for node in sorted(self.store.members[pid]):
            a = self.store.atoms.get(node)
            if a is not None:
                agg = agg.merge(ProfileAggregate.from_dict(a), pid)
        return agg

    def _row(self, pid: str, version: int) -> ProfileRow:
        agg = ProfileAggregate.from_dict(self.store.profiles[pid])
        agg = dataclasses.replace(agg, identifiers=members_by_type(self.store.members[pid]))
        return ProfileRow(pid, agg, version)
