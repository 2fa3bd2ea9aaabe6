"""Exactly-once under failure, modelled on Flink's own end-to-end tests: kill TaskManagers,
kill the JobManager and resume from the retained checkpoint, stop with a savepoint and
resume at another parallelism. Events are produced while the job runs; at the end the
committed outputs (read_committed) must equal the generator's ground truth exactly."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from generator.produce import produce
from generator.synth import generate
from local import stack
from local.flink_cluster import (
    all_tasks_running,
    cancel,
    completed_checkpoints,
    latest_checkpoint,
    stop_with_savepoint,
    submit,
    wait_checkpoint,
    wait_state,
)
from local.kafka_read import read_committed
from local.polling import wait_until
from tests.ingestion_harness import Topics, compare_with_truth, wait_for_count
from tests.profiles_harness import mismatch_count

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]
RATE = 1500.0  # records/s produced while the job runs


class BackgroundProducer:
    """Runs the subclass's ``_produce(*args)`` in a daemon thread while faults are injected;
    :meth:`join` waits for it and fails the test with what went wrong there."""

    def _start(self, *args: object) -> None:
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._guarded, args=args, daemon=True)
        self._thread.start()

    def _guarded(self, *args: object) -> None:
        try:
            self._produce(*args)
        except BaseException as e:  # reported by join()
            self.error = e

    def _produce(self, *args: object) -> None:
        raise NotImplementedError

    def join(self) -> None:
        self._thread.join(timeout=300)
        assert self.error is None, f"producing failed: {self.error}"


class Feed(BackgroundProducer):
    """Produce a generated dataset in the background at RATE while faults are injected."""

    def __init__(self, bootstrap: str, topics: Topics, persons: int, seed: int) -> None:
        self.dataset = generate(seed=seed, persons=persons)
        self._start(bootstrap, topics.prefix)

    def _produce(self, bootstrap: str, prefix: str) -> None:
        produce(self.dataset, bootstrap, rate=RATE, progress=False, topic_prefix=prefix)


def finish_and_compare(bootstrap: str, topics: Topics, feed: Feed, job_id: str) -> tuple[int, int]:
    feed.join()
    truth = feed.dataset.truth
    wait_for_count(bootstrap, topics.normalized, len(truth.valid_event_ids), 300)
    wait_for_count(bootstrap, topics.dlq, len(truth.bad_records), 60)
    time.sleep(4)  # more checkpoints: late duplicates would show now
    cancel(job_id)
    cmp = compare_with_truth(
        feed.dataset, read_committed(bootstrap, topics.normalized), read_committed(bootstrap, topics.dlq)
    )
    return cmp.compared, cmp.mismatches


def wait_recovered(job_id: str, since: float, timeout_s: float = 120) -> float:
    """Seconds from ``since`` until every task of the job runs again (TimeoutError after ``timeout_s``)."""
    time.sleep(1)  # the restart has begun: tasks still RUNNING from before the fault do not count
    wait_until(lambda: all_tasks_running(job_id), timeout_s - 1, 0.5, f"job {job_id} recovered (all tasks RUNNING)")
    return time.monotonic() - since


def kill_taskmanager(job_id: str, k: int) -> float:
    """SIGKILL one of the TaskManagers (alternating with ``k``), start a replacement, and return
    the seconds until the job runs again; then wait for the replacement to register, so the next
    fault (and the next test) finds the whole cluster."""
    stack.ensure_taskmanagers()
    pids = stack.flink_pids("taskexecutor")
    os.kill(pids[k % len(pids)], signal.SIGKILL)
    t0 = time.monotonic()
    stack.flink_daemon("taskmanager.sh", "start")
    recovery = wait_recovered(job_id, t0)
    stack.ensure_taskmanagers()
    return recovery


def test_taskmanager_killed_three_times_after_checkpoints_loses_and_duplicates_nothing(local_stack, chaos_report):
    bootstrap = local_stack
    topics = Topics.create(bootstrap, "tmkill")
    feed = Feed(bootstrap, topics, persons=450, seed=401)
    job = submit("flink_jobs.ingestion", topics.job_env(bootstrap), detached=True)
    wait_state(job.job_id, {"RUNNING"}, timeout_s=120)
    recoveries = []
    try:
        for k in range(3):
            wait_checkpoint(job.job_id, completed_checkpoints(job.job_id))
            recoveries.append(kill_taskmanager(job.job_id, k))
        compared, mismatches = finish_and_compare(bootstrap, topics, feed, job.job_id)
    finally:
        cancel(job.job_id)
    chaos_report.append(
        {
            "scenario": "kill TaskManager x3",
            "faults": len(recoveries),
            "compared": compared,
            "mismatches": mismatches,
            "recovery_s": recoveries,
        }
    )
    assert len(recoveries) == 3
    assert mismatches == 0


def kill_jobmanager_and_restart() -> float:
    """SIGKILL the JobManager (no HA: its jobs are gone), start a new one and wait until it
    answers; returns the monotonic time of the kill."""
    for pid in stack.flink_pids("standalonesession"):
        os.kill(pid, signal.SIGKILL)
    t0 = time.monotonic()
    time.sleep(2)
    stack.flink_daemon("jobmanager.sh", "start")
    wait_until(stack.COMPONENTS["flink"].healthy, 90, 1, "the restarted JobManager answering")
    return t0


def _latest_checkpoint(job_id: str) -> str:
    chk = latest_checkpoint(job_id)
    assert chk is not None, f"no retained checkpoint of {job_id}"
    return str(chk)


@pytest.mark.chaos_long
def test_jobmanager_killed_and_job_resumed_from_the_retained_checkpoint_is_exact(local_stack, chaos_report):
    bootstrap = local_stack
    topics = Topics.create(bootstrap, "jmkill")
    feed = Feed(bootstrap, topics, persons=300, seed=402)
    env = topics.job_env(bootstrap)
    job = submit("flink_jobs.ingestion", env, detached=True)
    wait_state(job.job_id, {"RUNNING"}, timeout_s=120)
    wait_checkpoint(job.job_id, completed_checkpoints(job.job_id) + 1)
    t0 = kill_jobmanager_and_restart()
    resumed = submit("flink_jobs.ingestion", env, detached=True, savepoint=_latest_checkpoint(job.job_id))
    recovery = wait_recovered(resumed.job_id, t0)
    try:
        compared, mismatches = finish_and_compare(bootstrap, topics, feed, resumed.job_id)
    finally:
        cancel(resumed.job_id)
    chaos_report.append(
        {
            "scenario": "kill JobManager, resume checkpoint",
            "faults": 1,
            "compared": compared,
            "mismatches": mismatches,
            "recovery_s": [recovery],
        }
    )
    assert mismatches == 0


@pytest.mark.chaos_long
def test_savepoint_resume_at_parallelism_one_then_two_is_exact(local_stack, chaos_report):
    bootstrap = local_stack
    topics = Topics.create(bootstrap, "rescale")
    feed = Feed(bootstrap, topics, persons=300, seed=403)
    savepoints = str(stack.DATA / "flink" / "savepoints")
    job = submit("flink_jobs.ingestion", topics.job_env(bootstrap, JOURNEY_PARALLELISM="2"), detached=True)
    wait_state(job.job_id, {"RUNNING"}, timeout_s=120)
    recoveries = []
    for parallelism in ("1", "2"):
        wait_checkpoint(job.job_id, completed_checkpoints(job.job_id) + 1)
        t0 = time.monotonic()
        path = stop_with_savepoint(job.job_id, f"file://{savepoints}")
        job = submit(
            "flink_jobs.ingestion",
            topics.job_env(bootstrap, JOURNEY_PARALLELISM=parallelism),
            detached=True,
            savepoint=path,
        )
        recoveries.append(wait_recovered(job.job_id, t0))
        assert Path(path.removeprefix("file:")).exists()
    try:
        compared, mismatches = finish_and_compare(bootstrap, topics, feed, job.job_id)
    finally:
        cancel(job.job_id)
    chaos_report.append(
        {
            "scenario": "savepoint 2->1->2",
            "faults": 2,
            "compared": compared,
            "mismatches": mismatches,
            "recovery_s": recoveries,
        }
    )
    assert mismatches == 0


def test_arbitrary_bytes_never_crash_the_job_and_every_record_is_counted(local_stack, chaos_report):
    """Decoder fuzzing at job level: seeded random values (empty, tiny, large, with and without
    the single-object magic) go through the real job; each one comes out dead-lettered, and
    the job keeps running (the valid events around them still come out exactly once)."""
    import random

    from local.flink_cluster import job_state

    bootstrap = local_stack
    topics = Topics.create(bootstrap, "fuzz")
    rnd = random.Random(99)
    values = [b"", b"\xc3", b"\xc3\x01", b"\xc3\x01" + bytes(8)]
    for _ in range(400):
        n = rnd.choice([1, 5, 10, 11, 50, 300, 5000, 200_000])
        head = b"\xc3\x01" if rnd.random() < 0.5 else b""
        values.append(head + rnd.randbytes(n))
    feed = Feed(bootstrap, topics, persons=20, seed=404)
    feed.join()
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 1_000_000})
    for i, v in enumerate(values):
        p.produce(topics.inputs[i % len(topics.inputs)], value=v)
    assert p.flush(30) == 0
    job = submit("flink_jobs.ingestion", topics.job_env(bootstrap), detached=True)
    try:
        wait_state(job.job_id, {"RUNNING"}, timeout_s=120)
        truth = feed.dataset.truth
        normalized = wait_for_count(bootstrap, topics.normalized, len(truth.valid_event_ids), 240)
        dlq = wait_for_count(bootstrap, topics.dlq, len(truth.bad_records) + len(values), 120)
        time.sleep(3)
        assert job_state(job.job_id) == "RUNNING"
    finally:
        cancel(job.job_id)
    normalized, dlq = read_committed(bootstrap, topics.normalized), read_committed(bootstrap, topics.dlq)
    from models.avro_codec import SchemaCatalog

    catalog = SchemaCatalog.load()
    from collections import Counter

    raws = sorted(catalog.decode(r.value)[1]["raw"] for r in dlq)
    from tests import dlq_oracle
    from tests.ingestion_harness import SALT

    expected = sorted(dlq_oracle.expected(v, SALT)[0] for v in values + [b.raw for b in truth.bad_records])
    ids = Counter(catalog.decode(r.value)[1]["event_id"] for r in normalized)
    want = Counter(truth.valid_event_ids)
    mismatches = sum(((Counter(raws) - Counter(expected)) + (Counter(expected) - Counter(raws))).values())
    mismatches += sum(((ids - want) + (want - ids)).values())
    chaos_report.append(
        {
            "scenario": "fuzzed values through the job",
            "faults": len(values),
            "compared": len(normalized) + len(dlq),
            "mismatches": mismatches,
            "recovery_s": [],
        }
    )
    assert raws == expected
    assert sorted(catalog.decode(r.value)[1]["event_id"] for r in normalized) == truth.valid_event_ids


class NormalizedFeed(BackgroundProducer):
    """NormalizedEvent values of a generated data set, produced to the profiles job's input
    at ``rate`` per second in the background (the ingestion job is not part of these runs:
    its own scenarios above cover it)."""

    def __init__(self, bootstrap: str, topic: str, persons: int, seed: int, rate: float = 400.0) -> None:
        from tests.profiles_harness import normalized_records

        self.values = normalized_records(persons=persons, seed=seed)
        self._start(bootstrap, topic, rate)

    def _produce(self, bootstrap: str, topic: str, rate: float) -> None:
        from confluent_kafka import Producer

        # idempotent: a broker restart (a scenario below) must not turn a retried send into a
        # second copy of an event the oracle counts once
        p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
        for i, v in enumerate(self.values):
            p.produce(topic, value=v, partition=i % 2)
            if i % 50 == 0:
                p.poll(0)
                time.sleep(50 / rate)
        assert p.flush(60) == 0

    def events(self) -> list[dict]:
        """The produced values, decoded (what the oracle takes)."""
        from models.avro_codec import SchemaCatalog

        catalog = SchemaCatalog.load()
        return [catalog.decode(v)[1] for v in self.values]


def profiles_outputs_differences(bootstrap: str, session, run, feed: NormalizedFeed) -> list[str]:
    """After the feed ends: wait until Cassandra equals the oracle (profiles and identity
    links), then compare the committed journey.identity log with it too, the journeys'
    triggers and sessions (read_committed) and Cassandra tables with the journeys oracle, and
    every profile's segment changes with the segments oracle, and journey.scores with River's
    models run over the oracle's samples in order (every sample learned once, same models)."""
    from tests.profiles_harness import (
        identity_differences,
        wait_until_cassandra_equals_oracle,
        wait_until_journeys_equal_oracle,
        wait_until_scores_equal_oracle,
        wait_until_segments_equal_oracle,
    )

    feed.join()
    events = feed.events()
    t0 = time.monotonic()

    def took() -> str:  # how long each stage took to converge after the feed ended (cumulative)
        return f"[{time.monotonic() - t0:.0f} s after the feed]"

    diff, _ = wait_until_cassandra_equals_oracle(session, run.keyspace, events, timeout_s=300)
    print(f"\ncassandra: {diff or 'equal'} {took()}")
    journeys, got, _ = wait_until_journeys_equal_oracle(bootstrap, session, run, events, timeout_s=300)
    print(
        f"journeys: {len(got.triggers)} triggers, {len(got.sessions)} sessions published; {journeys or 'equal'} {took()}"
    )
    segments, seg_got = wait_until_segments_equal_oracle(bootstrap, run, events, timeout_s=120)
    print(f"segments: {sum(map(len, seg_got.values()))} changes published; {segments or 'equal'} {took()}")
    # the learner is one subtask behind the journeys; after the last restore on a loaded machine
    # (a CI run) it was seen needing more than 120 s more to catch up, so it gets the same 300 s
    scores, got_scores, _ = wait_until_scores_equal_oracle(bootstrap, run, events, timeout_s=300)
    print(
        f"scores: {len(got_scores)} learned samples scored; {scores or 'equal to River over the oracle samples'} {took()}"
    )
    return diff + identity_differences(run.identity_events(bootstrap), events) + journeys + segments + scores


@pytest.fixture
def profiles_run(local_stack, session):
    """A profiles run of its own (input, identity and feedback topics, keyspace), dropped after."""
    from tests.profiles_harness import ProfilesRun

    run = ProfilesRun.create(local_stack, Topics.create(local_stack, "pchaos"), session)
    yield run
    session.execute(f"DROP KEYSPACE IF EXISTS {run.keyspace}")


def test_profiles_job_with_taskmanagers_killed_three_times_ends_equal_to_the_oracle(
    local_stack, session, profiles_run, chaos_report
):
    """The identity + profiles job (feedback topic, Cassandra writes) with a TaskManager
    killed after each of 3 completed checkpoints while normalized events flow: after the
    restarts the job replays from the checkpoint, possibly in another interleaving of the
    input partitions, and Cassandra and journey.identity must still equal the offline oracle
    exactly (no lost moved state, no stale row from the failed attempts, links to the right
    profiles, no identity record of a failed attempt)."""
    bootstrap, run = local_stack, profiles_run
    job = submit("flink_jobs.profiles", run.job_env(bootstrap), detached=True)
    recoveries = []
    try:
        wait_state(job.job_id, {"RUNNING"}, timeout_s=120)
        feed = NormalizedFeed(bootstrap, run.topics.normalized, persons=150, seed=405)
        for k in range(3):
            wait_checkpoint(job.job_id, completed_checkpoints(job.job_id))
            recoveries.append(kill_taskmanager(job.job_id, k))
        diff = profiles_outputs_differences(bootstrap, session, run, feed)
    finally:
        cancel(job.job_id)
    chaos_report.append(
        {
            "scenario": "profiles: kill TaskManager x3",
            "faults": len(recoveries),
            "compared": len(feed.values),
            "mismatches": mismatch_count(diff),
            "recovery_s": recoveries,
        }
    )
    assert len(recoveries) == 3
    assert diff == []


@pytest.mark.chaos_long
def test_profiles_job_resumed_from_the_retained_checkpoint_after_a_jobmanager_kill_is_exact(
    local_stack, session, profiles_run, chaos_report
):
    """The JobManager is killed while events flow (its TaskManagers lose the job; their
    last Cassandra writes may land after the kill); the job is resubmitted from the newest
    retained checkpoint. Cassandra and journey.identity must equal the oracle."""
    bootstrap, run = local_stack, profiles_run
    env = run.job_env(bootstrap)
    job = submit("flink_jobs.profiles", env, detached=True)
    wait_state(job.job_id, {"RUNNING"}, timeout_s=120)
    feed = NormalizedFeed(bootstrap, run.topics.normalized, persons=150, seed=408)
    wait_checkpoint(job.job_id, completed_checkpoints(job.job_id) + 2)
    t0 = kill_jobmanager_and_restart()
    resumed = submit("flink_jobs.profiles", env, detached=True, savepoint=_latest_checkpoint(job.job_id))
    try:
        recovery = wait_recovered(resumed.job_id, t0)
        diff = profiles_outputs_differences(bootstrap, session, run, feed)
    finally:
        cancel(resumed.job_id)
    chaos_report.append(
        {
            "scenario": "profiles: kill JobManager, resume",
            "faults": 1,
            "compared": len(feed.values),
            "mismatches": mismatch_count(diff),
            "recovery_s": [recovery],
        }
    )
    assert diff == []


@pytest.mark.chaos_long
def test_profiles_job_stopped_with_savepoints_and_resumed_at_parallelism_one_then_two_is_exact(
    local_stack, session, profiles_run, chaos_report
):
    """Stop-with-savepoint (no drain) while events flow and resume at parallelism 1; once
    every event is consumed, stop again and resume at 2. Profiles are written 60 s after
    they change (far longer than it takes to see the input consumed, even on a loaded
    machine where checkpoints commit the offsets late), so the second savepoint holds profiles newer than Cassandra, with their
    coalescing timers pending: Cassandra differs from the oracle at that stop (checked), and
    after it no event arrives, so only the restored state and timers, redistributed over two
    subtasks, can make Cassandra (and journey.identity) equal to the oracle."""
    from local.kafka_read import group_lag
    from tests.profiles_harness import differences, read_cassandra

    bootstrap, run = local_stack, profiles_run
    savepoints = f"file://{stack.DATA / 'flink' / 'savepoints'}"
    env = dict(JOURNEY_PARALLELISM="2", JOURNEY_COALESCE_MS="60000")
    group = run.job_env(bootstrap)["JOURNEY_GROUP_ID"]
    job = submit("flink_jobs.profiles", run.job_env(bootstrap, **env), detached=True)
    wait_state(job.job_id, {"RUNNING"}, timeout_s=120)
    feed = NormalizedFeed(bootstrap, run.topics.normalized, persons=150, seed=409)
    recoveries, behind_at_stop = [], []
    try:
        for parallelism in ("1", "2"):
            if parallelism == "1":
                wait_checkpoint(job.job_id, completed_checkpoints(job.job_id) + 1)
            else:  # every event consumed and checkpointed: nothing new arrives after this stop
                feed.join()
                wait_until(
                    lambda: group_lag(bootstrap, group, run.topics.normalized),
                    180,
                    1,
                    "the job's input consumed (group lag 0)",
                    until=lambda lag: lag == 0,
                )
            t0 = time.monotonic()
            path = stop_with_savepoint(job.job_id, savepoints)
            if parallelism == "2":
                behind_at_stop = differences(read_cassandra(session, run.keyspace), feed.events())
            env["JOURNEY_PARALLELISM"] = parallelism
            job = submit("flink_jobs.profiles", run.job_env(bootstrap, **env), detached=True, savepoint=path)
            recoveries.append(wait_recovered(job.job_id, t0))
        diff = profiles_outputs_differences(bootstrap, session, run, feed)
    finally:
        cancel(job.job_id)
    chaos_report.append(
        {
            "scenario": "profiles: savepoint 2->1->2",
            "faults": 2,
            "compared": len(feed.values),
            "mismatches": mismatch_count(diff),
            "recovery_s": recoveries,
        }
    )
    print(f"\nCassandra at the last stop (pending in the savepoint): {behind_at_stop}")
    assert behind_at_stop, "the last savepoint should hold profile changes not yet in Cassandra"
    assert diff == []


def _checkpoint_stats(job_id: str) -> dict:
    from local.flink_cluster import rest

    ck = rest(f"/jobs/{job_id}/checkpoints")
    return {
        "completed": ck["counts"]["completed"],
        "failed": ck["counts"]["failed"],
        "max_duration_ms": ck["summary"]["end_to_end_duration"]["max"],
    }


@pytest.mark.chaos_long
def test_a_slow_python_operator_under_a_backlog_keeps_checkpoints_inside_the_timeout(local_stack, chaos_report):
    """20 ms per record in a Python operator and a backlog of ~1,400 records (about 14 s of
    work per subtask): unaligned checkpoints overtake the queued records, so every checkpoint
    completes well inside a 10 s timeout while the backlog drains, and the output is exact."""
    bootstrap = local_stack
    topics = Topics.create(bootstrap, "slow")
    feed = Feed(bootstrap, topics, persons=20, seed=406)
    feed.join()
    timeout_ms = 10_000
    job = submit(
        "tests.chaos.slow_ingestion",
        topics.job_env(bootstrap, SLOW_MS="20", JOURNEY_CHECKPOINT_TIMEOUT_MS=str(timeout_ms)),
        detached=True,
    )
    t0 = time.monotonic()
    try:
        wait_state(job.job_id, {"RUNNING"}, timeout_s=120)
        wait_checkpoint(job.job_id, 0)
        failed_at_start = _checkpoint_stats(job.job_id)["failed"]  # triggered before every task ran
        wait_for_count(bootstrap, topics.normalized, len(feed.dataset.truth.valid_event_ids), 300)
        drained_s = time.monotonic() - t0
        stats = _checkpoint_stats(job.job_id)
        cmp = compare_with_truth(
            feed.dataset, read_committed(bootstrap, topics.normalized), read_committed(bootstrap, topics.dlq)
        )
    finally:
        cancel(job.job_id)
    chaos_report.append(
        {
            "scenario": "slow operator 20 ms/record",
            "faults": 0,
            "compared": cmp.compared,
            "mismatches": cmp.mismatches,
            "recovery_s": [],
        }
    )
    print(f"\nslow operator: backlog drained in {drained_s:.0f} s, checkpoints {stats}")
    assert stats["completed"] >= 3 and stats["failed"] == failed_at_start
    assert stats["max_duration_ms"] < timeout_ms / 2
    assert cmp.mismatches == 0


@pytest.mark.chaos_long
def test_a_record_slower_than_the_checkpoint_timeout_fails_the_job_with_a_clear_message(local_stack):
    """30 s per record against a 2 s checkpoint timeout: no checkpoint can complete. The job
    must not sit RUNNING silently: after 3 expired checkpoints in a row (the tolerable-failure
    threshold) it fails, and the reason names the checkpoint threshold. (With 4 s per record
    every other checkpoint still completes: the job progresses and keeps running, rightly.)"""
    from local.flink_cluster import rest

    bootstrap = local_stack
    topics = Topics.create(bootstrap, "stall")
    Feed(bootstrap, topics, persons=2, seed=407).join()
    job = submit(
        "tests.chaos.slow_ingestion",
        topics.job_env(bootstrap, SLOW_MS="30000", JOURNEY_CHECKPOINT_TIMEOUT_MS="2000", JOURNEY_RESTART_ATTEMPTS="0"),
        detached=True,
    )
    try:
        state = wait_state(job.job_id, {"FAILED"}, timeout_s=180)
        entries = rest(f"/jobs/{job.job_id}/exceptions").get("exceptionHistory", {}).get("entries") or []
        reason = "\n".join(e.get("stacktrace", "") for e in entries)
    finally:
        cancel(job.job_id)
    assert state == "FAILED"
    assert "Exceeded checkpoint tolerable failure threshold" in reason, reason[:3000]
    stats = _checkpoint_stats(job.job_id)
    assert stats["failed"] >= 3


@pytest.mark.chaos_long
def test_an_erasure_interrupted_by_taskmanager_kills_completes_and_a_replay_never_resurrects(
    local_stack, session, profiles_run, chaos_report
):
    """docs/privacy.md, "Erasure": a TaskManager is killed while an erasure request waits for
    event time to reach it, and again as soon as the router reports it carried out (its
    deletions, the journeys' and the learner's, not all done yet). After the restarts every
    output still equals the oracles (the erased persons' rows gone, everything else exact),
    no row of theirs is left, the ledger holds exactly their tombstones and each stage's audit
    row is there; then a profiles job started with no state on the same input drops each of
    their events and writes nothing about them."""
    from tests.erasure_checks import (
        ROUTER_COUNTERS,
        mentions,
        replay_profiles,
        rows_of,
        totals,
        traces,
    )
    from generator.erasure_truth import erased_event_ids, erased_ids, erased_nodes, erasures
    from models.erasure import tombstone_key

    bootstrap, run = local_stack, profiles_run
    job = submit("flink_jobs.profiles", run.job_env(bootstrap), detached=True)
    recoveries, phases = [], []
    try:
        wait_state(job.job_id, {"RUNNING"}, timeout_s=120)
        feed = NormalizedFeed(bootstrap, run.topics.normalized, persons=150, seed=411, rate=250)
        for phase, ready in (
            ("request pending", lambda c: c["erasure_requests"] > c["erasures"]),
            ("erasure carried out", lambda c: c["erasures"] >= 1),
        ):
            seen = wait_until(lambda: totals(job.job_id, ROUTER_COUNTERS), 240, 0.5, phase, until=ready)
            phases.append(f"{phase} ({seen['erasure_requests']} requests, {seen['erasures']} carried out)")
            recoveries.append(kill_taskmanager(job.job_id, len(recoveries)))
        diff = profiles_outputs_differences(bootstrap, session, run, feed)
        events = feed.events()
        oracle = erasures(events)
        requests = {r for er in oracle for r in er.request_ids}
        audited = wait_until(
            lambda: {(r.ref, r.stage) for r in session.execute(f"SELECT ref, stage FROM {run.keyspace}.privacy_audit")},
            120,
            2,
            "each stage's audit row of each request",
            until=lambda got: {(r, s) for r in requests for s in ("profiles", "journeys", "models")} <= got,
        )
        rows = rows_of(session, run.keyspace)
    finally:
        cancel(job.job_id)
    ids, nodes = erased_ids(events), erased_nodes(events)
    replay = replay_profiles(bootstrap, session, run.topics.normalized, run.keyspace, events)
    written = [(k, r) for k, recs in replay.topics.items() for r in recs if mentions(r, ids, nodes)]
    problems = diff + replay.differences + traces(rows, ids, nodes) + traces(replay.rows, ids, nodes)
    problems += [f"written in the replay: {w}" for w in written[:3]]
    if {r.tombstone for r in rows["erased_identifiers"]} != {tombstone_key(n) for n in nodes}:
        problems.append("the ledger differs from the oracle's tombstones")
    if replay.counters["erased"] != len(erased_event_ids(events)):
        problems.append(
            f"the replay dropped {replay.counters['erased']} events, the oracle says {len(erased_event_ids(events))}"
        )
    chaos_report.append(
        {
            "scenario": "profiles: erasure, kill TM x2, replay",
            "faults": len(recoveries),
            "compared": len(feed.values),
            "mismatches": len(problems),
            "recovery_s": recoveries,
        }
    )
    print(
        f"\nkills at: {'; '.join(phases)}; {len(oracle)} erasures, {len(audited)} audit rows; replay {replay.counters}"
    )
    assert len(recoveries) == 2 and oracle
    assert problems == []


def job_restarts(job_id: str) -> int:
    """How often Flink restarted the job (its ``numRestarts`` metric)."""
    from local.flink_cluster import rest

    got = rest(f"/jobs/{job_id}/metrics?get=numRestarts")
    return int(float(got[0]["value"])) if got else 0


def stop_cassandra_for(seconds: float, session) -> float:
    """Stop Cassandra (SIGTERM, as an operator's restart would), keep it down ``seconds``, start
    it again; returns the seconds until it answered CQL again after the stop (and the test's
    own ``session`` reconnected)."""
    cassandra = stack.COMPONENTS["cassandra"]
    t0 = time.monotonic()
    cassandra.stop()
    time.sleep(seconds)
    cassandra.start()
    _reconnected(session)
    return time.monotonic() - t0


def _reconnected(session) -> None:
    """Wait until the test's own session answers again (its driver retries a host marked down
    at most 10 s apart: state.cassandra_schema.connect)."""

    def answers() -> bool:
        try:
            session.execute("SELECT release_version FROM system.local", timeout=5)
            return True
        except Exception:
            return False

    wait_until(answers, 120, 1, "the test's Cassandra session answering again")


def restart_kafka() -> float:
    """Stop the broker (SIGTERM, controlled shutdown) and start it again at once; returns the
    seconds it was unavailable."""
    kafka = stack.COMPONENTS["kafka"]
    t0 = time.monotonic()
    kafka.stop()
    kafka.start()
    return time.monotonic() - t0


def pause_cassandra_for(seconds: float, session) -> float:
    """SIGSTOP Cassandra for ``seconds`` (a host or network stall: connections stay open and
    requests hang past the driver's 10 s request timeout), then SIGCONT; returns ``seconds``."""
    pid = stack.server_pid("cassandra")
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        os.kill(pid, signal.SIGCONT)
    _reconnected(session)
    return seconds


def _profiles_under_a_fault(
    local_stack, session, run, chaos_report, scenario: str, seed: int, fault, **env: str
) -> None:
    """The profiles job at parallelism 2 (settings ``env`` on top of the run's) with events
    flowing; after a completed checkpoint ``fault()`` runs (it returns when the component is
    back, and how long it was out). Then: seconds from the component's return until every
    task runs and a checkpoint completes again, the job's restarts, and Cassandra,
    journey.identity, the journeys, segments and scores equal to the oracle once the feed is
    done."""
    bootstrap = local_stack
    job = submit("flink_jobs.profiles", run.job_env(bootstrap, **env), detached=True)
    try:
        wait_state(job.job_id, {"RUNNING"}, timeout_s=120)
        feed = NormalizedFeed(bootstrap, run.topics.normalized, persons=150, seed=seed)
        wait_checkpoint(job.job_id, completed_checkpoints(job.job_id))
        before = job_restarts(job.job_id)
        outage = fault()
        back = time.monotonic()
        wait_until(
            lambda: all_tasks_running(job.job_id), 600, 1, f"{scenario}: every task of {job.job_id} running again"
        )
        wait_checkpoint(job.job_id, completed_checkpoints(job.job_id), timeout_s=300)
        recovery = time.monotonic() - back
        restarts = job_restarts(job.job_id) - before
        diff = profiles_outputs_differences(bootstrap, session, run, feed)
        caught_up = time.monotonic() - back
    finally:
        cancel(job.job_id)
    print(
        f"\n{scenario}: out {outage:.1f} s; after it, running with a checkpoint in {recovery:.1f} s"
        f" ({restarts} job restarts); equal to the oracle {caught_up:.1f} s after it"
    )
    chaos_report.append(
        {
            "scenario": scenario,
            "faults": 1,
            "compared": len(feed.values),
            "mismatches": mismatch_count(diff),
            "recovery_s": [recovery],
            "outage_s": outage,
            "restarts": restarts,
            "caught_up_s": caught_up,
        }
    )
    assert diff == []


@pytest.mark.chaos_long
def test_profiles_job_with_cassandra_stopped_for_60_s_catches_up_and_is_exact(
    local_stack, session, profiles_run, chaos_report
):
    _profiles_under_a_fault(
        local_stack,
        session,
        profiles_run,
        chaos_report,
        "profiles: Cassandra down 60 s",
        411,
        lambda: stop_cassandra_for(60, session),
    )


@pytest.mark.chaos_long
def test_profiles_job_with_the_kafka_broker_restarted_is_exact(local_stack, session, profiles_run, chaos_report):
    """The job keeps running (its Kafka clients retry); its sources fetch nothing while the
    broker is down. That silence is longer than the default idle advance (5 s), and the clock
    would take it for the end of the input (docs/journeys.md, Idle advance): the journeys
    then treat the held-up events as late. So this run sets JOURNEY_IDLE_ADVANCE_MS above the
    outage, as docs/operations.md advises for the stalls a deployment expects."""
    _profiles_under_a_fault(
        local_stack,
        session,
        profiles_run,
        chaos_report,
        "profiles: Kafka broker restart",
        412,
        restart_kafka,
        JOURNEY_IDLE_ADVANCE_MS="30000",
    )


@pytest.mark.chaos_long
def test_profiles_job_with_cassandra_paused_past_the_write_timeout_is_exact(
    local_stack, session, profiles_run, chaos_report
):
    _profiles_under_a_fault(
        local_stack,
        session,
        profiles_run,
        chaos_report,
        "profiles: Cassandra paused 25 s",
        413,
        lambda: pause_cassandra_for(25, session),
    )
