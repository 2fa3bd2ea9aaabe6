"""The event contract: event types, channels, and the validation rules of ingestion.

The Avro schema (``schemas/event.avsc``) fixes the shape; :func:`validate_event` adds the
rules Avro cannot express. It returns ``None`` for a valid event or a
:class:`Rejection` naming a DeadLetter ``ErrorType``.

Examples
--------
>>> ev = {"event_id": "e1", "event_type": "search", "channel": "web", "occurred_at": 1_700_000_000_000,
...       "identifiers": {"cookie_id": "c1"}, "payload": ("journey.v1.Search", {"query": "shoes", "results": 3})}
>>> validate_event(ev, kafka_timestamp_ms=1_700_000_000_000, min_ts_ms=0, max_future_skew_ms=1000) is None
True
>>> validate_event({**ev, "identifiers": {}}, 1_700_000_000_000, 0, 1000).error_type
'missing_identifiers'

``occurred_at`` is judged by :func:`check_occurred_at`: never before the Unix epoch, not before
the lower bound of the record's topic, not beyond the Kafka record timestamp plus the allowed
future skew. The dead-letter detail names the bound and the ``JOURNEY_*`` setting behind it:

>>> validate_event({**ev, "occurred_at": 883_612_800_000}, 1_700_000_000_000, 946_684_800_000, 1000).detail
'occurred_at=883612800000 (1998-01-01T00:00:00Z) is before the lower bound 946684800000
(2000-01-01T00:00:00Z) set by JOURNEY_MIN_VALID_TIMESTAMP_MS'
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from models import contract
from models.avro_codec import short_name

# The contract's constants live in models.contract (read from schemas/event.avsc); the names
# this module always exported stay.
#: Identifier types of a produced ``Event`` (raw email and phone): :data:`models.contract.RAW_IDENTIFIER_TYPES`.
#: After ingestion, identifiers are :data:`models.contract.HASHED_IDENTIFIER_TYPES`.
IDENTIFIER_TYPES: tuple[str, ...] = contract.RAW_IDENTIFIER_TYPES
CHANNELS: tuple[str, ...] = contract.CHANNELS
EVENT_TYPES: tuple[str, ...] = contract.EVENT_TYPES

#: event_type -> the payload record it must carry (a rule the schema cannot express; keys are
#: exactly :data:`EVENT_TYPES`, values the ``payload`` union's records: tests/unit/test_contract.py)
PAYLOAD_OF: dict[str, str] = {
    "page_view": "PageView",
    "product_view": "ProductView",
    "search": "Search",
    "add_to_cart": "CartChange",
    "remove_from_cart": "CartChange",
    "checkout_started": "CheckoutStarted",
    "purchase": "Purchase",
    "app_open": "AppOpen",
    "push_open": "MessageEngagement",
    "email_open": "MessageEngagement",
    "email_click": "MessageEngagement",
    "identify": "Identify",
    "crm_update": "CrmUpdate",
    "loyalty_scan": "LoyaltyScan",
    "store_purchase": "Purchase",
    "consent_update": "ConsentUpdate",
    "erasure_request": "ErasureRequest",
}

#: 1970-01-01T00:00:00Z. ``occurred_at`` before it (negative) is never valid, whatever the settings.
UNIX_EPOCH_MS = 0
#: The setting behind the lower bound of live topics (named in dead-letter details).
MIN_TIMESTAMP_SETTING = "JOURNEY_MIN_VALID_TIMESTAMP_MS"
#: The setting behind the tolerance for ``occurred_at`` after the Kafka record timestamp.
FUTURE_SKEW_SETTING = "JOURNEY_MAX_FUTURE_SKEW_MS"


@dataclass(frozen=True)
class Rejection:
    """Why an event is dead-lettered: a DeadLetter ``ErrorType`` symbol and a human detail."""

    error_type: str
    detail: str


def _non_blank(v: object) -> bool:
    return isinstance(v, str) and v.strip() != ""


def iso_utc(ms: int) -> str:
    """Epoch milliseconds as an ISO-8601 UTC instant, for messages (any int, never raises).

    >>> iso_utc(946_684_800_000), iso_utc(1_291_161_600_123), iso_utc(-5)
    ('2000-01-01T00:00:00Z', '2010-12-01T00:00:00.123Z', '1969-12-31T23:59:59.995Z')
    >>> iso_utc(10**18)
    'beyond year 9999'
    """
    try:
        t = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=ms)
    except OverflowError:
        return "beyond year 9999" if ms > 0 else "before year 1"
    text = t.strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{ms % 1000:03d}Z" if ms % 1000 else "Z")


#: Below this (1973-03-03T09:46:40Z), a value read in another time unit is no plausible intent.
_PLAUSIBLE_MS = 100_000_000_000


def _unit_hint(ts: int, lo: int, hi: int) -> str:
    """A note if ``ts`` lands within ``[lo, hi]`` (and after 1973) once read in another time unit."""
    for unit, value in (("seconds", ts * 1000), ("microseconds", ts // 1000), ("nanoseconds", ts // 1_000_000)):
        if value != ts and max(lo, _PLAUSIBLE_MS) <= value <= hi:
            return f" (it looks like epoch {unit}, which would be {iso_utc(value)}: occurred_at is epoch milliseconds)"
    return ""


def check_occurred_at(
    ts: object,
    kafka_timestamp_ms: int,
    min_ts_ms: int,
    max_future_skew_ms: int,
    *,
    min_setting: str = MIN_TIMESTAMP_SETTING,
    advice: str = "",
) -> Rejection | None:
    """Judge ``occurred_at`` against the time bounds of the record's topic.

    Parameters
    ----------
    ts : object
        ``occurred_at`` as decoded (epoch ms; anything but an int is rejected).
    kafka_timestamp_ms : int
        The Kafka record timestamp: the future bound is relative to it, not to the wall
        clock, so a replay judges every record exactly as the first run did.
    min_ts_ms : int
        The lower bound of the record's topic (inclusive).
    max_future_skew_ms : int
        How far ``occurred_at`` may be after ``kafka_timestamp_ms``.
    min_setting : str, keyword-only
        The ``JOURNEY_*`` setting that gave ``min_ts_ms``, named in the detail.
    advice : str, keyword-only
        Appended to the detail of a lower-bound rejection: how to accept such events.

    Returns
    -------
    Rejection or None
        ``invalid_timestamp`` with a detail naming the violated bound (and a hint when the
        value looks like seconds, microseconds or nanoseconds), or ``None``.

    Examples
    --------
    >>> k = 1_790_000_000_000  # the Kafka record timestamp, 2026-09-21
    >>> check_occurred_at(883_612_800_000, k, 631_152_000_000, 86_400_000) is None  # 1998 over a 1990 bound
    True
    >>> check_occurred_at(-1, k, 0, 86_400_000).detail
    'occurred_at=-1 (1969-12-31T23:59:59.999Z) is before the Unix epoch 1970-01-01T00:00:00Z:
    negative timestamps are never accepted, whatever the settings'
    >>> print(check_occurred_at(1_790_000_000, k, 631_152_000_000, 86_400_000, min_setting="JOURNEY_X").detail)
    occurred_at=1790000000 (1970-01-21T17:13:20Z) is before the lower bound 631152000000
    (1990-01-01T00:00:00Z) set by JOURNEY_X (it looks like epoch seconds, which would be
    2026-09-21T14:13:20Z: occurred_at is epoch milliseconds)
    >>> print(check_occurred_at(k * 1000, k, 0, 86_400_000).detail)  # doctest: +ELLIPSIS
    occurred_at=1790000000000000 (...) is ... allows (it looks like epoch microseconds, which
    would be 2026-09-21T14:13:20Z: ...
    >>> print(check_occurred_at(k + 86_400_001, k, 0, 86_400_000).detail)
    occurred_at=1790086400001 (2026-09-22T14:13:20.001Z) is 86400001 ms after the Kafka record
    timestamp 1790000000000 (2026-09-21T14:13:20Z), more than
    JOURNEY_MAX_FUTURE_SKEW_MS=86400000 allows: a producer clock running ahead or a wrong time
    unit (raise JOURNEY_MAX_FUTURE_SKEW_MS only for clocks known to run ahead)
    """
    if not isinstance(ts, int) or isinstance(ts, bool):  # fastavro may hand back datetime if logical types were read
        return Rejection("invalid_timestamp", f"occurred_at is {type(ts).__name__}, expected epoch ms")
    hi = kafka_timestamp_ms + max_future_skew_ms
    if ts < UNIX_EPOCH_MS:
        return Rejection(
            "invalid_timestamp",
            f"occurred_at={ts} ({iso_utc(ts)}) is before the Unix epoch {iso_utc(UNIX_EPOCH_MS)}: "
            f"negative timestamps are never accepted, whatever the settings",
        )
    if ts < min_ts_ms:
        detail = (
            f"occurred_at={ts} ({iso_utc(ts)}) is before the lower bound {min_ts_ms} ({iso_utc(min_ts_ms)}) "
            f"set by {min_setting}{_unit_hint(ts, min_ts_ms, hi)}"
        )
        return Rejection("invalid_timestamp", f"{detail}; {advice}" if advice else detail)
    if ts > hi:
        return Rejection(
            "invalid_timestamp",
            f"occurred_at={ts} ({iso_utc(ts)}) is {ts - kafka_timestamp_ms} ms after the Kafka record "
            f"timestamp {kafka_timestamp_ms} ({iso_utc(kafka_timestamp_ms)}), more than "
            f"{FUTURE_SKEW_SETTING}={max_future_skew_ms} allows{_unit_hint(ts, min_ts_ms, hi)}: "
            f"a producer clock running ahead or a wrong time unit (raise {FUTURE_SKEW_SETTING} only "
            f"for clocks known to run ahead)",
        )
    return None


def validate_event(
    event: dict[str, Any],
    kafka_timestamp_ms: int,
    min_ts_ms: int,
    max_future_skew_ms: int,
    *,
    min_setting: str = MIN_TIMESTAMP_SETTING,
    advice: str = "",
) -> Rejection | None:
    """Check the rules of the contract that the Avro schema cannot express.

    The time bounds are those of :func:`check_occurred_at` (``min_setting`` and ``advice``
    go into its dead-letter detail). The future bound is relative to the Kafka record
    timestamp, not the wall clock, so a replay judges every record exactly as the first run did.
    """
    if not _non_blank(event.get("event_id")):
        return Rejection("missing_event_id", "event_id is empty")
    ids = event.get("identifiers") or {}
    if not any(_non_blank(ids.get(t)) for t in IDENTIFIER_TYPES):
        return Rejection("missing_identifiers", "no non-empty identifier of any type")
    why = check_occurred_at(
        event.get("occurred_at"),
        kafka_timestamp_ms,
        min_ts_ms,
        max_future_skew_ms,
        min_setting=min_setting,
        advice=advice,
    )
    if why is not None:
        return why
    name, payload = event["payload"]
    expected = PAYLOAD_OF[event["event_type"]]
    if short_name(name) != expected:
        return Rejection("payload_mismatch", f"{event['event_type']} must carry {expected}, got {short_name(name)}")
    return _check_payload(short_name(name), payload)


def _check_payload(kind: str, p: dict[str, Any]) -> Rejection | None:
    numbers = [(k, v) for k, v in p.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    for k, v in numbers:
        if isinstance(v, float) and not math.isfinite(v):
            return Rejection("invalid_field", f"{kind}.{k} is {v}")
        if v < 0 and k != "points":  # loyalty points may be redeemed (negative)
            return Rejection("invalid_field", f"{kind}.{k}={v} is negative")
    if kind == "Purchase":
        for i, item in enumerate(p["items"]):
            if item["quantity"] <= 0 or item["unit_price"] < 0 or not math.isfinite(item["unit_price"]):
                return Rejection(
                    "invalid_field",
                    f"Purchase.items[{i}] has quantity {item['quantity']} and unit_price {item['unit_price']}",
                )
    if kind == "CartChange" and p["quantity"] <= 0:
        return Rejection("invalid_field", f"CartChange.quantity={p['quantity']} must be positive")
    return None
