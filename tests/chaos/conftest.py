"""Fault-injection suite: options, the local stack, and the summary table.

``make chaos`` runs every scenario (``--chaos-all``); ``make test`` runs the TaskManager
kill-and-compare scenario only (the others are deselected, not skipped).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import cassandra, local_stack, session, whole_flink_cluster  # noqa: F401  (the shared stack fixtures)

RESULTS: list[dict] = []
REPORT = Path(__file__).resolve().parents[2] / "bench" / "results" / "chaos.json"


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


@pytest.fixture
def chaos_report():
    """Scenarios append one row each: name, kills, records compared, mismatches, recovery
    seconds; the component faults also how long the component was out, the job's restarts and
    the seconds until the outputs equalled the oracle."""
    return RESULTS


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ARG001
    if not RESULTS:
        return
    tr = terminalreporter
    tr.section("exactly-once under failure")
    tr.write_line(
        f"{'scenario':<34} {'faults':>6} {'compared':>9} {'mismatches':>10} {'recovery s':>18}"
        f" {'out s':>6} {'restarts':>8} {'exact after s':>13}"
    )
    for r in RESULTS:
        rec = ", ".join(f"{x:.1f}" for x in r["recovery_s"]) or "-"
        out = f"{r['outage_s']:.1f}" if "outage_s" in r else "-"
        caught = f"{r['caught_up_s']:.1f}" if "caught_up_s" in r else "-"
        tr.write_line(
            f"{r['scenario']:<34} {r['faults']:>6} {r['compared']:>9} {r['mismatches']:>10} {rec:>18}"
            f" {out:>6} {r.get('restarts', '-'):>8} {caught:>13}"
        )
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(RESULTS, indent=2))
    tr.write_line(f"written to {REPORT}")
