"""Project root on sys.path for every test (pytest's pythonpath does this too), the test
suite's own local stacks, the order of the test modules and the chaos summary.

The end-to-end and chaos tests start (and afterwards stop) a stack of their own: data and logs
in ``.stack/test``, every port shifted by 10000 (Kafka 19092, Cassandra 19042, Flink web UI
18081). So ``make test`` never touches, and never waits for, what ``make demo`` built and left
running on the default ports; both can be up at once. Set before ``local.stack`` is imported.

``make test`` runs the suite on two pytest-xdist workers, one test module at a time each
(``--dist loadfile``). Worker ``gwN`` (N > 0) gets a stack of its own beside the first one:
``<stack dir>-gwN``, ports shifted 10000·N further (the second worker's Kafka is on 29092, its
web UI on 28081). The slowest modules are handed out first (:data:`SLOW_MODULES`), so the two
workers end at about the same time.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("JOURNEY_STACK_DIR", str(Path(__file__).resolve().parent / ".stack" / "test"))
os.environ.setdefault("JOURNEY_STACK_PORT_OFFSET", "10000")


def _worker_stack() -> None:
    """Worker gwN > 0 of a pytest-xdist run: a stack directory and ports of its own."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    n = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    if n == 0 or os.environ.get("JOURNEY_STACK_WORKER") == worker:
        return
    os.environ["JOURNEY_STACK_DIR"] = f"{os.environ['JOURNEY_STACK_DIR']}-gw{n}"
    os.environ["JOURNEY_STACK_PORT_OFFSET"] = str(int(os.environ["JOURNEY_STACK_PORT_OFFSET"]) + 10000 * n)
    os.environ["JOURNEY_STACK_WORKER"] = worker  # done once per process


_worker_stack()

#: the slowest test modules, slowest first (seconds in a full run here: chaos 614, command
#: sequence 567, state upgrade 533, security 289, profiles 218, erasure 208, journeys 123); the
#: rest keeps its collection order after them
SLOW_MODULES = (
    "tests/chaos/test_exactly_once_under_failure.py",
    "tests/e2e/test_command_sequence.py",
    "tests/e2e/test_state_upgrade.py",
    "tests/e2e/test_security_e2e.py",
    "tests/e2e/test_profiles_e2e.py",
    "tests/e2e/test_erasure_e2e.py",
    "tests/e2e/test_journeys_e2e.py",
)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:  # noqa: ARG001
    """The slowest modules first (a stable sort: every other item keeps its place)."""
    rank = {m: i for i, m in enumerate(SLOW_MODULES)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


# ---- the chaos summary (tests/chaos): rows come with the test reports, from any worker --------

CHAOS_ROWS: list[dict] = []
CHAOS_REPORT = Path(__file__).resolve().parent / "bench" / "results" / "chaos.json"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call":
        CHAOS_ROWS.extend(value for name, value in report.user_properties if name == "chaos_row")


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ARG001
    if not CHAOS_ROWS or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    import json

    tr = terminalreporter
    tr.section("exactly-once under failure")
    tr.write_line(
        f"{'scenario':<34} {'faults':>6} {'compared':>9} {'mismatches':>10} {'recovery s':>18}"
        f" {'out s':>6} {'restarts':>8} {'exact after s':>13}"
    )
    for r in CHAOS_ROWS:
        rec = ", ".join(f"{x:.1f}" for x in r["recovery_s"]) or "-"
        out = f"{r['outage_s']:.1f}" if "outage_s" in r else "-"
        caught = f"{r['caught_up_s']:.1f}" if "caught_up_s" in r else "-"
        tr.write_line(
            f"{r['scenario']:<34} {r['faults']:>6} {r['compared']:>9} {r['mismatches']:>10} {rec:>18}"
            f" {out:>6} {r.get('restarts', '-'):>8} {caught:>13}"
        )
    CHAOS_REPORT.parent.mkdir(parents=True, exist_ok=True)
    CHAOS_REPORT.write_text(json.dumps(CHAOS_ROWS, indent=2))
    tr.write_line(f"written to {CHAOS_REPORT}")
