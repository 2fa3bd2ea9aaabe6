"""``make profiles``: make sure the identity + profiles job runs on the local cluster, with its state.

The profiles job is unbounded and its Flink state (the identity graph, the profiles' atoms)
must survive restarts: a fresh job with empty state that resumed from the committed Kafka
offsets would rebuild profiles from a part of the events and write lower versions than
Cassandra holds (ignored: the profiles would freeze). So:

* a RUNNING job with the configured name is left alone;
* otherwise the job is resumed from the newest retained checkpoint of the last job this
  checkout started (``.stack/demo/profiles-job``), e.g. after ``make down`` / ``make up``;
* only without any (a fresh stack, or after ``make reset``, which also empties Kafka and
  Cassandra) is it started fresh.

Every ``JOURNEY_*`` variable in the environment is passed on.
"""

from __future__ import annotations

import argparse
import os
import sys

from local import stack
from local.flink_cluster import REST, FlinkJobError, latest_checkpoint, rest, submit, wait_state

LAST_JOB = stack.STACK / "demo" / "profiles-job"


def running_job(name: str) -> str | None:
    for j in rest("/jobs/overview")["jobs"]:
        if j["name"] == name and j["state"] == "RUNNING":
            return j["jid"]
    return None


def ensure_profiles_job(job_env: dict[str, str] | None = None) -> tuple[str, str]:
    """The running profiles job's id and how it got there: "running", "resumed" or "started"."""
    job_env = dict(job_env or {})
    name = job_env.get("JOURNEY_JOB_NAME", "journey-profiles")
    jid = running_job(name)
    if jid is not None:
        return jid, "running"
    checkpoint = None
    if LAST_JOB.exists():
        checkpoint = latest_checkpoint(LAST_JOB.read_text().strip())
    sub = submit("flink_jobs.profiles", job_env, detached=True, savepoint=str(checkpoint) if checkpoint else None)
    LAST_JOB.parent.mkdir(parents=True, exist_ok=True)
    LAST_JOB.write_text(sub.job_id)
    wait_state(sub.job_id, {"RUNNING"}, timeout_s=120)
    return sub.job_id, "resumed" if checkpoint else "started"


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    for name in ("kafka", "cassandra", "flink"):
        stack.COMPONENTS[name].start()
    job_env = {k: v for k, v in os.environ.items() if k.startswith("JOURNEY_")}
    try:
        jid, how = ensure_profiles_job(job_env)
    except FlinkJobError as e:
        print(f"profiles: {e}", file=sys.stderr)
        return 2
    print(f"profiles job {jid} {how}: {REST}/#/job/running/{jid}/overview")
    return 0


if __name__ == "__main__":
    sys.exit(main())
