"""Fault-injection suite: options, the local stack, and the summary rows (printed by the root
conftest.py).

``make chaos`` runs every scenario (``--chaos-all``); ``make test`` runs the TaskManager
kill-and-compare scenario only (the others are deselected, not skipped).
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import cassandra, local_stack, session, whole_flink_cluster  # noqa: F401  (the shared stack fixtures)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--chaos-all", action="store_true", help="run the long fault-injection scenarios too")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--chaos-all"):
        return
    keep = [i for i in items if "chaos_long" not in i.keywords]
    dropped = [i for i in items if "chaos_long" in i.keywords]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


class _Rows(list):
    """The scenarios' summary rows: each goes with its test's report (``user_properties``), so
    the root conftest.py prints the table and writes ``bench/results/chaos.json`` whichever
    pytest-xdist worker ran the scenario."""

    def __init__(self, node: pytest.Item) -> None:
        super().__init__()
        self.node = node

    def append(self, row: dict) -> None:
        super().append(row)
        self.node.user_properties.append(("chaos_row", row))


@pytest.fixture
def chaos_report(request):
    """Scenarios append one row each: name, kills, records compared, mismatches, recovery
    seconds; the component faults also how long the component was out, the job's restarts and
    the seconds until the outputs equalled the oracle."""
    return _Rows(request.node)
