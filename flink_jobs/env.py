"""Execution environment from a validated config: exactly-once checkpoints, restarts, jars."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pyflink.common import Configuration
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment

ROOT = Path(__file__).resolve().parent.parent
LOCAL_JAR_DIR = ROOT / ".stack" / "lib" / "flink"


def default_jars() -> tuple[str, ...]:
    """Connector jars fetched by ``make setup`` (local runs); the k8s image sets JOURNEY_JARS."""
    jars = tuple(sorted(f"file://{p}" for p in LOCAL_JAR_DIR.glob("*.jar")))
    if not jars:
        raise FileNotFoundError(f"no connector jars in {LOCAL_JAR_DIR}: run `make setup` or set JOURNEY_JARS")
    return jars


def embedded_python_path() -> str:
    """PYTHONPATH for Python workers: the project root and, inside a venv, its site-packages.

    Thread mode embeds CPython in the JVM (pemja); that interpreter starts from the base
    installation and does not see a virtualenv, so its packages are passed explicitly.
    """
    paths = [str(ROOT)]
    if sys.prefix != sys.base_prefix:
        paths += [p for p in sys.path if p.startswith(sys.prefix) and p.endswith("site-packages")]
    old = os.environ.get("PYTHONPATH")
    return os.pathsep.join(paths + ([old] if old else []))


def make_env(cfg, python_mode: str = "thread") -> tuple[StreamExecutionEnvironment, StreamTableEnvironment]:
    """Environment with EXACTLY_ONCE checkpoints every ``cfg.checkpoint_interval_ms`` and
    failure-rate restarts.

    ``cfg`` is any config with the checkpoint/restart fields of
    :class:`models.config.IngestConfig`.
    """
    # must be in the environment before the JVM (local mini-cluster) starts
    os.environ["PYTHONPATH"] = embedded_python_path()
    conf = Configuration()
    conf.set_string("pipeline.jars", ";".join(cfg.jars or default_jars()))
    conf.set_string("pipeline.name", cfg.job_name)
    conf.set_string("execution.checkpointing.interval", f"{cfg.checkpoint_interval_ms} ms")
    conf.set_string("execution.checkpointing.mode", "EXACTLY_ONCE")
    conf.set_string("execution.checkpointing.timeout", f"{cfg.checkpoint_timeout_ms} ms")
    conf.set_string("execution.checkpointing.min-pause", f"{min(500, cfg.checkpoint_interval_ms)} ms")
    conf.set_string("execution.checkpointing.externalized-checkpoint-retention", "RETAIN_ON_CANCELLATION")
    conf.set_string("execution.checkpointing.tolerable-failed-checkpoints", "3")
    # barriers overtake buffered records: a checkpoint under backpressure (a backlog, a slow
    # Python operator downstream) completes in about the time of one record, not of the queue
    conf.set_string("execution.checkpointing.unaligned.enabled", "true" if cfg.unaligned_checkpoints else "false")
    # failure-rate, not fixed-delay: a fixed number of attempts counts every failure over the
    # job's whole life, so a long-running job would eventually fail for good after its
    # N-th lost TaskManager; this gives up only on a crash loop (0 attempts: never restart)
    if cfg.restart_attempts == 0:
        conf.set_string("restart-strategy.type", "none")
    else:
        conf.set_string("restart-strategy.type", "failure-rate")
        conf.set_string("restart-strategy.failure-rate.max-failures-per-interval", str(cfg.restart_attempts))
        conf.set_string("restart-strategy.failure-rate.failure-rate-interval", f"{cfg.restart_interval_ms} ms")
        conf.set_string("restart-strategy.failure-rate.delay", f"{cfg.restart_delay_ms} ms")
    conf.set_string("state.backend.type", "rocksdb" if cfg.rocksdb else "hashmap")
    if cfg.rocksdb:
        conf.set_string("execution.checkpointing.incremental", "true")
    conf.set_string("python.execution-mode", python_mode)
    # the interpreter (and so the site-packages) the Python workers use: ours, unless the
    # cluster config says otherwise (k8s image)
    conf.set_string("python.executable", os.environ.get("JOURNEY_PYTHON", sys.executable))
    conf.set_string("python.client.executable", os.environ.get("JOURNEY_PYTHON", sys.executable))
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_parallelism(cfg.parallelism)
    t_env = StreamTableEnvironment.create(env)
    return env, t_env
