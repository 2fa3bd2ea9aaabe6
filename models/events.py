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
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from models.avro_codec import short_name

IDENTIFIER_TYPES: tuple[str, ...] = ("customer_id", "email", "phone", "device_id", "cookie_id", "loyalty_id")
CHANNELS: tuple[str, ...] = ("web", "app", "crm", "pos", "email")

#: event_type -> the payload record it must carry
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
EVENT_TYPES: tuple[str, ...] = tuple(PAYLOAD_OF)


@dataclass(frozen=True)
class Rejection:
    """Why an event is dead-lettered: a DeadLetter ``ErrorType`` symbol and a human detail."""

    error_type: str
    detail: str


def _non_blank(v: object) -> bool:
    return isinstance(v, str) and v.strip() != ""


def validate_event(event: dict[str, Any], kafka_timestamp_ms: int, min_ts_ms: int,
                   max_future_skew_ms: int) -> Rejection | None:
    """Check the rules of the contract that the Avro schema cannot express.

    The time bound is relative to the Kafka record timestamp, not the wall clock, so a replay
    judges every record exactly as the first run did.
    """
    if not _non_blank(event.get("event_id")):
        return Rejection("missing_event_id", "event_id is empty")
    ids = event.get("identifiers") or {}
    if not any(_non_blank(ids.get(t)) for t in IDENTIFIER_TYPES):
        return Rejection("missing_identifiers", "no non-empty identifier of any type")
    ts = event.get("occurred_at")
    if not isinstance(ts, int):  # fastavro may hand back datetime if logical types were read
        return Rejection("invalid_timestamp", f"occurred_at is {type(ts).__name__}, expected epoch ms")
    if ts < min_ts_ms:
        return Rejection("invalid_timestamp", f"occurred_at={ts} is before {min_ts_ms}")
    if ts > kafka_timestamp_ms + max_future_skew_ms:
        return Rejection("invalid_timestamp",
                         f"occurred_at={ts} is more than {max_future_skew_ms} ms after the Kafka timestamp {kafka_timestamp_ms}")
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
                return Rejection("invalid_field", f"Purchase.items[{i}] has quantity {item['quantity']} "
                                                  f"and unit_price {item['unit_price']}")
    if kind == "CartChange" and p["quantity"] <= 0:
        return Rejection("invalid_field", f"CartChange.quantity={p['quantity']} must be positive")
    return None
