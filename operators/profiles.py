"""Identity resolution + profiles as a Flink function (logic in :mod:`models.profile_stage`).

Keyed by one constant key (the identity graph is global: a link can join any two
identifiers), so it runs as a single subtask; its state lives in Flink MapStates through
:class:`state.mapstate.MapStateMapping`. Output: one ``(profile_id, aggregate JSON, version,
deleted)`` tuple per touched or vanished profile, for the Cassandra writer.
"""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Iterable

from pyflink.common import Types
from pyflink.datastream import KeyedProcessFunction, RuntimeContext

from models.avro_codec import SchemaCatalog
from models.identity import IdentityRules
from models.profile import DEFAULT_HALF_LIFE_MS
from models.profile_stage import ProfileStage, ProfileStageStore
from models.identity import RefusedLink
from state.mapstate import MapStateMapping, string_keyed_map_state

PROFILE_ROW_TYPE = Types.TUPLE([Types.STRING(), Types.STRING(), Types.LONG(), Types.BOOLEAN()])
IDENTITY_KEY = "identity-graph"


def _node_key(node: tuple[str, str]) -> str:
    return json.dumps(node)


def _node_of(key: str) -> tuple[str, str]:
    t, v = json.loads(key)
    return t, v


def _link_key(link: RefusedLink) -> str:
    return json.dumps([link.a, link.b, link.reason])


def _link_of(key: str) -> RefusedLink:
    a, b, reason = json.loads(key)
    return RefusedLink(tuple(a), tuple(b), reason)


#: per ProfileStageStore field: how its keys become MapState string keys (default: a node)
_KEY_CODECS = {"members": (str, str), "profiles": (str, str), "refused": (_link_key, _link_of)}


class ResolveAndAggregate(KeyedProcessFunction):
    def __init__(self, rules: IdentityRules, half_life_ms: int = DEFAULT_HALF_LIFE_MS) -> None:
        self.rules = rules
        self.half_life_ms = half_life_ms

    def open(self, runtime_context: RuntimeContext) -> None:
        store = ProfileStageStore(**{
            f.name: MapStateMapping(runtime_context.get_map_state(string_keyed_map_state(f"identity-{f.name}")),
                                    *_KEY_CODECS.get(f.name, (_node_key, _node_of)))
            for f in fields(ProfileStageStore)})
        self.stage = ProfileStage(self.rules, store, self.half_life_ms)
        self.catalog = SchemaCatalog.load()
        group = runtime_context.get_metrics_group()
        self.events = group.counter("events")
        self.unresolvable = group.counter("unresolvable")
        self.rows = group.counter("profile_rows")
        self.by_kind = {k: group.counter(f"identity_{k}") for k in ("created", "grown", "merged", "split", "refused")}

    def process_element(self, value: bytes, ctx: KeyedProcessFunction.Context) -> Iterable[tuple]:
        self.events.inc()
        _, event = self.catalog.decode(bytes(value), expect="NormalizedEvent")
        out = self.stage.process(event)
        if not out.resolved:
            self.unresolvable.inc()
            return
        for c in out.changes:
            self.by_kind[c.kind].inc()
        for row in out.rows:
            self.rows.inc()
            yield row.profile_id, json.dumps(row.aggregate.to_dict(), sort_keys=True), row.version, False
        for pid, version in out.deleted:
            yield pid, "", version, True
