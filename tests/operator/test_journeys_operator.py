"""The journeys operator on a Flink mini-cluster (thread mode, parallelism 2, checkpoints): the
router's commands for generated journeys, moved parts included, through the job's JVM
watermark assigner and the operator with a recording store. Its published sessions and
triggers and the recorded Cassandra rows equal the independent oracle, and when the bounded
input ends (the watermark jumps to its end) no profile keeps journey state or timers.

A bounded job ends with the largest watermark, so every due time fires; the oracle stops at the
newest event. A last event 30 days after the data (a page view on its own cookie, left out of
the comparison) makes both decide everything."""

from __future__ import annotations

from base64 import b64decode, b64encode
from pathlib import Path

from pyflink.common import Types

from generator.journey_truth import JourneySettings as OracleSettings
from generator.journey_truth import journey_truth
from models.avro_codec import SchemaCatalog
from operators.journeys import LATE_TAG, REPORT_TAG, SESSIONS_TAG, TRIGGERS_TAG
from state.journey_store import read_recorded_journeys
from tests.journeys_harness import generated_events, journeys_on_mini_cluster, recorded_commands
from generator.erasure_truth import without_erased
from tests.profiles_harness import SESSION_FIELDS, comparable_trigger, latest_sessions

AS_TEXT = Types.TUPLE([Types.STRING(), Types.STRING(), Types.LONG(), Types.STRING(), Types.STRING(), Types.LONG()])
OUT = Types.TUPLE([Types.STRING(), Types.STRING()])
CLOCK = "clock-cookie"
DAY = 24 * 3600 * 1000


def test_journeys_operator_publishes_what_the_oracle_says_and_leaves_nothing_behind(tmp_path: Path) -> None:
    events = generated_events(seed=77, persons=20)
    page_view = next(e for e in events if e["event_type"] == "page_view")
    clock_ids = {k: None for k in page_view["identifiers"]} | {"cookie_id": CLOCK}
    events.append(
        page_view | {"event_id": "clock", "identifiers": clock_ids, "occurred_at": events[-1]["occurred_at"] + 30 * DAY}
    )
    commands = recorded_commands(events, seed=77)
    assert any(c[1] == "journey" for c in commands), "no moved journey part: merges untested"
    store = tmp_path / "journeys.jsonl"
    _, journeys = journeys_on_mini_cluster(commands, store, report=True)

    def tagged(tag: str):
        return lambda b: (tag, b64encode(bytes(b)).decode())

    out = (
        journeys.get_side_output(SESSIONS_TAG)
        .map(tagged("session"), output_type=OUT)
        .union(
            journeys.get_side_output(TRIGGERS_TAG).map(tagged("trigger"), output_type=OUT),
            journeys.get_side_output(LATE_TAG).map(tagged("late"), output_type=OUT),
            journeys.map(tagged("move"), output_type=OUT),  # moved parts: already in the commands
            journeys.get_side_output(REPORT_TAG).map(lambda r: ("report", f"{r[0]}|{r[1]}|{r[2]}"), output_type=OUT),
        )
    )
    catalog = SchemaCatalog.load()
    got: dict[str, list] = {"session": [], "trigger": [], "late": [], "move": []}
    last_report: dict[str, tuple[bool, int]] = {}
    with out.execute_and_collect("operator-test-journeys") as results:
        for kind, text in results:
            if kind == "report":
                pid, holds, due = text.rsplit("|", 2)
                last_report[pid] = (holds == "True", int(due))
            else:
                got[kind].append(text if kind == "move" else catalog.decode(b64decode(text))[1])

    want = journey_truth(events, (), OracleSettings())
    published = {t["trigger_id"]: comparable_trigger(t) for t in got["trigger"]}
    assert len(published) == len(got["trigger"]), "a trigger twice"
    assert published == {t["trigger_id"]: comparable_trigger(t) for t in want.triggers if not t["suppressed"]}
    mine = [s for s in got["session"] if s["stream"] != f"cookie_id:{CLOCK}"]
    sessions = {sid: {k: s[k] for k in SESSION_FIELDS} for sid, s in latest_sessions(mine).items()}
    assert sessions == {s["session_id"]: {k: s[k] for k in SESSION_FIELDS} for s in want.sessions if s["closed"]}
    assert got["late"] == []
    recorded = read_recorded_journeys(store)
    kept = without_erased(want, events)  # an erased person's rows are gone (docs/privacy.md)
    assert len(kept.triggers) < len(want.triggers)
    assert {k[1]: comparable_trigger(t) for k, t in recorded.triggers.items()} == {
        t["trigger_id"]: comparable_trigger(t) for t in kept.triggers
    }
    assert {c["cart_id"]: c["status"] for c in recorded.carts.values()} == {
        c["cart_id"]: c["status"] for c in kept.carts
    }
    # the end of input moves event time to its end: every session closed and dropped, every
    # cart decided and dropped, no event waiting, no timer
    assert last_report and all(report == (False, -1) for report in last_report.values()), [
        (p, r) for p, r in last_report.items() if r != (False, -1)
    ][:5]
