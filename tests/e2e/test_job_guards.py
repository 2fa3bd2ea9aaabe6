"""The jobs refuse to start, with a clear message, on settings that could lose output: a
Kafka transaction timeout not above checkpoint timeout + restart delay, or above the
broker's transaction.max.timeout.ms (read from the running broker); and the profiles job on
an identity topic that is missing or has more than one partition (its order would be lost)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from local.stack import ROOT

pytestmark = pytest.mark.e2e


def run_job(
    local_stack: str, module: str = "flink_jobs.ingestion", args: tuple[str, ...] = ("--bounded",), **env: str
) -> subprocess.CompletedProcess:
    full = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "JOURNEY_PII_SALT": "guard-test-salt-0123456",
        "JOURNEY_BOOTSTRAP_SERVERS": local_stack,
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", module, *args], env=full, cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_job_refuses_a_transaction_timeout_below_checkpoint_timeout_plus_restart_delay(local_stack) -> None:
    r = run_job(local_stack, JOURNEY_TRANSACTION_TIMEOUT_MS="60000", JOURNEY_CHECKPOINT_TIMEOUT_MS="60000")
    assert r.returncode == 2
    assert "transaction_timeout_ms=60000 must be above checkpoint_timeout_ms + restart_delay_ms" in r.stderr


def test_job_refuses_a_transaction_timeout_above_the_brokers_maximum(local_stack) -> None:
    # the config object allows it (its own default ceiling is raised), the running broker does not
    r = run_job(
        local_stack, JOURNEY_TRANSACTION_TIMEOUT_MS="1000000", JOURNEY_BROKER_TRANSACTION_MAX_TIMEOUT_MS="2000000"
    )
    assert r.returncode == 2
    assert "above the broker's transaction.max.timeout.ms=900000" in r.stderr


def test_job_without_a_pii_salt_names_the_variable(local_stack) -> None:
    r = run_job(local_stack, JOURNEY_PII_SALT="")
    assert r.returncode == 2
    assert "JOURNEY_PII_SALT" in r.stderr


def test_job_says_so_when_the_brokers_cannot_be_reached(local_stack) -> None:
    r = run_job(local_stack, JOURNEY_BOOTSTRAP_SERVERS="127.0.0.1:1")
    assert r.returncode == 2
    assert "cannot check the Kafka brokers" in r.stderr


@pytest.mark.parametrize("partitions", [None, 2])
def test_profiles_job_refuses_an_identity_topic_that_is_missing_or_has_more_than_one_partition(
    local_stack, partitions
) -> None:
    import uuid

    from k8s.topics import ensure_topics

    topic = f"guard{uuid.uuid4().hex[:8]}.identity"
    if partitions:
        ensure_topics(local_stack, partitions=partitions, topics=(topic,))
    r = run_job(local_stack, module="flink_jobs.profiles", args=(), JOURNEY_IDENTITY_TOPIC=topic)
    assert r.returncode == 2, r.stderr[-2000:]
    want = "does not exist" if partitions is None else "has 2 partitions; it must have exactly 1"
    assert f"profiles: configuration error: topic {topic!r} {want}" in r.stderr
