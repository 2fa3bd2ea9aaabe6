"""Rule segments in the journeys operator on a Flink mini-cluster (thread mode, parallelism 2,
checkpoints): the router's commands for generated journeys, moves included, through the job's
JVM watermark assigner and the keyed broadcast operator with the shipped rules.

* Every profile's ``journey.segments`` sequence and the recorded Cassandra memberships equal
  the independent oracle (``generator/segment_truth.py``), time-only exits included.
* Rule updates on the broadcast input are answered by every subtask: a valid new version is
  accepted, a stale version and an invalid rule are rejected with their error, and nothing
  else changes.

A bounded job ends with the largest watermark, so every time-only change after the data would
fire; a last event 60 days after the data (a page view of a clock cookie, left out of the
comparison) puts the oracle's end of event time there too."""

from __future__ import annotations

import json
from base64 import b64decode, b64encode
from collections import defaultdict
from pathlib import Path

from pyflink.common import Types

from generator.segment_truth import load_rules as oracle_rules
from generator.segment_truth import segment_truth
from models.avro_codec import SchemaCatalog
from models.identity import IdentityRules, canonical_profile_id
from models.segments import DEFAULT_RULES_PATH, load_rules, rules_json
from operators.journeys import CONTROL_RESULTS_TAG, SEGMENTS_TAG
from state.journey_store import read_recorded_journeys
from generator.erasure_truth import erased_ids, erasures
from tests.journeys_harness import generated_events, journeys_on_mini_cluster, recorded_commands

OUT = Types.TUPLE([Types.STRING(), Types.STRING()])
DAY = 24 * 3600 * 1000
CLOCK = "clock-cookie"


def _events_with_a_clock(seed: int, persons: int) -> list[dict]:
    events = generated_events(seed=seed, persons=persons)
    page_view = next(e for e in events if e["event_type"] == "page_view")
    clock_ids = {k: None for k in page_view["identifiers"]} | {"cookie_id": CLOCK}
    last = events[-1]["occurred_at"] + 60 * DAY
    return events + [page_view | {"event_id": "clock", "identifiers": clock_ids, "occurred_at": last}]


def _run(tmp_path: Path, events: list[dict], control: list[str]) -> tuple[list[dict], list[dict], Path]:
    commands = recorded_commands(events, seed=5)
    store = tmp_path / "journeys.jsonl"
    _, journeys = journeys_on_mini_cluster(commands, store, segment_rules=load_rules(), control=control)

    def tagged(tag: str):
        return lambda b: (tag, b64encode(bytes(b)).decode())

    from operators.journeys import LATE_TAG, SESSIONS_TAG, TRIGGERS_TAG

    out = (
        journeys.get_side_output(SEGMENTS_TAG)
        .map(tagged("segment"), output_type=OUT)
        .union(
            journeys.get_side_output(CONTROL_RESULTS_TAG).map(tagged("control"), output_type=OUT),
            journeys.get_side_output(SESSIONS_TAG).map(tagged("other"), output_type=OUT),
            journeys.get_side_output(TRIGGERS_TAG).map(tagged("other"), output_type=OUT),
            journeys.get_side_output(LATE_TAG).map(tagged("other"), output_type=OUT),
            journeys.map(tagged("other"), output_type=OUT),
        )
    )
    catalog = SchemaCatalog.load()
    segments, answers = [], []
    with out.execute_and_collect("operator-test-segments") as results:
        for kind, text in results:
            if kind == "segment":
                segments.append(catalog.decode(b64decode(text))[1])
            elif kind == "control":
                answers.append(json.loads(b64decode(text)))
    return segments, answers, store


def _oracle_by_profile(events: list[dict]) -> dict[str, list[tuple]]:
    """The oracle's changes by canonical profile id (every person of the generator is one
    component; its profile id is the canonical id of the person's identifiers)."""
    rules = IdentityRules()
    adjacent: dict[tuple, set] = defaultdict(set)
    for e in events:
        nodes = [(t, v) for t, v in e["identifiers"].items() if v is not None and not rules.is_blocked(v)]
        for n in nodes:
            adjacent[n].update(nodes)

    def component(start: tuple) -> set:
        seen, todo = {start}, [start]
        while todo:
            for nb in adjacent[todo.pop()] - seen:
                seen.add(nb)
                todo.append(nb)
        return seen

    erased_at = {n: er.at for er in erasures(events) for n in er.nodes}
    want: dict[str, list[tuple]] = defaultdict(list)
    for c in segment_truth(events, oracle_rules(DEFAULT_RULES_PATH)):
        t, v = c["person"].split(":", 1)
        if (t, v) in erased_at and c["at"] > erased_at[(t, v)]:
            continue  # an erased person's: decided up to the erasure only (docs/privacy.md)
        pid = canonical_profile_id(component((t, v)), rules)
        want[pid].append((c["segment"], c["change"], c["rule_version"], c["at"], c["purpose"]))
    return dict(want)


def test_segment_changes_and_memberships_equal_the_oracle_on_the_mini_cluster(tmp_path: Path) -> None:
    events = _events_with_a_clock(seed=77, persons=20)
    segments, answers, store = _run(tmp_path, events, control=[])
    assert answers == []
    got: dict[str, list[tuple]] = defaultdict(list)
    for r in segments:
        got[r["profile_id"]].append((r["segment"], r["change"], r["rule_version"], r["at"], r["purpose"]))
    want = _oracle_by_profile(events)
    clock_pid = canonical_profile_id([("cookie_id", CLOCK)], IdentityRules())
    got.pop(clock_pid, None)
    want.pop(clock_pid, None)
    assert dict(got) == want
    assert any(c[1] == "exited" for cs in want.values() for c in cs)
    # Cassandra holds the memberships that are still on at the end
    gone = erased_ids(events)  # an erased person's memberships are gone from Cassandra
    members = {
        (pid, seg)
        for pid, cs in want.items()
        for seg in {c[0] for c in cs}
        if _member_at_end(cs, seg) and pid not in gone
    }
    recorded = read_recorded_journeys(store)
    assert {k for k in recorded.segments if k[0] != clock_pid} == members


def _member_at_end(changes: list[tuple], segment: str) -> bool:
    mine = [c for c in changes if c[0] == segment]
    return bool(mine) and mine[-1][1] == "entered"


def test_rule_updates_are_answered_by_every_subtask_and_only_valid_newer_versions_are_accepted(
    tmp_path: Path,
) -> None:
    events = _events_with_a_clock(seed=78, persons=4)
    shipped = {r.name: r for r in load_rules()}
    newer = shipped["engaged"].record() | {"version": 2, "expression": "sessions_7d >= 2"}
    stale = shipped["lapsed"].record() | {"expression": "purchases >= 9"}
    invalid = {"name": "vip", "version": 1, "purpose": "marketing", "expression": "visits > 3"}
    _, answers, _ = _run(tmp_path, events, control=[json.dumps(newer), json.dumps({"rules": [stale, invalid]}), "{"])
    by_subtask: dict[int, dict] = defaultdict(dict)
    for a in answers:
        by_subtask[a["subtask"]][a["rule"]] = a
    assert sorted(by_subtask) == [0, 1]
    for sub in by_subtask.values():
        assert sub["engaged"]["status"] == "accepted" and sub["engaged"]["version"] == 2
        assert sub["lapsed"]["status"] == "rejected" and "version must be higher" in sub["lapsed"]["error"]
        assert sub["vip"]["status"] == "rejected" and "unknown field(s) visits" in sub["vip"]["error"]
        assert sub[None]["status"] == "rejected" and "not YAML or JSON" in sub[None]["error"]
    final = [a["running"] for a in answers if a["rule"] is None]
    assert all(r["engaged"] == 2 and r["lapsed"] == 1 and "vip" not in r for r in final)
    assert rules_json([]) == '{"rules": []}'
