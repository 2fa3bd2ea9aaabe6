"""The ingestion stage as pure functions: decode -> validate -> normalize, or dead-letter.

Operators in ``operators/ingest.py`` are thin adapters over :class:`Ingestor`; the benchmark
runs the very same methods in a plain Python loop.

Every input ends in exactly one of: :class:`Accepted` (then deduplicated downstream) or
:class:`DeadLettered` (then published on ``journey.dlq`` with the raw bytes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from models import contract
from models.avro_codec import DecodeError, SchemaCatalog
from models.config import (
    DEFAULT_COUNTRY_CODE,
    DEFAULT_MAX_FUTURE_SKEW_MS,
    DEFAULT_MIN_VALID_TIMESTAMP_MS,
    INGESTION_JOB_NAME,
    check_time_bounds,
)
from models.dlq import redact
from models.erasure import tombstone_key
from models.events import IDENTIFIER_TYPES, MIN_TIMESTAMP_SETTING, Rejection, validate_event
from models.normalize import normalize_identifiers

#: Where dead-letter details send an operator who wants to load history.
BACKFILL_DOCS = "docs/operations.md#history-backfill"
BACKFILL_MIN_SETTING = "JOURNEY_BACKFILL_MIN_VALID_TIMESTAMP_MS"

#: Why a record is dead-lettered: the DeadLetter ``ErrorType`` symbols (:data:`models.contract.DEAD_LETTER_REASONS`).
DEAD_LETTER_REASONS: tuple[str, ...] = contract.DEAD_LETTER_REASONS


@dataclass(frozen=True)
class SourceRecord:
    """A Kafka record as the source hands it over."""

    value: bytes
    topic: str
    partition: int
    offset: int
    timestamp_ms: int


@dataclass(frozen=True)
class Accepted:
    event_id: str
    value: bytes  # single-object-encoded NormalizedEvent
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class DeadLettered:
    error_type: str
    value: bytes  # single-object-encoded DeadLetter


@dataclass(frozen=True)
class TopicBounds:
    """The lower bound of ``occurred_at`` on one input topic, and how to talk about it.

    Attributes
    ----------
    min_ts_ms : int
        Epoch ms, inclusive.
    setting : str
        The ``JOURNEY_*`` variable it comes from.
    advice : str
        What a dead-letter detail suggests when an event is older than the bound.
    """

    min_ts_ms: int
    setting: str
    advice: str


@dataclass(frozen=True)
class IngestSettings:
    r"""The subset of :class:`models.config.IngestConfig` that the pure logic needs.

    Validated like the config (:func:`models.config.check_time_bounds`); the defaults are the
    config's (``models.config.DEFAULT_*``).

    Examples
    --------
    >>> s = IngestSettings("x" * 16, backfill_topic_pattern=r"journey\.events\.backfill",
    ...                    backfill_min_valid_timestamp_ms=631_152_000_000)
    >>> s.bounds_for("journey.events.backfill").min_ts_ms, s.bounds_for("journey.events.web").min_ts_ms
    (631152000000, 946684800000)
    """

    pii_salt: str
    default_country_code: str = DEFAULT_COUNTRY_CODE
    min_valid_timestamp_ms: int = DEFAULT_MIN_VALID_TIMESTAMP_MS
    max_future_skew_ms: int = DEFAULT_MAX_FUTURE_SKEW_MS
    job_name: str = INGESTION_JOB_NAME
    backfill_topic_pattern: str = ""
    backfill_min_valid_timestamp_ms: int | None = None

    def __post_init__(self) -> None:
        check_time_bounds(
            self.min_valid_timestamp_ms, self.backfill_topic_pattern, self.backfill_min_valid_timestamp_ms
        )

    @classmethod
    def of(cls, cfg: Any) -> "IngestSettings":
        return cls(
            cfg.pii_salt,
            cfg.default_country_code,
            cfg.min_valid_timestamp_ms,
            cfg.max_future_skew_ms,
            cfg.job_name,
            cfg.backfill_topic_pattern,
            cfg.backfill_min_valid_timestamp_ms,
        )

    def bounds_for(self, topic: str) -> TopicBounds:
        """The lower bound of ``occurred_at`` for records of ``topic``.

        Backfill topics (whole name matching ``backfill_topic_pattern``) get the backfill
        bound, every other topic the live one.
        """
        if self.backfill_topic_pattern and re.fullmatch(self.backfill_topic_pattern, topic):
            assert self.backfill_min_valid_timestamp_ms is not None  # check_time_bounds
            return TopicBounds(
                self.backfill_min_valid_timestamp_ms,
                BACKFILL_MIN_SETTING,
                f"{topic} is a backfill topic (JOURNEY_BACKFILL_TOPIC_PATTERN); if this history is "
                f"real, lower {BACKFILL_MIN_SETTING} to its earliest date ({BACKFILL_DOCS})",
            )
        if self.backfill_topic_pattern:
            where = (
                f"{topic} is a live topic (it does not match JOURNEY_BACKFILL_TOPIC_PATTERN="
                f"{self.backfill_topic_pattern!r}); produce history to a backfill topic"
            )
        else:
            where = (
                f"{topic} is a live topic; to load older history, produce it to a backfill topic and set "
                f"JOURNEY_BACKFILL_TOPIC_PATTERN and {BACKFILL_MIN_SETTING}"
            )
        return TopicBounds(self.min_valid_timestamp_ms, MIN_TIMESTAMP_SETTING, f"{where} ({BACKFILL_DOCS})")


class Ingestor:
    """Decode, validate and normalize one record at a time. Stateless apart from schemas."""

    def __init__(self, settings: IngestSettings, catalog: SchemaCatalog | None = None) -> None:
        self.settings = settings
        self.catalog = catalog or SchemaCatalog.load()
        self._normalized = self.catalog.codec("NormalizedEvent")
        self._dead_letter = self.catalog.codec("DeadLetter")
        self._bounds: dict[str, TopicBounds] = {}  # per topic: a handful, looked up once each
        #: the erasure ledger's tombstone keys (models.erasure.tombstone_key); empty: no ledger
        self.tombstones: frozenset[str] = frozenset()

    def is_erased(self, decoded: dict[str, Any] | Rejection, rec: SourceRecord) -> bool:
        """Whether the record carries an erased identifier (docs/privacy.md): a valid event by
        its hashed identifiers, a rejected one by the identifiers it has once hashed, if it decodes."""
        if isinstance(decoded, Rejection):
            try:
                _, event = self.catalog.decode(rec.value, expect="Event")
                ids, _ = normalize_identifiers(
                    event["identifiers"], self.settings.pii_salt, self.settings.default_country_code
                )
            except Exception:
                return False  # not an event at all: nothing of a person to recognise
        else:
            ids = decoded["identifiers"]
        return any(v and tombstone_key((t, v)) in self.tombstones for t, v in ids.items())

    def decode_validate(self, rec: SourceRecord) -> dict[str, Any] | Rejection:
        """The decoded ``Event`` if it is valid, else the reason to dead-letter it.

        Identifiers are normalized here (email/phone replaced by salted hashes, under
        ``identifiers``; notes under ``warnings``): an event whose identifiers are all
        unusable is invalid, so every decision to dead-letter is taken in this one step.
        """
        try:
            _, event = self.catalog.decode(rec.value, expect="Event")
        except DecodeError as e:
            return Rejection(e.error_type, e.detail)
        s = self.settings
        bounds = self._bounds.get(rec.topic)
        if bounds is None:
            bounds = self._bounds[rec.topic] = s.bounds_for(rec.topic)
        why = validate_event(
            event,
            rec.timestamp_ms,
            bounds.min_ts_ms,
            s.max_future_skew_ms,
            min_setting=bounds.setting,
            advice=bounds.advice,
        )
        if why is not None:
            return why
        ids, warnings = normalize_identifiers(event["identifiers"], s.pii_salt, s.default_country_code)
        if not any(ids.values()):
            return Rejection("missing_identifiers", f"no usable identifier after normalization ({', '.join(warnings)})")
        event["identifiers"], event["warnings"] = ids, warnings
        return event

    def normalize(self, event: dict[str, Any], rec: SourceRecord) -> Accepted:
        """Encode a validated event (identifiers already hashed by :meth:`decode_validate`)."""
        warnings = event["warnings"]
        out = {
            "event_id": event["event_id"].strip(),
            "event_type": event["event_type"],
            "channel": event["channel"],
            "occurred_at": event["occurred_at"],
            "schema_version": event["schema_version"],
            "identifiers": event["identifiers"],
            "context": event["context"],
            "payload": event["payload"],
            "source_topic": rec.topic,
            "source_partition": rec.partition,
            "source_offset": rec.offset,
            "warnings": warnings,
        }
        return Accepted(out["event_id"], self._normalized.encode(out), tuple(warnings))

    def dead_letter(self, rec: SourceRecord, why: Rejection) -> DeadLettered:
        """The ``DeadLetter`` record of a rejected value, without its raw personal data
        (:func:`models.dlq.redact`: PII hashed when it decodes, a masked prefix when not)."""
        kept = redact(bytes(rec.value), self.catalog, self.settings.pii_salt, self.settings.default_country_code)
        return DeadLettered(
            why.error_type,
            self._dead_letter.encode(
                {
                    "raw": kept.raw,
                    "raw_form": kept.raw_form,
                    "raw_size": kept.raw_size,
                    "raw_digest": kept.raw_digest,
                    "error_type": why.error_type,
                    "error_detail": why.detail[:2000],
                    "source_topic": rec.topic,
                    "source_partition": rec.partition,
                    "source_offset": rec.offset,
                    "source_timestamp": rec.timestamp_ms,
                    "job": self.settings.job_name,
                }
            ),
        )

    def process(self, rec: SourceRecord) -> Accepted | DeadLettered:
        """All of the stateless stage for one record."""
        decoded = self.decode_validate(rec)
        if isinstance(decoded, Rejection):
            return self.dead_letter(rec, decoded)
        return self.normalize(decoded, rec)


def identifier_count(event: dict[str, Any]) -> int:
    """How many identifier types a raw event carries (used in docs and the generator's checks)."""
    ids = event.get("identifiers") or {}
    return sum(1 for t in IDENTIFIER_TYPES if ids.get(t))
