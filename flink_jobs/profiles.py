"""Identity + profiles job: Kafka journey.normalized -> resolve identity and fold profiles ->
Cassandra journey.profiles / identity_links (coalesced, idempotent, versioned writes).

Wiring only. The identity operator is one global subtask (a link can join any two
identifiers); the Cassandra writer is keyed by profile id at the job's parallelism.
"""

from __future__ import annotations

import argparse
import sys

from pyflink.common import Types
from pyflink.datastream import DataStream

from models.config import ConfigError, ProfilesConfig
from models.identity import IdentityRules
from operators.profile_writer import WriteProfiles
from operators.profiles import IDENTITY_KEY, PROFILE_ROW_TYPE, ResolveAndAggregate

BYTES = Types.PRIMITIVE_ARRAY(Types.BYTE())


def build_profiles(values: DataStream, cfg: ProfilesConfig, rules: IdentityRules | None = None) -> DataStream:
    """Wire the stage onto a stream of NormalizedEvent bytes; returns the (empty) writer output."""
    rows = (values.key_by(lambda _: IDENTITY_KEY, key_type=Types.STRING())
            .process(ResolveAndAggregate(rules or IdentityRules(), cfg.half_life_ms), output_type=PROFILE_ROW_TYPE)
            .name("resolve-identity-and-aggregate").uid("resolve-identity-and-aggregate")
            .set_parallelism(1))
    return (rows.key_by(lambda r: r[0], key_type=Types.STRING())
            .process(WriteProfiles(cfg.cassandra_host, cfg.cassandra_port, cfg.keyspace, cfg.coalesce_ms),
                     output_type=Types.STRING())
            .name("cassandra-profiles").uid("cassandra-profiles"))


def main(argv: list[str] | None = None) -> int:
    from flink_jobs.env import make_env
    from flink_jobs.kafka_io import raw_kafka_source

    ap = argparse.ArgumentParser(description="Journey identity + profiles job (config from JOURNEY_* env vars).")
    ap.add_argument("--bounded", action="store_true", help="stop at the offsets current at start")
    args = ap.parse_args(argv)
    try:
        cfg = ProfilesConfig.from_env(**({"bounded": True} if args.bounded else {}))
    except ConfigError as e:
        print(f"profiles: configuration error: {e}", file=sys.stderr)
        return 2
    env, t_env = make_env(cfg)
    values = (raw_kafka_source(t_env, cfg, event_time=True)
              .map(lambda r: bytes(r[0]), output_type=BYTES).name("normalized-value"))
    build_profiles(values, cfg).print().name("no-output")
    env.execute(cfg.job_name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
