"""Pure ingestion logic: codec, validation, normalization, config. No services."""

from __future__ import annotations

import hashlib
import hmac
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests import dlq_oracle
from models.avro_codec import DecodeError, SchemaCatalog
from models.config import ConfigError, IngestConfig, check_transaction_timeout
from models.ingest import DEAD_LETTER_REASONS, Accepted, DeadLettered, IngestSettings, Ingestor, SourceRecord
from models.normalize import normalize_email, normalize_identifiers, normalize_phone

SALT = "unit-test-salt-0123456789"
NOW = 1_790_000_000_000
CATALOG = SchemaCatalog.load()
EVENT = CATALOG.codec("Event")


def event(**over):
    base = {
        "event_id": "ev-1",
        "event_type": "add_to_cart",
        "channel": "web",
        "occurred_at": NOW - 1000,
        "schema_version": 1,
        "identifiers": {
            "cookie_id": "ck-1",
            "email": None,
            "phone": None,
            "customer_id": None,
            "device_id": None,
            "loyalty_id": None,
        },
        "context": {},
        "payload": (
            "journey.v1.CartChange",
            {"cart_id": "c1", "product_id": "p1", "category": "shoes", "quantity": 1, "unit_price": 30.0},
        ),
    }
    base.update(over)
    return base


def ingest(value: bytes, ts: int = NOW):
    return Ingestor(IngestSettings(SALT), CATALOG).process(SourceRecord(value, "journey.events.web", 1, 42, ts))


def dead_letter_of(result) -> dict:
    assert isinstance(result, DeadLettered)
    name, rec = CATALOG.decode(result.value)
    assert name == "DeadLetter"
    return rec


def test_single_object_encoding_starts_with_magic_and_the_crc64_fingerprint_of_the_schema() -> None:
    data = EVENT.encode(event())
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == EVENT.fingerprint
    assert struct.unpack("<Q", EVENT.fingerprint)[0] != 0
    assert CATALOG.decode(data) == ("Event", {**event(), "identifiers": event()["identifiers"]})


def test_a_valid_event_is_accepted_with_its_source_position() -> None:
    result = ingest(EVENT.encode(event()))
    assert isinstance(result, Accepted)
    name, rec = CATALOG.decode(result.value)
    assert name == "NormalizedEvent"
    assert (rec["source_topic"], rec["source_partition"], rec["source_offset"]) == ("journey.events.web", 1, 42)
    assert rec["identifiers"]["cookie_id"] == "ck-1"


@pytest.mark.parametrize(
    "value, reason",
    [
        (b"", "not_single_object_encoded"),
        (b'{"event_id": "x"}', "not_single_object_encoded"),
        (b"\xc3\x01" + b"\x00" * 8 + b"\x02", "unknown_schema"),
    ],
)
def test_undecodable_values_are_dead_lettered_with_their_reason(value: bytes, reason: str) -> None:
    dl = dead_letter_of(ingest(value))
    assert dl["error_type"] == reason
    assert (dl["raw"], dl["raw_form"], dl["raw_size"], dl["raw_digest"]) == dlq_oracle.expected(value, SALT)
    assert dl["raw_form"] == "masked_prefix" and len(dl["raw"]) == len(value)
    assert (dl["source_topic"], dl["source_partition"], dl["source_offset"]) == ("journey.events.web", 1, 42)


def test_truncated_and_padded_bodies_are_malformed_avro() -> None:
    good = EVENT.encode(event())
    assert dead_letter_of(ingest(good[:-3]))["error_type"] == "malformed_avro"
    assert dead_letter_of(ingest(good + b"\x00"))["error_type"] == "malformed_avro"


def test_a_record_of_another_known_schema_on_an_events_topic_is_an_unknown_schema() -> None:
    dl_bytes = CATALOG.codec("DeadLetter").encode(
        {
            "raw": b"",
            "error_type": "malformed_avro",
            "error_detail": "",
            "source_topic": "t",
            "source_partition": 0,
            "source_offset": 0,
            "source_timestamp": 0,
            "job": "j",
        }
    )
    assert dead_letter_of(ingest(dl_bytes))["error_type"] == "unknown_schema"


@pytest.mark.parametrize(
    "over, reason",
    [
        ({"event_id": "  "}, "missing_event_id"),
        (
            {
                "identifiers": {
                    "cookie_id": " ",
                    "email": None,
                    "phone": None,
                    "customer_id": None,
                    "device_id": None,
                    "loyalty_id": None,
                }
            },
            "missing_identifiers",
        ),
        (
            {
                "identifiers": {
                    "cookie_id": None,
                    "email": "not-an-email",
                    "phone": "12",
                    "customer_id": None,
                    "device_id": None,
                    "loyalty_id": None,
                }
            },
            "missing_identifiers",
        ),
        ({"occurred_at": 5}, "invalid_timestamp"),
        ({"occurred_at": NOW + 2 * 24 * 3600 * 1000}, "invalid_timestamp"),
        ({"event_type": "purchase"}, "payload_mismatch"),
        (
            {
                "payload": (
                    "journey.v1.CartChange",
                    {"cart_id": "c1", "product_id": "p1", "category": "s", "quantity": 0, "unit_price": 3.0},
                )
            },
            "invalid_field",
        ),
        (
            {
                "payload": (
                    "journey.v1.CartChange",
                    {"cart_id": "c1", "product_id": "p1", "category": "s", "quantity": 1, "unit_price": float("nan")},
                )
            },
            "invalid_field",
        ),
    ],
)
def test_contract_violations_are_dead_lettered_with_their_reason(over: dict, reason: str) -> None:
    assert dead_letter_of(ingest(EVENT.encode(event(**over))))["error_type"] == reason


def test_future_timestamps_are_judged_against_the_kafka_timestamp_not_the_wall_clock() -> None:
    future = event(occurred_at=NOW + 3600_000)
    assert isinstance(ingest(EVENT.encode(future), ts=NOW), Accepted)
    assert isinstance(ingest(EVENT.encode(future), ts=NOW - 2 * 24 * 3600_000), DeadLettered)


def test_email_and_phone_are_published_only_as_salted_hmacs_of_their_normal_form() -> None:
    ids = {"email": "  Ann.Lee@Example.COM ", "phone": "+1 (415) 555-0132", "cookie_id": " ck "}
    out, warnings = normalize_identifiers(ids, SALT, "1")
    assert warnings == []
    assert out["email_hash"] == hmac.new(SALT.encode(), b"email:ann.lee@example.com", hashlib.sha256).hexdigest()
    assert out["phone_hash"] == hmac.new(SALT.encode(), b"phone:+14155550132", hashlib.sha256).hexdigest()
    assert out["cookie_id"] == "ck"
    assert "email" not in out and "phone" not in out


def test_a_different_salt_gives_different_hashes() -> None:
    a, _ = normalize_identifiers({"email": "a@b.co"}, SALT, "1")
    b, _ = normalize_identifiers({"email": "a@b.co"}, SALT + "x", "1")
    assert a["email_hash"] != b["email_hash"]


def test_an_unusable_phone_is_dropped_with_a_warning_when_another_identifier_remains() -> None:
    result = ingest(
        EVENT.encode(
            event(
                identifiers={
                    "cookie_id": "ck",
                    "email": None,
                    "phone": "abc",
                    "customer_id": None,
                    "device_id": None,
                    "loyalty_id": None,
                }
            )
        )
    )
    assert isinstance(result, Accepted)
    assert result.warnings == ("phone_dropped_unparseable",)


@pytest.mark.parametrize(
    "raw, e164",
    [
        ("415-555-0132", "+14155550132"),
        ("+44 20 7946 0958", "+442079460958"),
        ("0044 (20) 7946 0958", "+442079460958"),
        ("+0 123", None),
        ("", None),
        ("phone", None),
    ],
)
def test_phone_numbers_normalize_to_e164(raw: str, e164: str | None) -> None:
    assert normalize_phone(raw, "1") == e164


def test_emails_are_trimmed_and_lower_cased() -> None:
    assert normalize_email(" X@Y.ORG\t") == "x@y.org"
    assert normalize_email("x@y") is None


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise_and_are_either_accepted_or_dead_lettered(data: bytes) -> None:
    result = ingest(data)
    assert isinstance(result, (Accepted, DeadLettered))
    if isinstance(result, DeadLettered):
        assert dead_letter_of(result)["error_type"] in DEAD_LETTER_REASONS


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=200), st.integers(min_value=0, max_value=60))
def test_corrupted_valid_events_never_raise(noise: bytes, at: int) -> None:
    good = EVENT.encode(event())
    at = 10 + at % max(1, len(good) - 10)
    result = ingest(good[:at] + noise + good[at + len(noise) :])
    assert isinstance(result, (Accepted, DeadLettered))


def test_decode_error_names_a_dead_letter_reason() -> None:
    with pytest.raises(DecodeError) as e:
        CATALOG.decode(b"\xc3\x01\x00")
    assert e.value.error_type in DEAD_LETTER_REASONS


def test_config_requires_a_salt_and_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="JOURNEY_PII_SALT"):
        IngestConfig.from_env({})
    with pytest.raises(ConfigError, match="at least 16"):
        IngestConfig(pii_salt="short")


def test_config_reads_typed_values_from_the_environment() -> None:
    cfg = IngestConfig.from_env(
        {
            "JOURNEY_PII_SALT": SALT,
            "JOURNEY_PARALLELISM": "3",
            "JOURNEY_BOUNDED": "true",
            "JOURNEY_JARS": "file:///a.jar;file:///b.jar",
        }
    )
    assert (cfg.parallelism, cfg.bounded, cfg.jars) == (3, True, ("file:///a.jar", "file:///b.jar"))
    with pytest.raises(ConfigError, match="JOURNEY_PARALLELISM"):
        IngestConfig.from_env({"JOURNEY_PII_SALT": SALT, "JOURNEY_PARALLELISM": "two"})


def test_bad_topic_names_and_prefixes_are_refused() -> None:
    with pytest.raises(ConfigError, match="output_topic"):
        IngestConfig(pii_salt=SALT, output_topic="bad topic")
    with pytest.raises(ConfigError, match="input_topic_pattern"):
        IngestConfig(pii_salt=SALT, input_topic_pattern="(")


def test_transaction_timeout_must_cover_checkpoint_timeout_plus_restart_delay() -> None:
    with pytest.raises(ConfigError, match="must be above"):
        IngestConfig(pii_salt=SALT, transaction_timeout_ms=60_000, checkpoint_timeout_ms=60_000, restart_delay_ms=1)
    with pytest.raises(ConfigError, match="transaction.max.timeout.ms"):
        check_transaction_timeout(1_000_000, 60_000, 5_000, 900_000)
    check_transaction_timeout(65_001, 60_000, 5_000, 900_000)


def test_restart_settings_are_refused_when_negative_or_without_an_interval() -> None:
    with pytest.raises(ConfigError, match="restart_attempts must not be negative"):
        IngestConfig(pii_salt=SALT, restart_attempts=-1)
    with pytest.raises(ConfigError, match="restart_interval_ms must be positive"):
        IngestConfig(pii_salt=SALT, restart_interval_ms=0)
    assert IngestConfig(pii_salt=SALT, restart_attempts=0).restart_attempts == 0  # never restart
