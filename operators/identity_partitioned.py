"""The partitioned identity stages as Flink functions (logic in :mod:`models.identity_partitioned`
and :mod:`models.identity_clock`; design in ``docs/identity.md``, "Partitioned identity").

::

    (topic, value) -> identity-keys (map: the key) -> locate-identity (keyed by identifier)
        -> resolve-identity (keyed by home) -> identity-clock (one subtask) -> event-time -> ...
                 |  feedback records (side output FEEDBACK_TAG) -> journey.profile-moves

* :class:`IdentityKeys` decodes each record once: a ``NormalizedEvent`` becomes its atom's key
  and the few fields identity needs (:data:`PREPARED_TYPE`); a feedback-topic record becomes
  its address's key.
* :class:`LocateIdentity` keeps one ``LocateEntry`` per identifier (ValueState
  ``identity-locate``: one read per record, a write when it changes) and sends each record
  to its home. With homes per linked component (``IdentityRules.shared_homes``) a shared
  identifier's key is also a key of the raw-component registry
  (:mod:`models.identity_registry`): ValueState ``identity-registry`` (forward pointer,
  erasure) and MapStates ``identity-registry-shared`` / ``identity-registry-homes``, read only
  for the registry's messages.
* :class:`ResolveIdentity` keeps one ``IdentityHome`` per home (ValueState ``identity-home``:
  one read and one write per record) and emits the profile commands, ``journey.identity``
  records (as ``identity`` commands: they reach the topic through the clock and the journeys
  stage, in one order) and, for the clock, the erasure requests it must watch.
* :class:`IdentityClockStage` (one subtask) stamps every command for the watermark generator,
  ticks when the input is idle and sends due erasure requests to their homes
  (:mod:`models.identity_clock`). Its state (ValueState ``identity-clock``) is written when
  the newest event time grows, at ticks and when erasure requests come and go; it reads none
  per command.

Counters (names unique across the job's operators): locate-identity ``events``,
``unresolvable``, ``erased`` (dropped: the atom is erased), ``ledger_tombstones``,
``identity_messages``, ``registry_messages`` (the raw-component registry's, with homes per
linked component), ``found_shared`` (identifiers the locate stage found shared from the
claims); resolve-identity ``commands``, ``identity_events``,
``identity_<created|grown|merged|split|refused|shared>``, ``claims``, ``components_moved``,
``moved_states``, ``journey_parts``, ``orphan_messages``, ``retried_messages`` (moved state
or a journey part that reached the home of its identifier's component before the component
did: sent again to the identifier), ``erased_at_home`` (dropped: the
component was erased), ``erasure_requests``, ``erasures``, ``erased_profiles``,
``erased_identifiers``, ``home_state_bytes`` (the state records written, summed: a home's
record is its whole component); identity-clock ``ticks``, ``erasures_due``.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Mapping, MutableMapping

from pyflink.common import Types
from pyflink.datastream import KeyedProcessFunction, MapFunction, OutputTag, RuntimeContext
from pyflink.datastream.state import MapStateDescriptor, ValueStateDescriptor

from models.avro_codec import SchemaCatalog
from models.erasure import ERASURE_REQUEST, request_id_of
from models.identity import IdentityRules, Node
from models.identity_clock import ClockState, IdentityClock
from models.identity_partitioned import (
    Claim,
    ComponentHome,
    EraseDue,
    EventIn,
    Feedback,
    HomeOutput,
    HomeState,
    LocateEntry,
    Locator,
    SharedIs,
)
from models.identity_registry import RegistryState
from models.identity_router import CommandKind, ProfileCommand
from models.profile_commands import (
    LOCATE_KINDS,
    REGISTRY_KINDS,
    decode_message,
    encode_command,
    encode_message,
    message_header,
)
from operators.counters import BufferedCounters
from operators.identity_router import LegacyRouterState
from state.mapstate import STATE_VALUE
from state.records import (
    IDENTITY_CLOCK_CODEC,
    IDENTITY_HOME_CODEC,
    IDENTITY_REGISTRY_CODEC,
    LOCATE_ENTRY_CODEC,
    node_key,
    node_of,
)

BYTES = Types.PRIMITIVE_ARRAY(Types.BYTE())
#: (key, kind, body, bytes): kind ``event`` (body: the identity fields as JSON, bytes: the
#: NormalizedEvent), ``message`` (bytes: an IdentityMessage) or ``unresolvable``
PREPARED_TYPE = Types.TUPLE([Types.STRING(), Types.STRING(), Types.STRING(), BYTES])
FEEDBACK_TAG = OutputTag("identity-feedback", BYTES)
#: the key of records that cannot be located (every identifier blocked): counted, not routed
UNRESOLVABLE_KEY = "~unresolvable"


def identity_fields(event: Mapping[str, Any]) -> dict[str, Any]:
    """What the identity stages read of an event (the rest travels as its bytes)."""
    out = {k: event[k] for k in ("event_id", "occurred_at", "event_type", "identifiers")}
    if event.get("event_type") == ERASURE_REQUEST:
        out["payload"] = {"request_id": request_id_of(event)}
    return out


class IdentityKeys(MapFunction):
    """``(topic, value)`` -> :data:`PREPARED_TYPE`: the one decode of each record."""

    def __init__(self, rules: IdentityRules, feedback_topic: str) -> None:
        self.rules, self.feedback_topic = rules, feedback_topic

    def open(self, runtime_context: RuntimeContext) -> None:
        self.catalog = SchemaCatalog.load()
        self.locator = Locator(self.rules, {})  # for atom_of only: no state

    def map(self, value: tuple) -> tuple[str, str, str, bytes]:
        topic, raw = value[0], bytes(value[1])
        if topic == self.feedback_topic:
            return node_key(message_header(raw)[0]), "message", "", raw
        event = self.catalog.decode(raw, expect="NormalizedEvent")[1]
        atom = self.locator.atom_of(event)
        if atom is None:
            return UNRESOLVABLE_KEY, "unresolvable", "", b""
        return node_key(atom), "event", json.dumps(identity_fields(event), separators=(",", ":")), raw


class _CurrentKey(MutableMapping[Node, LocateEntry]):
    """The locate stage's entries as a mapping that only ever holds the current key's entry
    (read once per record, written when it changes)."""

    def __init__(self, state: Any, node: Node) -> None:
        self.state, self.node = state, node
        raw = state.value()
        self.entry: LocateEntry | None = None if raw is None else LOCATE_ENTRY_CODEC.decode(raw)

    def _check(self, node: Node) -> None:
        if node != self.node:
            raise KeyError(f"locate-identity at {self.node} asked about {node}")

    def __getitem__(self, node: Node) -> LocateEntry:
        self._check(node)
        if self.entry is None:
            raise KeyError(node)
        return self.entry

    def __setitem__(self, node: Node, entry: LocateEntry) -> None:
        self._check(node)
        if entry != self.entry:
            self.entry = entry
            self.state.update(LOCATE_ENTRY_CODEC.encode(entry))

    def __delitem__(self, node: Node) -> None:
        self._check(node)
        self.entry = None
        self.state.clear()

    def __iter__(self):
        return iter(() if self.entry is None else (self.node,))

    def __len__(self) -> int:
        return 0 if self.entry is None else 1


class _NodeSet(MutableMapping[Node, bool]):
    """A set of identifiers as a MapState of ``node_key -> True`` (a registry key's shared
    identifiers or homes: one entry per member, whatever the size)."""

    def __init__(self, state: Any) -> None:
        self.state = state

    def __getitem__(self, node: Node) -> bool:
        if not self.state.contains(node_key(node)):
            raise KeyError(node)
        return True

    def __contains__(self, node: object) -> bool:
        return isinstance(node, tuple) and self.state.contains(node_key(node))

    def __setitem__(self, node: Node, value: bool) -> None:
        self.state.put(node_key(node), True)

    def __delitem__(self, node: Node) -> None:
        self.state.remove(node_key(node))

    def __iter__(self):
        return (node_of(k) for k in list(self.state.keys()))

    def __len__(self) -> int:
        return sum(1 for _ in self.state.keys())

    def clear(self) -> None:
        self.state.clear()


class _CurrentRegistry(MutableMapping[Node, RegistryState]):
    """The registry's state of the current key (:mod:`models.identity_registry`): its forward
    pointer and erasure (ValueState ``identity-registry``, an ``IdentityRegistry`` record) and
    its shared identifiers and homes (MapStates ``identity-registry-shared`` / ``-homes``),
    read only for a registry message."""

    def __init__(self, record: Any, shared: Any, homes: Any, node: Node) -> None:
        self.record, self.node = record, node
        raw = record.value()
        self.stored = RegistryState() if raw is None else IDENTITY_REGISTRY_CODEC.decode(raw)
        self.registry = RegistryState(self.stored.forward, _NodeSet(shared), _NodeSet(homes), self.stored.erased)

    def __getitem__(self, node: Node) -> RegistryState:
        if node != self.node:
            raise KeyError(f"locate-identity at {self.node} asked about the registry key {node}")
        return self.registry

    def __setitem__(self, node: Node, value: RegistryState) -> None:
        if value is not self.registry:
            raise ValueError("a registry key's state is changed in place")

    def __delitem__(self, node: Node) -> None:
        raise ValueError("a registry key is never removed")

    def __iter__(self):
        return iter((self.node,))

    def __len__(self) -> int:
        return 1

    def store(self) -> None:
        """Write the forward pointer and erasure if the message changed them (the sets are
        written in place)."""
        reg = self.registry
        if (reg.forward, reg.erased) != (self.stored.forward, self.stored.erased):
            self.record.update(IDENTITY_REGISTRY_CODEC.encode(RegistryState(reg.forward, erased=reg.erased)))


class LocateIdentity(KeyedProcessFunction):
    """Keyed by identifier: send each record to its home (see the module docs).

    ``ledger`` lists the tombstone keys of the erasure ledger (Cassandra ``erased_identifiers``
    in the job), read once per subtask start; it is asked about identifiers with no entry only.
    """

    def __init__(self, rules: IdentityRules, ledger: Callable[[], Iterable[str]] | None = None) -> None:
        self.rules, self.ledger = rules, ledger

    def open(self, runtime_context: RuntimeContext) -> None:
        self.state = runtime_context.get_state(ValueStateDescriptor("identity-locate", STATE_VALUE))
        self.registry_record = runtime_context.get_state(ValueStateDescriptor("identity-registry", STATE_VALUE))
        self.registry_shared = runtime_context.get_map_state(
            MapStateDescriptor("identity-registry-shared", Types.STRING(), Types.BOOLEAN())
        )
        self.registry_homes = runtime_context.get_map_state(
            MapStateDescriptor("identity-registry-homes", Types.STRING(), Types.BOOLEAN())
        )
        self.counters = BufferedCounters(
            runtime_context.get_metrics_group(),
            (
                "events",
                "unresolvable",
                "erased",
                "ledger_tombstones",
                "identity_messages",
                "registry_messages",
                "found_shared",
            ),
        )
        self.tombstones = frozenset(self.ledger()) if self.ledger is not None else frozenset()

    def _in_ledger(self, key: str) -> bool:
        if key in self.tombstones:
            self.counters.inc("ledger_tombstones")
            return True
        return False

    def process_element(self, value: tuple, ctx: KeyedProcessFunction.Context) -> Iterable[Any]:
        key, kind, body, raw = value[0], value[1], value[2], bytes(value[3])
        self.counters.tick(ctx.timer_service())
        if kind == "unresolvable":  # every identifier blocked: counted, not routed
            self.counters.inc("events")
            self.counters.inc("unresolvable")
            return
        node = node_of(key)
        locator = Locator(self.rules, _CurrentKey(self.state, node), self._in_ledger if self.tombstones else None)
        if kind == "event":
            self.counters.inc("events")
            located = locator.route_event(node, json.loads(body), raw)
            self.counters.inc("erased", located.erased)
            for t in located.to_home:
                yield node_key(t.home), "event", body, raw
        else:
            self.counters.inc("identity_messages")
            address, message_kind = message_header(raw)
            if message_kind not in LOCATE_KINDS:  # for the component at its address: passed on as it came
                yield node_key(locator.home_of(address)), "message", "", raw
                return
            registry = None
            if message_kind in REGISTRY_KINDS or (message_kind == "tombstoned" and self.rules.shared_homes):
                self.counters.inc("registry_messages", message_kind in REGISTRY_KINDS)
                registry = _CurrentRegistry(self.registry_record, self.registry_shared, self.registry_homes, node)
                locator.registry = registry
            fb = decode_message(raw)
            located = locator.route_feedback(fb)
            if registry is not None:
                registry.store()
            self.counters.inc(
                "found_shared", sum(isinstance(t.message, SharedIs) and t.message.found for t in located.to_home)
            )
            for t in located.to_home:  # passed on as it came, or a message of the locate stage's own
                assert not isinstance(t.message, EventIn)
                out = raw if t.message is fb.message else encode_message(Feedback(t.home, t.message))
                yield node_key(t.home), "message", "", out
        for fb in located.feedback:
            yield FEEDBACK_TAG, encode_message(fb)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterable[Any]:
        self.counters.on_timer(timestamp)
        return ()


def home_records(out: HomeOutput, home: Node, identity_codec: Any) -> tuple[list[tuple], list[bytes]]:
    """The resolve stage's records for what a home produced: ``(command, event time)`` pairs
    for the clock (``journey.identity`` records as ``identity`` commands, then the profile
    commands, the requests now pending and the ones done) and feedback-topic values."""
    routed: list[tuple] = []
    for ie in out.identity_events:
        record = identity_codec.encode(ie.to_record())
        cmd = ProfileCommand(profile_id="", kind=CommandKind.IDENTITY, version=0, payload=record, at=ie.occurred_at)
        routed.append((encode_command(cmd), cmd.at))
    routed += [(encode_command(cmd), cmd.at) for cmd in out.commands]
    for p in out.pending:
        cmd = ProfileCommand(
            profile_id="", kind=CommandKind.ERASURE_PENDING, version=0, atom=home, request=p.request_id, at=p.at
        )
        routed.append((encode_command(cmd), cmd.at))
    for rid in out.done:
        cmd = ProfileCommand(profile_id="", kind=CommandKind.ERASURE_DONE, version=0, request=rid)
        routed.append((encode_command(cmd), 0))
    return routed, [encode_message(fb) for fb in out.feedback]


class ResolveIdentity(KeyedProcessFunction):
    """Keyed by home: resolve each event inside its component, carry out merges, moves and
    erasures (see the module docs). Output: :data:`ROUTED_TYPE` pairs for the clock; feedback
    records on :data:`FEEDBACK_TAG`."""

    def __init__(self, rules: IdentityRules) -> None:
        self.rules = rules

    def open(self, runtime_context: RuntimeContext) -> None:
        self.state = runtime_context.get_state(ValueStateDescriptor("identity-home", STATE_VALUE))
        self.identity_codec = SchemaCatalog.load().codec("IdentityEvent")
        self.counters = BufferedCounters(
            runtime_context.get_metrics_group(),
            (
                "commands",
                "identity_events",
                *(f"identity_{k}" for k in ("created", "grown", "merged", "split", "refused", "shared")),
                "claims",
                "components_moved",
                "moved_states",
                "journey_parts",
                "orphan_messages",
                "retried_messages",
                "erased_at_home",
                "erasure_requests",
                "erasures",
                "erased_profiles",
                "erased_identifiers",
                "home_state_bytes",
            ),
        )

    def process_element(self, value: tuple, ctx: KeyedProcessFunction.Context) -> Iterable[Any]:
        key, kind, body, raw = value[0], value[1], value[2], bytes(value[3])
        count = self.counters.inc
        self.counters.tick(ctx.timer_service())
        stored = self.state.value()
        st = HomeState() if stored is None else IDENTITY_HOME_CODEC.decode(stored)
        home = ComponentHome(self.rules, node_of(key), st)
        if kind == "event":
            out = home.on_event(json.loads(body), raw)
        else:
            msg = decode_message(raw).message
            out = home.on_message(msg)
            if not any(fb.message is msg for fb in out.feedback):  # (passed on: counted where it lands)
                count("moved_states", getattr(msg, "kind", None) is CommandKind.STATE)
                count("journey_parts", getattr(msg, "kind", None) is CommandKind.JOURNEY)
        if st.store is None and st.forward is None and st.erased is None:
            if stored is not None:
                self.state.clear()
        else:
            record = IDENTITY_HOME_CODEC.encode(st)
            count("home_state_bytes", len(record))
            self.state.update(record)
        yield from self._emit(out, home.home)

    def _emit(self, out: HomeOutput, home: Node) -> Iterable[Any]:
        count = self.counters.inc
        for c in out.changes:
            count(f"identity_{c.kind}")
        count("orphan_messages", out.orphan)
        count("retried_messages", out.retried)
        count("components_moved", out.moved)
        count("erased_at_home", out.erased_event)
        if out.erasures:
            count("erasures", len(out.erasures))
            count("erased_profiles", sum(len(e.profile_ids) for e in out.erasures))
            count("erased_identifiers", sum(len(e.nodes) for e in out.erasures))
        count("identity_events", len(out.identity_events))
        count("commands", len(out.commands))
        count("erasure_requests", len(out.pending))
        count("claims", sum(isinstance(fb.message, Claim) for fb in out.feedback))
        routed, feedback = home_records(out, home, self.identity_codec)
        yield from routed
        for record in feedback:
            yield FEEDBACK_TAG, record

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterable[Any]:
        self.counters.on_timer(timestamp)
        return ()


class IdentityClockStage(KeyedProcessFunction):
    """One subtask (one constant key): the job's event-time clock (:mod:`models.identity_clock`).

    Parameters
    ----------
    out_of_orderness_ms, idle_advance_ms : int
        The watermark's bound (the generator after this operator) and the wall-clock silence
        after which a tick declares event time complete up to the newest event seen
        (``docs/journeys.md``, Time). ``idle_advance_ms`` 0: no ticks.
    """

    def __init__(
        self, out_of_orderness_ms: int = 0, idle_advance_ms: int = 0, rules: IdentityRules | None = None
    ) -> None:
        self.bound, self.idle_advance_ms = out_of_orderness_ms, idle_advance_ms
        self.rules = rules or IdentityRules()

    def open(self, runtime_context: RuntimeContext) -> None:
        self.state = runtime_context.get_state(ValueStateDescriptor("identity-clock", STATE_VALUE))
        self.legacy = LegacyRouterState(runtime_context)
        self.legacy_checked = False
        self.clock: IdentityClock | None = None
        self.input_since_check = True  # a restored timer fires before the replay's first record
        # no new tick before the first record since open(): after a restore, other operators
        # may still be opening (waiting for Cassandra: JOURNEY_CASSANDRA_WAIT_MS) and the
        # replay's records held up behind them; that silence is not idle input
        self.record_since_open = False
        self.reassert = True  # watermarks are not in checkpoints: declare the last tick again
        self.next_check: int | None = None
        self.counters = BufferedCounters(
            runtime_context.get_metrics_group(), ("ticks", "erasures_due", "legacy_components_drained")
        )

    def _clock(self) -> IdentityClock:
        if self.clock is None:
            raw = self.state.value()
            self.clock = IdentityClock(self.bound, ClockState() if raw is None else IDENTITY_CLOCK_CODEC.decode(raw))
        return self.clock

    def _drain_legacy(self, clock: IdentityClock) -> Iterable[Any]:
        """Once per start: the single router's restored state (an upgrade) goes to the
        partitioned stages (:class:`operators.identity_router.LegacyRouterState`)."""
        if self.legacy_checked:
            return
        self.legacy_checked = True
        records, old_clock = self.legacy.drain(self.rules)
        if old_clock is not None:
            st = clock.state
            st.max_event_time = max(st.max_event_time, old_clock["max_event_time"])
            st.last_tick = max(st.last_tick, old_clock["last_tick"])
            self._store()
        self.counters.inc("legacy_components_drained", len(records))
        for record in records:
            yield self._feedback(record, clock)

    @staticmethod
    def _feedback(record: bytes, clock: IdentityClock) -> tuple:
        """A feedback-topic record as a ``feedback`` command (the journeys stage passes it on:
        PyFlink's ``on_timer`` cannot emit side outputs)."""
        cmd = ProfileCommand(profile_id="", kind=CommandKind.FEEDBACK, version=0, payload=record, at=0)
        return encode_command(cmd), clock.stamp(clock.state.max_event_time)

    def _store(self) -> None:
        assert self.clock is not None
        self.state.update(IDENTITY_CLOCK_CODEC.encode(self.clock.state))

    def process_element(self, value: tuple, ctx: KeyedProcessFunction.Context) -> Iterable[Any]:
        cmd_t, at = value[0], value[1]
        kind = cmd_t[1]
        clock = self._clock()
        yield from self._drain_legacy(clock)
        self.counters.tick(ctx.timer_service())
        self._watch(ctx)
        self.input_since_check = True
        self.record_since_open = True
        if kind == CommandKind.ERASURE_PENDING.value:
            body = json.loads(cmd_t[3])
            yield from self._send_due(
                clock.pending(body["request"], cmd_t[5], (body["atom"][0], body["atom"][1])), clock
            )
            self._store()
            return
        if kind == CommandKind.ERASURE_DONE.value:
            clock.done(json.loads(cmd_t[3])["request"])
            self._store()
            # the last tick was stamped below the request: declared again, in full, at the next
            # check (with no new input the watermark would stay before the request for good)
            self.reassert = True
            return
        if kind == CommandKind.EVENT.value and cmd_t[5] > clock.state.max_event_time:
            yield from self._send_due(clock.observe(cmd_t[5]), clock)
            # stored at once: after a restore with no new input the tick must reach every event
            # the checkpoint covers (docs/journeys.md, Idle advance)
            self._store()
        yield cmd_t, clock.stamp(at)

    def _send_due(self, due: list[tuple[str, Node]], clock: IdentityClock) -> Iterable[Any]:
        """Each due request to its home (the callers store the clock: ``sent`` changed)."""
        for rid, home in due:
            self.counters.inc("erasures_due")
            yield self._feedback(encode_message(Feedback(home, EraseDue(rid))), clock)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterable[Any]:
        self.counters.on_timer(timestamp)
        if self.idle_advance_ms <= 0 or (self.next_check is not None and timestamp < self.next_check):
            return
        self.next_check = None
        clock = self._clock()
        yield from self._drain_legacy(clock)
        idle = self.record_since_open and not self.input_since_check
        tick, due = clock.tick(idle=idle, reassert=self.reassert)
        self.reassert = False
        self.input_since_check = False
        yield from self._send_due(due, clock)
        if tick is not None:
            self.counters.inc("ticks")
            self.counters.tick(ctx.timer_service())
            # W = tick time - bound - 1 = the newest event time seen: everything up to it is due
            at = tick + self.bound + 1
            yield (
                encode_command(ProfileCommand(profile_id="", kind=CommandKind.TICK, version=0, at=at)),
                clock.stamp(at),
            )
        if tick is not None or due:
            self._store()
        self._watch(ctx)

    def _watch(self, ctx: Any) -> None:
        """Keep one idle-check timer pending."""
        if self.idle_advance_ms > 0 and self.next_check is None:
            self.next_check = ctx.timer_service().current_processing_time() + self.idle_advance_ms
            ctx.timer_service().register_processing_time_timer(self.next_check)
