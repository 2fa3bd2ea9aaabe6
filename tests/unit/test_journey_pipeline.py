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
from models.identity import IdentityRules
from models.identity_router import CommandKind, IdentityRouter
from models.journeys import Journey, JourneySettings, JourneyState, Out, SessionOut, TriggerOut, fact_of, node_key
from state.records import JOURNEY_STATE_CODEC
from tests.profiles_harness import generated_by_person

RULES = IdentityRules()
MIN = 60_000
NEVER = -(2**63)


class JourneyPipeline:
    def __init__(self, rnd: random.Random, bound_ms: int | None, max_delay: int = 8) -> None:
        self.rnd, self.bound, self.max_delay = rnd, bound_ms, max_delay
        self.settings = JourneySettings()
        self.router = IdentityRouter(RULES)
        self.states: dict[str, JourneyState] = {}
        self.feedback: list[tuple[int, tuple[str, str], bytes]] = []
        self.outs: list[tuple[str, Out]] = []
        self.now = 0
        self.max_seen: int | None = None

    def watermark(self) -> int:
        if self.bound is None or self.max_seen is None:
            return NEVER
        return self.max_seen - self.bound - 1

    def _journey(self, pid: str) -> Journey:
        return Journey(pid, self.states.setdefault(pid, JourneyState()), self.settings)

    def _apply(self, cmd, event: dict[str, Any] | None) -> None:
        if cmd.kind is CommandKind.TOUCH and not (cmd.evict or cmd.incoming):
            return
        j, w = self._journey(cmd.profile_id), self.watermark()
        outs: list[Out] = []
        if cmd.incoming:
            j.expect({node_key(n): k for n, k in cmd.incoming})
        if cmd.evict:
            parts, deletions = j.split_off(cmd.evict, everything=cmd.members == ())
            outs += deletions
            for node, part in parts:
                delay = self.now + self.rnd.randint(0, self.max_delay)
                self.feedback.append((delay, node, JOURNEY_STATE_CODEC.encode(part)))
        if cmd.kind is CommandKind.EVENT:
            outs += j.on_event(fact_of(event, cmd.atom, RULES), w)
        elif cmd.kind is CommandKind.JOURNEY:
            outs += j.absorb(cmd.atom, JOURNEY_STATE_CODEC.decode(cmd.payload))
        outs += j.advance(w)
        self.outs += [(cmd.profile_id, o) for o in outs]

    def _deliver(self, everything: bool = False) -> None:
        due = [f for f in self.feedback if everything or f[0] <= self.now]
        self.feedback = [f for f in self.feedback if f not in due]
        self.rnd.shuffle(due)
        for _, node, part in due:
            cmd = self.router.route_journey(node, part)
            assert cmd is not None
            self._apply(cmd, None)

    def _timers(self) -> None:
        w = self.watermark()
        for pid, st in self.states.items():
            j = Journey(pid, st, self.settings)
            due = j.next_due()
            if due is not None and due <= w:
                self.outs += [(pid, o) for o in j.advance(w)]

    def run(self, events: list[dict[str, Any]]) -> None:
        for e in events:
            self.now += 1
            self._deliver()
            self.max_seen = e["occurred_at"] if self.max_seen is None else max(self.max_seen, e["occurred_at"])
            for cmd in self.router.route_event(e, payload=e).commands:
                self._apply(cmd, e)
            self._timers()
        while self.feedback:
            self.now += self.max_delay + 1
            self._deliver(everything=True)
            self._timers()
        # the idle tick: event time complete up to the newest event
        self.bound = 0
        assert self.max_seen is not None
        self.max_seen += 1
        self._timers()
        assert not self.router.store.inflight, "every moved part arrived"


def _arrival(events: list[dict[str, Any]], rnd: random.Random, bound_ms: int | None) -> list[dict[str, Any]]:
    if bound_ms is None:
        out = list(events)
        rnd.shuffle(out)
        return out
    keyed = sorted(events, key=lambda e: e["occurred_at"] + rnd.uniform(0, bound_ms))
    return keyed


def _norm_trigger(t: dict[str, Any]) -> dict[str, Any]:
    t = {k: v for k, v in t.items() if k != "profile_id"}
    if t.get("items") is not None:
        t["items"] = [
            (i["product_id"], i["quantity"], i["unit_price"]) if isinstance(i, dict) else tuple(i) for i in t["items"]
        ]
    return t


SESSION_FIELDS = (
    "session_id",
    "stream",
    "started_at",
    "ended_at",
    "duration_ms",
    "events",
    "page_views",
    "product_views",
    "dwell_ms",
    "searches",
    "cart_adds",
    "checkouts",
    "purchases",
    "revenue",
    "channels",
    "first_referrer",
    "first_campaign",
    "engagement",
)


@pytest.mark.parametrize(
    ("seed", "persons", "bound_ms"),
    [(31, 25, None), (42, 40, None), (31, 25, 10 * MIN), (42, 40, 10 * MIN), (43, 30, 10 * MIN)],
)
def test_sessions_and_triggers_equal_the_oracle_whatever_the_arrival_order_and_the_merges(
    seed: int, persons: int, bound_ms: int | None
) -> None:
    by_person = generated_by_person(seed, persons, 14)
    events = sorted((e for evs in by_person.values() for e in evs), key=lambda e: (e["occurred_at"], e["event_id"]))
    rnd = random.Random(seed)
    pipe = JourneyPipeline(rnd, bound_ms)
    pipe.run(_arrival(events, rnd, bound_ms))
    want = journey_truth(events, (), OracleSettings())

    sessions: dict[str, dict[str, Any]] = {}
    triggers: dict[str, dict[str, Any]] = {}
    for pid, o in pipe.outs:
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
        assert _norm_trigger(t) == _norm_trigger(want_triggers[tid]), tid
    assert {k for t in triggers.values() for k in [t["kind"]]} >= {"cart_abandoned", "cart_recovered", "high_intent"}
    if bound_ms is None:  # every merge came before every decision: the final profile holds each trigger
        for t in triggers.values():
            assert t["profile_id"] == pipe.router.store.profile_of[tuple(t["stream"].split(":", 1))]
