"""Drop repeated event ids within the dedupe TTL (keyed by event_id), and count every record
of the ingestion job (its outcomes: :mod:`operators.ingest`).

Counters (web UI / REST, buffered: pushed at most once a second): received, valid,
dead_lettered, dead_lettered per reason (group ``reason``), erased, warnings, duplicates and
emitted; ledger_tombstones (read at start) is on decode-validate-normalize. Invariants: received =
valid + dead_lettered + erased and valid = emitted + duplicates.
"""

from __future__ import annotations

from typing import Any, Iterable

from pyflink.datastream import KeyedProcessFunction, RuntimeContext

from models.ingest import DEAD_LETTER_REASONS
from operators.counters import BufferedCounters
from operators.ingest import DLQ_TAG, ERASED, reason_of
from state.descriptors import dedupe_seen

COUNTERS = ("received", "valid", "dead_lettered", "erased", "warnings", "duplicates", "emitted")


class DedupeByEventId(KeyedProcessFunction):
    """Emit the value of the first record per event_id; count and drop the rest; dead letters
    to ``DLQ_TAG``.

    One state read per event, one write per first sighting, none for dead letters and erased
    records; a processing-time timer about once a second pushes the counts.
    """

    def __init__(self, ttl_ms: int) -> None:
        self.ttl_ms = ttl_ms

    def open(self, runtime_context: RuntimeContext) -> None:
        self.seen = runtime_context.get_state(dedupe_seen(self.ttl_ms))
        group = runtime_context.get_metrics_group()
        by_reason = {f"reason.{r}": group.add_group("reason", r).counter("dead_lettered") for r in DEAD_LETTER_REASONS}
        self.counters = BufferedCounters(group, COUNTERS, made=by_reason)

    def process_element(self, value: tuple[str, bytes, int], ctx: KeyedProcessFunction.Context) -> Iterable[Any]:
        counters = self.counters
        counters.tick(ctx.timer_service())
        counters.inc("received")
        code = value[2]
        if code < 0:
            if code == ERASED:
                counters.inc("erased")
                return
            counters.inc("dead_lettered")
            counters.inc(f"reason.{reason_of(code)}")
            yield DLQ_TAG, value[1]
            return
        counters.inc("valid")
        if code:
            counters.inc("warnings", code)
        if self.seen.value():
            counters.inc("duplicates")
            return
        self.seen.update(True)
        counters.inc("emitted")
        yield value[1]

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterable[Any]:
        self.counters.on_timer(timestamp)
        return ()
