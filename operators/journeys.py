"""Journeys keyed by canonical profile id: sessions, carts, triggers (logic in :mod:`models.journeys`).

Input: the router's commands (:mod:`models.profile_commands`), with event-time timestamps
and watermarks assigned right after the router. Per profile one ValueState, the
``JourneyState`` record (:data:`state.records.JOURNEY_STATE_CODEC`: sessions, carts, the
person's history), a MapState of the events waiting for the watermark (``JourneyFact``
records by :func:`models.journeys.buffer_key`) and event-time timers at each waiting event
and at the next due time (:meth:`models.journeys.Journey.next_due`). An event that is not late
costs one MapState write and a timer, and no read; the ValueState is read and written once
per timer that finds work, per late event and per identity change. Commands that do not
concern the journey (a ``touch`` with no identity change, a fold's ``state``, a ``tick``)
touch no state.

Outputs: the moved journey parts (main output, ``JourneyMove`` bytes for the feedback
topic); published sessions, consented triggers and late events as Avro bytes on
:data:`SESSIONS_TAG`, :data:`TRIGGERS_TAG`, :data:`LATE_TAG`. Sessions, carts and every trigger
(suppressed ones too) are written to the injected store (:mod:`state.journey_store`),
synchronously: a write is done before the checkpoint that covers the decision, and is
idempotent when a replay makes it again.

With ``report=True`` the operator also emits ``(profile id, holds journey state, next due
time or -1)`` on :data:`REPORT_TAG` after every command and timer (tests: nothing left behind
but the person's history of links and consent).

Counters: ``commands``, ``journey_events``, ``late_applied``, ``late_dropped``, ``sessions``,
``session_updates``, ``triggers_<kind>``, ``suppressed_marketing``, ``parts_sent``,
``parts_received``, ``cassandra_requests``.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from pyflink.common import Types
from pyflink.datastream import KeyedProcessFunction, OutputTag, RuntimeContext, TimeDomain
from pyflink.datastream.state import ValueStateDescriptor

from models.avro_codec import SchemaCatalog
from models.identity import IdentityRules
from models.identity_router import CommandKind
from models.journeys import (
    TRIGGER_KINDS,
    Journey,
    JourneySettings,
    JourneyState,
    LateOut,
    Out,
    SessionOut,
    TriggerOut,
    buffer_key,
    fact_of,
)
from models.profile_commands import decode_command, encode_journey_move
from operators.counters import BufferedCounters
from operators.identity_router import BYTES
from state.journey_store import JourneyWriter
from state.mapstate import STATE_VALUE, MapStateMapping, string_keyed_map_state
from state.records import JOURNEY_FACT_CODEC, JOURNEY_STATE_CODEC

SESSIONS_TAG = OutputTag("sessions", BYTES)
TRIGGERS_TAG = OutputTag("triggers", BYTES)
LATE_TAG = OutputTag("late-events", BYTES)
REPORT_TAG = OutputTag("journey-report", Types.TUPLE([Types.STRING(), Types.BOOLEAN(), Types.LONG()]))
_IGNORED = (CommandKind.STATE, CommandKind.TICK)


class Journeys(KeyedProcessFunction):
    """Parameters
    ----------
    settings : JourneySettings
    store : callable
        Builds the journey store in ``open()`` (picklable: :class:`state.journey_store.CassandraJourneys`
        in the job, :class:`state.journey_store.RecordingJourneys` in tests).
    rules : IdentityRules
        For the blocked-value check of session streams (the router's rules).
    report : bool
        Emit the state report on :data:`REPORT_TAG` (tests).
    """

    def __init__(
        self,
        settings: JourneySettings,
        store: Callable[[], JourneyWriter],
        rules: IdentityRules | None = None,
        report: bool = False,
    ) -> None:
        self.settings, self.store_factory = settings, store
        self.rules = rules or IdentityRules()
        self.report = report

    def open(self, runtime_context: RuntimeContext) -> None:
        self.state = runtime_context.get_state(ValueStateDescriptor("journey", STATE_VALUE))
        # events waiting for the watermark: one MapState entry each (written once, read once)
        self.buffer_state = runtime_context.get_map_state(string_keyed_map_state("journey-buffer"))
        self.buffer = MapStateMapping(self.buffer_state, JOURNEY_FACT_CODEC)
        self.catalog = SchemaCatalog.load()
        self.session_codec = self.catalog.codec("Session")
        self.trigger_codec = self.catalog.codec("Trigger")
        self.late_codec = self.catalog.codec("LateEvent")
        self.store = self.store_factory()
        self.counters = BufferedCounters(
            runtime_context.get_metrics_group(),
            (
                "commands",
                "journey_events",
                "late_applied",
                "late_dropped",
                "sessions",
                "session_updates",
                *(f"triggers_{k}" for k in TRIGGER_KINDS),
                "suppressed_marketing",
                "parts_sent",
                "parts_received",
                "held",
                "cassandra_requests",
            ),
        )

    def close(self) -> None:
        self.store.close()

    def process_element(self, value: tuple, ctx: KeyedProcessFunction.Context) -> Iterable[Any]:
        kind = CommandKind(value[1])
        self.counters.tick(ctx.timer_service())
        if kind in _IGNORED:
            return
        cmd = decode_command(value)
        if kind is CommandKind.TOUCH and not (cmd.evict or cmd.incoming):
            return
        self.counters.inc("commands")
        timers = ctx.timer_service()
        watermark = timers.current_watermark()
        fact = None
        if kind is CommandKind.EVENT:
            self.counters.inc("journey_events")
            assert cmd.atom is not None
            event = self.catalog.decode(cmd.payload, expect="NormalizedEvent")[1]
            fact = fact_of(event, cmd.atom, self.rules)
            if fact.at > watermark:  # the usual case: one state write and a timer, nothing read
                self.buffer[buffer_key(fact)] = fact
                timers.register_event_time_timer(fact.at)
                fact = None
                if not (cmd.evict or cmd.incoming):
                    return
            elif fact.at > watermark - self.settings.allowed_lateness_ms:
                self.counters.inc("late_applied")
        pid = cmd.profile_id
        journey = Journey(pid, self._state(), self.settings)
        if cmd.evict or kind is CommandKind.JOURNEY:
            self._load(journey, None)  # a move takes buffered events along
        moved = None
        if kind is CommandKind.JOURNEY:
            self.counters.inc("parts_received")
            assert cmd.atom is not None
            moved = (cmd.atom, JOURNEY_STATE_CODEC.decode(cmd.payload))
        parts, outs = journey.apply_command(watermark, cmd.incoming, cmd.evict, cmd.members == (), fact, moved)
        for node, part in parts:
            self.counters.inc("parts_sent")
            yield encode_journey_move(node, JOURNEY_STATE_CODEC.encode(part), pid)
        yield from self._finish(journey, watermark, outs, ctx)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterable[Any]:
        if ctx.time_domain() != TimeDomain.EVENT_TIME:
            self.counters.on_timer(timestamp)  # the counters' processing-time timer
            return
        self.counters.tick(ctx.timer_service())  # what this timer counts is pushed too
        journey = Journey(ctx.get_current_key(), self._state(), self.settings)
        yield from self._finish(journey, ctx.timer_service().current_watermark(), [], ctx)

    def _state(self) -> JourneyState:
        raw = self.state.value()
        return JourneyState() if raw is None else JOURNEY_STATE_CODEC.decode(raw)

    def _load(self, journey: Journey, upto: int | None) -> None:
        """Move the buffered events at or before ``upto`` (None: all) from the MapState into the
        model, which processes them in event-time order."""
        taken = []
        for key in list(self.buffer):
            if upto is None or int(key.split(":", 1)[0]) <= upto:
                taken.append(key)
        for key in taken:
            journey.buffer_event(self.buffer.pop(key))

    def _finish(self, journey: Journey, watermark: int, outs: list[Out], ctx) -> Iterable[Any]:
        """Advance to the watermark, emit and write what came out, store the state (events not
        yet due back in the buffer), arm the next timer."""
        if not journey.state.pending:
            self._load(journey, watermark)
        outs = outs + journey.advance(watermark)
        yield from self._emit(outs)
        st = journey.state
        if st.pending:
            self.counters.inc("held")  # decisions wait for moved parts (a count that stays up: parts lost)
        for f in st.buffer:  # not due yet (or held): back to the MapState
            self.buffer[buffer_key(f)] = f
            if f.at > watermark:
                ctx.timer_service().register_event_time_timer(f.at)
        st.buffer = []
        if st.is_empty():
            self.state.clear()
        else:
            self.state.update(JOURNEY_STATE_CODEC.encode(st))
        due = journey.next_due()
        if due is not None and due > watermark:
            ctx.timer_service().register_event_time_timer(due)
        if self.report:
            holds = st.holds_journey() or not self.buffer_state.is_empty()
            yield REPORT_TAG, (journey.profile_id, holds, -1 if due is None else due)

    def _emit(self, outs: list[Out]) -> Iterable[Any]:
        count = self.counters.inc
        for o in outs:
            if isinstance(o, SessionOut):
                count("sessions" if o.session["version"] == 1 else "session_updates")
                yield SESSIONS_TAG, self.session_codec.encode(o.session)
            elif isinstance(o, TriggerOut):
                if o.published:
                    count(f"triggers_{o.trigger['kind']}")
                    yield TRIGGERS_TAG, self.trigger_codec.encode(o.trigger)
                else:
                    count("suppressed_marketing")
            elif isinstance(o, LateOut):
                count("late_dropped")
                yield LATE_TAG, self.late_codec.encode(o.record)
        if outs:
            count("cassandra_requests", self.store.write(outs))
