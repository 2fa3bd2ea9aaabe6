"""``make bench`` (part 5): the profiles job in Flink with a store kiosk shared by many persons
(issue 16), against the same events without it, in the same run.

The events of :func:`bench.identity_supernode.kiosk_normalized` (each person logs in once on
the kiosk, then browses at home on a cookie of their own; ``own``: the kiosk login on a device
of each person's own instead) are produced to a fresh topic; the profiles job
(``flink_jobs.profiles``: identity, profiles with their Cassandra writes, journeys, segments,
models, exactly-once) runs on the local standalone cluster and reads it from the start.

Per size and variant the **rate** is the events over the time from the first event past
identity (journeys ``journey_events``) to the job's last activity: the input committed and
every counter of the identity stages, the profile fold and the journeys still over two more
checkpoints (claims and home merges travel on the feedback topic, whose records become
visible when a checkpoint commits them, so part of a supernode's work comes after the input
is read). The counters are read from Flink's REST API about once a second. After
``--timeout-s`` a run stops: ``finished`` false, the rate is that of the events past identity
so far, whose supernode is smaller than the size says (the kiosk's persons arrive over the
whole backlog). From the counters, per event: resolve-identity's profile ``commands`` and
``home_state_bytes`` (the state records it wrote), fold-profiles' ``cassandra_mutations``.
The ratio is the kiosk's rate over the own devices' rate.

Prints a table and writes ``bench/results/identity_supernode_flink.json``. Needs the local
stack's Kafka, Cassandra and Flink (started here if down, as ``make bench`` does).
"""

from __future__ import annotations

import argparse
import time
import uuid
from pathlib import Path
from typing import Any

from bench.identity_supernode import kiosk_normalized, write_results
from bench.sustained import (
    BOOTSTRAP,
    Deployment,
    Offsets,
    _check_running,
    _mean_ratios,
    checkpoint_stats,
    machine,
    produce_backlog,
    restarts,
    say,
    stack_session,
    vertex_ratios,
)
from k8s.topics import ensure_topics
from local.flink_cluster import counter_total, operator_counters, rest

RESULTS = Path(__file__).resolve().parent / "results" / "identity_supernode_flink.json"
#: the counters read at every poll: locate-identity ``events``, resolve-identity ``commands``,
#: journeys ``journey_events`` (one per event past identity: the rate), fold-profiles
#: ``cassandra_mutations``; and resolve-identity's merges and moves
COUNTERS = [
    "events",
    "identity_messages",
    "commands",
    "journey_events",
    "cassandra_mutations",
    "claims",
    "components_moved",
    "moved_states",
    "identity_merged",
    "identity_shared",
    "home_state_bytes",
]
RATE_COUNTER = "journey_events"


def resolve_state_bytes(job: str) -> int | None:
    """The resolve-identity vertex's state in the job's last completed checkpoint (bytes)."""
    latest = (rest(f"/jobs/{job}/checkpoints").get("latest") or {}).get("completed")
    if not latest:
        return None
    names = {v["id"]: v["name"] for v in rest(f"/jobs/{job}")["vertices"]}
    tasks = rest(f"/jobs/{job}/checkpoints/details/{latest['id']}").get("tasks", {})
    sizes = [t.get("state_size") for vid, t in tasks.items() if "resolve-identity" in names.get(vid, "")]
    return sum(x for x in sizes if x is not None) if sizes else None


def measure(
    values: list[bytes], label: str, session: Any, offsets: Offsets, args: argparse.Namespace
) -> dict[str, Any]:
    """One run of the profiles job over ``values`` (module docstring)."""
    run = f"supernode{uuid.uuid4().hex[:8]}-{label}"
    topic, total = f"{run}.normalized-in", len(values)
    ensure_topics(BOOTSTRAP, partitions=2, topics=(topic,))
    produce_backlog([topic] * total, values)
    dep = Deployment(run, session, extra_env=args.env)
    dep.topics.append(topic)
    try:
        job = dep.profiles(topic, args.parallelism, args.checkpoint_ms)
        group, jobs = f"{run}-profiles", {"profiles": job}
        say(f"{label}: job running")
        start = time.monotonic()
        first = last_change = quiet_at = None
        last_print, committed, polls, completed_at_change = start, 0, 0, 0
        seen: dict[str, int] = {}
        busy: list[dict[str, dict[str, float]]] = []
        while True:
            polls += 1
            now = time.monotonic()
            counters = operator_counters(job, COUNTERS)
            completed = rest(f"/jobs/{job}/checkpoints")["counts"]["completed"]
            if first is None and counter_total(counters, RATE_COUNTER) > 0:
                first = now
            if counters != seen:
                seen, last_change, completed_at_change = counters, now, completed
            committed = offsets.committed(group, [topic])
            # quiet: the input committed, and no counter moved over two checkpoints (the
            # feedback topic's records become visible when a checkpoint commits them)
            if committed >= total and completed >= completed_at_change + 2 and now - last_change >= 10:
                quiet_at = last_change
                break
            if first is not None and now - first >= args.timeout_s:
                break
            if first is None and now - start > 300:
                raise RuntimeError(f"{label}: no event past identity within 300 s of the job's start")
            if polls % 5 == 3:
                busy.append(vertex_ratios(job))
            if now - last_print >= 15:
                last_print = now
                done = counter_total(counters, RATE_COUNTER)
                moved, claims = counter_total(counters, "components_moved"), counter_total(counters, "claims")
                say(
                    f"  {label}: {done:,}/{total:,} events past identity, {committed:,} committed, "
                    f"{claims:,} claims, {moved:,} components moved"
                )
                _check_running(jobs)
            time.sleep(1)
        checkpoints = checkpoint_stats(job) | {"resolve_identity_bytes_last": resolve_state_bytes(job)}
        failures = restarts(job)
    finally:
        dep.stop(offsets.admin)
    events = counter_total(seen, "events")
    commands = sum(v for k, v in seen.items() if k.startswith("resolve-identity") and k.endswith(".commands"))
    past = counter_total(seen, RATE_COUNTER)
    assert first is not None and last_change is not None
    seconds = (quiet_at if quiet_at is not None else time.monotonic()) - first
    row = {
        "events": total,
        "past_identity": past,
        "committed": committed,
        "finished": quiet_at is not None,
        "seconds": round(seconds, 1),
        "events_per_s": round((total if quiet_at is not None else past) / seconds, 1) if seconds > 0 else None,
        "commands_per_event": round(commands / events, 2) if events else None,
        "home_state_bytes_per_event": round(counter_total(seen, "home_state_bytes") / events) if events else None,
        "cassandra_mutations_per_event": (
            round(counter_total(seen, "cassandra_mutations") / events, 2) if events else None
        ),
    }
    row["busy_ratio"], row["backpressured_ratio"] = _mean_ratios(busy)
    row["restarts"], row["checkpoints"], row["counters"] = failures, checkpoints, seen
    say(f"{label}: " + ", ".join(f"{k} {v}" for k, v in row.items() if not isinstance(v, dict)))
    return row


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="200,800", help="persons sharing the kiosk, comma separated")
    ap.add_argument("--per-person", type=int, default=7, help="events per person (kiosk login, login at home, views)")
    ap.add_argument("--parallelism", type=int, default=1)
    ap.add_argument("--checkpoint-ms", type=int, default=2000)
    ap.add_argument("--timeout-s", type=float, default=600, help="per run, after its first event past identity")
    ap.add_argument("--job-env", action="append", default=[], help="KEY=VALUE for the job (tuning experiments)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    try:
        args.sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        ap.error(f"--sizes {args.sizes!r}: comma-separated integers")
    if any(n < 1 for n in args.sizes) or args.per_person < 3 or args.parallelism < 1 or args.timeout_s <= 0:
        ap.error("--sizes and --parallelism at least 1, --per-person at least 3, --timeout-s positive")
    bad = [kv for kv in args.job_env if not kv.startswith("JOURNEY_") or "=" not in kv]
    if bad:
        ap.error(f"--job-env takes JOURNEY_NAME=value, got {bad}")
    args.env = dict(kv.split("=", 1) for kv in args.job_env)
    return args


def print_table(rows: list[dict[str, Any]]) -> None:
    print(
        f"{'persons':>8} {'variant':>8} {'events/s':>10} {'seconds':>8} {'finished':>9} {'cmds/event':>11} "
        f"{'state B/event':>14} {'writes/event':>13} {'ratio':>6}"
    )
    for r in rows:
        for name in ("own_device", "kiosk"):
            v = r[name]
            rate = "-" if v["events_per_s"] is None else f"{v['events_per_s']:,.1f}"
            print(
                f"{r['persons']:>8} {name.split('_')[0]:>8} {rate:>10} {v['seconds']:>8} "
                f"{'yes' if v['finished'] else 'no':>9} {v['commands_per_event']!s:>11} "
                f"{v['home_state_bytes_per_event']!s:>14} {v['cassandra_mutations_per_event']!s:>13}"
                + (f" {r['ratio']!s:>6}" if name == "kiosk" else "")
            )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    session = stack_session()
    offsets = Offsets()
    rows = []
    say(f"identity supernode in Flink (profiles job, parallelism {args.parallelism}; ratio = kiosk / own, same run)")
    try:
        for n in args.sizes:
            both = {}
            for shared in (False, True):
                label = f"{'kiosk' if shared else 'own'}{n}"
                both[shared] = measure(kiosk_normalized(n, args.per_person, shared), label, session, offsets, args)
            own, kiosk = both[False]["events_per_s"], both[True]["events_per_s"]
            # a kiosk run stopped by --timeout-s gives an upper bound of its rate, so of the ratio
            ratio = round(kiosk / own, 3) if own and kiosk else None
            rows.append({"persons": n, "own_device": both[False], "kiosk": both[True], "ratio": ratio})
    finally:
        offsets.close()
    print_table(rows)
    write_results(
        args.out,
        {
            "bench": "identity_supernode_flink",
            "events_per_person": args.per_person,
            "parallelism": args.parallelism,
            "checkpoint_ms": args.checkpoint_ms,
            "timeout_s": args.timeout_s,
            "job_env": args.env,
            "machine": machine(),
            "rows": rows,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
