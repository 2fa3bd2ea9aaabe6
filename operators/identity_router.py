"""The command types between the identity stages and the profile stages, and the drain of the
single identity router's state after an upgrade.

Until the identity stages were partitioned (:mod:`operators.identity_partitioned`), one
operator, ``route-identity`` (one subtask, one constant key), held the whole identity graph in
MapStates. A savepoint of such a release restores that state into the identity clock, which
runs at the same place (one subtask, the same constant key) and keeps the old uid
(:data:`LEGACY_ROUTER_UID`). When it starts, the clock drains it (:class:`LegacyRouterState`):
every raw component of the old graph goes to the partitioned stages as a component move
(:class:`models.identity_partitioned.Move`, addressed to the component's best-ranked
identifier), which the resolve stage settles as the component's home, and the old clock's
newest event time and last tick become the clock's; then the old state is cleared. Erased
identifiers are not carried over: the locate stage asks the erasure ledger about identifiers
it does not know. A job started without such a savepoint drains nothing.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Iterable

from pyflink.common import Types
from pyflink.datastream import OutputTag, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

from models.identity import IdentityRules, Node
from models.identity_partitioned import Feedback, Move, component_store
from models.identity_router import RouterStore
from models.profile_commands import encode_message
from state.mapstate import STATE_VALUE, MapStateMapping, string_keyed_map_state
from state.records import ROUTER_CLOCK_CODEC, ROUTER_CODECS, ROUTER_KEYS, node_key, node_of

BYTES = Types.PRIMITIVE_ARRAY(Types.BYTE())
#: (profile id, kind, version, JSON of atom/members/evict/ghosts/incoming, payload bytes, event time)
COMMAND_TYPE = Types.TUPLE([Types.STRING(), Types.STRING(), Types.LONG(), Types.STRING(), BYTES, Types.LONG()])
#: (command, its event time), the form Flink's Java timestamp assigner for Python streams reads
#: (``CustomTimestampAssigner``: field 1), so no Python call assigns it
ROUTED_TYPE = Types.TUPLE([COMMAND_TYPE, Types.LONG()])
SOURCE_TYPE = Types.TUPLE([Types.STRING(), BYTES])  # (topic, value)
IDENTITY_TAG = OutputTag("identity-events", BYTES)
#: the one key of the identity clock (and of the single router of earlier releases)
IDENTITY_KEY = "identity-graph"
#: the uid of the single router of earlier releases, kept by the identity clock (its state drains)
LEGACY_ROUTER_UID = "route-identity"


def components_of(store: RouterStore, rules: IdentityRules) -> Iterable[tuple[Node, RouterStore]]:
    """Each raw component of a single router's store as a store of its own, with its home (the
    component's best-ranked identifier)."""
    for root, signatures in list(store.signatures.items()):
        nodes = sorted({n for sig in signatures for n in sig}, key=rules.rank)
        pids = {store.profile_of[n] for n in nodes}
        part = component_store(frozenset(signatures), store.events[root], {pid: store.members[pid] for pid in pids})
        for n in nodes:
            if n in store.inflight:
                part.inflight[n] = store.inflight[n]
        members = set(nodes)
        for link in store.refused:
            if link.a in members:
                part.refused[link] = True
        for rid, p in store.pending.items():
            if p.nodes and p.nodes[0] in members:
                part.pending[rid] = p
        yield nodes[0], part


class LegacyRouterState:
    """The single router's state as the identity clock restores it (same uid, same key, same
    state names), drained once: :meth:`drain` returns the feedback-topic records that move
    each old component to the partitioned stages and the old clock, and clears it all."""

    def __init__(self, runtime_context: RuntimeContext) -> None:
        self.maps = {
            f.name: MapStateMapping(
                runtime_context.get_map_state(string_keyed_map_state(f"identity-{f.name}")),
                ROUTER_CODECS[f.name],
                *ROUTER_KEYS.get(f.name, (node_key, node_of)),
            )
            for f in fields(RouterStore)
            if f.name in ROUTER_CODECS
        }
        self.clock = runtime_context.get_state(ValueStateDescriptor("router-clock", STATE_VALUE))

    def drain(self, rules: IdentityRules) -> tuple[list[bytes], dict[str, Any] | None]:
        raw_clock = self.clock.value()
        if raw_clock is None and not any(True for _ in self.maps["signatures"]):
            return [], None  # nothing restored (a new job, or drained already)
        old = RouterStore(**{name: dict(m.items()) for name, m in self.maps.items()})
        records = [encode_message(Feedback(home, Move(part, "upgrade", 0))) for home, part in components_of(old, rules)]
        for m in self.maps.values():
            m.clear()
        self.clock.clear()
        return records, None if raw_clock is None else ROUTER_CLOCK_CODEC.decode(raw_clock)
