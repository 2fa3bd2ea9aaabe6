"""The ingestion job with an artificially slow Python operator in front (fault injection only).

``python -m tests.chaos.slow_ingestion`` (submitted with ``flink run -pym``) reads the same
``JOURNEY_*`` settings as the ingestion job, plus ``SLOW_MS``: milliseconds each raw record
spends in the ``slow-map`` operator before decoding.
"""

from __future__ import annotations

import os
import sys
import time


def main() -> int:
    from flink_jobs.ingestion import run
    from models.config import IngestConfig
    from operators.ingest import RAW_RECORD_TYPE

    delay_s = float(os.environ["SLOW_MS"]) / 1000  # read here, in the client: the function carries the value

    def slow(row):
        time.sleep(delay_s)
        return row

    run(IngestConfig.from_env(), lambda raw: raw.map(slow, output_type=RAW_RECORD_TYPE).name("slow-map"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
