"""Coalesced, idempotent Cassandra writes of profile rows (keyed by profile id).

Each profile keeps only its newest pending row (highest version; a deletion wins a tie) in
keyed state and is written by an event-time timer ``coalesce_ms`` after the first pending
row: one write per profile per window, not one per event. The timer writes and waits for
Cassandra before clearing the state, so a checkpoint either covers a completed write or
still holds the row (a restart writes it again: same row, same version, idempotent).

Cassandra timestamps: ``2 * version + 1`` for upserts and links, ``2 * version`` for the
deletion of a merged-away profile, so the surviving profile's links written for the same
event always beat that deletion, and any later event (version + 1) beats both.
"""

from __future__ import annotations

import json
from typing import Iterable

from pyflink.common import Types
from pyflink.datastream import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

from models.profile import ProfileAggregate
from state.profile_store import ProfileStore

PENDING_TYPE = Types.TUPLE([Types.STRING(), Types.LONG(), Types.BOOLEAN()])  # aggregate JSON, version, deleted


class WriteProfiles(KeyedProcessFunction):
    def __init__(self, host: str, port: int, keyspace: str, coalesce_ms: int) -> None:
        self.host, self.port, self.keyspace, self.coalesce_ms = host, port, keyspace, coalesce_ms

    def open(self, runtime_context: RuntimeContext) -> None:
        self.pending = runtime_context.get_state(ValueStateDescriptor("pending-row", PENDING_TYPE))
        self.store = ProfileStore.connect(self.host, self.port, keyspace=self.keyspace)
        group = runtime_context.get_metrics_group()
        self.rows_in = group.counter("rows_in")
        self.writes = group.counter("cassandra_writes")
        self.deletes = group.counter("cassandra_deletes")
        self.late_writes = group.counter("uncoalesced_writes")

    def close(self) -> None:
        self.store.close()

    def process_element(self, row: tuple, ctx: KeyedProcessFunction.Context) -> Iterable[tuple]:
        self.rows_in.inc()
        _pid, agg_json, version, deleted = row
        current = self.pending.value()
        if current is None:
            ts = ctx.timestamp()
            # no event time on this stream, or a row behind the watermark (PyFlink can forward
            # the final watermark ahead of a Python function's last outputs, and a timer
            # registered behind the last watermark never fires): write at once
            if ts is None or ts + self.coalesce_ms <= ctx.timer_service().current_watermark():
                self.late_writes.inc()
                self._write(ctx.get_current_key(), (agg_json, version, deleted))
                return []
            ctx.timer_service().register_event_time_timer(ts + self.coalesce_ms)
        if current is None or version > current[1] or (version == current[1] and deleted):
            self.pending.update((agg_json, version, deleted))
        return []

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterable[tuple]:
        current = self.pending.value()
        if current is not None:
            self._write(ctx.get_current_key(), tuple(current))
            self.pending.clear()
        return []

    def _write(self, pid: str, row: tuple) -> None:
        agg_json, version, deleted = row
        if deleted:
            self.store.unlink_profile(pid, 2 * version)
            self.deletes.inc()
        else:
            agg = ProfileAggregate.from_dict(json.loads(agg_json))
            for t, values in agg.identifiers.items():
                for v in values:
                    self.store.link(t, v, pid, 2 * version + 1)
            self.store.upsert_profile(agg, version=2 * version + 1)
            self.writes.inc()
        self.store.flush()
