"""Profiles keyed by canonical profile id: fold the router's commands, write them coalesced.

Logic in :mod:`models.profile_fold` (the fold) and :mod:`models.write_lifecycle` (when to
write). Per profile one ValueState holds everything (:class:`models.profile_fold.FoldState`
as a state record, :mod:`state.records`): its atoms' aggregates, its identity and its write
lifecycle, so a command costs one state read and one state write. (Releases before kept the
atoms in a MapState, ``profile-atoms``; a profile restored from them has its atoms moved into
the record on its next command or timer.) Atoms that leave the profile (merge or split) go
out on :data:`MOVED_TAG` to the feedback topic; the router brings them to their new profile.

The store is injected (:mod:`state.sinks`: Cassandra in the job, a recording store in
tests) and never blocks the operator. A change to a profile not written within the last
``coalesce_ms`` is written at once, from the command; a change within that window is written
at its end (one timer). Writes of a few milliseconds from all of the subtask's profiles go
out together as one request (:class:`state.sinks.WriteGroups`: at most ``group_size``
profiles, at most ``group_ms`` old). Each write arms a confirmation timer, handled in memory
when its write was answered (:class:`models.write_lifecycle.Lifecycle`: no state access);
otherwise :func:`models.write_lifecycle.step` says, from the state, whether to issue the
profile's row, to wait, or to clear the state of a profile merged away once its deletion is
confirmed. A write unconfirmed at a checkpoint is issued again after a restore
(idempotent); a failed write fails the job.

With ``report=True`` the operator also emits, after each command and lifecycle timer, the
profile's ``(profile id, holds state, pending lifecycle timers)`` on :data:`REPORT_TAG`, so
a test can check that nothing is left behind.

An ``erase`` command (``docs/privacy.md``) drops the profile's atoms at once and leaves one
last write: the row, the rows of every id of its component and its identifiers' links deleted
for good, their tombstones in the erasure ledger, the audit row; then the state is cleared.

Counters: ``commands``, ``events_folded``, ``states_merged``, ``atoms_evicted``,
``profile_writes``, ``profile_deletes``, ``profiles_erased``, ``cassandra_requests`` (one per
group of profile writes) and ``cassandra_mutations`` (rows, links and deletions in them).
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
from models.write_lifecycle import NOW, Fast, Lifecycle, Step, later, on_change
from operators.counters import BufferedCounters
from operators.identity_router import BYTES
from state.mapstate import STATE_VALUE, MapStateMapping, string_keyed_map_state
from state.records import AGGREGATE_CODEC, FOLD_STATE_CODEC, node_key, node_of
from state.sinks import ProfileSink, WriteGroups

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
        checked again every ``confirm_ms`` (more than ``group_ms``).
    half_life_ms : int
        Category affinity decay.
    report : bool
        Emit the lifecycle report on :data:`REPORT_TAG` (tests).
    group_size, group_ms : int
        Profile writes sent together in one request: at most this many, at most this old.
    """

    def __init__(
        self,
        sink: Callable[[], ProfileSink],
        coalesce_ms: int,
        half_life_ms: int,
        confirm_ms: int = 30,
        report: bool = False,
        group_size: int = 8,
        group_ms: int = 10,
    ) -> None:
        if confirm_ms <= group_ms:
            raise ValueError(f"confirm_ms ({confirm_ms}) must exceed group_ms ({group_ms})")
        self.sink = sink
        self.coalesce_ms, self.half_life_ms, self.confirm_ms = coalesce_ms, half_life_ms, confirm_ms
        self.report = report
        self.group_size, self.group_ms = group_size, group_ms

    def open(self, runtime_context: RuntimeContext) -> None:
        # the atoms of releases before FoldState.atoms: read once per such profile, then emptied
        self.atoms_state = runtime_context.get_map_state(string_keyed_map_state("profile-atoms"))
        self.legacy_atoms = MapStateMapping(self.atoms_state, AGGREGATE_CODEC, node_key, node_of)
        self.fold_state = runtime_context.get_state(ValueStateDescriptor("profile-fold", STATE_VALUE))
        self.catalog = SchemaCatalog.load()
        self.store = self.sink()
        self.groups = WriteGroups(self.store, self.group_size, self.group_ms)
        self.counted = (0, 0)  # the store's requests and mutations already counted
        self.lifecycle = Lifecycle(self.coalesce_ms, self.confirm_ms)  # this instance's writes in flight
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
        self.groups.send()
        self.store.close()

    def _decode(self, payload: bytes) -> dict[str, Any]:
        return self.catalog.decode(payload, expect="NormalizedEvent")[1]

    def _load(self, pid: str, raw: Any) -> FoldState:
        """The profile's state from its one record (its atoms moved in from the MapState of
        an earlier release, if they are still there)."""
        if raw is None:
            return FoldState(atoms={})
        st = FOLD_STATE_CODEC.decode(raw)
        if st.atoms is None:  # stored at once: a timer that turns out foreign stores nothing
            st.atoms = dict(self.legacy_atoms.items())
            self.fold_state.update(FOLD_STATE_CODEC.encode(st))
            self.atoms_state.clear()
        self.lifecycle.load(pid, st)
        return st

    def _fold(self, pid: str, st: FoldState) -> ProfileFold:
        assert st.atoms is not None
        return ProfileFold(pid, st.atoms, st, self.half_life_ms, self._decode)

    def process_element(self, value: tuple, ctx: KeyedProcessFunction.Context) -> Iterable[Any]:
        if value[1] in _NOT_MINE:
            return  # the journeys stage's commands
        cmd = decode_command(value)
        timers = ctx.timer_service()
        now = timers.current_processing_time()
        count = self.counters.inc
        self.counters.tick(timers)
        self._poll(now)
        count("commands")
        st = self._load(cmd.profile_id, self.fold_state.value())
        fold = self._fold(cmd.profile_id, st)
        plan = on_change(st, now)
        evicted = fold.apply(cmd)
        if cmd.kind is CommandKind.EVENT:
            count("events_folded")
        elif cmd.kind is CommandKind.STATE:
            count("states_merged")
        elif cmd.kind is CommandKind.ERASE:
            count("profiles_erased")
        if plan is NOW:
            self._issue(fold, now, timers)
        elif isinstance(plan, int):
            timers.register_processing_time_timer(plan)
        self.fold_state.update(FOLD_STATE_CODEC.encode(st))
        count("atoms_evicted", len(evicted))
        for atom, aggregate in evicted:
            yield MOVED_TAG, encode_moved(CommandKind.STATE, atom, AGGREGATE_CODEC.encode(aggregate), cmd.home)
        if self.report:
            yield REPORT_TAG, self._report(cmd.profile_id)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterable[Any]:
        # a lifecycle timer of this profile, or the counters' timer (BufferedCounters),
        # registered on whatever key was current: only the profile's own timers act
        self.counters.on_timer(timestamp)
        timers = ctx.timer_service()
        now = timers.current_processing_time()
        self._poll(now)
        pid = ctx.get_current_key()
        fast = self.lifecycle.on_timer(pid, timestamp, now)  # raises WriteFailed: the job restarts
        if fast is Fast.REARM:
            timers.register_processing_time_timer(self.lifecycle.rearmed)
        if fast is not Fast.STATE:  # a confirmation handled in memory
            if self.report:
                yield REPORT_TAG, self._report(pid)
            return
        raw = self.fold_state.value()
        if raw is None:  # a profile whose state was cleared (or never existed)
            if self.report:
                yield REPORT_TAG, self._report(pid)
            return
        st = self._load(pid, raw)
        what = self.lifecycle.with_state(pid, st, timestamp, now)
        if what is None:
            return  # not a lifecycle timer of this profile
        if what is Step.LATER:
            at = later(st)
            if at is not None:
                timers.register_processing_time_timer(at)
        elif what is Step.ISSUE:
            self._issue(self._fold(pid, st), now, timers)
        if what is Step.CLEAR:
            if st.atoms:
                raise RuntimeError(f"profile {pid} was merged away but still holds atoms")
            self.fold_state.clear()  # deleted in the store: nothing left behind
        else:
            self.fold_state.update(FOLD_STATE_CODEC.encode(st))
        if self.report:
            yield REPORT_TAG, self._report(pid)

    def _issue(self, fold: ProfileFold, now: int, timers: Any) -> None:
        """Flush the profile's row into the open write group and arm its confirmation."""
        write = fold.flush()
        ticket = self.groups.add(write, now)
        timers.register_processing_time_timer(
            self.lifecycle.issued(fold.profile_id, fold.state, write.version, ticket, now)
        )
        self.counters.inc("profile_deletes" if write.profile is None else "profile_writes")
        self._count_requests()

    def _poll(self, now: int) -> None:
        if self.groups.poll(now):
            self._count_requests()

    def _count_requests(self) -> None:
        requests, mutations = self.store.writes_issued, self.store.mutations_issued
        if (requests, mutations) != self.counted:
            self.counters.inc("cassandra_requests", requests - self.counted[0])
            self.counters.inc("cassandra_mutations", mutations - self.counted[1])
            self.counted = (requests, mutations)

    def _report(self, pid: str) -> tuple[str, bool, int]:
        """(profile id, holds any state, pending lifecycle timers), read from the state itself
        and this instance's writes in flight."""
        raw = self.fold_state.value()
        pending = self.lifecycle.pending(pid, None if raw is None else FOLD_STATE_CODEC.decode(raw))
        return pid, raw is not None or not self.atoms_state.is_empty(), pending
