"""``make ingest``: make sure the ingestion job runs on the local cluster (unbounded), with its state.

A running ingestion job is left alone; otherwise it is resumed from its newest retained
checkpoint (e.g. after ``make down`` / ``make up``); only on a stack where it never ran is it
started fresh, and a fresh start over input it already processed is refused (``local/jobs.py``
says why). Uses the stack's demo salt (``.stack/demo-pii-salt``) unless JOURNEY_PII_SALT is
set; every other ``JOURNEY_*`` variable in the environment is passed on.
"""

from __future__ import annotations

import sys

from local.jobs import main_for


def main(argv: list[str] | None = None) -> int:
    return main_for("ingestion", argv, __doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
