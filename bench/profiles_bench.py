"""``make bench`` (part 2): the identity + profiles stage through the Flink job vs the same
logic in a plain loop, Cassandra writes per event, and produce -> Cassandra latency.

All in one run, on the same NormalizedEvent records (generated, then normalized by the
plain ingestion logic, and written straight to a fresh ``<prefix>.normalized`` topic):

* **plain loop** -- decode, :class:`models.identity_router.IdentityRouter` and
  :class:`models.profile_fold.ProfileFold` over dicts, moved state handed back at once, one
  coalesced row per profile at the end (computed, not written): the CPython ceiling;
* **pipeline** -- the profiles job on the local Flink cluster (parallelism 2, exactly-once
  checkpoints every 2 s, RocksDB, feedback topic, Cassandra writes coalesced per
  ``coalesce_ms``). It is unbounded, so the run ends when every profile row in Cassandra
  has the oracle's final version (which also checks the result). Rate = records / (that
  moment - the job's RUNNING timestamp); a quarter-size run gives the marginal
  (steady-state) rate, as in the ingestion benchmark;
* **writes per event** -- the job's counters: Cassandra requests (one batch per profile
  write), mutations in them (row, links, ghost deletions) and profile rows, per event folded;
* **latency** -- with the job running and idle, probe events are produced one at a time
  (``--probe-rate`` per second): first a new identifier (a new profile), later a second event
  for it (an update). The time from produce to the row (version) visible in Cassandra is
  measured by polling; p50 / p99 are reported. It includes the coalescing window.

Prints a table and writes ``bench/results/profiles.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import uuid
from pathlib import Path
from statistics import quantiles

from confluent_kafka import Producer

from k8s.topics import ensure_topics
from local import stack
from local.jobs import REPLAY_OUT_OF_ORDERNESS_MS
from local.flink_cluster import (
    FlinkJobError,
    cancel,
    counter_total,
    job_state,
    rest,
    root_exception,
    submit,
    wait_for_counters,
    wait_state,
)
from models.avro_codec import SchemaCatalog
from models.identity import IdentityRules, canonical_profile_id
from models.identity_router import IdentityRouter
from models.profile_fold import FoldState, ProfileFold, row_version
from state.cassandra_schema import apply_schema, connect
from tests.profile_oracle import oracle
from tests.profiles_harness import normalized_records

RESULTS = Path(__file__).resolve().parent / "results"
BOOTSTRAP = f"127.0.0.1:{stack.KAFKA_PORT}"
RULES = IdentityRules()


def plain_loop(values: list[bytes]) -> dict:
    catalog = SchemaCatalog.load()
    router = IdentityRouter(RULES)
    folds: dict[str, tuple[dict, FoldState]] = {}
    decode = lambda b: catalog.decode(b, expect="NormalizedEvent")[1]  # noqa: E731  (as the job: bytes travel)

    def apply(cmd) -> list:
        atoms, state = folds.setdefault(cmd.profile_id, ({}, FoldState()))
        return ProfileFold(cmd.profile_id, atoms, state, decode=decode).apply(cmd)

    t0 = time.perf_counter()
    for v in values:
        routed = router.route_event(decode(v), payload=v)
        moved = [m for cmd in routed.commands for m in apply(cmd)]
        while moved:
            moved = [m for atom, agg in moved for m in apply(router.route_state(atom, agg))]
    rows = [ProfileFold(pid, atoms, state).flush() for pid, (atoms, state) in folds.items() if state.dirty]
    dt = time.perf_counter() - t0
    live = sum(1 for r in rows if r.profile is not None)
    return {"records": len(values), "seconds": dt, "records_per_s": len(values) / dt, "profiles": live}


def expected_versions(values: list[bytes]) -> dict[str, int]:
    """The oracle's final row version per profile (resolve() + fold, independent of the job)."""
    catalog = SchemaCatalog.load()
    return {pid: version for pid, (version, _) in oracle([catalog.decode(v)[1] for v in values]).items()}


class ProfilesJob:
    """One run of the profiles job on fresh topics and a fresh keyspace."""

    def __init__(self, session, checkpoint_ms: int, coalesce_ms: int) -> None:
        self.prefix = f"bench{uuid.uuid4().hex[:8]}"
        self.topic = f"{self.prefix}.normalized"
        self.keyspace = f"bench_{uuid.uuid4().hex[:10]}"
        self.session = session
        outs = ("sessions", "triggers", "late", "segments", "scores", "control_results")
        journeys = {f"JOURNEY_{n.upper()}_TOPIC": f"{self.prefix}.{n.replace('_', '-')}" for n in outs}
        journeys["JOURNEY_CONTROL_TOPIC"] = f"{self.prefix}.control"
        ensure_topics(
            BOOTSTRAP, partitions=2, topics=(self.topic, f"{self.prefix}.profile-moves", *list(journeys.values())[:-1])
        )
        ensure_topics(BOOTSTRAP, partitions=1, topics=(f"{self.prefix}.identity", f"{self.prefix}.control"))
        apply_schema(session, keyspace=self.keyspace)
        self._by_ids = session.prepare(
            f"SELECT profile_id, version FROM {self.keyspace}.profiles WHERE profile_id IN ?"
        )
        self.env = {
            "JOURNEY_INPUT_TOPIC_PATTERN": self.topic.replace(".", r"\."),
            "JOURNEY_IDENTITY_TOPIC": f"{self.prefix}.identity",
            "JOURNEY_FEEDBACK_TOPIC": f"{self.prefix}.profile-moves",
            "JOURNEY_GROUP_ID": self.prefix,
            "JOURNEY_TRANSACTIONAL_ID_PREFIX": self.prefix,
            "JOURNEY_JOB_NAME": f"bench-profiles-{self.prefix}",
            "JOURNEY_KEYSPACE": self.keyspace,
            "JOURNEY_CHECKPOINT_INTERVAL_MS": str(checkpoint_ms),
            "JOURNEY_COALESCE_MS": str(coalesce_ms),
            # the job's journeys stage: this run's topics, and the bound of a replay of history
            "JOURNEY_OUT_OF_ORDERNESS_MS": str(REPLAY_OUT_OF_ORDERNESS_MS),
            **journeys,
        }
        self.producer = Producer({"bootstrap.servers": BOOTSTRAP, "linger.ms": 5})
        self.job_id: str | None = None

    def produce(self, values: list[bytes]) -> None:
        for i, v in enumerate(values):
            self.producer.produce(self.topic, value=v, partition=i % 2)
            if i % 10_000 == 0:
                self.producer.poll(0)
        assert self.producer.flush(60) == 0

    def start(self) -> float:
        self.job_id = submit("flink_jobs.profiles", self.env, detached=True).job_id
        wait_state(self.job_id, {"RUNNING"}, timeout_s=120)
        return rest(f"/jobs/{self.job_id}")["timestamps"]["RUNNING"] / 1000

    def versions(self, pids: list[str] | None = None) -> dict[str, int]:
        if pids is None:
            rows = self.session.execute(f"SELECT profile_id, version FROM {self.keyspace}.profiles")
        else:
            rows = self.session.execute(self._by_ids, (list(pids),))
        return {r.profile_id: r.version for r in rows}

    def wait_until(self, want: dict[str, int], timeout_s: float) -> float:
        deadline = time.time() + timeout_s
        checked = time.time()
        while time.time() < deadline:
            if self.versions() == want:
                return time.time()
            if time.time() - checked > 5:  # fail fast, with the cause, if the job is not running
                checked = time.time()
                state = job_state(self.job_id)
                if state != "RUNNING":
                    raise FlinkJobError(f"job {self.job_id} is {state}: {root_exception(self.job_id)[:1000]}")
            time.sleep(0.2)
        got = self.versions()
        wrong = [p for p in want if got.get(p) != want[p]]
        raise AssertionError(
            f"Cassandra did not reach the oracle in {timeout_s}s: {len(wrong)} of {len(want)} "
            f"profiles differ, {len(set(got) - set(want))} extra"
        )

    def counters(self) -> dict[str, int]:
        names = [
            "events_folded",
            "cassandra_requests",
            "cassandra_mutations",
            "profile_writes",
            "profile_deletes",
            "atoms_evicted",
        ]
        c = wait_for_counters(self.job_id, {"events_folded": 1}, names[1:])
        return {n: counter_total(c, n) for n in names}

    def stop(self) -> None:
        if self.job_id:
            cancel(self.job_id)
        self.session.execute(f"DROP KEYSPACE IF EXISTS {self.keyspace}", timeout=60)


def backlog_run(session, values: list[bytes], args) -> dict:
    job = ProfilesJob(session, args.checkpoint_ms, args.coalesce_ms)
    try:
        job.produce(values)
        want = expected_versions(values)
        running = job.start()
        done = job.wait_until(want, timeout_s=900)
        counters = job.counters()
    finally:
        job.stop()
    seconds = done - running
    folded = max(1, counters["events_folded"])
    return {
        "records": len(values),
        "profiles": len(want),
        "running_to_all_visible_seconds": seconds,
        "records_per_s": len(values) / seconds,
        "counters": counters,
        "cassandra_requests_per_event": counters["cassandra_requests"] / folded,
        "cassandra_mutations_per_event": counters["cassandra_mutations"] / folded,
        "profile_rows_written_per_event": (counters["profile_writes"] + counters["profile_deletes"]) / folded,
    }


def probe_event(template: dict, cookie: str, n: int) -> dict:
    ids = {k: None for k in template["identifiers"]} | {"cookie_id": cookie}
    return {**template, "event_id": f"{cookie}-{n}", "identifiers": ids, "occurred_at": int(time.time() * 1000)}


def latency_run(session, args) -> dict:
    """Produce -> visible in Cassandra, for new profiles and for updates, with the job idle."""
    catalog = SchemaCatalog.load()
    codec = catalog.codec("NormalizedEvent")
    template = catalog.decode(normalized_records(1, 7)[0])[1]
    job = ProfilesJob(session, args.checkpoint_ms, args.coalesce_ms)
    samples: dict[str, list[float]] = {"create": [], "update": []}
    try:
        job.start()
        time.sleep(5)  # let the operators open their Cassandra sessions
        cookies = [f"probe-{uuid.uuid4().hex[:12]}" for _ in range(args.probes)]
        for phase, n in (("create", 1), ("update", 2)):
            pending: dict[str, tuple[float, int]] = {}
            for c in cookies:
                pid = canonical_profile_id([("cookie_id", c)], RULES)
                pending[pid] = (time.time(), row_version(n, n))
                job.producer.produce(job.topic, value=codec.encode(probe_event(template, c, n)))
                job.producer.flush(10)
                deadline = time.time() + 1 / args.probe_rate
                while pending and time.time() < deadline:
                    _collect(job, pending, samples[phase])
                    time.sleep(0.01)
            deadline = time.time() + 60
            while pending and time.time() < deadline:
                _collect(job, pending, samples[phase])
                time.sleep(0.01)
            assert not pending, f"{len(pending)} {phase} probes never became visible"
    finally:
        job.stop()
    out = {}
    for phase, xs in samples.items():
        q = quantiles(xs, n=100, method="inclusive")
        out[phase] = {"probes": len(xs), "p50_ms": q[49] * 1000, "p99_ms": q[98] * 1000, "max_ms": max(xs) * 1000}
    return out


def _collect(job: ProfilesJob, pending: dict[str, tuple[float, int]], into: list[float]) -> None:
    now = time.time()
    for pid, version in job.versions(list(pending)).items():
        sent, want = pending[pid]
        if version >= want:
            into.append(now - sent)
            del pending[pid]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--persons", type=int, default=600, help="~65 normalized events per person")
    ap.add_argument("--checkpoint-ms", type=int, default=2000)
    ap.add_argument("--coalesce-ms", type=int, default=1000, help="the job's write coalescing window")
    ap.add_argument("--probes", type=int, default=100, help="latency probes per phase")
    ap.add_argument("--probe-rate", type=float, default=10.0, help="latency probes per second")
    args = ap.parse_args(argv)
    for name in ("kafka", "cassandra", "flink"):
        stack.COMPONENTS[name].start()
    session = connect("127.0.0.1", stack.CASSANDRA_PORT)
    try:
        values = normalized_records(args.persons, 515151)
        small_values = normalized_records(max(1, args.persons // 4), 515152)
        print(f"{len(values)} normalized events ({len(small_values)} in the quarter-size run)")
        loop = plain_loop(values)
        print(
            f"plain Python loop : {loop['records_per_s']:>9,.0f} events/s ({loop['seconds']:.2f}s, "
            f"{loop['profiles']} profiles)"
        )
        print("pipeline run 1/2 (quarter size) ...", flush=True)
        small = backlog_run(session, small_values, args)
        print("pipeline run 2/2 ...", flush=True)
        pipe = backlog_run(session, values, args)
        assert pipe["profiles"] == loop["profiles"], f"pipeline and loop disagree: {pipe} vs {loop}"
        extra_s = pipe["running_to_all_visible_seconds"] - small["running_to_all_visible_seconds"]
        marginal = (pipe["records"] - small["records"]) / extra_s if extra_s > 0 else float("nan")
        print(
            f"Flink pipeline    : {pipe['records_per_s']:>9,.0f} events/s, RUNNING -> all {pipe['profiles']} "
            f"profiles in Cassandra equal the oracle: {pipe['running_to_all_visible_seconds']:.1f}s"
        )
        print(f"Flink marginal    : {marginal:>9,.0f} events/s (steady state)")
        print(
            f"ratio pipeline / plain loop: {pipe['records_per_s'] / loop['records_per_s']:.2f} overall, "
            f"{marginal / loop['records_per_s']:.2f} steady state"
        )
        print(
            f"Cassandra writes  : {pipe['cassandra_requests_per_event']:.3f} requests (batches), "
            f"{pipe['cassandra_mutations_per_event']:.3f} mutations and {pipe['profile_rows_written_per_event']:.3f} "
            f"profile rows per event (coalesce {args.coalesce_ms} ms)"
        )
        print(f"latency probes ({args.probes} per phase at {args.probe_rate}/s) ...", flush=True)
        lat = latency_run(session, args)
        for phase, s in lat.items():
            print(
                f"produce -> visible ({phase}): p50 {s['p50_ms']:,.0f} ms, p99 {s['p99_ms']:,.0f} ms, "
                f"max {s['max_ms']:,.0f} ms"
            )
    finally:
        session.cluster.shutdown()
    report = {
        "benchmark": "profiles",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "settings": vars(args),
        "plain_loop": loop,
        "pipeline": pipe,
        "pipeline_small": small,
        "pipeline_marginal_records_per_s": marginal,
        "ratio_pipeline_to_loop": pipe["records_per_s"] / loop["records_per_s"],
        "ratio_marginal_to_loop": marginal / loop["records_per_s"],
        "latency": lat,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "profiles.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {RESULTS / 'profiles.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
