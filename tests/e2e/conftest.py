"""The real local stack for end-to-end tests: started here if it is not running, stopped after."""

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
    if overview["slots-available"] < 2:
        jobs = [f"{j['name']} ({j['jid']})" for j in rest("/jobs/overview")["jobs"] if j["state"] == "RUNNING"]
        pytest.fail(f"the local Flink cluster has {overview['slots-available']} free slots, the end-to-end tests "
                    f"need 2: cancel the running jobs first (web UI, or `make down`), e.g. the profiles job "
                    f"`make demo` leaves running: {', '.join(jobs) or '-'}", pytrace=False)
    yield BOOTSTRAP
    for name in reversed(started):
        stack.COMPONENTS[name].stop()


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
