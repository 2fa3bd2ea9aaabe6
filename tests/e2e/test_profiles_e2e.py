"""Identity + profiles on the real stack: generator -> Kafka -> ingestion job -> Kafka ->
profiles job (parallelism 2, exactly-once checkpoints) -> Cassandra, compared with the
offline oracle (resolve() over all events + a fold per profile)."""

from __future__ import annotations

import re
import uuid

import pytest

from generator.produce import produce
from generator.synth import generate
from local import stack
from local.flink_cluster import submit
from local.kafka_read import read_committed
from models.avro_codec import SchemaCatalog
from state.cassandra_schema import apply_schema, connect
from state.profile_store import ProfileStore
from tests.ingestion_harness import Topics
from tests.profile_oracle import assert_same, oracle

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cassandra():
    comp = stack.COMPONENTS["cassandra"]
    started = not comp.healthy()
    if started:
        comp.start()
    yield "127.0.0.1"
    if started:
        comp.stop()


@pytest.fixture(scope="module")
def result(local_stack, cassandra):
    bootstrap = local_stack
    topics = Topics.create(bootstrap, "prof")
    ds = generate(seed=515, persons=30)
    produce(ds, bootstrap, progress=False, topic_prefix=topics.prefix)
    submit("flink_jobs.ingestion", topics.job_env(bootstrap), args=["--bounded"])
    keyspace = f"it_{uuid.uuid4().hex[:10]}"
    apply_schema(cassandra, keyspace=keyspace)
    submit("flink_jobs.profiles", {
        "JOURNEY_BOOTSTRAP_SERVERS": bootstrap,
        "JOURNEY_INPUT_TOPIC_PATTERN": re.escape(topics.normalized),
        "JOURNEY_GROUP_ID": f"{topics.prefix}-profiles",
        "JOURNEY_JOB_NAME": f"test-profiles-{topics.prefix}",
        "JOURNEY_KEYSPACE": keyspace,
        "JOURNEY_CHECKPOINT_INTERVAL_MS": "1000",
    }, args=["--bounded"])
    catalog = SchemaCatalog.load()
    events = [catalog.decode(r.value)[1] for r in read_committed(bootstrap, topics.normalized)]
    store = ProfileStore.connect(cassandra, keyspace=keyspace)
    session = connect(cassandra)
    try:
        want = oracle(events)
        got = {pid: store.get(pid) for pid in want}
        row_count = session.execute(f"SELECT count(*) FROM {keyspace}.profiles").one()[0]
        by_identifier = {n: store.get(identifier_type=n[0], identifier_value=n[1])
                         for pid, (_, agg) in want.items() for n in
                         [(t, v) for t, vs in agg.identifiers.items() for v in vs][:2]}
    finally:
        store.close()
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")
        session.cluster.shutdown()
    return want, got, row_count, by_identifier


def test_cassandra_profiles_equal_the_offline_identity_and_aggregate_oracle(result) -> None:
    want, got, row_count, _ = result
    assert all(g is not None for g in got.values()), [p for p, g in got.items() if g is None]
    assert_same({pid: (0, g) for pid, g in got.items()}, {pid: (0, agg) for pid, (_, agg) in want.items()})
    assert row_count == len(want)


def test_a_profile_can_be_read_by_any_of_its_identifiers(result) -> None:
    want, _, _, by_identifier = result
    owner = {n: pid for pid, (_, agg) in want.items() for t, vs in agg.identifiers.items() for n in [(t, v) for v in vs]}
    for node, profile in by_identifier.items():
        assert profile is not None and profile.profile_id == owner[node]
