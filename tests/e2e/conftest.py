"""The real local stack for end-to-end tests: started here if it is not running, stopped after."""

from __future__ import annotations

import pytest

from local import stack

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
    yield BOOTSTRAP
    for name in reversed(started):
        stack.COMPONENTS[name].stop()
