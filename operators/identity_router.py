"""The identity router as a Flink function (logic in :mod:`models.identity_router`).

Keyed by one constant key: the identity graph is global (a link can join any two
identifiers), so it runs as one subtask. It keeps identifiers and counts only; profile data
is in the profile operator, partitioned by profile id. State lives in Flink MapStates
through :class:`state.mapstate.MapStateMapping` (string keys, state records as values:
:data:`state.records.ROUTER_CODECS`).

Input: ``(topic, value)`` from the job's Kafka source, either a NormalizedEvent or, from the
feedback topic, a ``MovedState`` (an atom's aggregate that a profile evicted). Output:
:data:`ROUTED_TYPE`: :data:`COMMAND_TYPE` tuples keyed by profile id (:mod:`models.profile_commands`) with
their event time, and
``journey.identity`` records (Avro ``IdentityEvent``) on :data:`IDENTITY_TAG`.

Erasure (``docs/privacy.md``, :mod:`models.erasure`): an ``erasure_request`` waits (MapState
``identity-pending``) until the watermark that follows this operator passes its time, then
its raw components leave the graph and their identifiers are tombstoned (MapState
``identity-erased``, mirrored in memory: one read per subtask start); an event carrying a
tombstoned identifier is dropped here. A router that starts with no state (a new job
replaying history) first takes the tombstones of the erasure ledger (``ledger``: Cassandra
``erased_identifiers`` in the job).

Counters: ``events``, ``unresolvable`` (all identifiers blocked), ``moved_states``,
``orphan_states`` (moved state for an identifier the graph does not know: a feedback topic
shared with another deployment; dropped), ``commands``, ``identity_events``,
``identity_<created|grown|merged|split|refused>``, ``erased`` (events dropped for a
tombstoned identifier), ``erasure_requests``, ``erasures`` (components erased, closures
included), ``erased_profiles``, ``erased_identifiers`` and ``ledger_tombstones`` (taken at a
fresh start).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Callable, Iterable

from pyflink.common import Types
from pyflink.datastream import KeyedProcessFunction, OutputTag, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

from models.avro_codec import SchemaCatalog
from models.identity import IdentityRules
from models.erasure import Tombstone
from models.identity_router import CommandKind, IdentityRouter, ProfileCommand, Routed, RouterStore
from models.profile_commands import decode_feedback, encode_command
from operators.counters import BufferedCounters
from state.mapstate import STATE_VALUE, CachedMapping, MapStateMapping, MirroredMapping, string_keyed_map_state
from state.records import ROUTER_CLOCK_CODEC, ROUTER_CODECS, ROUTER_KEYS, node_key, node_of

BYTES = Types.PRIMITIVE_ARRAY(Types.BYTE())
#: (profile id, kind, version, JSON of atom/members/evict/ghosts/incoming, payload bytes, event time)
COMMAND_TYPE = Types.TUPLE([Types.STRING(), Types.STRING(), Types.LONG(), Types.STRING(), BYTES, Types.LONG()])
#: the router's output: (command, its event time), the form Flink's Java timestamp assigner for
#: Python streams reads (``CustomTimestampAssigner``: field 1), so no Python call assigns it
ROUTED_TYPE = Types.TUPLE([COMMAND_TYPE, Types.LONG()])
SOURCE_TYPE = Types.TUPLE([Types.STRING(), BYTES])  # (topic, value)
IDENTITY_TAG = OutputTag("identity-events", BYTES)
IDENTITY_KEY = "identity-graph"


class RouteIdentity(KeyedProcessFunction):
    """Parameters
    ----------
    rules : IdentityRules
    feedback_topic : str
        Values from this topic are moved state (``MovedState``, ``JourneyMove``), not events.
    out_of_orderness_ms, idle_advance_ms : int
        The watermark's bound (the job's generator after this operator) and the wall-clock
        silence after which a *tick* command declares event time complete up to the newest
        event seen (``docs/journeys.md``, Time). ``idle_advance_ms`` 0: no ticks.
    """

    def __init__(
        self,
        rules: IdentityRules,
        feedback_topic: str,
        cache_entries: int = 100_000,
        out_of_orderness_ms: int = 0,
        idle_advance_ms: int = 0,
        ledger: Callable[[], Iterable[str]] | None = None,
    ) -> None:
        self.rules = rules
        self.ledger = ledger
        self.feedback_topic = feedback_topic
        self.cache_entries = cache_entries
        self.out_of_orderness_ms, self.idle_advance_ms = out_of_orderness_ms, idle_advance_ms

    def open(self, runtime_context: RuntimeContext) -> None:
        # one constant key, one subtask: a write-through cache of decoded values in front of
        # each MapState is safe (see CachedMapping) and saves most state reads and decodes
        def mapping(name: str) -> Any:
            backing = MapStateMapping(
                runtime_context.get_map_state(string_keyed_map_state(f"identity-{name}")),
                ROUTER_CODECS[name],
                *ROUTER_KEYS.get(name, (node_key, node_of)),
            )
            if name in ("erased", "pending"):  # read on every event, small: all in memory
                return MirroredMapping(backing)
            return CachedMapping(backing, self.cache_entries)

        store = RouterStore(**{f.name: mapping(f.name) for f in fields(RouterStore)})
        self.router = IdentityRouter(self.rules, store)
        self.clock_state = runtime_context.get_state(ValueStateDescriptor("router-clock", STATE_VALUE))
        self.clock: dict[str, Any] | None = None  # max_event_time, last_tick (loaded with the key)
        self.stored_clock: dict[str, Any] | None = None
        # a (re)started router has not been idle yet: a timer restored from the checkpoint fires at
        # once, before the replay's first record, and must not declare event time complete
        self.input_since_check = True
        self.next_check: int | None = None
        # watermarks are not in checkpoints: after a restore the last tick is declared again,
        # or timers that were due under it before the failure would wait for new input
        self.reassert_tick = True
        self.catalog = SchemaCatalog.load()
        self.identity_codec = self.catalog.codec("IdentityEvent")
        self.counters = BufferedCounters(
            runtime_context.get_metrics_group(),
            (
                "events",
                "unresolvable",
                "moved_states",
                "orphan_states",
                "journey_parts",
                "orphan_journey_parts",
                "ticks",
                "commands",
                "identity_events",
                *(f"identity_{k}" for k in ("created", "grown", "merged", "split", "refused")),
                "erased",
                "erasure_requests",
                "erasures",
                "erased_profiles",
                "erased_identifiers",
                "ledger_tombstones",
            ),
        )

    def process_element(self, value: tuple, ctx: KeyedProcessFunction.Context) -> Iterable[Any]:
        topic, raw = value[0], bytes(value[1])
        count = self.counters.inc
        self.counters.tick(ctx.timer_service())
        self._watch_clock(ctx)
        if topic == self.feedback_topic:
            kind, node, payload = decode_feedback(raw)
            if kind is CommandKind.JOURNEY:
                count("journey_parts")
                cmd = self.router.route_journey(node, payload)
                orphan = "orphan_journey_parts"
            else:
                count("moved_states")
                cmd = self.router.route_state(node, payload)
                orphan = "orphan_states"
            if cmd is None:
                count(orphan)
                return
            count("commands")
            yield encode_command(cmd), cmd.at
            return
        count("events")
        _, event = self.catalog.decode(raw, expect="NormalizedEvent")
        clock = self._clock()
        if event["occurred_at"] > clock["max_event_time"]:
            # stored at once: after a restore with no new input, the tick must reach every event
            # the checkpoint covers (found by the savepoint 2 -> 1 -> 2 chaos scenario: one idle
            # check behind was ~60 h of a replay's event time)
            clock["max_event_time"] = event["occurred_at"]
            # erasures due under the watermark this event brings go out before it (so that the
            # journeys stage receives them while its watermark is still before their time)
            yield from self._due_erasures(clock, clock["max_event_time"] - self.out_of_orderness_ms - 1)
            self._store_clock(clock)
        self.input_since_check = True
        routed = self.router.route_event(event, payload=raw)
        if routed.erased:  # dropped: what it carried is erased too (a closure, if anything was left)
            count("erased")
            yield from self._emit_erasures(routed)
            return
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
            yield encode_command(cmd), cmd.at
        if routed.requested:  # due when event time passes it (at once if it already has)
            count("erasure_requests")
            clock["next_erasure"] = self.router.next_erasure()
            yield from self._due_erasures(clock, clock["max_event_time"] - self.out_of_orderness_ms - 1)
            self._store_clock(clock)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterable[Any]:
        self.counters.on_timer(timestamp)
        if self.idle_advance_ms <= 0 or (self.next_check is not None and timestamp < self.next_check):
            return  # a counters' timer
        self.next_check = None
        clock = self._clock()
        tick = None
        if not self.input_since_check and clock["max_event_time"] > clock["last_tick"]:
            clock["last_tick"] = tick = clock["max_event_time"]
        elif self.reassert_tick and clock["last_tick"] >= 0:
            tick = clock["last_tick"]
        self.reassert_tick = False
        if tick is not None:
            yield from self._due_erasures(clock, tick, in_timer=True)
            self.counters.inc("ticks")
            self.counters.tick(ctx.timer_service())  # what this timer counts is pushed too
            # W = tick time - bound - 1 = the newest event time seen: everything up to it is due
            at = tick + self.out_of_orderness_ms + 1
            yield encode_command(ProfileCommand(profile_id="", kind=CommandKind.TICK, version=0, at=at)), at
        self.input_since_check = False
        if clock != self.stored_clock:
            self._store_clock(clock)
        self._watch_clock(ctx)

    def _due_erasures(self, clock: dict[str, Any], watermark: int, in_timer: bool = False) -> Iterable[Any]:
        """Execute the erasure requests at or before ``watermark`` (the clock says whether any)."""
        due = clock.get("next_erasure")
        if due is None or due > watermark:
            return
        routed = self.router.due_erasures(watermark)
        clock["next_erasure"] = self.router.next_erasure()
        yield from self._emit_erasures(routed, in_timer)

    def _emit_erasures(self, routed: Routed, in_timer: bool = False) -> Iterable[Any]:
        """The erasures' commands, and their ``profile_erased`` records on :data:`IDENTITY_TAG`;
        from a timer (PyFlink 2.2's ``on_timer`` sends side outputs to the main output) as
        ``identity`` commands, which the journeys stage puts on ``journey.identity``: only at an
        idle tick, seconds after the router's last record, so after them in the topic."""
        if not routed.erasures:
            return
        count = self.counters.inc
        count("erasures", len(routed.erasures))
        count("erased_profiles", sum(len(e.profile_ids) for e in routed.erasures))
        count("erased_identifiers", sum(len(e.nodes) for e in routed.erasures))
        count("identity_events", len(routed.identity_events))
        count("commands", len(routed.commands))
        for ie in routed.identity_events:
            record = self.identity_codec.encode(ie.to_record())
            if in_timer:
                cmd = ProfileCommand(
                    profile_id="", kind=CommandKind.IDENTITY, version=0, payload=record, at=ie.occurred_at
                )
                yield encode_command(cmd), cmd.at
            else:
                yield IDENTITY_TAG, record
        for cmd in routed.commands:
            yield encode_command(cmd), cmd.at

    def _take_ledger(self) -> None:
        """A router with no state yet: tombstone what earlier runs erased (the ledger)."""
        if self.ledger is None:
            return
        erased = self.router.store.erased
        n = 0
        for key in self.ledger():
            if key not in erased:
                erased[key] = Tombstone("ledger", 0)
                n += 1
        self.counters.inc("ledger_tombstones", n)

    def _store_clock(self, clock: dict[str, Any]) -> None:
        self.clock_state.update(ROUTER_CLOCK_CODEC.encode(clock))
        self.stored_clock = dict(clock)

    def _clock(self) -> dict[str, Any]:
        """The event-time clock (in state: written when the newest event time grows and on ticks)."""
        if self.clock is None:
            raw = self.clock_state.value()
            if raw is None:  # a router with no state: a new job (or one that never saw input)
                self.clock = {"max_event_time": -1, "last_tick": -1, "next_erasure": None}
                self._take_ledger()
                self._store_clock(self.clock)
            else:
                self.clock = ROUTER_CLOCK_CODEC.decode(raw)
            self.stored_clock = dict(self.clock)
        return self.clock

    def _watch_clock(self, ctx) -> None:
        """Keep one idle-check timer pending."""
        if self.idle_advance_ms > 0 and self.next_check is None:
            now = ctx.timer_service().current_processing_time()
            self.next_check = now + self.idle_advance_ms
            ctx.timer_service().register_processing_time_timer(self.next_check)
