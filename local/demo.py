"""``make demo``: the ingestion job end to end on the local stack, with a summary.

Starts Kafka, Cassandra and the Flink cluster (if not running), creates the topics, generates
seeded synthetic journeys with injected faults, produces them, runs the ingestion job on the
cluster (bounded: it stops at the offsets present when it starts), reads the outputs with
``read_committed`` and compares them with the generator's ground truth.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from collections import Counter

from generator.produce import produce
from generator.synth import generate
from k8s.topics import ensure_topics
from local import stack
from local.flink_cluster import REST, FlinkJobError, job_state, root_exception, submit
from local.kafka_read import read_committed
from models.avro_codec import SchemaCatalog
from state.cassandra_schema import apply_schema

BOOTSTRAP = f"127.0.0.1:{stack.KAFKA_PORT}"


def demo_salt() -> str:
    """A per-checkout random salt kept in .stack/ (a secret in k8s; never a constant in code)."""
    path = stack.STACK / "demo-pii-salt"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(24))
        path.chmod(0o600)
    return path.read_text().strip()


def run_job(salt: str) -> str:
    sub = submit("flink_jobs.ingestion", {"JOURNEY_PII_SALT": salt}, args=["--bounded"], detached=True)
    jid = sub.job_id
    print(f"  job {jid} submitted; watch it at {REST}/#/job/running/{jid}/overview")
    t0 = time.monotonic()
    state = "?"
    tty = sys.stdout.isatty()
    last_line = -10.0
    while True:
        state = job_state(jid)
        elapsed = time.monotonic() - t0
        done = state in ("FINISHED", "FAILED", "CANCELED")
        if tty:
            print(f"\r  {state:<10} {elapsed:5.0f}s", end="", flush=True)
        elif done or elapsed - last_line >= 10:  # a line every 10 s in logs
            print(f"  {state:<10} {elapsed:5.0f}s", flush=True)
            last_line = elapsed
        if done:
            break
        time.sleep(2)
    if tty:
        print()
    if state != "FINISHED":
        raise FlinkJobError(f"job {jid} ended {state}: {root_exception(jid)}")
    return jid


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--persons", type=int, default=300)
    ap.add_argument("--seed", type=int, default=None, help="default: a new seed per run")
    ap.add_argument("--rate", type=float, default=None, help="records/s to produce (default: flat out)")
    args = ap.parse_args(argv)
    if args.persons < 1:
        ap.error("--persons must be at least 1")
    seed = args.seed if args.seed is not None else int(time.time())

    print("1/5 local stack (Kafka, Cassandra, Flink)")
    for name in ("kafka", "cassandra", "flink"):
        stack.COMPONENTS[name].start()
    print("2/5 topics:", ", ".join(ensure_topics(BOOTSTRAP)) or "all present",
          f"| Cassandra schema: {len(apply_schema('127.0.0.1'))} statements applied (keyspace journey)")
    print(f"3/5 generating {args.persons} persons (seed {seed}) and producing to journey.events.*")
    ds = generate(seed=seed, persons=args.persons)
    out_dir = stack.STACK / "demo" / str(seed)
    ds.truth.write(out_dir / "truth.json")
    report = produce(ds, BOOTSTRAP, rate=args.rate)
    print(f"  produced {report.delivered} records in {report.elapsed_s:.1f}s; ground truth in {out_dir / 'truth.json'}")
    print("4/5 running the ingestion job on the Flink cluster (exactly-once, bounded)")
    salt = demo_salt()
    t0 = time.monotonic()
    jid = run_job(salt)
    job_s = time.monotonic() - t0
    print("5/5 reading journey.normalized and journey.dlq (read_committed)")
    catalog = SchemaCatalog.load()
    ids = set(ds.truth.valid_event_ids)
    normalized = [catalog.decode(r.value)[1] for r in read_committed(BOOTSTRAP, "journey.normalized")]
    mine = [e for e in normalized if e["event_id"] in ids]
    bad_raw = {b.raw for b in ds.truth.bad_records}
    dlq = [d for d in (catalog.decode(r.value)[1] for r in read_committed(BOOTSTRAP, "journey.dlq"))
           if d["raw"] in bad_raw]
    got_reasons = Counter(d["error_type"] for d in dlq)
    want_reasons = Counter(b.error_type for b in ds.truth.bad_records)
    unique_ok = sorted(e["event_id"] for e in mine) == ds.truth.valid_event_ids
    dlq_ok = got_reasons == want_reasons and len(dlq) == len(ds.truth.bad_records)
    dropped = report.delivered - len(mine) - len(dlq)

    s = ds.truth.summary()
    print()
    print(f"  records produced       {report.delivered:>7}  (valid {s['valid']}, duplicates {s['duplicate']}, bad {s['bad']})")
    print(f"  normalized events out  {len(mine):>7}  expected {s['valid']:<6} {'OK' if unique_ok else 'MISMATCH'}")
    print(f"  dead-lettered          {len(dlq):>7}  expected {s['bad']:<6} {'OK' if dlq_ok else 'MISMATCH'}")
    for reason, n in sorted(want_reasons.items()):
        print(f"    {reason:<26} {got_reasons.get(reason, 0):>5}  expected {n}")
    print(f"  duplicates dropped     {dropped:>7}  expected {s['duplicate']:<6} {'OK' if dropped == s['duplicate'] else 'MISMATCH'}")
    print(f"  persons / carts        {s['persons']} / {s['carts']} ({s['carts_abandoned']} abandoned); late events {s['late_events']}")
    print(f"  job time               {job_s:7.1f}s  (includes start-up)")
    if mine:
        sample = next((e for e in mine if e["identifiers"]["email_hash"]), mine[0])
        print("  a normalized event (email/phone only as salted hashes):")
        print("   ", json.dumps({k: sample[k] for k in ("event_id", "event_type", "channel", "identifiers")})[:400])
    print()
    print(f"Flink web UI: {REST}  (job {jid}: {REST}/#/job/completed/{jid}/overview)")
    print("Stop the stack with `make down`; wipe its data with `make reset`.")
    return 0 if unique_ok and dlq_ok and dropped == s["duplicate"] else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (stack.StackError, FlinkJobError) as e:
        print(f"demo: {e}", file=sys.stderr)
        sys.exit(2)
