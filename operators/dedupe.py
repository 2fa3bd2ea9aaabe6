"""Drop repeated event ids within the dedupe TTL (keyed by event_id)."""

from __future__ import annotations

from typing import Iterable

from pyflink.datastream import KeyedProcessFunction, RuntimeContext

from state.descriptors import dedupe_seen


class DedupeByEventId(KeyedProcessFunction):
    """Emit the value of the first record per event_id; count and drop the rest.

    One state read per record, one write per first sighting; no timers (expiry is TTL).
    """

    def __init__(self, ttl_ms: int) -> None:
        self.ttl_ms = ttl_ms

    def open(self, runtime_context: RuntimeContext) -> None:
        self.seen = runtime_context.get_state(dedupe_seen(self.ttl_ms))
        group = runtime_context.get_metrics_group()
        self.duplicates = group.counter("duplicates")
        self.emitted = group.counter("emitted")

    def process_element(self, value, ctx: KeyedProcessFunction.Context) -> Iterable[bytes]:
        if self.seen.value():
            self.duplicates.inc()
            return
        self.seen.update(True)
        self.emitted.inc()
        yield value[1]
