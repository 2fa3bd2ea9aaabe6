"""Identity + profiles on the real stack: generator -> Kafka -> ingestion job -> Kafka ->
profiles job (exactly-once checkpoints, feedback topic) -> Cassandra and journey.identity,
compared with the offline oracle (resolve() over all events + a fold per profile). The module
runs the profiles job at parallelism 4: identity is partitioned by raw component, and the
result must not depend on how many subtasks share it. Parallelism 2 (the default) is what
every other real-stack test of the job runs and compares with the oracles (the journeys,
erasure, upgrade, command-sequence and chaos tests); 1 to 4 subtasks: the simulation of
tests/unit/test_identity_partitioned.py."""

from __future__ import annotations

import pytest

from generator.produce import produce
from generator.supernodes import Supernodes
from generator.synth import generate
from local.flink_cluster import cancel, counter_total, submit, wait_for_counters, wait_state
from models.identity import observation_of, resolve
from state.cassandra_schema import apply_schema
from state.profile_store import ProfileStore
from tests.ingestion_harness import Topics
from generator.erasure_truth import erased_nodes, surviving
from tests.profile_oracle import RULES
from tests.profiles_harness import (
    ProfilesRun,
    identity_differences,
    wait_until_cassandra_equals_oracle,
    wait_until_identity_equals_oracle,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def normalized(local_stack) -> Topics:
    """The data set through the ingestion job once; every parallelism's profiles job reads
    its normalized topic from the start with a group and outputs of its own."""
    topics = Topics.create(local_stack, "prof")
    ds = generate(seed=515, persons=30, supernodes=Supernodes())  # two kiosks, a family tablet, an agent
    produce(ds, local_stack, progress=False, topic_prefix=topics.prefix)
    submit("flink_jobs.ingestion", topics.job_env(local_stack), args=["--bounded"])
    return topics


@pytest.fixture(
    scope="module",
    params=[(4, False), (2, True)],
    ids=lambda p: f"parallelism-{p[0]}" + ("-shared-homes" if p[1] else ""),
)
def result(request, local_stack, session, normalized):
    """``(parallelism, homes per linked component)``: the data set's kiosk and family tablet
    are shared identifiers, so with ``JOURNEY_IDENTITY_SHARED_HOMES`` their persons keep homes
    of their own and the registry's messages travel the feedback topic."""
    bootstrap = local_stack
    parallelism, shared_homes = request.param
    prefix = f"{normalized.prefix}p{parallelism}{'s' if shared_homes else ''}"
    run = ProfilesRun.over(bootstrap, Topics(prefix, (), normalized.normalized, normalized.dlq))
    apply_schema(session, keyspace=run.keyspace)
    env = run.job_env(
        bootstrap, JOURNEY_PARALLELISM=str(parallelism), JOURNEY_IDENTITY_SHARED_HOMES=str(shared_homes).lower()
    )
    job = submit("flink_jobs.profiles", env, detached=True)
    try:
        wait_state(job.job_id, {"RUNNING"}, timeout_s=120)
        events = run.normalized_events(bootstrap)
        diff, seconds = wait_until_cassandra_equals_oracle(session, run.keyspace, events, timeout_s=240)
        counters = wait_for_counters(
            job.job_id,
            {"events": len(events), "events_folded": 1, "states_merged": 1},
            [
                "moved_states",
                "atoms_evicted",
                "orphan_states",
                "unresolvable",
                "erased",
                "erased_at_home",
                "registry_messages",
                "identity_shared",
            ],
        )
        store = ProfileStore(session, run.keyspace)
        lookups = {
            (t, v): store.get(identifier_type=t, identifier_value=v)
            for t, v in [
                (t, v)
                for e in events[:40] + [e for e in events if e["event_type"] == "erasure_request"]
                for t, v in observation_of(e).identifiers
            ]
        }
        _, identity_events = wait_until_identity_equals_oracle(bootstrap, run, events, 120)
    finally:
        cancel(job.job_id)
    session.execute(f"DROP KEYSPACE IF EXISTS {run.keyspace}")
    return events, diff, seconds, counters, lookups, identity_events, shared_homes


def test_cassandra_profiles_and_identity_links_equal_the_offline_oracle(result) -> None:
    events, diff, seconds, *_ = result
    assert diff == [], f"not equal after {seconds:.0f} s: {diff}"


def test_every_event_is_folded_once_and_every_moved_atom_arrives(result) -> None:
    events, _, _, counters, *_ = result
    total = lambda name: counter_total(counters, name)  # noqa: E731
    assert total("events") == len(events)
    assert total("events_folded") + total("unresolvable") + total("erased") + total("erased_at_home") == len(events)
    assert total("atoms_evicted") == total("moved_states") == total("states_merged")
    assert total("atoms_evicted") > 0, "the data set should make profiles merge"
    assert total("orphan_states") == 0
    assert total("identity_shared") > 0, "the data set's kiosks are shared"
    if result[-1]:  # homes per linked component: the kiosks' persons registered with their registry keys
        assert total("registry_messages") > 0
    else:
        assert total("registry_messages") == 0


def test_a_profile_can_be_read_by_any_of_its_identifiers(result) -> None:
    events, _, _, _, lookups, *_ = result
    res = resolve([observation_of(e) for e in surviving(events)], RULES)
    gone = erased_nodes(events)
    assert gone & set(lookups), "an erased person's identifiers are looked up too"
    for node, profile in lookups.items():
        if RULES.is_blocked(node[1]) or node in gone:  # (an erased person: nothing to find)
            assert profile is None
        else:
            assert profile is not None and profile.profile_id == res.profile_of[node]


def test_journey_identity_announces_every_identifier_merge_and_refusal(result) -> None:
    """Read in order, the log tells every identifier's final profile (the oracle's)."""
    events, *_, identity_events, _ = result
    assert identity_differences(identity_events, events) == []
    assert any(e["kind"] == "profile_merged" for e in identity_events), "the data set should make profiles merge"
