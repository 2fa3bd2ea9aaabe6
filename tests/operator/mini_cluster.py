"""A local (mini-cluster) environment in thread mode, as the production jobs use."""

from __future__ import annotations

import os
import sys

from pyflink.common import Configuration
from pyflink.datastream import StreamExecutionEnvironment

from flink_jobs.env import embedded_python_path


def thread_mode_env(parallelism: int = 2, settings: dict[str, str] | None = None) -> StreamExecutionEnvironment:
    """``settings``: more Flink configuration (checkpoints, restart strategy)."""
    os.environ["PYTHONPATH"] = embedded_python_path()
    conf = Configuration()
    conf.set_string("python.execution-mode", "thread")
    conf.set_string("python.executable", sys.executable)
    # PyFlink fuses a keyed Python function with a following Python map and then reports a uid
    # "hash collision" for the fused operator; the production graphs have no such fusion.
    conf.set_string("python.operator-chaining.enabled", "false")
    for key, value in (settings or {}).items():
        conf.set_string(key, value)
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_parallelism(parallelism)
    return env
