"""The project's long-running jobs on the local cluster, started so that no event is processed twice.

Where the exactly-once guarantee lives across the project's own commands (``make demo``, a
second ``make demo``, ``make ingest``, ``make profiles``, ``make down`` / ``make up``):

* **Inside a job**: Flink's exactly-once checkpoints (Kafka transactions committed with each
  checkpoint, source offsets and dedupe / identity / profile state in the same checkpoint).
* **Between runs of a job**: the job's state. Every command goes through :func:`ensure_job`,
  which leaves a running job alone, or else resumes it from where the last recorded run
  stopped (:func:`restore_point`: the savepoint it was stopped with, or its newest retained
  checkpoint), or from a savepoint given by the user. ``--restart`` stops a running job with a
  savepoint and resumes it from there (new settings or code). There is one ingestion job and one profiles job per stack,
  both unbounded; ``make demo`` feeds the running ingestion job instead of starting a bounded
  one whose state (and final offsets) would end with it.
* **When the state is gone** (checkpoints deleted, a new checkout on an old stack): a fresh
  start would re-read what the lost state had already processed (the committed consumer
  offsets lag, and the dedupe state is empty) and emit it again. :func:`ensure_job` refuses it
  when the job's consumer group has committed offsets or its output topics hold records, and
  says what to do: resume from a savepoint, or ``make reset`` to start the stack over.

Jobs are recorded (``.stack/jobs/<job name>.json``, newest last) only once every task runs;
a job that fails to start is cancelled and reported with its root cause, never recorded.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

from local import stack
from local.polling import WaitTimeout, wait_until
from local.flink_cluster import (
    FlinkJobError,
    cancel,
    latest_checkpoint,
    rest,
    root_exception,
    stack_job_env,
    stop_with_savepoint,
    submit,
)
from models.config import IngestConfig, ProfilesConfig

T = TypeVar("T")
ACTIVE_STATES = {"CREATED", "INITIALIZING", "RUNNING", "RESTARTING", "RECONCILING"}


class AlreadyProcessed(FlinkJobError):
    """A fresh start would process input again that a job with lost state already processed."""


def demo_salt() -> str:
    """A per-stack random PII salt kept in ``.stack/`` (a secret in k8s; never a constant in code)."""
    path = stack.STACK / "demo-pii-salt"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(24))
        path.chmod(0o600)
    return path.read_text().strip()


#: the journeys stage's event-time bound on this stack (JOURNEY_OUT_OF_ORDERNESS_MS unless set):
#: the local stack is fed generated history, weeks of event time produced in seconds, which the
#: parallel jobs and the read of a backlog interleave in any order; a bound beyond the calendar
#: makes every decision wait for the idle tick at the end of the replay, then come out in exact
#: event-time order (docs/journeys.md, Time). Live traffic uses the job's default (10 min).
REPLAY_OUT_OF_ORDERNESS_MS = 30 * 24 * 3600 * 1000


@dataclass(frozen=True)
class JobKind:
    """How to run one of the project's jobs and what proves it already processed input."""

    module: str
    config: Callable[[Mapping[str, str]], Any]  # the job's config from JOURNEY_* settings
    inputs: Callable[[Any], str]  # the regex of the topics the job reads
    outputs: Callable[[Any], tuple[str, ...]]


KINDS: dict[str, JobKind] = {
    "ingestion": JobKind(
        "flink_jobs.ingestion",
        IngestConfig.from_env,
        lambda cfg: cfg.input_topic_pattern,
        lambda cfg: (cfg.output_topic, cfg.dlq_topic),
    ),
    "profiles": JobKind(
        "flink_jobs.profiles",
        ProfilesConfig.from_env,
        lambda cfg: cfg.source_topic_pattern(),
        lambda cfg: (cfg.identity_topic, cfg.sessions_topic, cfg.triggers_topic),
    ),
}


def _record_path(job_name: str) -> Path:
    return stack.STACK / "jobs" / f"{job_name}.json"


def _records(job_name: str) -> list[dict[str, str | None]]:
    """The jobs started under ``job_name`` on this stack that reached RUNNING, oldest first:
    ``id``, ``restored_from`` (checkpoint or savepoint path, None for a fresh start) and
    ``stopped_with`` (the savepoint it was stopped with, if it was)."""
    path = _record_path(job_name)
    legacy = stack.STACK / "demo" / "profiles-job"  # where make profiles kept its last job before
    jobs: list[dict[str, str | None]] = []
    if job_name == "journey-profiles" and legacy.exists():
        jobs.append({"id": legacy.read_text().strip(), "restored_from": None, "stopped_with": None})
    if path.exists():
        jobs += json.loads(path.read_text())["jobs"]
    return jobs


def recorded_jobs(job_name: str) -> list[str]:
    """Ids of the jobs started under ``job_name`` on this stack that reached RUNNING, oldest first."""
    return [str(j["id"]) for j in _records(job_name)]


def _write_records(job_name: str, jobs: list[dict[str, str | None]]) -> None:
    path = _record_path(job_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"jobs": jobs}, indent=1))
    tmp.replace(path)


def restore_point(job_name: str) -> str | None:
    """Where the job's state continues: for the newest recorded job, the savepoint it was
    stopped with, else its newest retained checkpoint, else what it was itself restored from
    (it stopped before its first checkpoint, so it committed nothing: its Kafka transactions
    commit with checkpoints); None if no recorded job has any.
    """
    for job in reversed(_records(job_name)):
        if job.get("stopped_with"):
            return str(job["stopped_with"])
        chk = latest_checkpoint(str(job["id"]))
        if chk is not None:
            return str(chk)
        if job.get("restored_from"):
            return str(job["restored_from"])
    return None


def active_job(job_name: str) -> str | None:
    """The id of the job named ``job_name`` that is running or about to, if any."""
    for j in rest("/jobs/overview")["jobs"]:
        if j["name"] == job_name and j["state"] in ACTIVE_STATES:
            return str(j["jid"])
    return None


def processed_before(
    bootstrap: str, group_id: str, input_pattern: str, outputs: tuple[str, ...], auth: Any = None
) -> list[str]:
    """Evidence that a job with this consumer group, input topics and output topics ran before.

    Reads the group's committed offsets with a plain consumer (``committed()`` does not join
    the group), and the output topics' watermarks.
    """
    from confluent_kafka import Consumer, TopicPartition

    evidence: list[str] = []
    from state.kafka_clients import kafka_client_config

    c = Consumer(kafka_client_config(bootstrap, {"group.id": group_id, "enable.auto.commit": False}, auth))
    try:
        md = c.list_topics(timeout=10)
        inputs = [
            TopicPartition(t, p)
            for t in sorted(md.topics)
            if re.fullmatch(input_pattern, t)
            for p in md.topics[t].partitions
        ]
        committed = [tp for tp in _retried(lambda: c.committed(inputs, timeout=10)) if tp.offset >= 0] if inputs else []
        if committed:
            evidence.append(
                f"consumer group {group_id!r} has committed offsets on "
                f"{len({tp.topic for tp in committed})} input topic(s)"
            )
        for topic in outputs:
            if topic not in md.topics:
                continue
            held = sum(
                max(0, hi - lo)
                for lo, hi in (
                    _retried(lambda tp=TopicPartition(topic, p): c.get_watermark_offsets(tp, timeout=10))
                    for p in md.topics[topic].partitions
                )
            )
            if held:
                evidence.append(f"output topic {topic!r} has {held} offsets written")
    finally:
        c.close()
    return evidence


def _retried(call: Callable[[], T], timeout_s: float = 30) -> T:
    """``call()``, retried while the broker is not ready for it yet (a new topic's leader being
    elected, the group coordinator loading after a start)."""
    from confluent_kafka import KafkaException

    return wait_until(
        call, timeout_s, 0.5, "the Kafka broker to answer", until=lambda _: True, retry_on=(KafkaException,)
    )


def wait_all_tasks_running(job_id: str, timeout_s: float = 180) -> None:
    """Until every task of the job runs; a job that fails or stalls (no slots) is cancelled."""

    def progress() -> tuple[str, str]:
        job = rest(f"/jobs/{job_id}")
        if job["state"] in ("FAILED", "CANCELED", "FINISHED"):
            raise FlinkJobError(f"job {job_id} ended {job['state']} while starting: {root_exception(job_id)}")
        waiting = ", ".join(f"{v['name']}: {v['status']}" for v in job["vertices"] if v["status"] != "RUNNING")
        return job["state"], waiting

    try:
        wait_until(progress, timeout_s, 1, f"every task of job {job_id} running", until=lambda p: p == ("RUNNING", ""))
    except WaitTimeout as e:
        cancel(job_id)
        overview = rest("/overview")
        state, waiting = e.last
        raise FlinkJobError(
            f"job {job_id} not running after {timeout_s:.0f}s (state {state}; waiting: {waiting}); "
            f"cancelled. Free slots: {overview['slots-available']} of {overview['slots-total']}. "
            f"{root_exception(job_id)}"
        ) from None


def ensure_job(
    kind: str,
    job_env: dict[str, str] | None = None,
    savepoint: str | None = None,
    allow_fresh: bool = False,
    progress: Callable[[str], None] = lambda s: None,
    start_timeout_s: float = 180,
    restart: bool = False,
) -> tuple[str, str]:
    """Make sure the job runs with its state; returns (job id, "running" | "resumed" | "started").

    Parameters
    ----------
    kind:
        ``"ingestion"`` or ``"profiles"``.
    job_env:
        ``JOURNEY_*`` settings of the job (the stack's Kafka and Cassandra addresses and, for
        ingestion, the stack's PII salt are added unless given).
    savepoint:
        Resume from this savepoint or checkpoint path instead of the newest retained checkpoint.
    allow_fresh:
        Start without state even though the job processed input before (it will emit that
        input again); only for when that is what you want.
    start_timeout_s:
        How long the job may take to get every task running before it is cancelled.
    restart:
        Stop a running job with a savepoint and resume it from there (new code or settings:
        the local form of a savepoint upgrade).

    Raises
    ------
    AlreadyProcessed
        No state to resume from, but the job's consumer group or outputs show earlier runs.
    FlinkJobError
        The submission failed or the job did not get all its tasks running.
    """
    spec = KINDS[kind]
    env = stack_job_env(job_env)
    if kind == "ingestion":
        env.setdefault("JOURNEY_PII_SALT", demo_salt())
    else:
        env.setdefault("JOURNEY_OUT_OF_ORDERNESS_MS", str(REPLAY_OUT_OF_ORDERNESS_MS))
    cfg = spec.config(env)
    name = cfg.job_name
    active = active_job(name)
    if active is not None and restart:
        progress(f"stopping {name} ({active}) with a savepoint")
        stopped_with = stop_with_savepoint(active, f"file://{stack.DATA / 'flink' / 'savepoints'}")
        jobs = _records(name)
        for job in jobs:
            if job["id"] == active:
                job["stopped_with"] = stopped_with
        _write_records(name, jobs)
        savepoint = savepoint or stopped_with
    elif active is not None:
        return active, "running"
    restore = savepoint or restore_point(name)
    if restore is None and not allow_fresh:
        evidence = processed_before(
            cfg.bootstrap_servers,
            cfg.group_id,
            spec.inputs(cfg),
            spec.outputs(cfg),
            auth=cfg.kafka_auth(),
        )
        if evidence:
            raise AlreadyProcessed(
                f"{name} has no checkpoint or savepoint to resume from, but it ran before here: "
                f"{'; '.join(evidence)}. A fresh start would emit already processed events again. "
                f"Resume from a savepoint (--savepoint PATH), or wipe the local stack with `make reset`."
            )
    progress(f"{'resuming' if restore else 'starting'} {name}" + (f" from {restore}" if restore else ""))
    sub = submit(spec.module, env, detached=True, savepoint=str(restore) if restore else None)
    wait_all_tasks_running(sub.job_id, start_timeout_s)
    _write_records(name, [*_records(name), {"id": sub.job_id, "restored_from": restore, "stopped_with": None}])
    return sub.job_id, "resumed" if restore else "started"


def main_for(kind: str, argv: list[str] | None, doc: str) -> int:
    """The ``make ingest`` / ``make profiles`` command line."""
    import argparse
    import os
    import sys

    ap = argparse.ArgumentParser(description=doc)
    ap.add_argument("--savepoint", help="resume from this savepoint or retained checkpoint path")
    ap.add_argument(
        "--restart",
        action="store_true",
        help="stop the running job with a savepoint and resume it from there (new settings or code)",
    )
    ap.add_argument(
        "--allow-fresh-start",
        action="store_true",
        help="start without state although the job processed input before (emits it again)",
    )
    args = ap.parse_args(argv)
    for name in ("kafka", "cassandra", "flink"):
        stack.COMPONENTS[name].start()
    job_env = {k: v for k, v in os.environ.items() if k.startswith("JOURNEY_")}
    from state.cassandra_schema import apply_schema

    # both jobs need the tables (ingestion reads the erasure ledger when it starts)
    apply_schema("127.0.0.1", port=stack.CASSANDRA_PORT, keyspace=job_env.get("JOURNEY_KEYSPACE", "journey"))
    try:
        jid, how = ensure_job(
            kind,
            job_env,
            savepoint=args.savepoint,
            allow_fresh=args.allow_fresh_start,
            progress=lambda s: print(f"  {s}", flush=True),
            restart=args.restart,
        )
    except FlinkJobError as e:
        print(f"{kind}: {e}", file=sys.stderr)
        return 2
    from local.flink_cluster import REST

    print(f"{kind} job {jid} {how}: {REST}/#/job/running/{jid}/overview")
    return 0
