"""The identity router as a Flink function (logic in :mod:`models.identity_router`).

Keyed by one constant key: the identity graph is global (a link can join any two
identifiers), so it runs as one subtask. It keeps identifiers and counts only; profile data
is in the profile operator, partitioned by profile id. State lives in Flink MapStates
through :class:`state.mapstate.MapStateMapping` (string keys).

Input: ``(topic, value)`` from the job's Kafka source, either a NormalizedEvent (Avro) or,
from the feedback topic, an atom's aggregate that a profile evicted (JSON, see
:func:`encode_moved_state`). Output: :data:`COMMAND_TYPE` tuples keyed by profile id, and
``journey.identity`` records (Avro ``IdentityEvent``) on :data:`IDENTITY_TAG`.

Counters: ``events``, ``unresolvable`` (all identifiers blocked), ``moved_states``,
``orphan_states`` (moved state for an identifier the graph does not know: a feedback topic
shared with another deployment; dropped), ``commands``, ``identity_events`` and
``identity_<created|grown|merged|split|refused>``.
"""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any, Iterable

from pyflink.common import Types
from pyflink.datastream import KeyedProcessFunction, OutputTag, RuntimeContext

from models.avro_codec import SchemaCatalog
from models.identity import IdentityRules, RefusedLink
from models.identity_router import IdentityRouter, ProfileCommand, RouterStore
from models.profile import ProfileAggregate
from operators.counters import BufferedCounters
from state.mapstate import CachedMapping, MapStateMapping, string_keyed_map_state

BYTES = Types.PRIMITIVE_ARRAY(Types.BYTE())
#: (profile id, kind, version, JSON of atom/members/evict/ghosts/aggregate, event bytes or empty)
COMMAND_TYPE = Types.TUPLE([Types.STRING(), Types.STRING(), Types.LONG(), Types.STRING(), BYTES])
SOURCE_TYPE = Types.TUPLE([Types.STRING(), BYTES])  # (topic, value)
IDENTITY_TAG = OutputTag("identity-events", BYTES)
IDENTITY_KEY = "identity-graph"


def encode_command(cmd: ProfileCommand) -> tuple:
    body: dict[str, Any] = {}
    if cmd.atom is not None:
        body["atom"] = cmd.atom
    if cmd.members is not None:
        body["members"] = cmd.members
    if cmd.evict:
        body["evict"] = cmd.evict
    if cmd.ghosts is not None:
        body["ghosts"] = cmd.ghosts
    if cmd.kind == "state":
        body["aggregate"] = cmd.payload.to_dict() if isinstance(cmd.payload, ProfileAggregate) else cmd.payload
    payload = cmd.payload if cmd.kind == "event" else b""
    return cmd.profile_id, cmd.kind, cmd.version, json.dumps(body, separators=(",", ":")), payload


def decode_command(t: tuple) -> ProfileCommand:
    pid, kind, version, body_json, payload = t
    body = json.loads(body_json)
    nodes = (lambda key: None if key not in body else tuple(tuple(n) for n in body[key]))
    return ProfileCommand(
        pid, kind, version, tuple(body["atom"]) if "atom" in body else None,
        bytes(payload) if kind == "event" else body.get("aggregate"),
        nodes("members"), nodes("evict") or (), tuple(body["ghosts"]) if "ghosts" in body else None)


def encode_moved_state(atom: tuple[str, str], aggregate: dict[str, Any], from_profile: str) -> bytes:
    """A feedback-topic record: an atom's aggregate leaving ``from_profile``."""
    return json.dumps({"atom": atom, "aggregate": aggregate, "from": from_profile},
                      separators=(",", ":")).encode()


def decode_moved_state(value: bytes) -> tuple[tuple[str, str], dict[str, Any]]:
    d = json.loads(value)
    return tuple(d["atom"]), d["aggregate"]


def node_key(node: tuple[str, str]) -> str:
    return json.dumps(node)


def node_of(key: str) -> tuple[str, str]:
    t, v = json.loads(key)
    return t, v


def _link_key(link: RefusedLink) -> str:
    return json.dumps([link.a, link.b, link.reason])


def _link_of(key: str) -> RefusedLink:
    a, b, reason = json.loads(key)
    return RefusedLink(tuple(a), tuple(b), reason)


#: per RouterStore field: how its keys become MapState string keys (default: a node)
_KEY_CODECS = {"members": (str, str), "refused": (_link_key, _link_of)}


class RouteIdentity(KeyedProcessFunction):
    def __init__(self, rules: IdentityRules, feedback_topic: str, cache_entries: int = 100_000) -> None:
        self.rules = rules
        self.feedback_topic = feedback_topic
        self.cache_entries = cache_entries

    def open(self, runtime_context: RuntimeContext) -> None:
        # one constant key, one subtask: a write-through cache in front of each MapState is
        # safe (see CachedMapping) and saves most state reads of the union-find walks
        store = RouterStore(**{
            f.name: CachedMapping(MapStateMapping(
                runtime_context.get_map_state(string_keyed_map_state(f"identity-{f.name}")),
                *_KEY_CODECS.get(f.name, (node_key, node_of))), self.cache_entries)
            for f in fields(RouterStore)})
        self.router = IdentityRouter(self.rules, store)
        self.catalog = SchemaCatalog.load()
        self.identity_codec = self.catalog.codec("IdentityEvent")
        self.counters = BufferedCounters(runtime_context.get_metrics_group(), (
            "events", "unresolvable", "moved_states", "orphan_states", "commands", "identity_events",
            *(f"identity_{k}" for k in ("created", "grown", "merged", "split", "refused"))))

    def process_element(self, value: tuple, ctx: KeyedProcessFunction.Context) -> Iterable[Any]:
        topic, raw = value[0], bytes(value[1])
        count = self.counters.inc
        self.counters.tick(ctx.timer_service())
        if topic == self.feedback_topic:
            count("moved_states")
            cmd = self.router.route_state(*decode_moved_state(raw))
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
