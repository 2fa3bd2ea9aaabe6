"""``make profiles``: make sure the identity + profiles job runs on the local cluster, with its state.

The profiles job is unbounded and its Flink state (the identity graph, the profiles' atoms)
must survive restarts: a fresh job with empty state that resumed from the committed Kafka
offsets would rebuild profiles from a part of the events and write lower versions than
Cassandra holds (ignored: the profiles would freeze). So a running job is left alone;
otherwise it is resumed from its newest retained checkpoint (e.g. after ``make down`` /
``make up``); only on a stack where it never ran is it started fresh (``local/jobs.py``).
Every ``JOURNEY_*`` variable in the environment is passed on.
"""

from __future__ import annotations

import sys

from local.jobs import main_for


def main(argv: list[str] | None = None) -> int:
    return main_for("profiles", argv, __doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
