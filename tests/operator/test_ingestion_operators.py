"""The ingestion operators on Flink's mini-cluster (thread mode, parallelism 2), fed from a
collection through the same ``build_ingestion`` the production job uses. No Kafka."""

from __future__ import annotations

from base64 import b64decode, b64encode
from collections import Counter

import pytest
from pyflink.common import Row, Types

from tests.operator.mini_cluster import thread_mode_env
from flink_jobs.ingestion import build_ingestion
from generator.synth import generate
from tests import dlq_oracle
from models.avro_codec import SchemaCatalog
from models.config import IngestConfig
from operators.ingest import RAW_RECORD_TYPE

pytestmark = pytest.mark.operator

SALT = "operator-test-salt-0123"
TAGGED = Types.TUPLE([Types.STRING(), Types.STRING()])  # (tag, base64 value): collect-friendly


def run_ingestion(rows: list[Row]) -> tuple[list[bytes], list[bytes]]:
    """Run build_ingestion on ``rows``; returns (normalized values, dead-letter values)."""
    env = thread_mode_env(parallelism=2)
    cfg = IngestConfig(pii_salt=SALT, rocksdb=False)
    streams = build_ingestion(env.from_collection(rows, type_info=RAW_RECORD_TYPE), cfg)
    tagged = streams.normalized.map(lambda v: ("out", b64encode(v).decode()), output_type=TAGGED).union(
        streams.dead_letters.map(lambda v: ("dlq", b64encode(v).decode()), output_type=TAGGED)
    )
    out: list[bytes] = []
    dlq: list[bytes] = []
    with tagged.execute_and_collect("operator-test-ingestion") as results:
        for tag, value in results:
            (out if tag == "out" else dlq).append(b64decode(value))
    return out, dlq


@pytest.fixture(scope="module")
def dataset():
    return generate(seed=5, persons=6)


@pytest.fixture(scope="module")
def outputs(dataset):
    now = 1_800_000_000_000
    rows = [Row(r.value, r.topic, i % 2, i, now) for i, r in enumerate(dataset.records)]
    return run_ingestion(rows)


def test_operators_emit_each_unique_valid_event_once(dataset, outputs) -> None:
    catalog = SchemaCatalog.load()
    ids = sorted(catalog.decode(v)[1]["event_id"] for v in outputs[0])
    assert ids == dataset.truth.valid_event_ids


def test_operators_dead_letter_exactly_the_bad_records_by_reason(dataset, outputs) -> None:
    catalog = SchemaCatalog.load()
    got = Counter((d["raw"], d["error_type"]) for d in (catalog.decode(v)[1] for v in outputs[1]))
    assert got == Counter((dlq_oracle.expected(b.raw, SALT)[0], b.error_type) for b in dataset.truth.bad_records)


def test_the_same_event_id_from_different_topics_and_partitions_is_emitted_once(dataset) -> None:
    first_valid = next(r for r in dataset.records if r.kind == "valid")
    now = 1_800_000_000_000
    rows = [Row(first_valid.value, f"journey.events.{c}", p, 7, now) for c in ("web", "app") for p in (0, 1)]
    out, dlq = run_ingestion(rows)
    assert len(out) == 1 and dlq == []
