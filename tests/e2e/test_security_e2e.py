"""Security on real servers (docs/security.md): the auth variant of the local stack
(``JOURNEY_STACK_AUTH=1``: Kafka SASL_SSL with SCRAM-SHA-512, Cassandra ``PasswordAuthenticator``
and client encryption, both with certificates of a local CA), started here in a stack directory
and ports of its own (the test stack's + 500) and stopped and wiped afterwards.

With the credentials and the CA the generator produces, ``journey tail`` reads, and the
ingestion job (on the test stack's Flink cluster) reads the auth Kafka over TLS, checks the
erasure ledger in the auth Cassandra over TLS (on its TaskManagers too) and writes its outputs
exactly once (read back ``read_committed``, compared with the generator's ground truth). The
profiles job, with the same credentials and CA, reads that output from the auth Kafka and writes
the auth Cassandra over TLS: the profiles and identity links (read with an authenticated TLS
session) and journey.identity (read ``read_committed`` with the credentials) equal the offline
oracle's.
Without the credentials, or without the CA (the certificate is then checked against the
system's trust store and fails), each is refused with a one-line reason, in bounded time.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from generator.produce import produce
from generator.synth import generate
from k8s.topics import ensure_topics
from local import stack
from local.flink_cluster import FlinkJobError, cancel, submit, wait_state
from local.kafka_read import Record, read_committed
from models.config import CassandraAuth, KafkaAuth
from models.events import CHANNELS
from state.cassandra_schema import (
    CassandraAuthError,
    CassandraTlsError,
    CassandraUnavailableError,
    apply_schema,
    connect,
)
from tests.ingestion_harness import Topics, compare_with_truth
from tests.profiles_harness import ProfilesRun, wait_until_cassandra_equals_oracle, wait_until_identity_equals_oracle

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
OFFSET = stack.PORT_OFFSET + 500
AUTH_DIR = stack.STACK.parent / f"{stack.STACK.name}-auth"
KAFKA = f"127.0.0.1:{9092 + OFFSET}"
CASSANDRA_PORT = 9042 + OFFSET
CA = str(AUTH_DIR / "tls" / "ca.pem")  # made by the stack (local/tls.py)
KAFKA_AUTH = KafkaAuth("SASL_SSL", stack.KAFKA_SASL_MECHANISM, stack.KAFKA_USER, stack.KAFKA_PASSWORD, CA)
CASSANDRA_AUTH = CassandraAuth(stack.CASSANDRA_USER, stack.CASSANDRA_PASSWORD, ssl_ca=CA)
CREDENTIALS = {
    "JOURNEY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "JOURNEY_KAFKA_SASL_MECHANISM": stack.KAFKA_SASL_MECHANISM,
    "JOURNEY_KAFKA_SASL_USERNAME": stack.KAFKA_USER,
    "JOURNEY_KAFKA_SASL_PASSWORD": stack.KAFKA_PASSWORD,
    "JOURNEY_KAFKA_SSL_CA_LOCATION": CA,
    "JOURNEY_CASSANDRA_USERNAME": stack.CASSANDRA_USER,
    "JOURNEY_CASSANDRA_PASSWORD": stack.CASSANDRA_PASSWORD,
    "JOURNEY_CASSANDRA_SSL_CA": CA,
}
WRONG_PASSWORD = {**CREDENTIALS, "JOURNEY_KAFKA_SASL_PASSWORD": "not-the-password"}
#: TLS and the credentials, but not the CA: the servers' certificates are checked against the
#: system's trust store, which does not know the local CA
NO_CA = {
    **{k: v for k, v in CREDENTIALS.items() if k not in ("JOURNEY_KAFKA_SSL_CA_LOCATION", "JOURNEY_CASSANDRA_SSL_CA")},
    "JOURNEY_CASSANDRA_SSL": "true",
}
KAFKA_UNTRUSTED = "the TLS handshake failed, the broker's certificate was not accepted"
CASSANDRA_UNTRUSTED = "the TLS handshake failed, its certificate was not accepted"


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOURNEY_KAFKA_", "JOURNEY_CASSANDRA_"))}
    env.update(extra)
    return env


def _auth_stack(action: str, *components: str) -> subprocess.Popen[str]:
    env = _clean_env(JOURNEY_STACK_DIR=str(AUTH_DIR), JOURNEY_STACK_PORT_OFFSET=str(OFFSET), JOURNEY_STACK_AUTH="1")
    return subprocess.Popen(
        [sys.executable, "-m", "local.stack", action, *components],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture(scope="module")
def auth_stack() -> Iterator[None]:
    """Kafka and Cassandra with auth on (started side by side), wiped afterwards."""
    procs = [_auth_stack("up", name) for name in ("kafka", "cassandra")]
    try:
        outs = [p.communicate(timeout=240)[0] for p in procs]
        bad = [o for p, o in zip(procs, outs) if p.returncode != 0]
        assert not bad, f"the auth variant of the stack did not start:\n{''.join(bad)[-3000:]}"
        yield
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        down = _auth_stack("reset")  # stop both and delete their data and logs
        down.communicate(timeout=150)
        shutil.rmtree(AUTH_DIR, ignore_errors=True)


@pytest.fixture(scope="module")
def topics(auth_stack: None) -> Topics:
    prefix = f"sec{uuid.uuid4().hex[:8]}"
    inputs = tuple(f"{prefix}.events.{c}" for c in CHANNELS)
    t = Topics(prefix, inputs, f"{prefix}.normalized", f"{prefix}.dlq")
    ensure_topics(KAFKA, partitions=2, topics=(*t.inputs, t.normalized, t.dlq, f"{prefix}.cli"), auth=KAFKA_AUTH)
    return t


def _run(args: list[str], env: dict[str, str], timeout: float = 45) -> subprocess.CompletedProcess[str]:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    proc.elapsed = time.monotonic() - start  # type: ignore[attr-defined]
    return proc


def _wait_for(topic: str, count: int, timeout_s: float) -> list[Record]:
    deadline, records = time.monotonic() + timeout_s, []
    while time.monotonic() < deadline:
        records = read_committed(KAFKA, topic, auth=KAFKA_AUTH)
        if len(records) >= count:
            break
        time.sleep(2)
    return records


def test_cassandra_refuses_a_connection_without_or_with_wrong_credentials(auth_stack: None) -> None:
    with pytest.raises(CassandraAuthError, match="requires authentication.*JOURNEY_CASSANDRA_USERNAME"):
        connect("127.0.0.1", CASSANDRA_PORT, auth=CassandraAuth(ssl_ca=CA))
    with pytest.raises(CassandraAuthError, match="refused the credentials of 'journey'"):
        connect("127.0.0.1", CASSANDRA_PORT, auth=CassandraAuth(stack.CASSANDRA_USER, "not-the-password", ssl_ca=CA))
    session = connect("127.0.0.1", CASSANDRA_PORT, auth=CASSANDRA_AUTH)
    try:
        assert session.execute("SELECT release_version FROM system.local").one() is not None
        # the session really is encrypted: the driver's connection is an SSL socket
        assert isinstance(session.cluster.control_connection._connection._socket, ssl.SSLSocket)
    finally:
        session.cluster.shutdown()


def test_cassandra_refuses_a_client_without_the_ca_or_without_tls(auth_stack: None) -> None:
    for auth in (
        CassandraAuth(stack.CASSANDRA_USER, stack.CASSANDRA_PASSWORD, ssl=True),  # TLS, system trust store
        CassandraAuth(stack.CASSANDRA_USER, stack.CASSANDRA_PASSWORD, ssl_ca=str(AUTH_DIR / "tls" / "server.pem")),
    ):
        start = time.monotonic()
        with pytest.raises(CassandraTlsError) as e:
            connect("127.0.0.1", CASSANDRA_PORT, auth=auth, wait_s=30)  # never waited on
        assert CASSANDRA_UNTRUSTED in str(e.value) and "certificate verify failed" in str(e.value)
        assert "JOURNEY_CASSANDRA_SSL_CA" in str(e.value) and "\n" not in str(e.value)
        assert time.monotonic() - start < 10
    start = time.monotonic()
    with pytest.raises(
        CassandraUnavailableError, match="reset the connection.*if it takes TLS only, set JOURNEY_CASSANDRA"
    ):
        connect("127.0.0.1", CASSANDRA_PORT, auth=CassandraAuth(stack.CASSANDRA_USER, stack.CASSANDRA_PASSWORD))
    assert time.monotonic() - start < 10


def test_generator_produces_with_credentials_and_is_refused_without(topics: Topics) -> None:
    cli = f"{topics.prefix}.cli"
    args = ["-m", "generator", "--persons", "3", "--seed", "5", "--no-progress", "--bootstrap", KAFKA, "--topic", cli]
    ok = _run([*args, "--out", f"/tmp/journey-sec-{topics.prefix}-ok"], _clean_env(**CREDENTIALS))
    assert ok.returncode == 0, ok.stderr[-2000:]
    produced = int(ok.stdout.split("Produced ")[1].split()[0])
    assert produced > 0 and len(read_committed(KAFKA, cli, auth=KAFKA_AUTH)) == produced

    none = _run([*args, "--out", f"/tmp/journey-sec-{topics.prefix}-none"], _clean_env())
    assert none.returncode == 1
    assert "closed the connection" in none.stderr and "JOURNEY_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT" in none.stderr
    assert "SASL_SSL" in none.stderr
    no_ca = _run([*args, "--out", f"/tmp/journey-sec-{topics.prefix}-noca"], _clean_env(**NO_CA))
    assert no_ca.returncode == 1
    assert KAFKA_UNTRUSTED in no_ca.stderr and "certificate verify failed" in no_ca.stderr
    assert "set JOURNEY_KAFKA_SSL_CA_LOCATION" in no_ca.stderr
    assert no_ca.elapsed < 30  # type: ignore[attr-defined]
    wrong = _run([*args, "--out", f"/tmp/journey-sec-{topics.prefix}-wrong"], _clean_env(**WRONG_PASSWORD))
    assert wrong.returncode == 1
    assert "refused the credentials of 'journey' (SCRAM-SHA-512)" in wrong.stderr
    assert wrong.elapsed < 30  # type: ignore[attr-defined]  # bounded: the 10 s metadata wait, no hang
    assert len(read_committed(KAFKA, cli, auth=KAFKA_AUTH)) == produced  # nothing more got in


@pytest.fixture(scope="module")
def ingested(topics: Topics, local_stack: str) -> tuple[Topics, object, list[Record], list[Record]]:
    """The ingestion job on the test stack's Flink cluster, against the auth Kafka and Cassandra."""
    keyspace = f"journey_sec_{uuid.uuid4().hex[:8]}"
    session = connect("127.0.0.1", CASSANDRA_PORT, auth=CASSANDRA_AUTH)
    try:
        apply_schema(session, keyspace=keyspace)  # the job reads the erasure ledger there
    finally:
        session.cluster.shutdown()
    ds = generate(seed=20261201, persons=15)
    produce(ds, KAFKA, progress=False, topic_prefix=topics.prefix, config=KAFKA_AUTH.librdkafka())
    job_env = topics.job_env(
        KAFKA,
        JOURNEY_ERASURE_LEDGER="cassandra",
        JOURNEY_CASSANDRA_HOST="127.0.0.1",
        JOURNEY_CASSANDRA_PORT=str(CASSANDRA_PORT),
        JOURNEY_KEYSPACE=keyspace,
    )
    job = submit("flink_jobs.ingestion", {**job_env, **CREDENTIALS}, detached=True)
    try:
        wait_state(job.job_id, {"RUNNING"}, timeout_s=90)
        normalized = _wait_for(topics.normalized, len(ds.truth.valid_event_ids), 90)
        dlq = _wait_for(topics.dlq, len(ds.truth.bad_records), 30)
        time.sleep(2)  # another checkpoint or two: a duplicate would show now
        normalized = read_committed(KAFKA, topics.normalized, auth=KAFKA_AUTH)
        dlq = read_committed(KAFKA, topics.dlq, auth=KAFKA_AUTH)
    finally:
        cancel(job.job_id)
    return topics, ds, normalized, dlq


def test_ingestion_job_with_credentials_processes_everything_exactly_once(ingested) -> None:
    _, ds, normalized, dlq = ingested
    cmp = compare_with_truth(ds, normalized, dlq)  # type: ignore[arg-type]
    assert cmp.compared > 0 and cmp.mismatches == 0, cmp


def _refused_submission(env: dict[str, str]) -> str:
    """Submit the ingestion job expecting a refusal; its error and this submission's output."""
    log_file = stack.LOGS / "flink-submit.log"
    before = log_file.stat().st_size if log_file.exists() else 0
    with pytest.raises(FlinkJobError) as e:
        submit("flink_jobs.ingestion", env, detached=True, timeout_s=120)
    with open(log_file, "rb") as f:  # this submission's output only
        f.seek(before)
        return str(e.value) + f.read().decode("utf-8", "replace")


def test_ingestion_job_without_credentials_is_refused_before_it_starts(topics: Topics, local_stack: str) -> None:
    out = _refused_submission(topics.job_env(KAFKA, JOURNEY_JOB_NAME=f"test-ingestion-{topics.prefix}-nocreds"))
    assert "closed the connection" in out and "JOURNEY_KAFKA_SECURITY_PROTOCOL" in out


def test_ingestion_job_without_a_ca_is_refused_before_it_starts(topics: Topics, local_stack: str) -> None:
    base = topics.job_env(
        KAFKA,
        JOURNEY_ERASURE_LEDGER="cassandra",
        JOURNEY_CASSANDRA_HOST="127.0.0.1",
        JOURNEY_CASSANDRA_PORT=str(CASSANDRA_PORT),
    )
    # no Kafka CA: the brokers' check fails before the job is submitted
    kafka = _refused_submission({**base, **NO_CA, "JOURNEY_JOB_NAME": f"test-ingestion-{topics.prefix}-noca"})
    assert KAFKA_UNTRUSTED in kafka and "JOURNEY_KAFKA_SSL_CA_LOCATION" in kafka, kafka[-3000:]
    # the Kafka CA but no Cassandra CA: the erasure ledger's check fails
    cassandra = _refused_submission(
        {
            **base,
            **NO_CA,
            "JOURNEY_KAFKA_SSL_CA_LOCATION": CA,
            "JOURNEY_JOB_NAME": f"test-ingestion-{topics.prefix}-nocassandraca",
        }
    )
    assert CASSANDRA_UNTRUSTED in cassandra and "JOURNEY_CASSANDRA_SSL_CA" in cassandra, cassandra[-3000:]


def test_journey_tail_reads_with_credentials_and_exits_2_without(ingested) -> None:
    topics, _, normalized, _ = ingested
    args = ["-m", "journey_cli.main", "tail", topics.normalized, "--bootstrap", KAFKA]
    ok = _run(args, _clean_env(**CREDENTIALS))
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert len(ok.stdout.splitlines()) == len(normalized)
    for env, reason in (
        (_clean_env(), "closed the connection"),
        (_clean_env(**WRONG_PASSWORD), "refused the credentials of 'journey'"),
        (_clean_env(**NO_CA), KAFKA_UNTRUSTED),
    ):
        refused = _run(args, env)
        assert refused.returncode == 2 and refused.stdout == ""
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("journey tail: ") and reason in lines[0], refused.stderr
        assert refused.elapsed < 30  # type: ignore[attr-defined]


def test_profiles_job_with_credentials_writes_what_the_oracle_says(ingested) -> None:
    """The profiles job (parallelism 1) on the test stack's Flink cluster with the credentials and
    the CA: it reads the ingestion job's journey.normalized from the auth Kafka and writes the
    auth Cassandra (a keyspace of its own) and journey.identity. Cassandra, read with an
    authenticated TLS session, and journey.identity, read ``read_committed`` with the
    credentials, equal the offline oracle over the normalized events."""
    topics = ingested[0]
    session = connect("127.0.0.1", CASSANDRA_PORT, auth=CASSANDRA_AUTH)
    try:
        assert isinstance(session.cluster.control_connection._connection._socket, ssl.SSLSocket)
        run = ProfilesRun.create(KAFKA, topics, session, auth=KAFKA_AUTH)
        events = run.normalized_events(KAFKA, auth=KAFKA_AUTH)
        assert events
        job_env = run.job_env(
            KAFKA,
            JOURNEY_PARALLELISM="1",
            JOURNEY_CASSANDRA_HOST="127.0.0.1",
            JOURNEY_CASSANDRA_PORT=str(CASSANDRA_PORT),
        )
        job = submit("flink_jobs.profiles", {**job_env, **CREDENTIALS}, detached=True)
        try:
            wait_state(job.job_id, {"RUNNING"}, timeout_s=90)
            diff, seconds = wait_until_cassandra_equals_oracle(session, run.keyspace, events, timeout_s=120)
            assert diff == [], f"Cassandra not equal to the oracle after {seconds:.0f} s: {diff}"
            # journey.identity is committed with the checkpoints: the last one or two may be due
            identity, records = wait_until_identity_equals_oracle(KAFKA, run, events, 20, auth=KAFKA_AUTH)
            assert identity == []
            assert any(r["kind"] == "profile_merged" for r in records), "the data set should make profiles merge"
        finally:
            cancel(job.job_id)
        assert session.execute(f"SELECT count(*) FROM {run.keyspace}.profiles").one()[0] > 0
    finally:
        session.cluster.shutdown()
