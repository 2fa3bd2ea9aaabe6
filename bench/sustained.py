"""``make bench``: sustained throughput, bounded-lag load and latency of the jobs on the real stack.

What a user asks of a streaming job, measured on the local stack (Kafka, Cassandra, the Flink
standalone cluster: 2 TaskManagers, each one embedded CPython) with exactly-once on:

* **drain rate** -- a large backlog is loaded into Kafka before a job starts; after the job's
  first committed checkpoint and ``--warmup-s`` more, the rate is the slope (least squares)
  of the job's committed input offsets (its consumer group, committed by Flink on each
  completed checkpoint: work that is done exactly once) over ``--window-s`` seconds. The
  run ends there (the backlog need not drain); ``drained_before_end`` says when it did.
  Stages: ``ingestion`` (raw events -> normalized), ``profiles`` (a normalized backlog
  through identity, profiles, journeys, segments and models, Cassandra writes included),
  ``pipeline`` (both jobs at once on the raw backlog; rate of the profiles job's input).
  Each at every ``--parallelism``. Read from Flink's REST API during the window: each
  vertex's busy and back-pressured time, the checkpoints (count, duration p50/max, size),
  and the jobs' counters (Cassandra requests and mutations per event).
* **offered load** -- the whole pipeline at the highest parallelism, fed by a paced producer
  at fractions of its drain rate; for each step the records waiting (raw not yet committed
  by ingestion + normalized not yet committed by profiles) at a third and at the end of the
  step: bounded when it grew by less than 2 s of input. Achieved = offered - growth rate.
* **latency** -- during the half-rate step, probe events (a new cookie each) are produced
  among the load and the time until the probe's profile row is visible in Cassandra
  (polled every 20 ms) is recorded: p50/p99, samples kept for the CDF plot.
* **baselines in the same run** -- the same ``models/`` logic in a plain loop (the CPython
  ceiling on one core) and the hand-written alternative (:mod:`bench.handwritten`: one
  confluent-kafka consumer, cassandra-driver writes, no guarantees).
* **profiles of the TaskManagers** (``--profile-s``) -- py-spy samples each TaskManager's
  embedded Python during a drain window; the top frames by own time are kept.

Writes ``bench/results/sustained.json``; ``python -m bench.report`` turns it into plots and
the README table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from statistics import quantiles
from typing import Any, Callable, NamedTuple

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from generator.synth import generate
from k8s.topics import ensure_topics
from local import stack
from local.flink_cluster import cancel, counter_total, operator_counters, rest, root_exception, submit, wait_state
from local.jobs import REPLAY_OUT_OF_ORDERNESS_MS
from models.avro_codec import SchemaCatalog
from models.events import CHANNELS
from models.identity import IdentityRules, canonical_profile_id
from models.ingest import Accepted, IngestSettings, Ingestor, SourceRecord
from models.ingest import DeadLettered as Rejected
from state.cassandra_schema import apply_schema, connect

RESULTS = Path(__file__).resolve().parent / "results"
BOOTSTRAP = f"127.0.0.1:{stack.KAFKA_PORT}"
SALT = "bench-salt-0123456789abcdef"
JOURNEY_OUTPUTS = ("sessions", "triggers", "late", "segments", "scores", "control_results")
PROFILE_COUNTERS = ["events", "cassandra_requests", "cassandra_mutations"]
INGEST_COUNTERS = ["received", "emitted", "dead_lettered", "duplicates"]


def say(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------- Kafka offsets


def _partitions(admin: AdminClient, topics: list[str]) -> list[TopicPartition]:
    meta = admin.list_topics(timeout=10).topics
    return [TopicPartition(t, p) for t in topics for p in meta[t].partitions]


class Offsets:
    """Committed offsets of a consumer group and end offsets of topics (records, summed)."""

    def __init__(self) -> None:
        self.admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
        self._consumers: dict[str, Consumer] = {}

    def _consumer(self, group: str) -> Consumer:
        if group not in self._consumers:
            self._consumers[group] = Consumer(
                {"bootstrap.servers": BOOTSTRAP, "group.id": group, "enable.auto.commit": False}
            )
        return self._consumers[group]

    def committed(self, group: str, topics: list[str]) -> int:
        parts = self._consumer(group).committed(_partitions(self.admin, topics), timeout=10)
        return sum(max(tp.offset, 0) for tp in parts)

    def end(self, topics: list[str]) -> int:
        c = self._consumer("bench-offsets")
        return sum(c.get_watermark_offsets(tp, timeout=10)[1] for tp in _partitions(self.admin, topics))

    def close(self) -> None:
        for c in self._consumers.values():
            c.close()


def slope(points: list[tuple[float, int]]) -> float:
    """Least-squares slope of (t, n) points (records per second).

    >>> slope([(0.0, 0), (1.0, 10), (2.0, 20)])
    10.0
    """
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    den = sum((t - mt) ** 2 for t, _ in points)
    return sum((t - mt) * (v - mv) for t, v in points) / den if den else float("nan")


# ---------------------------------------------------------------- Flink REST


def vertex_ratios(job_id: str) -> dict[str, dict[str, float]]:
    """Per vertex: busy and back-pressured share of time (avg over subtasks, 0..1)."""
    out: dict[str, dict[str, float]] = {}
    for v in rest(f"/jobs/{job_id}")["vertices"]:
        got = rest(
            f"/jobs/{job_id}/vertices/{v['id']}/subtasks/metrics"
            "?get=busyTimeMsPerSecond,backPressuredTimeMsPerSecond&agg=avg"
        )
        vals = {m["id"]: m.get("avg") for m in got}
        out[v["name"]] = {
            "busy": _ratio(vals.get("busyTimeMsPerSecond")),
            "backpressured": _ratio(vals.get("backPressuredTimeMsPerSecond")),
        }
    return out


def _ratio(ms_per_s: Any) -> float:
    try:
        x = float(ms_per_s) / 1000
    except (TypeError, ValueError):
        return float("nan")
    return x if math.isfinite(x) else float("nan")


def checkpoint_stats(job_id: str) -> dict[str, Any]:
    c = rest(f"/jobs/{job_id}/checkpoints")
    s = c.get("summary", {})
    dur = s.get("end_to_end_duration", {})
    size = s.get("checkpointed_size") or s.get("state_size") or {}
    latest = (c.get("latest") or {}).get("completed") or {}
    failures = [h.get("failure_message", "")[:300] for h in c.get("history", []) if h.get("status") == "FAILED"]
    return {
        "failure_messages": failures[:3],
        "count": c["counts"]["completed"],
        "failed": c["counts"].get("failed", 0),
        "duration_ms_p50": dur.get("p50"),
        "duration_ms_max": dur.get("max"),
        "size_bytes_avg": size.get("avg"),
        "size_bytes_last": latest.get("state_size") or latest.get("checkpointed_size"),
    }


def _mean_ratios(samples: list[dict[str, dict[str, float]]]) -> tuple[dict[str, float], dict[str, float]]:
    busy: dict[str, list[float]] = {}
    bp: dict[str, list[float]] = {}
    for s in samples:
        for name, r in s.items():
            busy.setdefault(name, []).append(r["busy"])
            bp.setdefault(name, []).append(r["backpressured"])

    def mean(xs: list[float]) -> float:
        xs = [x for x in xs if not math.isnan(x)]
        return round(sum(xs) / len(xs), 3) if xs else float("nan")

    return {k: mean(v) for k, v in busy.items()}, {k: mean(v) for k, v in bp.items()}


# ---------------------------------------------------------------- py-spy


def pyspy_top(path: Path, top: int = 15) -> dict[str, Any]:
    """Own-time (leaf) and inclusive shares of frames in a py-spy ``--format raw`` file, as
    shares of the samples with a Python stack (``no_python`` counts those without one)."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = no_python = 0
    for line in path.read_text().splitlines():
        stack_s, _, n_s = line.rpartition(" ")
        if not n_s.isdigit():
            continue
        if not stack_s.strip():
            no_python += int(n_s)
            continue
        n = int(n_s)
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack_s.split(";")]
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    share = lambda c: [(f, round(k / total, 3)) for f, k in c.most_common(top)] if total else []  # noqa: E731
    ours = Counter({f: k for f, k in incl.items() if re.search(r"\((models|operators|state|flink_jobs)/", f)})
    return {"samples": total, "no_python": no_python, "own": share(own), "inclusive_project": share(ours)}


def profile_taskmanagers(seconds: int, label: str) -> dict[str, Any]:
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        return {"error": "py-spy not installed (pip install py-spy)"}
    outdir = RESULTS / "pyspy"
    outdir.mkdir(parents=True, exist_ok=True)
    procs = []
    for i, pid in enumerate(stack.flink_pids("taskexecutor")):
        out = outdir / f"{label}-tm{i}.txt"
        out.unlink(missing_ok=True)  # never read an earlier run's profile as this one's
        cmd = [exe, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "250"]
        cmd += ["--format", "raw", "--nonblocking", "--output", str(out)]
        procs.append((out, subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
    result = {}
    for i, (out, p) in enumerate(procs):
        try:
            p.wait(timeout=seconds + 60)
        except subprocess.TimeoutExpired:  # seen once under overload: the measurement goes on
            p.kill()
            result[f"tm{i}"] = {"error": f"py-spy did not finish within {seconds + 60} s"}
            continue
        result[f"tm{i}"] = pyspy_top(out) if out.exists() else {"error": f"py-spy exit {p.returncode}"}
    return result


# ---------------------------------------------------------------- the data


@dataclass
class Backlog:
    """A generated dataset loaded once: raw events per channel and their normalized events."""

    prefix: str
    raw_values: list[tuple[str, bytes]]  # (channel topic suffix, value)
    normalized: list[bytes]
    produced_raw: int = 0
    produced_normalized: int = 0

    @property
    def raw_topics(self) -> list[str]:
        return [f"{self.prefix}.events.{c}" for c in CHANNELS]

    @property
    def normalized_topic(self) -> str:
        return f"{self.prefix}.normalized-in"


def make_backlog(persons: int, seed: int) -> Backlog:
    say(f"generating {persons} persons (seed {seed})")
    ds = generate(seed=seed, persons=persons)
    normalized = _normalized([_Raw(r.topic, r.value) for r in ds.records])
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    b = Backlog(prefix, [(r.topic.rsplit(".", 1)[-1], r.value) for r in ds.records], normalized)
    ensure_topics(BOOTSTRAP, partitions=2, topics=(*b.raw_topics, b.normalized_topic))
    say(f"producing {len(b.raw_values):,} raw and {len(normalized):,} normalized records to {prefix}.*")
    produce_backlog([f"{prefix}.events.{channel}" for channel, _ in b.raw_values], [v for _, v in b.raw_values])
    produce_backlog([b.normalized_topic] * len(normalized), normalized)
    b.produced_raw, b.produced_normalized = len(b.raw_values), len(normalized)
    return b


def produce_backlog(topics: list[str], values: list[bytes]) -> None:
    """Each value to its topic, on partition ``i % 2`` by its position, in large batches;
    raises unless every record is delivered within 120 s."""
    p = Producer({"bootstrap.servers": BOOTSTRAP, "linger.ms": 20, "batch.size": 1_000_000})
    for i, (topic, v) in enumerate(zip(topics, values, strict=True)):
        _produce(p, topic, v, i)
    if p.flush(120) != 0:
        raise RuntimeError(f"bench: {len(values):,} records to {sorted(set(topics))} not delivered within 120 s")


def _produce(p: Producer, topic: str, value: bytes, i: int) -> None:
    while True:
        try:
            p.produce(topic, value=value, partition=i % 2)
            break
        except BufferError:
            p.poll(0.05)
    if i % 10_000 == 0:
        p.poll(0)


# ---------------------------------------------------------------- the jobs


def ingestion_env(run: str, inputs: str, parallelism: int, checkpoint_ms: int) -> dict[str, str]:
    return {
        "JOURNEY_PII_SALT": SALT,
        "JOURNEY_INPUT_TOPIC_PATTERN": re.escape(inputs) + r"\.events\..*",
        "JOURNEY_OUTPUT_TOPIC": f"{run}.normalized",
        "JOURNEY_DLQ_TOPIC": f"{run}.dlq",
        "JOURNEY_GROUP_ID": f"{run}-ingest",
        "JOURNEY_TRANSACTIONAL_ID_PREFIX": f"{run}-ingest",
        "JOURNEY_JOB_NAME": f"bench-ingestion-{run}",
        "JOURNEY_CHECKPOINT_INTERVAL_MS": str(checkpoint_ms),
        "JOURNEY_PARALLELISM": str(parallelism),
        "JOURNEY_ERASURE_LEDGER": "off",
    }


def profiles_env(run: str, input_topic: str, keyspace: str, parallelism: int, checkpoint_ms: int) -> dict[str, str]:
    journeys = {f"JOURNEY_{n.upper()}_TOPIC": f"{run}.{n.replace('_', '-')}" for n in JOURNEY_OUTPUTS}
    return {
        "JOURNEY_INPUT_TOPIC_PATTERN": re.escape(input_topic),
        "JOURNEY_IDENTITY_TOPIC": f"{run}.identity",
        "JOURNEY_FEEDBACK_TOPIC": f"{run}.profile-moves",
        "JOURNEY_CONTROL_TOPIC": f"{run}.control",
        "JOURNEY_GROUP_ID": f"{run}-profiles",
        "JOURNEY_TRANSACTIONAL_ID_PREFIX": f"{run}-profiles",
        "JOURNEY_JOB_NAME": f"bench-profiles-{run}",
        "JOURNEY_KEYSPACE": keyspace,
        "JOURNEY_CHECKPOINT_INTERVAL_MS": str(checkpoint_ms),
        "JOURNEY_PARALLELISM": str(parallelism),
        "JOURNEY_OUT_OF_ORDERNESS_MS": str(REPLAY_OUT_OF_ORDERNESS_MS),
        **journeys,
    }


@dataclass
class Deployment:
    """The jobs of one measurement with their topics and keyspace; :meth:`stop` cleans up."""

    run: str
    session: Any
    keyspace: str | None = None
    job_ids: list[str] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)

    def ingestion(self, inputs: str, parallelism: int, checkpoint_ms: int) -> str:
        topics = [f"{self.run}.normalized", f"{self.run}.dlq"]
        ensure_topics(BOOTSTRAP, partitions=2, topics=tuple(topics))
        self.topics += topics
        return self._start("flink_jobs.ingestion", ingestion_env(self.run, inputs, parallelism, checkpoint_ms))

    def profiles(
        self, input_topic: str, parallelism: int, checkpoint_ms: int, overrides: dict[str, str] | None = None
    ) -> str:
        self.keyspace = f"bench_{uuid.uuid4().hex[:10]}"
        apply_schema(self.session, keyspace=self.keyspace)
        env = profiles_env(self.run, input_topic, self.keyspace, parallelism, checkpoint_ms) | (overrides or {})
        two = [f"{self.run}.profile-moves"] + [f"{self.run}.{n.replace('_', '-')}" for n in JOURNEY_OUTPUTS[:-1]]
        one = [f"{self.run}.identity", f"{self.run}.control", f"{self.run}.control-results"]
        ensure_topics(BOOTSTRAP, partitions=2, topics=tuple(two))
        ensure_topics(BOOTSTRAP, partitions=1, topics=tuple(one))
        self.topics += two + one
        return self._start("flink_jobs.profiles", env)

    def _start(self, module: str, env: dict[str, str]) -> str:
        job_id = submit(module, env | self.extra_env, detached=True).job_id
        self.job_ids.append(job_id)
        wait_state(job_id, {"RUNNING"}, timeout_s=180)
        return job_id

    def stop(self, admin: AdminClient) -> None:
        for j in self.job_ids:
            cancel(j)
        for j in self.job_ids:
            try:
                wait_state(j, {"CANCELED", "FAILED", "FINISHED"}, timeout_s=60)
            except Exception:
                pass
        if self.topics:
            admin.delete_topics(self.topics)
        if self.keyspace:
            self.session.execute(f"DROP KEYSPACE IF EXISTS {self.keyspace}", timeout=120)


# ---------------------------------------------------------------- drain runs


def drain(
    stage: str,
    parallelism: int,
    backlog: Backlog,
    offsets: Offsets,
    session: Any,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """One drain measurement of ``stage`` at ``parallelism`` (module docstring)."""
    dep = Deployment(f"{backlog.prefix}-{stage[:4]}{parallelism}-{uuid.uuid4().hex[:4]}", session, extra_env=args.env)
    say(f"{stage} p={parallelism}: starting")
    try:
        jobs: dict[str, str] = {}
        if stage in ("ingestion", "pipeline"):
            jobs["ingestion"] = dep.ingestion(backlog.prefix, parallelism, args.checkpoint_ms)
        if stage == "ingestion":
            group, topics, total = f"{dep.run}-ingest", backlog.raw_topics, backlog.produced_raw
        else:
            source = f"{dep.run}.normalized" if stage == "pipeline" else backlog.normalized_topic
            jobs["profiles"] = dep.profiles(source, parallelism, args.checkpoint_ms)
            group, topics, total = f"{dep.run}-profiles", [source], backlog.produced_normalized
        points, ratios, profile = _window(stage, parallelism, jobs, group, topics, total, offsets, args)
        drained = points[-1][1] >= total
        counters = {
            name: counter_total(operator_counters(job_id, PROFILE_COUNTERS + INGEST_COUNTERS), name)
            for job_id in jobs.values()
            for name in PROFILE_COUNTERS + INGEST_COUNTERS
        }
        checkpoints = {name: checkpoint_stats(job_id) for name, job_id in jobs.items()}
        failures = {name: restarts(job_id) for name, job_id in jobs.items()}
    finally:
        dep.stop(offsets.admin)
    rate = slope(points)
    busy, bp = _mean_ratios(ratios)
    events = counters.get("events") or 0
    result = {
        "stage": stage,
        "parallelism": parallelism,
        "records_per_s": rate,
        "window_s": points[-1][0] - points[0][0],
        "records_in_window": points[-1][1] - points[0][1],
        "backlog": total,
        "drained_before_end": drained,
        "checkpoints": checkpoints.get("profiles", checkpoints.get("ingestion")),
        "checkpoints_by_job": checkpoints,
        "cassandra": {
            "requests_per_event": counters["cassandra_requests"] / events if events else None,
            "mutations_per_event": counters["cassandra_mutations"] / events if events else None,
        },
        "counters": counters,
        "busy_ratio": busy,
        "backpressured_ratio": bp,
        "restarts": failures,
    }
    if profile:
        result["pyspy"] = profile
    say(f"{stage} p={parallelism}: {rate:,.0f} records/s over {result['window_s']:.0f} s")
    return result


def _window(
    stage: str,
    parallelism: int,
    jobs: dict[str, str],
    group: str,
    topics: list[str],
    total: int,
    offsets: Offsets,
    args: argparse.Namespace,
) -> tuple[list[tuple[float, int]], list[dict], dict | None]:
    """Wait for the first commit and the warm-up, then sample committed offsets for the window."""
    deadline = time.monotonic() + 300
    while offsets.committed(group, topics) == 0:
        _check_running(jobs)
        if time.monotonic() > deadline:
            raise RuntimeError(f"{stage}: no checkpoint committed input offsets within 300 s")
        time.sleep(1)
    say(f"{stage} p={parallelism}: first checkpoint committed; warming up {args.warmup_s} s")
    time.sleep(args.warmup_s)
    points: list[tuple[float, int]] = []
    ratios: list[dict] = []
    profile: dict | None = None
    profiler: threading.Thread | None = None
    if args.profile_s:
        holder: dict[str, Any] = {}
        label = f"{stage}-p{parallelism}"
        profiler = threading.Thread(target=lambda: holder.update(profile_taskmanagers(args.profile_s, label)))
        profiler.start()
    t0 = time.monotonic()
    last_print = t0
    while True:
        now = time.monotonic()
        n = offsets.committed(group, topics)
        points.append((now - t0, n))
        if now - t0 >= args.window_s or n >= total:
            break
        if len(points) % 10 == 5:
            ratios.append({f"{j}: {k}": v for j, job in jobs.items() for k, v in vertex_ratios(job).items()})
        if now - last_print >= 15:
            last_print = now
            say(f"  {stage} p={parallelism}: {n:,}/{total:,} committed, {slope(points):,.0f}/s so far")
            _check_running(jobs)
        time.sleep(1)
    if profiler is not None:
        profiler.join()
        profile = holder
    return points, ratios, profile


def _check_running(jobs: dict[str, str]) -> None:
    """Raise if a job ended; a job restarting from its checkpoint (e.g. a Cassandra write
    timed out under overload: docs/operations.md) is measured through its recovery."""
    for name, job_id in jobs.items():
        state = rest(f"/jobs/{job_id}")["state"]
        if state in ("FAILED", "CANCELED", "FINISHED", "SUSPENDED"):
            raise RuntimeError(f"{name} job {job_id} is {state}: {root_exception(job_id)[:600]}")


def restarts(job_id: str) -> dict[str, Any]:
    """How often the job restarted, and the first line of each cause (the newest first)."""
    entries = rest(f"/jobs/{job_id}/exceptions?maxExceptions=5").get("exceptionHistory", {}).get("entries", [])
    causes = [
        next((ln for ln in e.get("stacktrace", "").splitlines() if "Caused by" in ln), e.get("exceptionName", ""))[:300]
        for e in entries
    ]
    return {"count": len(entries), "causes": causes}


# ---------------------------------------------------------------- offered load and latency

#: live settings for the load steps (as bench/journeys_bench.py): events occur now, so the
#: watermark follows the clock and a cart's timer is due CART_TIMEOUT after it
LIVE = {
    "JOURNEY_OUT_OF_ORDERNESS_MS": "2000",
    "JOURNEY_IDLE_ADVANCE_MS": "1000",
    "JOURNEY_CART_TIMEOUT_MS": "5000",
    "JOURNEY_MARKETING_CONSENT_DEFAULT": "true",
}


class Restamp:
    """Raw events re-stamped to occur now (bad records pass unchanged)."""

    def __init__(self) -> None:
        self.catalog = SchemaCatalog.load()
        self.codec = self.catalog.codec("Event")

    def now(self, value: bytes) -> bytes:
        try:
            e = self.catalog.decode(value, expect="Event")[1]
        except Exception:
            return value
        e["occurred_at"] = int(time.time() * 1000)
        return self.codec.encode(e)


class LiveEvents(Restamp):
    """:class:`Restamp`, and probe carts made from a valid ``add_to_cart`` of the backlog."""

    def __init__(self, backlog: Backlog) -> None:
        super().__init__()
        self.cart_template: dict[str, Any] | None = None
        ingestor = Ingestor(IngestSettings(SALT))
        now = int(time.time() * 1000)
        for channel, v in backlog.raw_values:  # a valid one: the generator plants invalid events too
            if channel != "web" or isinstance(ingestor.process(SourceRecord(v, "t.events.web", 0, 0, now)), Rejected):
                continue
            e = self.catalog.decode(v, expect="Event")[1]
            if e["event_type"] == "add_to_cart":
                self.cart_template = e
                break
        if self.cart_template is None:
            raise RuntimeError("no valid add_to_cart web event in the backlog")
        probe = self.probe_cart("probe-check", "cart-check")[0]
        checked = ingestor.process(SourceRecord(probe, "t.events.web", 0, 0, int(time.time() * 1000)))
        if isinstance(checked, Rejected):
            raise RuntimeError(f"the probe event would be dead-lettered: {checked.error_type}")

    def probe_cart(self, cookie: str, cart: str) -> tuple[bytes, int]:
        t = self.cart_template
        assert t is not None
        payload = t["payload"]
        if isinstance(payload, tuple):
            payload = (payload[0], dict(payload[1], cart_id=cart))
        else:
            payload = dict(payload, cart_id=cart)
        at = int(time.time() * 1000)
        ids = {k: None for k in t["identifiers"]} | {"cookie_id": cookie}
        event = {**t, "event_id": f"{cookie}-cart", "identifiers": ids, "occurred_at": at, "payload": payload}
        return self.codec.encode(event), at


@dataclass
class Probes:
    """Probe carts (a new cookie each): produce -> profile row visible in Cassandra, and the
    cart's due time -> its ``cart_abandoned`` trigger visible to a read_committed consumer."""

    live: LiveEvents
    topic: str
    triggers_topic: str
    session: Any
    keyspace: str
    cart_timeout_ms: int
    profiles_pending: dict[str, float] = field(default_factory=dict)
    carts_pending: dict[str, float] = field(default_factory=dict)  # cart id -> due (epoch s)
    profile_ms: list[float] = field(default_factory=list)
    trigger_ms: list[float] = field(default_factory=list)
    _by_ids: Any = None

    def __post_init__(self) -> None:
        self.consumer = Consumer(
            {
                "bootstrap.servers": BOOTSTRAP,
                "group.id": f"probe-{uuid.uuid4().hex[:8]}",
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
            }
        )
        self.consumer.subscribe([self.triggers_topic])

    def send(self, producer: Producer) -> None:
        cookie = f"probe-{uuid.uuid4().hex[:16]}"
        value, at = self.live.probe_cart(cookie, f"cart-{cookie}")
        self.profiles_pending[canonical_profile_id([("cookie_id", cookie)], IdentityRules())] = time.time()
        self.carts_pending[f"cart-{cookie}"] = (at + self.cart_timeout_ms) / 1000
        producer.produce(self.topic, value=value)
        producer.poll(0)

    def collect(self) -> None:
        if self.profiles_pending:
            if self._by_ids is None:
                self._by_ids = self.session.prepare(
                    f"SELECT profile_id FROM {self.keyspace}.profiles WHERE profile_id IN ?"
                )
            rows = self.session.execute(self._by_ids, (list(self.profiles_pending)[:200],))
            now = time.time()
            for r in rows:
                sent = self.profiles_pending.pop(r.profile_id, None)
                if sent is not None:
                    self.profile_ms.append((now - sent) * 1000)
        for m in self.consumer.consume(500, timeout=0):
            value = m.value()
            if m.error() or value is None:
                continue
            t = self.live.catalog.decode(value)[1]
            due = self.carts_pending.pop(t.get("cart_id") or "", None)
            if due is not None:
                self.trigger_ms.append((time.time() - due) * 1000)

    @property
    def pending(self) -> int:
        return len(self.profiles_pending) + len(self.carts_pending)


def _unfired(carts_pending: dict[str, float], input_end: float) -> dict[str, int]:
    """Probe carts without a trigger: ``never`` all of them, ``never_due_after_input`` those due
    after the step's last event was produced (event time reaches a cart's due time only
    through later events: such a cart cannot fire while no event follows, docs/journeys.md).

    >>> _unfired({"a": 10.0, "b": 20.0, "c": 30.0}, input_end=25.0)
    {'never': 3, 'never_due_after_input': 1}
    """
    return {
        "never": len(carts_pending),
        "never_due_after_input": sum(due > input_end for due in carts_pending.values()),
    }


def offered_load(
    rate: float, p: int, backlog: Backlog, offsets: Offsets, session: Any, args: argparse.Namespace
) -> dict[str, Any]:
    """The pipeline at the highest parallelism under paced live input: steps of offered rate
    (fractions of ``rate``) at parallelism ``p``, probes at the half-rate step."""
    dep = Deployment(f"{backlog.prefix}-load{p}-{uuid.uuid4().hex[:4]}", session, extra_env=args.env)
    inputs = f"{dep.run}-in"
    raw_topics = [f"{inputs}.events.{c}" for c in CHANNELS]
    ensure_topics(BOOTSTRAP, partitions=2, topics=tuple(raw_topics))
    dep.topics += raw_topics
    steps: list[dict[str, Any]] = []
    latency: dict[str, Any] = {}
    live = LiveEvents(backlog)
    try:
        jobs = {"ingestion": dep.ingestion(inputs, p, args.checkpoint_ms)}
        jobs["profiles"] = dep.profiles(f"{dep.run}.normalized", p, args.checkpoint_ms, LIVE)
        assert dep.keyspace is not None
        time.sleep(10)  # operators open their clients
        probes = Probes(
            live,
            f"{inputs}.events.web",
            f"{dep.run}.triggers",
            session,
            dep.keyspace,
            int(LIVE["JOURNEY_CART_TIMEOUT_MS"]),
        )
        normalized = [f"{dep.run}.normalized"]
        waiting = lambda: (  # noqa: E731
            offsets.end(raw_topics)
            - offsets.committed(f"{dep.run}-ingest", raw_topics)
            + offsets.end(normalized)
            - offsets.committed(f"{dep.run}-profiles", normalized)
        )
        values = backlog.raw_values
        cursor = int(rate * args.fraction_warmup * args.warmup_s)
        say(f"load warm-up: {rate * args.fraction_warmup:,.0f} records/s for {args.warmup_s} s")
        _paced(values[:cursor], rate * args.fraction_warmup, inputs, waiting, jobs, None, args)
        _drain_wait(waiting, timeout_s=60)
        for fraction in args.load_steps:
            offered = rate * fraction
            n = int(offered * args.step_s)
            chunk = [values[(cursor + i) % len(values)] for i in range(n)]
            cursor += n
            with_probes = math.isclose(fraction, 0.5)
            say(
                f"load step {fraction:.2f}x: {offered:,.0f} records/s for {args.step_s} s{' with probes' if with_probes else ''}"
            )
            marks, elapsed = _paced(chunk, offered, inputs, waiting, jobs, probes if with_probes else None, args)
            input_end = time.time()
            growth, bounded = _bounded(marks, elapsed, offered, args.checkpoint_ms)
            steps.append(
                {
                    "stage": "pipeline",
                    "parallelism": p,
                    "fraction": fraction,
                    "offered_per_s": offered,
                    "produced_per_s": n / elapsed,
                    "achieved_per_s": n / elapsed - max(growth, 0.0),
                    "lag_growth_per_s": growth,
                    "lag_end": marks[-1][1],
                    "bounded": bounded,
                }
            )
            say(f"  waiting records grew {growth:,.0f}/s: {'bounded' if bounded else 'NOT bounded'}")
            if with_probes:
                end = time.monotonic() + 60
                while probes.pending and time.monotonic() < end:
                    probes.collect()
                    time.sleep(0.02)
                latency = {
                    "offered_per_s": offered,
                    "produce_to_profile_ms": _quantiles(probes.profile_ms) | {"never": len(probes.profiles_pending)},
                    "due_to_trigger_ms": _quantiles(probes.trigger_ms) | _unfired(probes.carts_pending, input_end),
                }
                say(
                    f"  latency: produce -> profile p50 {latency['produce_to_profile_ms']['p50']} ms, "
                    f"due -> trigger p50 {latency['due_to_trigger_ms']['p50']} ms"
                )
            if not bounded:
                break
            _drain_wait(waiting, timeout_s=120)
        probes.consumer.close()
    finally:
        dep.stop(offsets.admin)
    bounded_rates = [s["offered_per_s"] for s in steps if s["bounded"]]
    return {"steps": steps, "max_bounded_rate": max(bounded_rates) if bounded_rates else None, "latency": latency}


def _paced(
    chunk: list[tuple[str, bytes]],
    offered: float,
    inputs: str,
    waiting: Callable[[], int],
    jobs: dict[str, str],
    probes: Probes | None,
    args: argparse.Namespace,
) -> tuple[list[tuple[float, int]], float]:
    """Produce ``chunk`` re-stamped to now at ``offered`` records/s (paced against the start),
    probes every ``probe_interval_s``; the records waiting every 2 s."""
    producer = Producer({"bootstrap.servers": BOOTSTRAP, "linger.ms": 5})
    live = probes.live if probes is not None else Restamp()
    t0 = time.monotonic()
    marks: list[tuple[float, int]] = []
    next_probe = t0
    for i, (channel, value) in enumerate(chunk):
        target = t0 + i / offered
        while True:
            now = time.monotonic()
            if probes is not None and now >= next_probe:
                probes.send(producer)
                probes.collect()
                next_probe = now + args.probe_interval_s
            if not marks or now - t0 - marks[-1][0] >= 2:
                marks.append((now - t0, waiting()))
                _check_running(jobs)
            if now >= target:
                break
            time.sleep(min(0.005, target - now))
        _produce(producer, f"{inputs}.events.{channel}", live.now(value), i)
    producer.flush(60)
    elapsed = time.monotonic() - t0
    marks.append((elapsed, waiting()))
    return marks, elapsed


def _bounded(marks: list[tuple[float, int]], elapsed: float, offered: float, checkpoint_ms: int) -> tuple[float, bool]:
    """The growth rate of the records waiting over the last two thirds of a step, and whether
    they stayed bounded: at the end no more than the most seen in the first third plus what
    two checkpoint intervals and a second of input explain (offsets are committed per
    checkpoint, so the records waiting saw-tooth by that much at any rate).

    >>> _bounded([(0, 100), (10, 900), (20, 300), (30, 1000), (40, 200)], 40, 400, 2000)
    (-5.0, True)
    >>> _bounded([(0, 100), (10, 2000), (20, 4000), (30, 6000), (40, 8000)], 40, 400, 2000)[1]
    False
    """
    later = [m for m in marks if m[0] >= elapsed / 3]
    growth = slope(later) if len(later) >= 2 else float("nan")
    first = max((n for t, n in marks if t <= elapsed / 3), default=0)
    return growth, marks[-1][1] <= first + offered * (2 * checkpoint_ms / 1000 + 1)


def _drain_wait(waiting: Callable[[], int], timeout_s: float) -> None:
    end = time.monotonic() + timeout_s
    while waiting() > 1000 and time.monotonic() < end:
        time.sleep(2)


def _quantiles(xs: list[float]) -> dict[str, Any]:
    if len(xs) < 2:
        return {"count": len(xs), "p50": None, "p99": None, "samples": xs}
    q = quantiles(xs, n=100, method="inclusive")
    return {"count": len(xs), "p50": q[49], "p99": q[98], "max": max(xs), "samples": [round(x, 1) for x in xs]}


# ---------------------------------------------------------------- baselines, ratios, main


class _Raw(NamedTuple):
    topic: str
    value: bytes


def baselines(backlog: Backlog, args: argparse.Namespace) -> dict[str, Any]:
    """The plain loops (CPython ceiling) and the hand-written consumer, on this run's data.

    The profiles ceiling is derived from the same records: their whole-pipeline loop time
    minus their ingestion loop time, per normalized record."""
    from bench import handwritten

    n = min(args.baseline_records, len(backlog.raw_values))
    raw = [_Raw(f"journey.events.{c}", v) for c, v in backlog.raw_values[:n]]
    ing = _ingest_loop(raw)
    say(f"plain loop, ingestion: {ing['records_per_s']:,.0f} records/s")
    pipe = handwritten.plain_loop(raw)
    pipe["journey_outputs"] = sum(pipe["journey_outputs"].values())
    say(f"plain loop, whole pipeline ({', '.join(pipe['stages'])}): {pipe['records_per_s']:,.0f} records/s")
    prof_s = pipe["seconds"] - ing["seconds"]
    prof = {"records": pipe["normalized"], "seconds": prof_s, "records_per_s": pipe["normalized"] / prof_s}
    prof["derived"] = "whole-pipeline loop minus ingestion loop, per normalized record"
    say(f"plain loop, profiles: {prof['records_per_s']:,.0f} records/s")
    hand = handwritten_run(backlog, n)
    hand["journey_outputs"] = sum(hand.get("journey_outputs", {}).values())
    say(f"hand-written consumer: {hand['records_per_s']:,.0f} records/s")
    return {"plain_loop": {"ingestion": ing, "profiles": prof, "pipeline": pipe}, "handwritten": hand}


def handwritten_run(backlog: Backlog, n: int) -> dict[str, Any]:
    """:func:`bench.handwritten.consume` over the first ``n`` raw records of the backlog."""
    from bench import handwritten

    session = connect("127.0.0.1", stack.CASSANDRA_PORT)
    keyspace = f"bench_{uuid.uuid4().hex[:10]}"
    apply_schema(session, keyspace=keyspace)
    try:
        return handwritten.consume(
            BOOTSTRAP,
            backlog.raw_topics,
            "127.0.0.1",
            stack.CASSANDRA_PORT,
            keyspace,
            SALT,
            expected_records=n,
            group_id=f"{backlog.prefix}-handwritten",
        )
    finally:
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
        session.cluster.shutdown()


def _normalized(raw: list[_Raw]) -> list[bytes]:
    """The ingestion logic in a plain loop: each unique valid event's NormalizedEvent value."""
    ing = Ingestor(IngestSettings(SALT))
    seen: set[str] = set()
    out = []
    now = int(time.time() * 1000)
    for i, r in enumerate(raw):
        res = ing.process(SourceRecord(r.value, r.topic, 0, i, now))
        if isinstance(res, Accepted) and res.event_id not in seen:
            seen.add(res.event_id)
            out.append(res.value)
    return out


def _ingest_loop(raw: list[_Raw]) -> dict[str, Any]:
    t0 = time.perf_counter()
    _normalized(raw)
    dt = time.perf_counter() - t0
    return {"records": len(raw), "seconds": dt, "records_per_s": len(raw) / dt}


def ratios_and_targets(data: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    runs = {(r["stage"], r["parallelism"]): r["records_per_s"] for r in data["runs"]}
    loop = data.get("baselines", {}).get("plain_loop", {})
    hand = data.get("baselines", {}).get("handwritten", {}).get("records_per_s")
    top = max((p for _, p in runs), default=1)
    ratios: dict[str, Any] = {}
    for stage in ("ingestion", "profiles", "pipeline"):
        ceiling = loop.get(stage, {}).get("records_per_s")
        best = max((v for (s, _), v in runs.items() if s == stage), default=None)
        if ceiling and best:  # the pipeline's runs count normalized records, its loop raw ones
            ratios[f"{stage}_vs_plain_loop"] = (
                best / ceiling / (data["normalized_per_raw"] if stage == "pipeline" else 1)
            )
    if hand and ("pipeline", 2) in runs:
        ratios["pipeline_p2_vs_handwritten"] = runs[("pipeline", 2)] * data["normalized_per_raw"] ** -1 / hand
    ratios["p2_over_p1"] = {
        s: runs[(s, 2)] / runs[(s, 1)]
        for s in ("ingestion", "profiles", "pipeline")
        if (s, 1) in runs and (s, 2) in runs
    }
    lat = data.get("latency", {}).get("produce_to_profile_ms", {})
    ing = max((v for (s, _), v in runs.items() if s == "ingestion"), default=None)
    at_top = [r for r in data["runs"] if r["parallelism"] == top and r["stage"] == "pipeline"]
    req = at_top[0]["cassandra"]["requests_per_event"] if at_top else None
    stage_ratios = [v for k, v in ratios.items() if k.endswith("_vs_plain_loop")]
    targets = [
        _target("every stage >= 0.5x its plain-loop ceiling", ">= 0.5", min(stage_ratios, default=None), 0.5),
        _target(
            "pipeline p=2 (exactly-once) vs hand-written consumer",
            ">= 1.0",
            ratios.get("pipeline_p2_vs_handwritten"),
            1.0,
        ),
        _target("ingestion sustained records/s", ">= 20000", ing, 20000),
        _target("p99 produce -> profile at half load (ms)", "< 1000", lat.get("p99"), 1000, below=True),
        _target("Cassandra requests per event (pipeline)", "<= 0.2", req, 0.2, below=True, inclusive=True),
        _target("p=2 / p=1, profiles (identity)", ">= 1.7", ratios["p2_over_p1"].get("profiles"), 1.7),
    ]
    return ratios, targets


def _target(name: str, text: str, value: float | None, bound: float, below: bool = False, inclusive: bool = False):
    if value is None:
        met = None
    elif below:
        met = value <= bound if inclusive else value < bound
    else:
        met = value >= bound
    return {"name": name, "target": text, "value": value, "met": met}


def merged(earlier: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``earlier`` with ``new``'s runs (same stage and parallelism replaced), load steps,
    latency and baselines (a partial re-run after an interrupted ``make bench``).

    >>> old = {"runs": [{"stage": "a", "parallelism": 1, "x": 1}, {"stage": "b", "parallelism": 1}]}
    >>> got = merged(old, {"runs": [{"stage": "a", "parallelism": 1, "x": 2}], "latency": {"p": 1}})
    >>> [r.get("x") for r in got["runs"]], got["latency"], got["reruns"]
    ([None, 2], {'p': 1}, ['a p=1'])
    """
    out = dict(earlier)
    again = {(r["stage"], r["parallelism"]) for r in new["runs"]}
    out["runs"] = [r for r in earlier["runs"] if (r["stage"], r["parallelism"]) not in again] + new["runs"]
    for key in ("offered_load", "max_bounded_rate", "latency", "baselines"):
        if key in new:
            out[key] = new[key]
    out["reruns"] = (
        earlier.get("reruns", [])
        + [f"{s} p={p}" for s, p in sorted(again)]
        + (["load"] if "offered_load" in new else [])
    )
    return out


def machine() -> dict[str, Any]:
    model = ""
    try:
        model = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    from importlib.metadata import version

    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(mem),
        "cpu_model": model,
        "python": platform.python_version(),
        "flink": version("apache-flink"),
        "taskmanagers": stack.FLINK_TASK_MANAGERS,
        "slots_per_taskmanager": stack.FLINK_SLOTS_PER_TASK_MANAGER,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--persons", type=int, default=14000, help="~73 raw records per person (default: ~1M records)")
    ap.add_argument("--stages", default="ingestion,profiles,pipeline,load,baselines")
    ap.add_argument("--parallelism", default="1,2", help="comma-separated (4 fits the local cluster's 8 slots)")
    ap.add_argument("--warmup-s", type=int, default=15)
    ap.add_argument("--window-s", type=int, default=60)
    ap.add_argument("--checkpoint-ms", type=int, default=2000)
    ap.add_argument("--load-steps", default="0.5,0.8,1.0,1.25", help="fractions of the pipeline's drain rate")
    ap.add_argument("--step-s", type=int, default=40)
    ap.add_argument(
        "--load-rate", type=float, help="raw records/s of a 1.0 load step (default: the pipeline's drain rate)"
    )
    ap.add_argument("--probe-interval-s", type=float, default=0.25)
    ap.add_argument("--baseline-records", type=int, default=100_000)
    ap.add_argument("--profile-s", type=int, default=0, help="py-spy each TaskManager this long in each window")
    ap.add_argument("--fraction-warmup", type=float, default=0.5, help="load before the steps (fraction, warmup-s)")
    ap.add_argument("--load-parallelism", type=int, help="default: the pipeline's fastest parallelism")
    ap.add_argument("--merge-into", type=Path, help="replace these runs/steps in an earlier result and rewrite it")
    ap.add_argument("--job-env", action="append", default=[], help="KEY=VALUE for every job (tuning experiments)")
    ap.add_argument("--out", type=Path, default=RESULTS / "sustained.json")
    args = ap.parse_args(argv)
    args.stages = [s for s in args.stages.split(",") if s]
    args.parallelism = [int(p) for p in args.parallelism.split(",")]
    args.load_steps = [float(f) for f in args.load_steps.split(",")]
    bad = [kv for kv in args.job_env if not re.fullmatch(r"JOURNEY_[A-Z0-9_]+=.*", kv)]
    if bad:
        ap.error(f"--job-env takes JOURNEY_NAME=value, got {bad}")
    args.env = dict(kv.split("=", 1) for kv in args.job_env)
    unknown = set(args.stages) - {"ingestion", "profiles", "pipeline", "load", "baselines"}
    if unknown:
        ap.error(f"unknown stages {sorted(unknown)}")
    if any(p < 1 or p > stack.FLINK_TASK_MANAGERS * stack.FLINK_SLOTS_PER_TASK_MANAGER // 2 for p in args.parallelism):
        ap.error("each parallelism must be within 1..4 (two jobs share the 8 slots)")
    return args


def stack_session() -> Any:
    """Start the local stack's Kafka, Cassandra and Flink (with its TaskManagers) where down;
    a Cassandra session."""
    for name in ("kafka", "cassandra", "flink"):
        stack.COMPONENTS[name].start()
    stack.ensure_taskmanagers()
    return connect("127.0.0.1", stack.CASSANDRA_PORT)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    session = stack_session()
    backlog = make_backlog(args.persons, seed=424242)
    offsets = Offsets()
    data: dict[str, Any] = {
        "benchmark": "sustained",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "settings": {
            "warmup_s": args.warmup_s,
            "window_s": args.window_s,
            "checkpoint_ms": args.checkpoint_ms,
            "exactly_once": True,
            "persons": args.persons,
            "job_env": args.env,
            "raw_records": backlog.produced_raw,
            "normalized_records": backlog.produced_normalized,
        },
        "normalized_per_raw": backlog.produced_normalized / backlog.produced_raw,
        "runs": [],
    }
    try:
        if "baselines" in args.stages:
            data["baselines"] = baselines(backlog, args)
        for stage in ("ingestion", "profiles", "pipeline"):
            if stage in args.stages:
                for p in args.parallelism:
                    data["runs"].append(drain(stage, p, backlog, offsets, session, args))
        if "load" in args.stages:
            pipe = [(r["records_per_s"], r["parallelism"]) for r in data["runs"] if r["stage"] == "pipeline"]
            best, p = max(pipe) if pipe else (None, args.load_parallelism or max(args.parallelism))
            p = args.load_parallelism or p
            # raw records/s the pipeline drains (its runs measure normalized records)
            rate = args.load_rate or (best / data["normalized_per_raw"] if best else None)
            if rate:
                load = offered_load(rate, p, backlog, offsets, session, args)
                data["offered_load"] = load["steps"]
                data["max_bounded_rate"] = {"pipeline": load["max_bounded_rate"]}
                data["latency"] = load["latency"]
        if args.merge_into:
            data = merged(json.loads(args.merge_into.read_text()), data)
        data["ratios"], data["targets"] = ratios_and_targets(data)
    finally:
        offsets.admin.delete_topics([*backlog.raw_topics, backlog.normalized_topic])
        offsets.close()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(data, indent=2, default=str))
        say(f"wrote {args.out}")
    print(json.dumps({"ratios": data.get("ratios"), "targets": data.get("targets")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
