"""Bad records: one builder per dead-letter error type, each value failing ingestion as that type.

:func:`bad_value` breaks a valid raw event of a person in a way ingestion must dead-letter
with the given ``error_type`` (``models.ingest.DEAD_LETTER_REASONS``): bytes that are not
single-object encoded, unknown schema fingerprints, malformed Avro, a blank event id, no
usable identifier, an impossible timestamp (:func:`invalid_timestamps`), a payload of the
wrong record, or an invalid field value. Each builder draws one of several variants.

Examples
--------
>>> from models.contract import DEAD_LETTER_REASONS
>>> sorted(BUILDERS) == sorted(DEAD_LETTER_REASONS)  # one builder per error type
True
>>> from generator.context import Generation
>>> from generator.persons import make_person
>>> g = Generation(seed=5, persons=1, base_time_ms=1_790_000_000_000, days=1, bad_ratio=0.1, dup_ratio=0.0,
...                late_ratio=0.0, reorder_ratio=0.0)
>>> p = make_person(g, 0, "browser")
>>> value, variant, raw = bad_value(g, "missing_event_id", p, 1_790_000_000_000, "bad-5-000000")
>>> variant, raw["event_id"].strip(), decode_error(g, value)  # decodable, rejected by validation
('blank_event_id', '', None)
>>> value, variant, raw = bad_value(g, "malformed_avro", p, 1_790_000_000_000, "bad-5-000001")
>>> decode_error(g, value), raw
('malformed_avro', None)
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Callable

from generator.catalog import CURRENCY, STORES, money
from generator.context import Generation
from generator.encoding import NAMESPACE, SCHEMA_VERSION, identifiers
from generator.persons import Person
from generator.records import topic_of
from generator.timing import DAY_MS, MIN_VALID_TIMESTAMP_MS, YEAR_2100_MS
from models.avro_codec import HEADER_LEN, MAGIC, DecodeError
from models.config import INGESTION_JOB_NAME

RawEvent = dict[str, Any]
#: ``(value, variant, the raw event if the value decodes to one)``.
BadValue = tuple[bytes, str, RawEvent | None]


def invalid_timestamps(min_valid_timestamp_ms: int) -> tuple[tuple[int, str], ...]:
    """The ``(occurred_at, variant)`` choices of ``invalid_timestamp`` bad records for a lower bound.

    Each is impossible under that bound whatever the Kafka timestamp before 2099: before the
    bound (if there is room before it), before the Unix epoch (for any bound but the default,
    whose datasets keep their bytes), or in the year 2100 (beyond any future skew).

    Parameters
    ----------
    min_valid_timestamp_ms : int
        The lower bound of ``occurred_at`` the dataset targets (>= 0).

    Returns
    -------
    tuple of (int, str)

    Examples
    --------
    >>> [v for _, v in invalid_timestamps(MIN_VALID_TIMESTAMP_MS)]
    ['epoch_5ms', 'year_2100', 'year_1999']
    >>> [v for _, v in invalid_timestamps(631_152_000_000)]  # a 1990-01-01 backfill bound
    ['epoch_5ms', 'year_2100', 'year_1989', 'before_epoch']
    >>> invalid_timestamps(0)
    ((4102444800000, 'year_2100'), (-86400000, 'before_epoch'))
    """
    lo = min_valid_timestamp_ms
    choices: list[tuple[int, str]] = [(5, "epoch_5ms")] if lo > 5 else []
    choices.append((YEAR_2100_MS, "year_2100"))
    if lo >= DAY_MS:
        year = datetime.fromtimestamp((lo - DAY_MS) / 1000, tz=timezone.utc).year
        choices.append((lo - DAY_MS, f"year_{year}"))
    if lo != MIN_VALID_TIMESTAMP_MS:
        choices.append((-DAY_MS, "before_epoch"))
    return tuple(choices)


def base_event(g: Generation, p: Person, t: int, event_id: str) -> RawEvent:
    """A valid raw event for ``p`` to be broken by a bad-record builder."""
    tr = p.truth
    prod = g.product()
    return {
        "event_id": event_id,
        "event_type": "product_view",
        "channel": "web",
        "occurred_at": t,
        "schema_version": SCHEMA_VERSION,
        "identifiers": identifiers(customer_id=tr.customer_id, cookie_id=tr.cookie_ids[0]),
        "context": {"user_agent": p.user_agent},
        "payload": (
            NAMESPACE + "ProductView",
            {"product_id": prod.product_id, "category": prod.category, "price": prod.price, "dwell_ms": 12_000},
        ),
    }


def cart_event(g: Generation, base: RawEvent, qty: int, price: float) -> RawEvent:
    """``base`` made an ``add_to_cart`` of ``qty`` at ``price``."""
    prod = g.product()
    return {
        **base,
        "event_type": "add_to_cart",
        "payload": (
            NAMESPACE + "CartChange",
            {
                "cart_id": f"cart-{g.seed}-bad-{g.next('badcart'):05d}",
                "product_id": prod.product_id,
                "category": prod.category,
                "quantity": qty,
                "unit_price": price,
            },
        ),
    }


def purchase_event(g: Generation, base: RawEvent, qty: int, price: float) -> RawEvent:
    """``base`` made a ``purchase`` of ``qty`` at ``price``."""
    prod = g.product()
    return {
        **base,
        "event_type": "purchase",
        "payload": (
            NAMESPACE + "Purchase",
            {
                "order_id": f"ord-{g.seed}-bad-{g.next('badorder'):05d}",
                "cart_id": None,
                "currency": CURRENCY,
                "total": money(qty * price),
                "items": [
                    {"product_id": prod.product_id, "category": prod.category, "quantity": qty, "unit_price": price}
                ],
                "store_id": None,
            },
        ),
    }


def decode_error(g: Generation, data: bytes) -> str | None:
    """The error type decoding ``data`` as an ``Event`` fails with (``None`` if it decodes)."""
    try:
        g.catalog.decode(data, expect="Event")
    except DecodeError as e:
        return e.error_type
    return None


# ----------------------------------------------------------------- one builder per error type


def _not_single_object_encoded(g: Generation, base: RawEvent, t: int) -> BadValue:
    rng = g.rng
    v = rng.randrange(4)
    if v == 0:
        data = rng.randbytes(rng.randint(10, 120))
        if data[:2] == MAGIC:
            data = b"\x00" + data
        return data, "random_bytes", None
    if v == 1:
        doc = {**base, "payload": base["payload"][1]}
        return json.dumps(doc).encode(), "json_text", None
    if v == 2:
        return MAGIC + rng.randbytes(rng.randint(1, HEADER_LEN - len(MAGIC) - 1)), "header_too_short", None
    good = g.codec.encode(base)
    return b"\xc3\x00" + good[2:], "wrong_magic_version", None


def _unknown_schema(g: Generation, base: RawEvent, t: int) -> BadValue:
    rng = g.rng
    body = g.codec.encode(base)[HEADER_LEN:]
    if rng.random() < 0.25:
        dl = g.catalog.codec("DeadLetter").encode(
            {
                "raw": b"x",
                "error_type": "malformed_avro",
                "error_detail": "synthetic",
                "source_topic": topic_of("web"),
                "source_partition": 0,
                "source_offset": rng.randint(0, 10**6),
                "source_timestamp": t,
                "job": INGESTION_JOB_NAME,
            }
        )
        return dl, "other_project_schema", None
    while True:
        data = MAGIC + rng.randbytes(8) + body
        if decode_error(g, data) == "unknown_schema":
            return data, "unknown_fingerprint", None


def _malformed_avro(g: Generation, base: RawEvent, t: int) -> BadValue:
    rng = g.rng
    good = g.codec.encode(base)
    v = rng.randrange(3)
    if v == 1:
        return good + rng.randbytes(rng.randint(1, 8)), "trailing_bytes", None
    if v == 2:
        for _ in range(50):
            data = good[:HEADER_LEN] + rng.randbytes(rng.randint(3, 40))
            if decode_error(g, data) == "malformed_avro":
                return data, "garbage_body", None
    for _ in range(50):
        data = good[: rng.randint(HEADER_LEN, len(good) - 1)]
        if decode_error(g, data) == "malformed_avro":
            return data, "truncated_body", None
    return good[:HEADER_LEN], "truncated_body", None


def _missing_event_id(g: Generation, base: RawEvent, t: int) -> BadValue:
    ev = {**base, "event_id": g.rng.choice(("", "   ", "\t"))}
    return g.codec.encode(ev), "blank_event_id", ev


def _missing_identifiers(g: Generation, base: RawEvent, t: int) -> BadValue:
    rng = g.rng
    v = rng.randrange(4)
    ids, variant = {
        0: (identifiers(), "all_null"),
        1: (identifiers(customer_id="", cookie_id="   "), "blank_strings"),
        2: (
            identifiers(email=rng.choice(("john.doe(at)example.com", "not-an-email", "jane@localhost"))),
            "only_unparseable_email",
        ),
        3: (identifiers(phone=rng.choice(("12", "call me", "555"))), "only_unparseable_phone"),
    }[v]
    ev = {**base, "identifiers": ids}
    return g.codec.encode(ev), variant, ev


def _invalid_timestamp(g: Generation, base: RawEvent, t: int) -> BadValue:
    ts, variant = g.rng.choice(invalid_timestamps(g.min_valid))
    ev = {**base, "occurred_at": ts}
    return g.codec.encode(ev), variant, ev


def _payload_mismatch(g: Generation, base: RawEvent, t: int) -> BadValue:
    v = g.rng.randrange(3)
    if v == 0:
        ev = {**base, "event_type": "purchase", "payload": (NAMESPACE + "Search", {"query": "shoes", "results": 4})}
        variant = "purchase_with_search"
    elif v == 1:
        ev = {
            **base,
            "event_type": "add_to_cart",
            "payload": (NAMESPACE + "PageView", {"url": "https://shop.example.com/", "referrer": None, "title": None}),
        }
        variant = "add_to_cart_with_page_view"
    else:
        ev = {**purchase_event(g, base, 1, 9.99), "event_type": "store_purchase"}
        ev = {**ev, "payload": (NAMESPACE + "LoyaltyScan", {"store_id": STORES[0], "points": 10})}
        variant = "store_purchase_with_loyalty_scan"
    return g.codec.encode(ev), variant, ev


def _invalid_field(g: Generation, base: RawEvent, t: int) -> BadValue:
    rng = g.rng
    v = rng.randrange(6)
    if v == 0:
        ev, variant = purchase_event(g, base, 2, -rng.choice((1.0, 19.99))), "purchase_negative_unit_price"
    elif v == 1:
        ev, variant = purchase_event(g, base, -rng.randint(1, 3), 12.5), "purchase_negative_quantity"
    elif v == 2:
        ev, variant = cart_event(g, base, 1, -4.99), "cart_negative_unit_price"
    elif v == 3:
        ev, variant = cart_event(g, base, rng.choice((0, -2)), 4.99), "cart_non_positive_quantity"
    elif v == 4:
        name, pl = base["payload"]
        ev = {**base, "payload": (name, {**pl, "dwell_ms": -rng.randint(1, 5000)})}
        variant = "negative_dwell_ms"
    else:
        name, pl = base["payload"]
        ev, variant = {**base, "payload": (name, {**pl, "price": float("nan")})}, "nan_price"
    return g.codec.encode(ev), variant, ev


#: DeadLetter ``error_type`` -> builder of a value ingestion must reject with it, from a valid
#: raw event of a person and the time it pretends to occur.
BUILDERS: dict[str, Callable[[Generation, RawEvent, int], BadValue]] = {
    "not_single_object_encoded": _not_single_object_encoded,
    "unknown_schema": _unknown_schema,
    "malformed_avro": _malformed_avro,
    "missing_event_id": _missing_event_id,
    "missing_identifiers": _missing_identifiers,
    "invalid_timestamp": _invalid_timestamp,
    "payload_mismatch": _payload_mismatch,
    "invalid_field": _invalid_field,
}


def bad_value(g: Generation, error_type: str, p: Person, t: int, event_id: str) -> BadValue:
    """Build one bad value of ``p`` at ``t``; returns (value, variant, the raw event if it is decodable).

    Raises
    ------
    ValueError
        For an error type without a builder.
    """
    base = base_event(g, p, t, event_id)
    try:
        build = BUILDERS[error_type]
    except KeyError:
        raise ValueError(f"unknown error type {error_type!r}") from None
    return build(g, base, t)
