"""Profiles keyed by canonical profile id: fold the router's commands, write them coalesced.

Logic in :mod:`models.profile_fold` (the fold) and :mod:`models.write_lifecycle` (when to
write). Per profile: a MapState of atom aggregates and one ValueState
(:class:`models.profile_fold.FoldState`), both as state records (:mod:`state.records`).
Atoms that leave the profile (merge or split) go out on :data:`MOVED_TAG` to the feedback
topic; the router brings them to their new profile.

The store is injected (:mod:`state.sinks`: Cassandra in the job, a recording store in
tests) and never blocks the operator: a change arms a coalescing timer; when a lifecycle
timer fires, :func:`models.write_lifecycle.step` says whether to issue the profile's row
(one asynchronous request), to check an unconfirmed write again later, or to clear the state
of a profile merged away once its deletion is confirmed. A write unconfirmed at a checkpoint
is issued again after a restore (idempotent); a failed write fails the job.

With ``report=True`` the operator also emits, after each command and lifecycle timer, the
profile's ``(profile id, holds state, pending lifecycle timers)`` on :data:`REPORT_TAG`, so
a test can check that nothing is left behind.

An ``erase`` command (``docs/privacy.md``) drops the profile's atoms at once and leaves one
last write: the row, the rows of every id of its component and its identifiers' links deleted
for good, their tombstones in the erasure ledger, the audit row; then the state is cleared.

Counters: ``commands``, ``events_folded``, ``states_merged``, ``atoms_evicted``,
``profile_writes``, ``profile_deletes``, ``profiles_erased``, ``cassandra_requests`` (one batch per written
profile) and ``cassandra_mutations`` (rows, links and deletions in those batches).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from pyflink.common import Types
from pyflink.datastream import KeyedProcessFunction, OutputTag, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

from models.avro_codec import SchemaCatalog
from models.identity_router import CommandKind
from models.profile_commands import decode_command, encode_moved
from models.profile_fold import FoldState, ProfileFold
from models.write_lifecycle import Sent, Step, fired, issued, on_change, step, waiting
from operators.counters import BufferedCounters
from operators.identity_router import BYTES
from state.mapstate import STATE_VALUE, MapStateMapping, string_keyed_map_state
from state.records import AGGREGATE_CODEC, FOLD_STATE_CODEC, node_key, node_of
from state.sinks import ProfileSink, Ticket

MOVED_TAG = OutputTag("moved-atoms", BYTES)
_NOT_MINE = (CommandKind.JOURNEY.value, CommandKind.TICK.value, CommandKind.IDENTITY.value, CommandKind.FEEDBACK.value)
REPORT_TAG = OutputTag("lifecycle-report", Types.TUPLE([Types.STRING(), Types.BOOLEAN(), Types.INT()]))


class FoldProfiles(KeyedProcessFunction):
    """Parameters
    ----------
    sink : callable
        Builds the profile store in ``open()`` (picklable: :class:`state.sinks.CassandraSink`
        in the job, :class:`state.sinks.RecordingSink` in tests).
    coalesce_ms, confirm_ms : int
        A profile is written at most once per ``coalesce_ms``; an unconfirmed write is
        checked again every ``confirm_ms``.
    half_life_ms : int
        Category affinity decay.
    report : bool
        Emit the lifecycle report on :data:`REPORT_TAG` (tests).
    """

    def __init__(
        self,
        sink: Callable[[], ProfileSink],
        coalesce_ms: int,
        half_life_ms: int,
        confirm_ms: int = 20,
        report: bool = False,
    ) -> None:
        self.sink = sink
        self.coalesce_ms, self.half_life_ms, self.confirm_ms = coalesce_ms, half_life_ms, confirm_ms
        self.report = report

    def open(self, runtime_context: RuntimeContext) -> None:
        self.atoms_state = runtime_context.get_map_state(string_keyed_map_state("profile-atoms"))
        self.atoms = MapStateMapping(self.atoms_state, AGGREGATE_CODEC, node_key, node_of)
        self.fold_state = runtime_context.get_state(ValueStateDescriptor("profile-fold", STATE_VALUE))
        self.catalog = SchemaCatalog.load()
        self.store = self.sink()
        self.sent: dict[str, tuple[int, Ticket]] = {}  # this instance's unconfirmed writes
        self.counters = BufferedCounters(
            runtime_context.get_metrics_group(),
            (
                "commands",
                "events_folded",
                "states_merged",
                "atoms_evicted",
                "profile_writes",
                "profile_deletes",
                "profiles_erased",
                "cassandra_requests",
                "cassandra_mutations",
            ),
        )

    def close(self) -> None:
        self.store.close()

    def _decode(self, payload: bytes) -> dict[str, Any]:
        return self.catalog.decode(payload, expect="NormalizedEvent")[1]

    def _fold(self, pid: str, raw: Any) -> ProfileFold:
        state = FoldState() if raw is None else FOLD_STATE_CODEC.decode(raw)
        return ProfileFold(pid, self.atoms, state, self.half_life_ms, self._decode)

    def process_element(self, value: tuple, ctx: KeyedProcessFunction.Context) -> Iterable[Any]:
        if value[1] in _NOT_MINE:
            return  # the journeys stage's commands
        cmd = decode_command(value)
        count = self.counters.inc
        self.counters.tick(ctx.timer_service())
        count("commands")
        fold = self._fold(cmd.profile_id, self.fold_state.value())
        self._register(ctx, on_change(fold.state, ctx.timer_service().current_processing_time(), self.coalesce_ms))
        evicted = fold.apply(cmd)
        if cmd.kind is CommandKind.EVENT:
            count("events_folded")
        elif cmd.kind is CommandKind.STATE:
            count("states_merged")
        elif cmd.kind is CommandKind.ERASE:
            count("profiles_erased")
        self.fold_state.update(FOLD_STATE_CODEC.encode(fold.state))
        count("atoms_evicted", len(evicted))
        for atom, aggregate in evicted:
            yield MOVED_TAG, encode_moved(CommandKind.STATE, atom, AGGREGATE_CODEC.encode(aggregate), cmd.home)
        if self.report:
            yield REPORT_TAG, self._report(cmd.profile_id)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterable[Any]:
        # a lifecycle timer of this profile, or the counters' timer (BufferedCounters),
        # registered on whatever key was current: only the profile's own timers act
        self.counters.on_timer(timestamp)
        pid = ctx.get_current_key()
        raw = self.fold_state.value()
        if raw is None:  # a profile whose state was cleared (or never existed)
            if self.report:
                yield REPORT_TAG, self._report(pid)
            return
        fold = self._fold(pid, raw)
        st = fold.state
        if not fired(st, timestamp):
            return
        entry = self.sent.get(pid)
        sent = None if entry is None else Sent(entry[0], entry[1].done, entry[1].error)
        if sent is not None and sent.done:
            del self.sent[pid]
        what = step(st, sent)  # raises WriteFailed: the job restarts from its last checkpoint
        now = ctx.timer_service().current_processing_time()
        if what is Step.WAIT:
            self._register(ctx, waiting(st, now, self.confirm_ms))
        elif what is Step.ISSUE:
            write = fold.flush()
            before = self.store.mutations_issued
            self.sent[pid] = (write.version, self.store.write(write))
            self.counters.inc("cassandra_requests")
            self.counters.inc("cassandra_mutations", self.store.mutations_issued - before)
            self.counters.inc("profile_deletes" if write.profile is None else "profile_writes")
            self._register(ctx, issued(st, write.version, now, self.confirm_ms))
        if what is Step.CLEAR:
            if not self.atoms_state.is_empty():
                raise RuntimeError(f"profile {pid} was merged away but still holds atoms")
            self.fold_state.clear()  # deleted in the store: nothing left behind
        else:
            self.fold_state.update(FOLD_STATE_CODEC.encode(st))
        if self.report:
            yield REPORT_TAG, self._report(pid)

    def _report(self, pid: str) -> tuple[str, bool, int]:
        """(profile id, holds any state, pending lifecycle timers), read from the state itself."""
        raw = self.fold_state.value()
        timers = 0 if raw is None else len(FOLD_STATE_CODEC.decode(raw).timers)
        return pid, raw is not None or not self.atoms_state.is_empty(), timers

    @staticmethod
    def _register(ctx, at: int | None) -> None:
        if at is not None:
            ctx.timer_service().register_processing_time_timer(at)
