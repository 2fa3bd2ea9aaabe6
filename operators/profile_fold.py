"""Profiles keyed by canonical profile id: fold the router's commands, write Cassandra coalesced.

Logic in :mod:`models.profile_fold`. Per profile: a MapState of atom aggregates and one
ValueState (:class:`models.profile_fold.FoldState`), both as state records
(:mod:`state.records`). Atoms that leave the profile (merge or
split) go out on :data:`MOVED_TAG` to the feedback topic; the router brings them to their new
profile.

Writes are coalesced and never block the operator on Cassandra: the first command that
makes a profile dirty registers a processing-time timer ``coalesce_ms`` later; that timer
issues the profile's current row (:meth:`state.profile_store.ProfileStore.write`, one
asynchronous batch), clears ``dirty`` and records the version as ``writing``; a confirmation
timer ``confirm_ms`` later clears ``writing`` once Cassandra acknowledged it (or checks again
later). So there is one write per profile per window, not one per event, and a checkpoint
never covers a lost write: a checkpoint taken while a write is unconfirmed holds
``writing`` and the confirmation timer (timers are checkpointed); after a restore this
operator instance has no record of that write, so the timer issues it again (idempotent).
A failed write fails the job (restart from the last checkpoint, rewrite). A profile merged
away is deleted in Cassandra and its Flink state cleared once the deletion is confirmed.

Counters: ``commands``, ``events_folded``, ``states_merged``, ``atoms_evicted``,
``profile_writes``, ``profile_deletes``, ``cassandra_requests`` (one batch per written
profile) and ``cassandra_mutations`` (rows, links and deletions in those batches).
"""

from __future__ import annotations

from typing import Any, Iterable

from pyflink.datastream import KeyedProcessFunction, OutputTag, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

from models.avro_codec import SchemaCatalog
from operators.identity_router import BYTES
from models.identity_router import CommandKind
from models.profile_commands import decode_command, encode_moved_state
from models.profile_fold import FoldState, ProfileFold
from operators.counters import BufferedCounters
from state.mapstate import STATE_VALUE, MapStateMapping, string_keyed_map_state
from state.profile_store import ProfileStore, WriteTicket
from state.records import AGGREGATE_CODEC, FOLD_STATE_CODEC, node_key, node_of

MOVED_TAG = OutputTag("moved-atoms", BYTES)


class FoldProfiles(KeyedProcessFunction):
    def __init__(self, host: str, port: int, keyspace: str, coalesce_ms: int, half_life_ms: int,
                 confirm_ms: int = 20) -> None:
        self.host, self.port, self.keyspace = host, port, keyspace
        self.coalesce_ms, self.half_life_ms, self.confirm_ms = coalesce_ms, half_life_ms, confirm_ms

    def open(self, runtime_context: RuntimeContext) -> None:
        self.atoms_state = runtime_context.get_map_state(string_keyed_map_state("profile-atoms"))
        self.atoms = MapStateMapping(self.atoms_state, AGGREGATE_CODEC, node_key, node_of)
        self.fold_state = runtime_context.get_state(ValueStateDescriptor("profile-fold", STATE_VALUE))
        self.catalog = SchemaCatalog.load()
        self.store = ProfileStore.connect(self.host, self.port, keyspace=self.keyspace)
        self.inflight: dict[str, tuple[int, WriteTicket]] = {}  # this instance's unconfirmed writes
        self.counters = BufferedCounters(runtime_context.get_metrics_group(), (
            "commands", "events_folded", "states_merged", "atoms_evicted", "profile_writes", "profile_deletes",
            "cassandra_requests", "cassandra_mutations"))

    def close(self) -> None:
        self.store.close()

    def _decode(self, payload: bytes) -> dict[str, Any]:
        return self.catalog.decode(payload, expect="NormalizedEvent")[1]

    def _fold(self, pid: str) -> ProfileFold:
        raw = self.fold_state.value()
        state = FoldState() if raw is None else FOLD_STATE_CODEC.decode(raw)
        return ProfileFold(pid, self.atoms, state, self.half_life_ms, self._decode)

    def process_element(self, value: tuple, ctx: KeyedProcessFunction.Context) -> Iterable[Any]:
        cmd = decode_command(value)
        count = self.counters.inc
        self.counters.tick(ctx.timer_service())
        count("commands")
        fold = self._fold(cmd.profile_id)
        was_dirty = fold.state.dirty
        evicted = fold.apply(cmd)
        if cmd.kind is CommandKind.EVENT:
            count("events_folded")
        elif cmd.kind is CommandKind.STATE:
            count("states_merged")
        self._store_state(fold.state)
        if not was_dirty:
            self._timer(ctx, self.coalesce_ms)
        count("atoms_evicted", len(evicted))
        for atom, aggregate in evicted:
            yield MOVED_TAG, encode_moved_state(atom, aggregate, cmd.profile_id)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterable[Any]:
        # a timer is a coalescing or confirmation timer of this key, or the counters' timer
        # (BufferedCounters), registered on whatever key was current; for a profile with
        # nothing to do the code below changes nothing
        self.counters.on_timer(timestamp)
        pid = ctx.get_current_key()
        fold = self._fold(pid)
        st = fold.state
        inflight = self.inflight.get(pid)
        if inflight is not None:
            version, ticket = inflight
            if not ticket.done:
                self._timer(ctx, self.confirm_ms)
                return []
            del self.inflight[pid]
            if ticket.error is not None:
                raise RuntimeError(f"Cassandra write of profile {pid} failed: {ticket.error}")
            if st.writing == version:
                st.writing = None
        elif st.writing is not None and not st.dirty:
            st.dirty = True  # restored with a write this instance never saw confirmed: issue it again
        if st.dirty:
            write = fold.flush()
            before = self.store.mutations_issued
            self.inflight[pid] = (write.version, self.store.write(write))
            self.counters.inc("cassandra_requests")
            self.counters.inc("cassandra_mutations", self.store.mutations_issued - before)
            self.counters.inc("profile_deletes" if write.profile is None else "profile_writes")
            st.writing = write.version
            self._timer(ctx, self.confirm_ms)
        if st.writing is None and not st.dirty and not st.members:
            if not self.atoms_state.is_empty():
                raise RuntimeError(f"profile {pid} was merged away but still holds atoms")
            self.fold_state.clear()  # deleted in Cassandra: nothing left behind
        else:
            self._store_state(st)
        return []

    def _timer(self, ctx, delay_ms: int) -> None:
        ctx.timer_service().register_processing_time_timer(ctx.timer_service().current_processing_time() + delay_ms)

    def _store_state(self, state: FoldState) -> None:
        self.fold_state.update(FOLD_STATE_CODEC.encode(state))
