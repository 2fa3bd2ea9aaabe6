"""Exactly-once across the project's own commands, on the real stack.

The sequence a user goes through with the README's commands: a first ``make demo`` (the
ingestion and profiles jobs started through ``local.jobs.ensure_job``), a second one with new
events (the jobs found running), ``make down`` / ``make up`` with events arriving while the
cluster is down (the jobs resumed from their retained checkpoints), a restart with new
settings (stopped with a savepoint, resumed from it), and ``make ingest`` on a stack whose
job state was lost (refused). The committed outputs must then hold every unique
valid event of all three batches exactly once (the generators' ground truth), the dead
letters one for one, and Cassandra must equal the offline oracle over those events (an event
folded twice would show in its profile's counts).

Before this, ``make demo`` ran a bounded ingestion job whose final offsets were never
committed, and the next ``make ingest`` started fresh: 559 duplicate events reached
journey.normalized and the profiles job folded them again.
"""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from generator.produce import produce
from generator.synth import generate
from local import stack
from local.jobs import AlreadyProcessed, ensure_job, recorded_jobs
from local.flink_cluster import FlinkJobError, rest
from local.kafka_read import read_committed
from models.avro_codec import SchemaCatalog
from tests import dlq_oracle
from tests.ingestion_harness import SALT, Topics, wait_for_count
from tests.profiles_harness import ProfilesRun, wait_until_cassandra_equals_oracle

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sequence(local_stack, session):
    bootstrap = local_stack
    topics = Topics.create(bootstrap, "seq")
    run = ProfilesRun.create(bootstrap, topics, session)
    ingest_env, profiles_env = topics.job_env(bootstrap), run.job_env(bootstrap)
    batches = [generate(seed=seed, persons=12) for seed in (901, 902, 903)]
    how: dict[str, list[str]] = {"ingestion": [], "profiles": []}

    def ensure_both(restart: bool = False, **settings: str) -> None:
        """``make demo`` / ``make ingest`` + ``make profiles`` (with ``settings`` added to each
        job's): both jobs at once (each job's records are a file of its own)."""
        with ThreadPoolExecutor(2) as pool:
            futures = {
                kind: pool.submit(ensure_job, kind, {**env, **settings}, restart=restart)
                for kind, env in (("ingestion", ingest_env), ("profiles", profiles_env))
            }
            for kind, future in futures.items():
                how[kind].append(future.result()[1])

    # `make demo`: events, then both jobs started
    produce(batches[0], bootstrap, progress=False, topic_prefix=topics.prefix)
    ensure_both()
    # `make demo` again: new events, the jobs found running
    produce(batches[1], bootstrap, progress=False, topic_prefix=topics.prefix)
    ensure_both()
    overview = rest("/overview")
    valid = sum(len(b.truth.valid_event_ids) for b in batches[:2])
    wait_for_count(bootstrap, topics.normalized, valid, 240)
    time.sleep(3)  # a few checkpoints more, so the restart below has something to resume from
    # `make down` / `make up` with events arriving in between, then `make demo` / `make ingest`
    stack.COMPONENTS["flink"].stop()
    produce(batches[2], bootstrap, progress=False, topic_prefix=topics.prefix)
    stack.COMPONENTS["flink"].start()
    ensure_both()
    # new settings: `make ingest` / `make profiles` with --restart (stop with savepoint, resume)
    time.sleep(2)
    ensure_both(restart=True, JOURNEY_CHECKPOINT_INTERVAL_MS="1500")
    # the same job on a stack that lost its state (another job name: no recorded job to resume)
    with pytest.raises(AlreadyProcessed) as refused:
        ensure_job("ingestion", {**ingest_env, "JOURNEY_JOB_NAME": f"{topics.prefix}-lost-state"})

    valid = sum(len(b.truth.valid_event_ids) for b in batches)
    wait_for_count(bootstrap, topics.normalized, valid, 240)
    time.sleep(5)  # anything extra (a duplicate) would be committed by now
    catalog = SchemaCatalog.load()
    normalized = [catalog.decode(r.value)[1] for r in read_committed(bootstrap, topics.normalized)]
    dlq = [catalog.decode(r.value)[1] for r in read_committed(bootstrap, topics.dlq)]
    diff, seconds = wait_until_cassandra_equals_oracle(session, run.keyspace, normalized, timeout_s=240)
    for kind, env in (("ingestion", ingest_env), ("profiles", profiles_env)):
        from local.flink_cluster import cancel

        cancel(ensure_job(kind, env)[0])
    session.execute(f"DROP KEYSPACE IF EXISTS {run.keyspace}")
    return batches, normalized, dlq, diff, seconds, how, str(refused.value), topics, overview


def test_the_jobs_are_started_once_then_found_running_then_resumed_from_checkpoint_and_savepoint(sequence) -> None:
    *_, how, _, topics, _ = sequence
    assert how == {
        "ingestion": ["started", "running", "resumed", "resumed"],
        "profiles": ["started", "running", "resumed", "resumed"],
    }
    assert len(recorded_jobs(f"test-ingestion-{topics.prefix}")) == 3


def test_every_valid_event_of_every_batch_is_normalized_exactly_once(sequence) -> None:
    batches, normalized, *_ = sequence
    got = Counter(e["event_id"] for e in normalized)
    want = Counter(i for b in batches for i in b.truth.valid_event_ids)
    assert sum(want.values()) == len(set(want)), "the batches' event ids must be distinct"
    assert not (got - want), f"duplicates or strangers: {sorted((got - want).items())[:5]}"
    assert not (want - got), f"missing: {sorted((want - got).items())[:5]}"


def test_every_bad_record_is_dead_lettered_exactly_once_with_its_reason(sequence) -> None:
    batches, _, dlq, *_ = sequence
    got = Counter((d["raw"], d["error_type"]) for d in dlq)
    want = Counter((dlq_oracle.expected(r.raw, SALT)[0], r.error_type) for b in batches for r in b.truth.bad_records)
    assert got == want


def test_cassandra_equals_the_oracle_over_the_events_each_folded_once(sequence) -> None:
    _, _, _, diff, seconds, *_ = sequence
    assert diff == [], f"not equal after {seconds:.0f} s: {diff}"


def test_a_fresh_start_over_already_processed_input_is_refused_with_what_to_do(sequence) -> None:
    refused = sequence[6]
    assert "no checkpoint or savepoint to resume from" in refused
    assert "consumer group" in refused and "has committed offsets" in refused
    assert "--savepoint" in refused and "make reset" in refused


def test_both_jobs_run_at_once_with_slots_left_for_the_stages_to_come(sequence) -> None:
    overview = sequence[-1]
    # ingestion and profiles at parallelism 2 each; sessions/carts and segments/scores to come
    assert overview["slots-available"] >= 4, overview


def test_a_job_that_cannot_get_its_slots_is_cancelled_and_never_recorded(local_stack) -> None:
    topics = Topics.create(local_stack, "noslot")
    env = topics.job_env(local_stack, JOURNEY_PARALLELISM="64")
    with pytest.raises(FlinkJobError, match="not running after"):
        ensure_job("ingestion", env, start_timeout_s=25)
    assert recorded_jobs(env["JOURNEY_JOB_NAME"]) == []
    assert not [
        j
        for j in rest("/jobs/overview")["jobs"]
        if j["name"] == env["JOURNEY_JOB_NAME"] and j["state"] not in ("CANCELED", "FAILED")
    ]
