"""The hand-written baseline (``bench/handwritten.py``, issue 14) on the real stack: generator
-> Kafka -> one confluent-kafka consumer running the models/ code -> Cassandra through
``ProfileStore``, into a keyspace of this module's own. The ``profiles`` table, read with plain
CQL, equals the independent oracle (``tests/profile_oracle.py``) row by row; the whole
aggregates and the identity links do too."""

from __future__ import annotations

import pytest

from bench.handwritten import consume
from generator.erasure_truth import surviving
from generator.produce import produce
from generator.synth import generate
from local import stack
from tests.ingestion_harness import Topics
from tests.profile_oracle import oracle
from tests.profiles_harness import differences, generated_by_person, read_cassandra

pytestmark = pytest.mark.e2e

SEED, PERSONS = 616, 30
SALT = "handwritten-e2e-salt-012345"


@pytest.fixture(scope="module")
def kafka():
    """The stack's Kafka broker (no Flink: the baseline runs without it); stopped afterwards
    only if started here."""
    comp = stack.COMPONENTS["kafka"]
    started = not comp.healthy()
    if started:
        comp.start()
    yield f"127.0.0.1:{stack.KAFKA_PORT}"
    if started:
        comp.stop()


@pytest.fixture(scope="module")
def run(kafka, session, keyspace):
    ds = generate(seed=SEED, persons=PERSONS)
    topics = Topics.create(kafka, "hw")
    produce(ds, kafka, progress=False, topic_prefix=topics.prefix)
    result = consume(
        kafka,
        topics.inputs,
        "127.0.0.1",
        stack.CASSANDRA_PORT,
        keyspace,
        SALT,
        expected_records=len(ds.records),
        idle_timeout_s=30,
    )
    events = [e for evs in generated_by_person(SEED, PERSONS, 14, SALT).values() for e in evs]
    return ds, result, events


def test_every_record_is_consumed_and_profiles_are_written_coalesced_per_batch(run) -> None:
    ds, result, _ = run
    truth = ds.truth.summary()
    assert result["records"] == truth["records"]
    assert (result["normalized"], result["dead_lettered"], result["duplicates"]) == (
        truth["valid"],
        truth["bad"],
        truth["duplicate"],
    )
    assert 0 < result["cassandra_requests"] < result["events_folded"]
    assert result["cassandra_requests_per_event"] < 1


def test_profiles_read_with_plain_cql_equal_the_oracle(run, session, keyspace) -> None:
    _, result, events = run
    want = oracle(surviving(events))
    rows = session.execute(
        f"SELECT profile_id, version, events, orders, revenue_cents, identifiers, writetime(events) AS wt "
        f"FROM {keyspace}.profiles"
    )
    got = {
        r.profile_id: (
            r.version,
            r.wt,
            r.events,
            r.orders,
            r.revenue_cents,
            {t: tuple(v) for t, v in r.identifiers.items()},
        )
        for r in rows
    }
    assert got == {
        pid: (version, 2 * version + 1, agg.events, agg.orders, agg.revenue_cents, agg.identifiers)
        for pid, (version, agg) in want.items()
    }
    assert result["profiles"] == len(want)


def test_whole_profiles_and_identity_links_equal_the_oracle(run, session, keyspace) -> None:
    _, _, events = run
    assert differences(read_cassandra(session, keyspace), events) == []
