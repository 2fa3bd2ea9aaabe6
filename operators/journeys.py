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

Rule segments (``docs/segments.md``, logic in :mod:`models.segments`): the function is a
keyed broadcast function; its broadcast input is ``journey.control`` (rule updates as JSON),
kept in the broadcast state ``segment-rules`` (``SegmentRule`` records by name) and compiled
into the subtask's :class:`models.segments.RuleSet` (a compiled CEL program does not pickle).
The rules given to the constructor (the shipped file) run until an update replaces them;
after a restore the subtask takes the stored rules on its first record or timer. Every update
is answered on :data:`CONTROL_RESULTS_TAG` by every subtask (JSON: accepted or rejected with
the error, and the versions the subtask runs).

Outputs: every output is a ``(kind, bytes)`` pair on the main output (:data:`OUT_TYPE`), which
:class:`SplitOutputs` (chained right after it) turns into the moved journey parts (its main
output, ``JourneyMove`` bytes for the feedback topic) and the side outputs: published
sessions, consented triggers, late events and segment changes as Avro bytes on
:data:`SESSIONS_TAG`, :data:`TRIGGERS_TAG`, :data:`LATE_TAG`, :data:`SEGMENTS_TAG`, and the
answers to rule updates on :data:`CONTROL_RESULTS_TAG`. (PyFlink 2.2's thread mode sends what
a keyed broadcast function's ``on_timer`` yields to the main output whatever its tag:
``pyflink/fn_execution/datastream/embedded/operations.py`` wraps ``process_element`` and
``process_broadcast_element`` in the side-output split but not ``on_timer``.) Sessions, carts and every trigger
(suppressed ones too) are written to the injected store (:mod:`state.journey_store`),
synchronously: a write is done before the checkpoint that covers the decision, and is
idempotent when a replay makes it again.

With ``report=True`` the operator also emits ``(profile id, holds journey state, next due
time or -1)`` (JSON) as kind :data:`REPORT`, on :data:`REPORT_TAG` after the split, after every command and timer (tests: nothing left behind
but the person's history of links and consent).

Counters: ``commands``, ``journey_events``, ``late_applied``, ``late_dropped``, ``sessions``,
``session_updates``, ``triggers_<kind>``, ``suppressed_marketing``, ``parts_sent``,
``parts_received``, ``segments_entered``, ``segments_exited``, ``segments_withheld_<purpose>``
(entries withheld for want of consent, ``docs/privacy.md``), ``rule_errors``,
``rule_updates_accepted``, ``rule_updates_rejected``, ``consent_changes`` (audited),
``erasures_received``, ``journeys_erased``, ``cassandra_requests``.

Erasure (``docs/privacy.md``): an ``erase`` command is kept in the state (``PendingErase``) with
a timer at its time; event time stops there for the profile (what was due before it is
decided and published as usual), then everything of the profile goes: the state, its rows
under every id of its component, and an erasure sample tells the learner to forget it.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Iterable, Sequence

from pyflink.common import Types
from pyflink.datastream import (
    KeyedBroadcastProcessFunction,
    OutputTag,
    ProcessFunction,
    RuntimeContext,
    TimeDomain,
)
from pyflink.datastream.state import MapStateDescriptor, ValueStateDescriptor

from models.avro_codec import SchemaCatalog
from models.identity import IdentityRules
from models.identity_router import CommandKind
from models.journeys import (
    TRIGGER_KINDS,
    Journey,
    JourneySettings,
    ConsentAuditOut,
    JourneyState,
    LateOut,
    Out,
    PendingErase,
    SampleOut,
    SessionOut,
    TriggerOut,
    buffer_key,
    fact_of,
)
from models.profile_commands import decode_command, encode_moved
from models.segments import PURPOSES, RuleError, RuleSet, SegmentOut, SegmentRule, parse_rules
from operators.counters import BufferedCounters
from operators.identity_router import BYTES
from state.journey_store import JourneyWriter
from state.mapstate import STATE_VALUE, MapStateMapping, string_keyed_map_state
from state.records import JOURNEY_FACT_CODEC, JOURNEY_STATE_CODEC, LEARNING_SAMPLE_CODEC, SEGMENT_RULE_CODEC

SESSIONS_TAG = OutputTag("sessions", BYTES)
TRIGGERS_TAG = OutputTag("triggers", BYTES)
LATE_TAG = OutputTag("late-events", BYTES)
SEGMENTS_TAG = OutputTag("segments", BYTES)
CONTROL_RESULTS_TAG = OutputTag("control-results", BYTES)
#: the broadcast input: a journey.control record's value and a timestamp (see flink_jobs.profiles)
CONTROL_TYPE = Types.TUPLE([BYTES, Types.LONG()])
RULES_STATE = MapStateDescriptor("segment-rules", Types.STRING(), STATE_VALUE)
#: the operator's output: (kind, bytes); kinds below
OUT_TYPE = Types.TUPLE([Types.INT(), BYTES])
MOVE, SESSION, TRIGGER, LATE, SEGMENT, CONTROL, REPORT, SAMPLE, IDENTITY = range(9)
#: ``journey.identity`` records the router emitted from a timer (``identity`` commands), passed on
ROUTER_IDENTITY_TAG = OutputTag("router-identity", BYTES)
SAMPLES_TAG = OutputTag("learning-samples", BYTES)
REPORT_TAG = OutputTag("journey-report", Types.TUPLE([Types.STRING(), Types.BOOLEAN(), Types.LONG()]))
_IGNORED = (CommandKind.STATE, CommandKind.TICK)


def subtask_index(runtime_context: RuntimeContext) -> int:
    """This subtask's index. (PyFlink 2.2's thread-mode ``get_index_of_this_subtask`` calls a
    Java method Flink 2 removed; the task info has it.)"""
    try:
        return runtime_context.get_index_of_this_subtask()
    except Exception:
        return int(runtime_context._runtime_context.getTaskInfo().getIndexOfThisSubtask())


class Journeys(KeyedBroadcastProcessFunction):
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
    segment_rules : sequence of SegmentRule
        The rule segments to run until ``journey.control`` replaces them (validated by the caller).
    samples : bool
        Emit a learning sample at each session's close (:data:`SAMPLES_TAG`, for ``learn-models``).
    """

    def __init__(
        self,
        settings: JourneySettings,
        store: Callable[[], JourneyWriter],
        rules: IdentityRules | None = None,
        report: bool = False,
        segment_rules: Sequence[SegmentRule] = (),
        samples: bool = False,
    ) -> None:
        self.settings, self.store_factory = settings, store
        self.rules = rules or IdentityRules()
        self.report = report
        self.segment_rules = tuple(segment_rules)
        self.samples = samples

    def open(self, runtime_context: RuntimeContext) -> None:
        self.state = runtime_context.get_state(ValueStateDescriptor("journey", STATE_VALUE))
        # events waiting for the watermark: one MapState entry each (written once, read once)
        self.buffer_state = runtime_context.get_map_state(string_keyed_map_state("journey-buffer"))
        self.buffer = MapStateMapping(self.buffer_state, JOURNEY_FACT_CODEC)
        self.catalog = SchemaCatalog.load()
        self.session_codec = self.catalog.codec("Session")
        self.trigger_codec = self.catalog.codec("Trigger")
        self.late_codec = self.catalog.codec("LateEvent")
        self.segment_codec = self.catalog.codec("SegmentChange")
        self.ruleset = RuleSet.of(self.segment_rules)
        self.rules_restored = False  # the broadcast state is read on the first record or timer
        self.subtask = subtask_index(runtime_context)
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
                "samples",
                "segments_entered",
                "segments_exited",
                *(f"segments_withheld_{p}" for p in PURPOSES),
                "rule_errors",
                "rule_updates_accepted",
                "rule_updates_rejected",
                "consent_changes",
                "erasures_received",
                "journeys_erased",
                "cassandra_requests",
            ),
        )

    def close(self) -> None:
        if hasattr(self, "store"):  # open() may have failed before it
            self.store.close()

    # ---- rule updates (the broadcast side) ------------------------------------------------

    def process_broadcast_element(self, value: tuple, ctx: KeyedBroadcastProcessFunction.Context) -> Iterable[Any]:
        """A ``journey.control`` record: apply each rule it defines, keep the accepted ones in
        the broadcast state, answer for each."""
        self._restore_rules(ctx)
        stored = ctx.get_broadcast_state(RULES_STATE)
        try:
            rules = parse_rules(bytes(value[0]).decode("utf-8"))
            problems: list[tuple[dict[str, Any], str]] = []
        except (RuleError, UnicodeDecodeError) as e:
            rules, problems = [], [({}, str(e))]
        answers = []
        for rule in rules:
            try:
                self.ruleset.apply(rule)
            except RuleError as e:
                problems.append((rule.record(), str(e)))
                continue
            stored.put(rule.name, SEGMENT_RULE_CODEC.encode(rule))
            self.counters.inc("rule_updates_accepted")
            answers.append(self._answer(rule.record(), None))
        for rec, error in problems:
            self.counters.inc("rule_updates_rejected")
            answers.append(self._answer(rec, error))
        for a in answers:
            yield CONTROL, a

    def _answer(self, rule: dict[str, Any], error: str | None) -> bytes:
        return json.dumps(
            {
                "subtask": self.subtask,
                "rule": rule.get("name"),
                "version": rule.get("version"),
                "status": "rejected" if error else "accepted",
                "error": error,
                "running": self.ruleset.versions(),
                "answered_at": int(time.time() * 1000),
            },
            sort_keys=True,
        ).encode()

    def _restore_rules(self, ctx: Any) -> None:
        """Once per subtask: the rules of the broadcast state (after a restore) that are newer
        than the ones given to the constructor."""
        if self.rules_restored:
            return
        self.rules_restored = True
        for _, raw in ctx.get_broadcast_state(RULES_STATE).items():
            rule = SEGMENT_RULE_CODEC.decode(raw)
            have = self.ruleset.rules.get(rule.name)
            if have is None or have.rule.version < rule.version:
                self.ruleset.apply(rule)

    # ---- the keyed side ------------------------------------------------------------------

    def process_element(self, value: tuple, ctx: KeyedBroadcastProcessFunction.ReadOnlyContext) -> Iterable[Any]:
        kind = CommandKind(value[1])
        self.counters.tick(ctx.timer_service())
        if kind in _IGNORED:
            return
        if kind is CommandKind.IDENTITY:  # not the journey's: the router's record, passed on
            yield IDENTITY, bytes(value[4])
            return
        if kind is CommandKind.FEEDBACK:  # not the journey's: the identity clock's, passed on
            yield MOVE, bytes(value[4])
            return
        self._restore_rules(ctx)
        cmd = decode_command(value)
        if kind is CommandKind.TOUCH and not (cmd.evict or cmd.incoming):
            return
        self.counters.inc("commands")
        timers = ctx.timer_service()
        watermark = timers.current_watermark()
        if kind is CommandKind.ERASE:  # carried out when event time reaches it (_finish)
            self.counters.inc("erasures_received")
            st = self._state()
            ids = list(cmd.ghosts or (cmd.profile_id,))
            st.erasure = PendingErase(cmd.request or "", cmd.at, cmd.version, ids)
            journey = Journey(cmd.profile_id, st, self.settings, self.ruleset, self.samples)
            yield from self._finish(journey, watermark, [], ctx)
            return
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
        journey = Journey(pid, self._state(), self.settings, self.ruleset, self.samples)
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
            yield MOVE, encode_moved(CommandKind.JOURNEY, node, JOURNEY_STATE_CODEC.encode(part), cmd.home)
        yield from self._finish(journey, watermark, outs, ctx)

    def on_timer(self, timestamp: int, ctx: KeyedBroadcastProcessFunction.OnTimerContext) -> Iterable[Any]:
        if ctx.time_domain() != TimeDomain.EVENT_TIME:
            self.counters.on_timer(timestamp)  # the counters' processing-time timer
            return
        self.counters.tick(ctx.timer_service())  # what this timer counts is pushed too
        self._restore_rules(ctx)
        journey = Journey(ctx.get_current_key(), self._state(), self.settings, self.ruleset, self.samples)
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
        yet due back in the buffer), arm the next timer. A pending erasure stops event time at
        its own time and then erases the profile."""
        erasing = journey.state.erasure is not None and watermark >= journey.state.erasure.at
        if erasing:
            self._load(journey, None)  # nothing buffered survives
        elif not journey.state.pending:
            self._load(journey, journey.until(watermark))
        outs = outs + journey.settle(watermark, self.ruleset.rules.keys())
        if erasing:
            self.counters.inc("journeys_erased")
        if journey.rule_stats.errors:
            self.counters.inc("rule_errors", journey.rule_stats.errors)
        for purpose, n in journey.rule_stats.withheld.items():
            self.counters.inc(f"segments_withheld_{purpose}", n)
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
            yield REPORT, json.dumps([journey.profile_id, holds, -1 if due is None else due]).encode()

    def _emit(self, outs: list[Out]) -> Iterable[Any]:
        count = self.counters.inc
        for o in outs:
            if isinstance(o, SessionOut):
                count("sessions" if o.session["version"] == 1 else "session_updates")
                yield SESSION, self.session_codec.encode(o.session)
            elif isinstance(o, TriggerOut):
                if o.published:
                    count(f"triggers_{o.trigger['kind']}")
                    yield TRIGGER, self.trigger_codec.encode(o.trigger)
                else:
                    count("suppressed_marketing")
            elif isinstance(o, LateOut):
                count("late_dropped")
                yield LATE, self.late_codec.encode(o.record)
            elif isinstance(o, SegmentOut):
                count("segments_entered" if o.record["change"] == "entered" else "segments_exited")
                yield SEGMENT, self.segment_codec.encode(o.record)
            elif isinstance(o, SampleOut):
                count("samples")
                yield SAMPLE, LEARNING_SAMPLE_CODEC.encode(o.sample)
            elif isinstance(o, ConsentAuditOut):
                count("consent_changes")
        if outs:
            count("cassandra_requests", self.store.write(outs))


class SplitOutputs(ProcessFunction):
    """The journeys operator's ``(kind, bytes)`` outputs to the moved parts (main output) and
    the side outputs (see the module doc for why they are not yielded there directly)."""

    TAGS = {
        SESSION: SESSIONS_TAG,
        TRIGGER: TRIGGERS_TAG,
        LATE: LATE_TAG,
        SEGMENT: SEGMENTS_TAG,
        CONTROL: CONTROL_RESULTS_TAG,
        SAMPLE: SAMPLES_TAG,
        IDENTITY: ROUTER_IDENTITY_TAG,
    }

    def process_element(self, value: tuple, ctx: ProcessFunction.Context) -> Iterable[Any]:
        kind, data = value
        if kind == MOVE:
            yield data
        elif kind == REPORT:
            yield REPORT_TAG, tuple(json.loads(bytes(data)))
        else:
            yield self.TAGS[kind], data
