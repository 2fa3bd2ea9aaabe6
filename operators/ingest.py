"""Flink adapters for the stateless part of ingestion (logic lives in :mod:`models.ingest`).

``DecodeValidateNormalize`` turns every record into one keyed outcome for the dedupe stage
(:mod:`operators.dedupe`), which counts them all and sends dead letters to the ``DLQ_TAG``
side output: the decode stage is not keyed, so it has no timers and could only count with a
JVM call per record (``Counter.inc``, ~30 µs); the keyed dedupe buffers the counts
(:class:`operators.counters.BufferedCounters`) and pushes them once a second.

An outcome is ``(key, value, code)``:

* a valid event: ``(event_id, NormalizedEvent bytes, number of warnings >= 0)``;
* a rejected record: ``(OTHER + "<topic>:<partition>:<offset>", DeadLetter bytes, -2 - i)``
  for reason ``DEAD_LETTER_REASONS[i]``;
* an erased record (docs/privacy.md): ``(OTHER + ..., b"", ERASED)``: with a ``ledger`` the
  operator reads the erasure ledger when it opens and drops every record that carries an
  erased identifier (a valid event, or a rejected one that decodes: never dead-lettered).

Keys of records that are not events start with ``OTHER`` (no event id does: ids are
stripped, and ``"\x00"`` is not in them) and are spread over the dedupe subtasks by their
source offset; they touch no state.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from pyflink.common import Row, Types
from pyflink.datastream import OutputTag, ProcessFunction, RuntimeContext

from models.events import Rejection
from models.ingest import DEAD_LETTER_REASONS, IngestSettings, Ingestor, SourceRecord

BYTES = Types.PRIMITIVE_ARRAY(Types.BYTE())
DLQ_TAG = OutputTag("dead-letter", BYTES)
#: Kafka source rows as the job hands them over: value, topic, partition, offset, timestamp ms
RAW_RECORD_TYPE = Types.ROW_NAMED(
    ["value", "topic", "partition", "offset", "timestamp_ms"],
    [BYTES, Types.STRING(), Types.INT(), Types.LONG(), Types.LONG()],
)
#: the outcome of one record: key, value, code (see the module docstring)
KEYED_EVENT_TYPE = Types.TUPLE([Types.STRING(), BYTES, Types.INT()])
OTHER = "\x00"  # the key prefix of records that are not events (dead letters, erased)
ERASED = -1


def dead_letter_code(reason: str) -> int:
    """The outcome code of a record dead-lettered for ``reason``.

    >>> [reason_of(dead_letter_code(r)) == r for r in DEAD_LETTER_REASONS] == [True] * len(DEAD_LETTER_REASONS)
    True
    """
    return -2 - _REASON_INDEX[reason]


def reason_of(code: int) -> str:
    """The dead-letter reason of an outcome code below ``ERASED``."""
    return DEAD_LETTER_REASONS[-2 - code]


_REASON_INDEX = {r: i for i, r in enumerate(DEAD_LETTER_REASONS)}


def to_source_record(row: Row) -> SourceRecord:
    return SourceRecord(bytes(row[0]), row[1], row[2], row[3], row[4])


class DecodeValidateNormalize(ProcessFunction):
    """Decode, validate and normalize each record into its keyed outcome (module docstring).

    One operator rather than three: each hop between Python operators costs a conversion
    (``bench/``: merging decode and normalize cut the stage's time by about a third). No
    counters and no state: one Python call and one emitted record per input record.
    """

    def __init__(self, settings: IngestSettings, ledger: Callable[[], Iterable[str]] | None = None) -> None:
        self.settings = settings
        self.ledger = ledger

    def open(self, runtime_context: RuntimeContext) -> None:
        self.ingestor = Ingestor(self.settings)
        if self.ledger is not None:
            self.ingestor.tombstones = frozenset(self.ledger())
        # a counter, not a Python gauge: operators/counters.py says why
        runtime_context.get_metrics_group().counter("ledger_tombstones").inc(len(self.ingestor.tombstones))

    def process_element(self, row: Row, ctx: ProcessFunction.Context) -> Iterable[Any]:
        rec = to_source_record(row)
        decoded = self.ingestor.decode_validate(rec)
        if self.ingestor.tombstones and self.ingestor.is_erased(decoded, rec):
            yield f"{OTHER}{rec.topic}:{rec.partition}:{rec.offset}", b"", ERASED
        elif isinstance(decoded, Rejection):
            dead = self.ingestor.dead_letter(rec, decoded)
            yield f"{OTHER}{rec.topic}:{rec.partition}:{rec.offset}", dead.value, dead_letter_code(decoded.error_type)
        else:
            accepted = self.ingestor.normalize(decoded, rec)
            yield accepted.event_id, accepted.value, len(accepted.warnings)
