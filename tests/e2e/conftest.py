"""The real local stack for end-to-end tests: started here if it is not running, stopped after.

It is the test suite's own stack (``.stack/test``, ports + 10000; see the root conftest.py),
not the one ``make demo`` leaves running.
"""

from __future__ import annotations

import uuid

import pytest

from local import stack
from state.cassandra_schema import apply_schema, connect

BOOTSTRAP = f"127.0.0.1:{stack.KAFKA_PORT}"


@pytest.fixture(scope="session")
def local_stack():
    """Kafka + Flink standalone cluster (the components the ingestion job needs)."""
    needed = ["kafka", "flink"]
    started = []
    for name in needed:
        comp = stack.COMPONENTS[name]
        if not comp.healthy():
            comp.start()
            started.append(name)
    from local.flink_cluster import rest

    overview = rest("/overview")
    if overview["slots-available"] < 4:
        jobs = [f"{j['name']} ({j['jid']})" for j in rest("/jobs/overview")["jobs"] if j["state"] == "RUNNING"]
        pytest.fail(
            f"the test stack's Flink cluster ({stack.FLINK_REST_PORT}) has {overview['slots-available']} "
            f"free slots, the end-to-end tests need 4 (two jobs at parallelism 2): cancel the jobs left "
            f"running by an interrupted test run (web UI) or stop the test stack "
            f"(`make down`): {', '.join(jobs) or '-'}",
            pytrace=False,
        )
    yield BOOTSTRAP
    for name in reversed(started):
        stack.COMPONENTS[name].stop()


@pytest.fixture(scope="module", autouse=True)
def whole_flink_cluster():
    """Before each module: if the stack's Flink cluster is up, every TaskManager runs (one lost
    to an earlier fault test is replaced), so no test starts its jobs on half the slots."""
    if stack.flink_pids("standalonesession"):
        stack.ensure_taskmanagers()


@pytest.fixture(scope="session")
def cassandra():
    """The local Cassandra on 127.0.0.1:9042; stopped afterwards only if started here."""
    comp = stack.COMPONENTS["cassandra"]
    started = not comp.healthy()
    if started:
        comp.start()
    yield comp.address
    if started:
        comp.stop()


@pytest.fixture(scope="module")
def session(cassandra):
    s = connect("127.0.0.1", stack.CASSANDRA_PORT)
    yield s
    s.cluster.shutdown()


@pytest.fixture(scope="module")
def keyspace(session):
    """A keyspace of the test module's own with the project's schema, dropped afterwards."""
    ks = f"journey_test_{uuid.uuid4().hex[:12]}"
    apply_schema(session, keyspace=ks)
    yield ks
    session.execute(f"DROP KEYSPACE IF EXISTS {ks}", timeout=60)
