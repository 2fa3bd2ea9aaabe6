"""``make ingest``: submit the ingestion job to the local cluster (unbounded, detached).

Uses the checkout's demo salt (``.stack/demo-pii-salt``) unless JOURNEY_PII_SALT is set; every
other ``JOURNEY_*`` variable in the environment is passed on. Stop it from the web UI or with
``make down``.
"""

from __future__ import annotations

import argparse
import os
import sys

from local import stack
from local.demo import demo_salt
from local.flink_cluster import REST, FlinkJobError, submit


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bounded", action="store_true", help="stop at the offsets current at start")
    args = ap.parse_args(argv)
    for name in ("kafka", "flink"):
        stack.COMPONENTS[name].start()
    job_env = {k: v for k, v in os.environ.items() if k.startswith("JOURNEY_")}
    job_env.setdefault("JOURNEY_PII_SALT", demo_salt())
    try:
        sub = submit("flink_jobs.ingestion", job_env, args=["--bounded"] if args.bounded else [], detached=True)
    except FlinkJobError as e:
        print(f"ingest: {e}", file=sys.stderr)
        return 2
    print(f"ingestion job {sub.job_id} running: {REST}/#/job/running/{sub.job_id}/overview")
    return 0


if __name__ == "__main__":
    sys.exit(main())
