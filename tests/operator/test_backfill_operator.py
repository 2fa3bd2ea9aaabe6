"""History backfill through the real ingestion wiring (``build_ingestion``) on Flink's
mini-cluster (thread mode, parallelism 2), fed from a collection. No Kafka.

The job is configured with a backfill topic bounded at 1990-01-01. Into it go a year of order
history generated from 2010-12-01 (with the generator's faults: duplicates, late and
out-of-order events, one bad record of every kind, invalid timestamps impossible under the
bound) and hand-made purchases dated 1998 to 2011. History must come out normalized with
``occurred_at`` unchanged to the millisecond; impossible timestamps (before the Unix epoch,
beyond the future skew of the Kafka record timestamp, before the bound) and 1990s history
sent to a live topic must be dead-lettered as ``invalid_timestamp``; nothing may be lost.
"""

from __future__ import annotations

from base64 import b64decode, b64encode
from collections import Counter
from datetime import datetime, timezone
from typing import Any

import pytest
from pyflink.common import Row, Types

from flink_jobs.ingestion import build_ingestion
from generator.synth import generate
from tests import dlq_oracle
from models.avro_codec import SchemaCatalog
from models.config import IngestConfig
from models.ingest import Accepted, IngestSettings, Ingestor, SourceRecord
from operators.ingest import RAW_RECORD_TYPE
from tests.operator.mini_cluster import thread_mode_env

pytestmark = pytest.mark.operator

SALT = "operator-backfill-salt-0123"
TAGGED = Types.TUPLE([Types.STRING(), Types.STRING()])  # (tag, base64 value): collect-friendly
NOW = 1_800_000_000_000  # the Kafka record timestamp: history is produced now (2027-01-15)
BACKFILL_TOPIC = "journey.events.backfill"
LIVE_TOPIC = "journey.events.pos"
CATALOG = SchemaCatalog.load()
EVENT = CATALOG.codec("Event")


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).replace(tzinfo=timezone.utc).timestamp() * 1000)


SINCE_1990 = ms("1990-01-01")
CONFIG = IngestConfig(
    pii_salt=SALT,
    rocksdb=False,
    backfill_topic_pattern=r"journey\.events\.backfill",
    backfill_min_valid_timestamp_ms=SINCE_1990,
)


def purchase(event_id: str, occurred_at: int) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "event_type": "store_purchase",
        "channel": "pos",
        "occurred_at": occurred_at,
        "schema_version": 1,
        "identifiers": {
            "customer_id": "13047",
            "email": " Old.Customer@Example.COM ",
            "phone": None,
            "device_id": None,
            "cookie_id": None,
            "loyalty_id": None,
        },
        "context": {"source": "order-history"},
        "payload": (
            "journey.v1.Purchase",
            {
                "order_id": event_id.replace("hist", "inv"),
                "cart_id": None,
                "currency": "GBP",
                "total": 22.0,
                "items": [
                    {"product_id": "84406B", "category": "home", "quantity": 8, "unit_price": 2.75},
                    {"product_id": "22752", "category": "home", "quantity": 2, "unit_price": 0.0},
                ],
                "store_id": "uk-online",
            },
        ),
    }


#: hand-made history on the backfill topic, all accepted
HISTORY = {
    f"hist-{k:02d}": ms(when)
    for k, when in enumerate(
        (
            "1990-01-01T00:00:00",
            "1998-03-14T10:00:00",
            "1999-12-31T23:59:59.999",
            "2003-07-01T09:30:00.250",
            "2010-12-01T08:26:00",
            "2011-12-09T12:50:00",
        )
    )
}
#: hand-made records that must be dead-lettered: (topic, occurred_at, what the detail must say)
IMPOSSIBLE = {
    "bad-live-1998": (LIVE_TOPIC, ms("1998-03-14T10:00:00"), "set by JOURNEY_MIN_VALID_TIMESTAMP_MS"),
    "bad-1989": (BACKFILL_TOPIC, ms("1989-12-31T23:59:59.999"), "set by JOURNEY_BACKFILL_MIN_VALID_TIMESTAMP_MS"),
    "bad-pre-epoch": (BACKFILL_TOPIC, -1, "before the Unix epoch"),
    "bad-1960": (BACKFILL_TOPIC, -ms("1980-01-01"), "before the Unix epoch"),
    "bad-future": (BACKFILL_TOPIC, NOW + CONFIG.max_future_skew_ms + 1, "JOURNEY_MAX_FUTURE_SKEW_MS=86400000"),
    "bad-seconds": (BACKFILL_TOPIC, ms("2010-12-01T08:26:00") // 1000, "looks like epoch seconds"),
}


@pytest.fixture(scope="module")
def dataset():
    return generate(
        seed=2010, persons=6, base_time_ms=ms("2010-12-01"), days=373, min_valid_timestamp_ms=SINCE_1990, bad_ratio=0.05
    )


@pytest.fixture(scope="module")
def rows(dataset) -> list[Row]:
    """Every generated record and the hand-made ones, as the Kafka source would hand them over."""
    out = [Row(r.value, BACKFILL_TOPIC, i % 2, i, NOW) for i, r in enumerate(dataset.records)]
    n = len(out)
    for k, (event_id, when) in enumerate(HISTORY.items()):
        out.append(Row(EVENT.encode(purchase(event_id, when)), BACKFILL_TOPIC, k % 2, n + k, NOW))
    # a re-sent history row (a producer retry of the 1998 order): emitted once
    out.append(Row(EVENT.encode(purchase("hist-01", HISTORY["hist-01"])), BACKFILL_TOPIC, 1, n + 100, NOW))
    for k, (event_id, (topic, when, _)) in enumerate(IMPOSSIBLE.items()):
        out.append(Row(EVENT.encode(purchase(event_id, when)), topic, 0, n + 200 + k, NOW))
    return out


@pytest.fixture(scope="module")
def outputs(rows) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(decoded normalized events, decoded dead letters) of one run of build_ingestion."""
    env = thread_mode_env(parallelism=2)
    streams = build_ingestion(env.from_collection(rows, type_info=RAW_RECORD_TYPE), CONFIG)
    tagged = streams.normalized.map(lambda v: ("out", b64encode(v).decode()), output_type=TAGGED).union(
        streams.dead_letters.map(lambda v: ("dlq", b64encode(v).decode()), output_type=TAGGED)
    )
    out: list[dict[str, Any]] = []
    dlq: list[dict[str, Any]] = []
    with tagged.execute_and_collect("operator-test-backfill") as results:
        for tag, value in results:
            if tag == "out":
                out.append(CATALOG.decode(b64decode(value), expect="NormalizedEvent")[1])
            else:
                dlq.append(CATALOG.decode(b64decode(value), expect="DeadLetter")[1])
    return out, dlq


def test_every_historical_event_is_emitted_once_and_nothing_is_lost(dataset, rows, outputs) -> None:
    out, dlq = outputs
    ids = Counter(e["event_id"] for e in out)
    assert ids == Counter(dataset.truth.valid_event_ids + list(HISTORY))
    duplicates = len(dataset.truth.duplicates) + 1  # the generator's and the re-sent 1998 order
    assert len(rows) == len(out) + len(dlq) + duplicates


def test_history_from_1990_to_2011_is_normalized_with_occurred_at_unchanged(dataset, rows, outputs) -> None:
    out, _ = outputs
    want = {r.event_id: r.occurred_at for r in dataset.records if r.kind == "valid"} | HISTORY
    got = {e["event_id"]: e["occurred_at"] for e in out}
    assert got == want
    assert min(got.values()) == ms("1990-01-01") and ms("1998-03-14T10:00:00") in got.values()
    assert {e["source_topic"] for e in out} == {BACKFILL_TOPIC}


def test_historical_events_come_out_as_the_pure_ingestion_normalizes_them(rows, outputs) -> None:
    ingestor = Ingestor(IngestSettings.of(CONFIG), CATALOG)
    position = ("source_partition", "source_offset")
    want: dict[str, dict[str, Any]] = {}
    for row in rows:
        result = ingestor.process(SourceRecord(bytes(row[0]), row[1], row[2], row[3], row[4]))
        if isinstance(result, Accepted):
            event = CATALOG.decode(result.value, expect="NormalizedEvent")[1]
            want.setdefault(result.event_id, {k: v for k, v in event.items() if k not in position})
    got = {e["event_id"]: {k: v for k, v in e.items() if k not in position} for e in outputs[0]}
    assert got == want
    assert got["hist-01"]["identifiers"]["email_hash"] is not None  # PII hashed in history too


def test_impossible_timestamps_and_the_generators_bad_records_are_dead_lettered_by_reason(dataset, outputs) -> None:
    _, dlq = outputs
    want = Counter((dlq_oracle.expected(b.raw, SALT)[0], b.error_type) for b in dataset.truth.bad_records)
    want += Counter(
        (dlq_oracle.expected(EVENT.encode(purchase(event_id, when)), SALT)[0], "invalid_timestamp")
        for event_id, (_, when, _) in IMPOSSIBLE.items()
    )
    assert Counter((d["raw"], d["error_type"]) for d in dlq) == want
    planted = {b.variant for b in dataset.truth.bad_records if b.error_type == "invalid_timestamp"}
    assert planted and planted <= {"epoch_5ms", "year_1989", "before_epoch", "year_2100"}


def test_dead_letters_of_impossible_history_say_which_bound_was_violated(outputs) -> None:
    by_id = {
        CATALOG.decode(d["raw"], expect="Event")[1]["event_id"]: d
        for d in outputs[1]
        if d["raw"][:2] == b"\xc3\x01" and d["error_type"] == "invalid_timestamp"
    }
    for event_id, (topic, _, says) in IMPOSSIBLE.items():
        assert by_id[event_id]["source_topic"] == topic
        assert says in by_id[event_id]["error_detail"], by_id[event_id]["error_detail"]
    assert "docs/operations.md#history-backfill" in by_id["bad-live-1998"]["error_detail"]
