"""The identity router as a Flink function (logic in :mod:`models.identity_router`).

Keyed by one constant key: the identity graph is global (a link can join any two
identifiers), so it runs as one subtask. It keeps identifiers and counts only; profile data
is in the profile operator, partitioned by profile id. State lives in Flink MapStates
through :class:`state.mapstate.MapStateMapping` (string keys, state records as values:
:data:`state.records.ROUTER_CODECS`).

Input: ``(topic, value)`` from the job's Kafka source, either a NormalizedEvent or, from the
feedback topic, a ``MovedState`` (an atom's aggregate that a profile evicted). Output:
:data:`COMMAND_TYPE` tuples keyed by profile id (:mod:`models.profile_commands`), and
``journey.identity`` records (Avro ``IdentityEvent``) on :data:`IDENTITY_TAG`.

Counters: ``events``, ``unresolvable`` (all identifiers blocked), ``moved_states``,
``orphan_states`` (moved state for an identifier the graph does not know: a feedback topic
shared with another deployment; dropped), ``commands``, ``identity_events`` and
``identity_<created|grown|merged|split|refused>``.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Iterable

from pyflink.common import Types
from pyflink.datastream import KeyedProcessFunction, OutputTag, RuntimeContext

from models.avro_codec import SchemaCatalog
from models.identity import IdentityRules
from models.identity_router import IdentityRouter, RouterStore
from models.profile_commands import decode_moved_state, encode_command
from operators.counters import BufferedCounters
from state.mapstate import CachedMapping, MapStateMapping, string_keyed_map_state
from state.records import ROUTER_CODECS, ROUTER_KEYS, node_key, node_of

BYTES = Types.PRIMITIVE_ARRAY(Types.BYTE())
#: (profile id, kind, version, JSON of atom/members/evict/ghosts, event or aggregate bytes)
COMMAND_TYPE = Types.TUPLE([Types.STRING(), Types.STRING(), Types.LONG(), Types.STRING(), BYTES])
SOURCE_TYPE = Types.TUPLE([Types.STRING(), BYTES])  # (topic, value)
IDENTITY_TAG = OutputTag("identity-events", BYTES)
IDENTITY_KEY = "identity-graph"


class RouteIdentity(KeyedProcessFunction):
    def __init__(self, rules: IdentityRules, feedback_topic: str, cache_entries: int = 100_000) -> None:
        self.rules = rules
        self.feedback_topic = feedback_topic
        self.cache_entries = cache_entries

    def open(self, runtime_context: RuntimeContext) -> None:
        # one constant key, one subtask: a write-through cache of decoded values in front of
        # each MapState is safe (see CachedMapping) and saves most state reads and decodes
        store = RouterStore(
            **{
                f.name: CachedMapping(
                    MapStateMapping(
                        runtime_context.get_map_state(string_keyed_map_state(f"identity-{f.name}")),
                        ROUTER_CODECS[f.name],
                        *ROUTER_KEYS.get(f.name, (node_key, node_of)),
                    ),
                    self.cache_entries,
                )
                for f in fields(RouterStore)
            }
        )
        self.router = IdentityRouter(self.rules, store)
        self.catalog = SchemaCatalog.load()
        self.identity_codec = self.catalog.codec("IdentityEvent")
        self.counters = BufferedCounters(
            runtime_context.get_metrics_group(),
            (
                "events",
                "unresolvable",
                "moved_states",
                "orphan_states",
                "commands",
                "identity_events",
                *(f"identity_{k}" for k in ("created", "grown", "merged", "split", "refused")),
            ),
        )

    def process_element(self, value: tuple, ctx: KeyedProcessFunction.Context) -> Iterable[Any]:
        topic, raw = value[0], bytes(value[1])
        count = self.counters.inc
        self.counters.tick(ctx.timer_service())
        if topic == self.feedback_topic:
            count("moved_states")
            atom, aggregate, _ = decode_moved_state(raw)
            cmd = self.router.route_state(atom, aggregate)
            if cmd is None:
                count("orphan_states")
                return
            count("commands")
            yield encode_command(cmd)
            return
        count("events")
        _, event = self.catalog.decode(raw, expect="NormalizedEvent")
        routed = self.router.route_event(event, payload=raw)
        for c in routed.changes:
            count(f"identity_{c.kind}")
        if not routed.resolved:
            count("unresolvable")
            return
        count("identity_events", len(routed.identity_events))
        for ie in routed.identity_events:
            yield IDENTITY_TAG, self.identity_codec.encode(ie.to_record())
        count("commands", len(routed.commands))
        for cmd in routed.commands:
            yield encode_command(cmd)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterable[Any]:
        self.counters.on_timer(timestamp)  # the only timers here are the counters'
        return []
