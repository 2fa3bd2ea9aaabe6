"""The Kafka records a dataset consists of, and the topic each channel's records go to.

:class:`GeneratedRecord` is what :func:`generator.dataset.generate` hands out (in production
order); :class:`PendingRecord` is the same record while the run still decides its place in
that order.

Examples
--------
>>> topic_of("web")
'journey.events.web'
>>> r = GeneratedRecord("journey.events.web", b"p-1-000000", b"\\xc3\\x01...", "valid", event_id="ev-1-00000000")
>>> (r.kind, r.expected_error)
('valid', None)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from models.contract import INPUT_TOPIC_PREFIX

RecordKind = Literal["valid", "duplicate", "bad"]
RECORD_KINDS: tuple[str, ...] = ("valid", "duplicate", "bad")


def topic_of(channel: str) -> str:
    """The input topic of a channel.

    Parameters
    ----------
    channel : str
        One of :data:`models.events.CHANNELS`.

    Returns
    -------
    str
        ``journey.events.<channel>``.
    """
    return f"{INPUT_TOPIC_PREFIX}{channel}"


@dataclass(frozen=True)
class GeneratedRecord:
    """One Kafka record to produce, in production order.

    Attributes
    ----------
    topic : str
        ``journey.events.<channel>``; bad records go to a random channel's topic.
    key : bytes or None
        The person's stable key (``person_id``), so one person's events share a partition.
        ``None`` for bad records that are not decodable at all.
    value : bytes
        The Kafka value (a single-object-encoded ``Event`` unless the record is bad).
    kind : {"valid", "duplicate", "bad"}
        ``duplicate`` is a byte-identical copy of an earlier ``valid`` record.
    event_id : str or None
        The event id, where the value carries a non-blank one.
    expected_error : str or None
        For ``bad`` records: the DeadLetter ``error_type`` ingestion must report.
    person_id : str or None
        The planted person the record belongs to (bad records may borrow a person's identity).
    event_type : str or None
        The event type, where the value carries one.
    occurred_at : int or None
        ``occurred_at`` in epoch ms, where the value carries one.
    """

    topic: str
    key: bytes | None
    value: bytes
    kind: RecordKind
    event_id: str | None = None
    expected_error: str | None = None
    person_id: str | None = None
    event_type: str | None = None
    occurred_at: int | None = None


@dataclass
class PendingRecord:
    """A record waiting for its place in production order.

    Records are produced in ``(prod_ms, seq)`` order; ``seq`` is the order of creation, so
    records due at the same millisecond keep it. ``index`` is the final position, set once
    the order is known. ``original`` links a duplicate to the record it copies; ``variant``
    tells how a bad record was broken.
    """

    prod_ms: int
    seq: int
    kind: RecordKind
    topic: str
    key: bytes | None
    value: bytes
    original: "PendingRecord | None" = None
    error_type: str | None = None
    variant: str = ""
    event_id: str | None = None
    person_id: str | None = None
    event_type: str | None = None
    occurred_at: int | None = None
    index: int = -1

    def generated(self) -> GeneratedRecord:
        """The record as handed out."""
        return GeneratedRecord(
            topic=self.topic,
            key=self.key,
            value=self.value,
            kind=self.kind,
            event_id=self.event_id,
            expected_error=self.error_type,
            person_id=self.person_id,
            event_type=self.event_type,
            occurred_at=self.occurred_at,
        )
