"""Ingestion job: Kafka journey.events.* -> decode/validate -> normalize -> dedupe -> Kafka.

Wiring only; the logic is in models/ and operators/. ``build_ingestion`` takes the raw
stream as a parameter, so tests feed it from a collection and production from Kafka.

Run locally (after ``make up``)::

    JOURNEY_PII_SALT=... .venv/bin/python -m flink_jobs.ingestion --bounded
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Callable, Iterable

from pyflink.common import Types
from pyflink.datastream import DataStream

from models.config import ConfigError, IngestConfig
from models.ingest import IngestSettings
from operators.dedupe import DedupeByEventId
from operators.ingest import BYTES, DLQ_TAG, KEYED_EVENT_TYPE, DecodeValidateNormalize


@dataclass(frozen=True)
class IngestionStreams:
    normalized: DataStream  # NormalizedEvent bytes, one per unique valid event
    dead_letters: DataStream  # DeadLetter bytes, one per rejected record


def build_ingestion(
    raw: DataStream, cfg: IngestConfig, ledger: Callable[[], Iterable[str]] | None = None
) -> IngestionStreams:
    """Wire the ingestion operators onto a stream of ``RAW_RECORD_TYPE`` rows (``ledger``: the
    erasure ledger's reader, default none; the job passes Cassandra's, docs/privacy.md)."""
    settings = IngestSettings.of(cfg)
    outcomes = (
        raw.process(DecodeValidateNormalize(settings, ledger), output_type=KEYED_EVENT_TYPE)
        .name("decode-validate-normalize")
        .uid("decode-validate-normalize")
    )
    unique = (
        outcomes.key_by(lambda kv: kv[0], key_type=Types.STRING())
        .process(DedupeByEventId(cfg.dedupe_ttl_ms), output_type=BYTES)
        .name("dedupe-by-event-id")
        .uid("dedupe-by-event-id")
    )
    return IngestionStreams(unique, unique.get_side_output(DLQ_TAG))


def parse_args(argv: list[str] | None) -> IngestConfig:
    ap = argparse.ArgumentParser(description="Journey ingestion job (config from JOURNEY_* env vars).")
    ap.add_argument("--bounded", action="store_true", help="stop at the offsets current at start")
    ap.add_argument("--parallelism", type=int)
    ap.add_argument("--job-name")
    ap.add_argument("--no-rocksdb", action="store_true", help="heap state backend (tests)")
    args = ap.parse_args(argv)
    overrides: dict[str, object] = {}
    if args.bounded:
        overrides["bounded"] = True
    if args.parallelism:
        overrides["parallelism"] = args.parallelism
    if args.job_name:
        overrides["job_name"] = args.job_name
    if args.no_rocksdb:
        overrides["rocksdb"] = False
    return IngestConfig.from_env(None, **overrides)


def main(argv: list[str] | None = None) -> int:
    from flink_jobs.kafka_io import check_against_broker

    from state.erasure_store import CassandraLedger, LedgerUnavailable

    try:
        cfg = parse_args(argv)
        check_against_broker(cfg)
        if cfg.erasure_ledger != "off":  # a job that cannot read it must not start
            CassandraLedger(*cfg.cassandra_target()).check()  # (check() never waits)
    except (ConfigError, LedgerUnavailable) as e:
        print(f"ingestion: configuration error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # broker unreachable: say so before Flink hides it in a stack trace
        print(f"ingestion: cannot check the Kafka brokers at the configured bootstrap servers: {e}", file=sys.stderr)
        return 2
    run(cfg)
    return 0


def run(cfg: IngestConfig, transform_raw: Callable[[DataStream], DataStream] | None = None) -> None:
    """Kafka -> the ingestion operators -> Kafka, executed (blocks until the job ends).

    ``transform_raw`` may put something in front of the operators (fault-injection tests).
    """
    from flink_jobs.env import make_env
    from flink_jobs.kafka_io import raw_kafka_source, sink_bytes

    from state.erasure_store import CassandraLedger

    env, t_env = make_env(cfg)
    raw = raw_kafka_source(t_env, cfg)
    ledger = CassandraLedger(*cfg.cassandra_target()) if cfg.erasure_ledger != "off" else None
    streams = build_ingestion(transform_raw(raw) if transform_raw else raw, cfg, ledger)
    sink_bytes(streams.normalized, cfg, cfg.output_topic)
    sink_bytes(streams.dead_letters, cfg, cfg.dlq_topic)
    env.execute(cfg.job_name)


if __name__ == "__main__":
    sys.exit(main())
