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
    from flink_jobs.env import make_env
    from flink_jobs.ingestion import build_ingestion
    from flink_jobs.kafka_io import raw_kafka_source, sink_bytes
    from models.config import IngestConfig
    from operators.ingest import RAW_RECORD_TYPE

    cfg = IngestConfig.from_env()
    delay_s = float(os.environ["SLOW_MS"]) / 1000  # read here, in the client: the lambda carries the value

    def slow(row):
        time.sleep(delay_s)
        return row

    env, t_env = make_env(cfg)
    raw = raw_kafka_source(t_env, cfg).map(slow, output_type=RAW_RECORD_TYPE).name("slow-map")
    streams = build_ingestion(raw, cfg)
    sink_bytes(streams.normalized, cfg, cfg.output_topic)
    sink_bytes(streams.dead_letters, cfg, cfg.dlq_topic)
    env.execute(cfg.job_name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
