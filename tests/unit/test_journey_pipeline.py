"""The journeys stage as the job runs it, without Flink: the identity router, one journey per
profile, moved parts delayed through a feedback queue, a watermark ``max seen - B - 1`` and an
idle tick at the end; compared field by field with the independent oracle
(``generator/journey_truth.py``) on generated journeys."""

from __future__ import annotations

import random
from typing import Any

import pytest

from generator.journey_truth import JourneySettings as OracleSettings
from generator.journey_truth import journey_truth
from models.journeys import JourneySettings, SessionOut, TriggerOut
from generator.erasure_truth import erased_nodes, erasures
from tests.journeys_harness import JourneyPipeline, generated_events
from generator.erasure_truth import without_erased
from tests.profiles_harness import SESSION_FIELDS, comparable_trigger

MIN = 60_000


def _arrival(events: list[dict[str, Any]], rnd: random.Random, bound_ms: int | None) -> list[dict[str, Any]]:
    if bound_ms is None:
        out = list(events)
        rnd.shuffle(out)
        return out
    keyed = sorted(events, key=lambda e: e["occurred_at"] + rnd.uniform(0, bound_ms))
    return keyed


@pytest.mark.parametrize(
    ("seed", "persons", "bound_ms"),
    [(31, 25, None), (42, 40, None), (31, 25, 10 * MIN), (42, 40, 10 * MIN), (43, 30, 10 * MIN)],
)
def test_sessions_and_triggers_equal_the_oracle_whatever_the_arrival_order_and_the_merges(
    seed: int, persons: int, bound_ms: int | None
) -> None:
    events = generated_events(seed, persons)
    rnd = random.Random(seed)
    pipe = JourneyPipeline(rnd, bound_ms)
    pipe.run(_arrival(events, rnd, bound_ms))
    full = journey_truth(events, (), OracleSettings())
    want = without_erased(full, events)  # the erased persons' are checked below
    gone = erased_nodes(events)
    assert gone, "the generated data has an erasure request"

    def erased(o: dict[str, Any]) -> bool:
        return tuple(o["stream"].split(":", 1)) in gone

    sessions: dict[str, dict[str, Any]] = {}
    triggers: dict[str, dict[str, Any]] = {}
    erased_outs: list[dict[str, Any]] = []
    for pid, o in pipe.outs:
        record = o.session if isinstance(o, SessionOut) else o.trigger if isinstance(o, TriggerOut) else None
        if record is not None and erased(record):
            erased_outs.append(record)
            continue
        if isinstance(o, SessionOut):
            sessions[o.session["session_id"]] = o.session
        elif isinstance(o, TriggerOut):
            assert o.trigger["trigger_id"] not in triggers, f"trigger twice: {o.trigger}"
            triggers[o.trigger["trigger_id"]] = o.trigger
    want_sessions = {s["session_id"]: s for s in want.sessions if s["closed"]}
    assert set(sessions) == set(want_sessions)
    for sid, s in sessions.items():
        got = {k: s[k] for k in SESSION_FIELDS}
        exp = {k: want_sessions[sid][k] for k in SESSION_FIELDS}
        assert got == exp, sid
    want_triggers = {t["trigger_id"]: t for t in want.triggers}
    assert set(triggers) == set(want_triggers)
    for tid, t in triggers.items():
        assert comparable_trigger(t) == comparable_trigger(want_triggers[tid]), tid
    assert {k for t in triggers.values() for k in [t["kind"]]} >= {"cart_abandoned", "cart_recovered", "high_intent"}
    # an erased person's sessions and triggers are the oracle's, decided up to the erasure only
    erased_at = {n: er.at for er in erasures(events) for n in er.nodes}
    oracle_records = {r.get("trigger_id") or r["session_id"]: r for r in full.sessions + full.triggers if erased(r)}
    for r in erased_outs:
        key = r.get("trigger_id") or r["session_id"]
        assert key in oracle_records, r
        decided = r["fired_at"] if "fired_at" in r else r["ended_at"] + JourneySettings().session_gap_ms
        assert decided <= erased_at[tuple(r["stream"].split(":", 1))], r
    if bound_ms is None:  # every merge came before every decision: the final profile holds each trigger
        for t in triggers.values():
            assert t["profile_id"] == pipe.router.store.profile_of[tuple(t["stream"].split(":", 1))]
