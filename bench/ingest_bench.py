"""``make bench``: ingestion throughput through the Flink job vs the same logic in a plain loop.

Both sides process the same generated records in the same run:

* **plain loop** -- ``Ingestor.process`` (decode, validate, normalize, encode) plus a dict
  for dedupe, in one Python thread: the ceiling for this logic in CPython;
* **pipeline** -- the ingestion job on the local Flink cluster, parallelism 2, exactly-once
  checkpoints every 2 s, RocksDB, Kafka in and out (transactions), bounded.

The pipeline rate is measured over the job's RUNNING time reported by Flink (records /
(end - RUNNING timestamp)), which excludes submission but includes operator start-up
(Python interpreters, Kafka clients: several seconds). To separate that fixed cost, the job
also runs on a quarter of the records; the **marginal rate** (extra records / extra RUNNING
seconds between the two runs) is the steady-state throughput. Prints a table and writes
``bench/results/latest.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import time
import uuid
from pathlib import Path

from generator.produce import produce
from generator.synth import generate
from k8s.topics import ensure_topics
from local import stack
from local.flink_cluster import rest, submit
from local.kafka_read import read_committed
from models.events import CHANNELS
from models.ingest import Accepted, IngestSettings, Ingestor, SourceRecord

RESULTS = Path(__file__).resolve().parent / "results"
BOOTSTRAP = f"127.0.0.1:{stack.KAFKA_PORT}"
SALT = "bench-salt-0123456789abcdef"


def plain_loop(records, now_ms: int) -> dict:
    ing = Ingestor(IngestSettings(SALT))
    seen: set[str] = set()
    out = dlq = dup = 0
    t0 = time.perf_counter()
    for i, r in enumerate(records):
        res = ing.process(SourceRecord(r.value, r.topic, 0, i, now_ms))
        if isinstance(res, Accepted):
            if res.event_id in seen:
                dup += 1
            else:
                seen.add(res.event_id)
                out += 1
        else:
            dlq += 1
    dt = time.perf_counter() - t0
    return {
        "records": len(records),
        "seconds": dt,
        "records_per_s": len(records) / dt,
        "normalized": out,
        "dead_lettered": dlq,
        "duplicates": dup,
    }


def pipeline(ds, checkpoint_ms: int) -> dict:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    inputs = [f"{prefix}.events.{c}" for c in CHANNELS]
    out_topic, dlq_topic = f"{prefix}.normalized", f"{prefix}.dlq"
    ensure_topics(BOOTSTRAP, partitions=2, topics=(*inputs, out_topic, dlq_topic))
    produce(ds, BOOTSTRAP, progress=True, topic_prefix=prefix)
    t0 = time.monotonic()
    sub = submit(
        "flink_jobs.ingestion",
        {
            "JOURNEY_PII_SALT": SALT,
            "JOURNEY_INPUT_TOPIC_PATTERN": re.escape(prefix) + r"\.events\..*",
            "JOURNEY_OUTPUT_TOPIC": out_topic,
            "JOURNEY_DLQ_TOPIC": dlq_topic,
            "JOURNEY_GROUP_ID": prefix,
            "JOURNEY_TRANSACTIONAL_ID_PREFIX": prefix,
            "JOURNEY_JOB_NAME": f"bench-{prefix}",
            "JOURNEY_CHECKPOINT_INTERVAL_MS": str(checkpoint_ms),
        },
        args=["--bounded"],
    )
    wall = time.monotonic() - t0
    job = rest(f"/jobs/{sub.job_id}")
    running_ms = job["timestamps"]["RUNNING"]
    end_ms = job["end-time"]
    run_s = (end_ms - running_ms) / 1000
    ckpts = rest(f"/jobs/{sub.job_id}/checkpoints")["counts"]
    n_out = len(read_committed(BOOTSTRAP, out_topic))
    n_dlq = len(read_committed(BOOTSTRAP, dlq_topic))
    n = len(ds.records)
    return {
        "job_id": sub.job_id,
        "records": n,
        "running_seconds": run_s,
        "records_per_s": n / run_s,
        "submit_to_finish_seconds": wall,
        "records_per_s_incl_submit": n / wall,
        "normalized": n_out,
        "dead_lettered": n_dlq,
        "checkpoints_completed": ckpts.get("completed"),
        "checkpoint_interval_ms": checkpoint_ms,
        "parallelism": 2,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--persons", type=int, default=600, help="~70 records per person")
    ap.add_argument("--checkpoint-ms", type=int, default=2000)
    args = ap.parse_args(argv)
    for name in ("kafka", "flink"):
        stack.COMPONENTS[name].start()
    ds = generate(seed=424242, persons=args.persons)
    print(f"{len(ds.records)} records ({ds.truth.summary()['duplicate']} duplicates, {ds.truth.summary()['bad']} bad)")
    loop = plain_loop(ds.records, int(time.time() * 1000))
    print(f"plain Python loop: {loop['records_per_s']:>10,.0f} records/s ({loop['seconds']:.2f}s)")
    small_ds = generate(seed=424243, persons=max(1, args.persons // 4))
    print(f"pipeline run 1/2: {len(small_ds.records)} records")
    small = pipeline(small_ds, args.checkpoint_ms)
    print(f"pipeline run 2/2: {len(ds.records)} records")
    pipe = pipeline(ds, args.checkpoint_ms)
    assert pipe["normalized"] == loop["normalized"] and pipe["dead_lettered"] == loop["dead_lettered"], (
        f"pipeline and loop disagree: {pipe} vs {loop}"
    )
    extra_s = pipe["running_seconds"] - small["running_seconds"]
    marginal = (pipe["records"] - small["records"]) / extra_s if extra_s > 0 else float("nan")
    startup_s = small["running_seconds"] - small["records"] / marginal if extra_s > 0 else float("nan")
    ratio = pipe["records_per_s"] / loop["records_per_s"]
    marginal_ratio = marginal / loop["records_per_s"]
    print(
        f"Flink pipeline   : {pipe['records_per_s']:>10,.0f} records/s over {pipe['running_seconds']:.1f}s RUNNING "
        f"({pipe['records_per_s_incl_submit']:,.0f}/s incl. {pipe['submit_to_finish_seconds']:.1f}s submit-to-finish), "
        f"{pipe['checkpoints_completed']} exactly-once checkpoints"
    )
    print(f"Flink marginal   : {marginal:>10,.0f} records/s (steady state; fixed start-up ~{startup_s:.1f}s)")
    print(f"ratio pipeline / plain loop: {ratio:.2f} overall, {marginal_ratio:.2f} steady state")
    report = {
        "benchmark": "ingestion",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "plain_loop": loop,
        "pipeline": pipe,
        "pipeline_small": small,
        "pipeline_marginal_records_per_s": marginal,
        "pipeline_fixed_startup_seconds": startup_s,
        "ratio_pipeline_to_loop": ratio,
        "ratio_marginal_to_loop": marginal_ratio,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {RESULTS / 'latest.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
