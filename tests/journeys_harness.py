"""Shared by the journeys tests and the benchmark: the stage as the job runs it, without Flink
(the identity router, one journey per profile, moved parts delayed through a feedback queue, a
watermark ``max seen - B - 1`` and an idle tick at the end), and the router's commands for a
generated data set encoded as the job sends them."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from models.avro_codec import SchemaCatalog
from models.identity import IdentityRules
from models.identity_router import CommandKind, IdentityRouter
from models.journeys import Journey, JourneySettings, JourneyState, Out, PendingErase, fact_of
from models.profile_commands import encode_command
from models.segments import RuleSet, SegmentRule
from state.records import JOURNEY_STATE_CODEC
from tests.profiles_harness import generated_by_person

RULES = IdentityRules()
NEVER = -(2**63)


class JourneyPipeline:
    def __init__(
        self,
        rnd: random.Random,
        bound_ms: int | None,
        max_delay: int = 8,
        segments: RuleSet | None = None,
        samples: bool = False,
    ) -> None:
        self.rnd, self.bound, self.max_delay = rnd, bound_ms, max_delay
        self.segments, self.samples = segments, samples
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
        return Journey(pid, self.states.setdefault(pid, JourneyState()), self.settings, self.segments, self.samples)

    def _segment_names(self) -> list[str]:
        return [] if self.segments is None else list(self.segments.rules)

    def _settle(self, j: Journey, w: int) -> list[Out]:
        outs = j.settle(w, self._segment_names())
        self.states[j.profile_id] = j.state  # (an erasure leaves a new, empty state)
        return outs

    def _apply(self, cmd, event: dict[str, Any] | None) -> None:
        if cmd.kind is CommandKind.TOUCH and not (cmd.evict or cmd.incoming):
            return
        j, w = self._journey(cmd.profile_id), self.watermark()
        if cmd.kind is CommandKind.ERASE:  # as the operator: kept until event time reaches it
            ids = list(cmd.ghosts or (cmd.profile_id,))
            j.state.erasure = PendingErase(cmd.request or "", cmd.at, cmd.version, ids)
            self.outs += [(cmd.profile_id, o) for o in self._settle(j, w)]
            return
        fact = fact_of(event, cmd.atom, RULES) if cmd.kind is CommandKind.EVENT else None
        moved = (cmd.atom, JOURNEY_STATE_CODEC.decode(cmd.payload)) if cmd.kind is CommandKind.JOURNEY else None
        parts, outs = j.apply_command(w, cmd.incoming, cmd.evict, cmd.members == (), fact, moved)
        for node, part in parts:
            delay = self.now + self.rnd.randint(0, self.max_delay)
            self.feedback.append((delay, node, JOURNEY_STATE_CODEC.encode(part)))
        outs += self._settle(j, w)
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
        for pid, st in list(self.states.items()):
            j = Journey(pid, st, self.settings, self.segments, self.samples)
            due = j.next_due()
            if due is not None and due <= w:
                self.outs += [(pid, o) for o in self._settle(j, w)]

    def _erasures(self) -> None:
        """The router's erasures due under the watermark (the operator: before the next event)."""
        due = self.router.next_erasure()
        if due is not None and due <= self.watermark():
            for cmd in self.router.due_erasures(self.watermark()).commands:
                self._apply(cmd, None)

    def run(self, events: list[dict[str, Any]]) -> None:
        for e in events:
            self.now += 1
            self._deliver()
            self.max_seen = e["occurred_at"] if self.max_seen is None else max(self.max_seen, e["occurred_at"])
            self._erasures()
            routed = self.router.route_event(e, payload=e)
            for cmd in routed.commands:
                self._apply(cmd, None if routed.erased else e)
            if routed.requested:
                self._erasures()
            self._timers()
        while self.feedback:
            self.now += self.max_delay + 1
            self._deliver(everything=True)
            self._timers()
        # the idle tick: event time complete up to the newest event
        self.bound = 0
        assert self.max_seen is not None
        self.max_seen += 1
        self._erasures()
        self._timers()
        assert not self.router.store.inflight, "every moved part arrived"


def generated_events(seed: int, persons: int, days: int = 14) -> list[dict[str, Any]]:
    """A generated data set's valid events, normalized, in event-time order."""
    return sorted(
        (e for evs in generated_by_person(seed, persons, days).values() for e in evs),
        key=lambda e: (e["occurred_at"], e["event_id"]),
    )


def recorded_commands(events: list[dict[str, Any]], seed: int) -> list[tuple]:
    """The router's commands for ``events`` (in that order), with the moved journey parts as
    ``journey`` commands where the feedback topic would bring them, encoded as the job sends
    them (events as NormalizedEvent bytes)."""
    codec = SchemaCatalog.load().codec("NormalizedEvent")
    out: list[tuple] = []

    class Recording(JourneyPipeline):
        def _apply(self, cmd, event):  # type: ignore[no-untyped-def]
            payload = codec.encode(event) if cmd.kind is CommandKind.EVENT else cmd.payload
            out.append(encode_command(replace(cmd, payload=payload)))
            super()._apply(cmd, event)

    Recording(random.Random(seed), None, max_delay=0).run(events)
    return out


def journeys_on_mini_cluster(
    commands: list[tuple],
    store: Path,
    report: bool = False,
    parallelism: int = 2,
    segment_rules: Sequence[SegmentRule] = (),
    control: Sequence[str] = (),
):
    """``(env, journeys stream)``: the journeys operator on a Flink mini-cluster fed ``commands``
    (as :func:`recorded_commands` gives them) through the job's JVM watermark assigner, writing
    to a recording store at ``store``, running ``segment_rules`` and receiving the rule updates
    ``control`` (JSON texts) on its broadcast input."""
    from base64 import b64decode, b64encode

    from pyflink.common import Types

    from flink_jobs.profiles import CONTROL_TIMESTAMP, control_broadcast, no_rule_updates, with_event_time
    from operators.identity_router import BYTES, ROUTED_TYPE
    from operators.journeys import CONTROL_TYPE, OUT_TYPE, Journeys, SplitOutputs
    from state.journey_store import RecordingJourneys
    from tests.operator.mini_cluster import thread_mode_env

    as_text = Types.TUPLE([Types.STRING(), Types.STRING(), Types.LONG(), Types.STRING(), Types.STRING(), Types.LONG()])
    rows = [(p, k, v, b, b64encode(bytes(payload)).decode(), at) for p, k, v, b, payload, at in commands]
    env = thread_mode_env(parallelism=parallelism, settings={"execution.checkpointing.interval": "500 ms"})
    routed = (
        env.from_collection(rows, type_info=as_text)
        .set_parallelism(1)
        .map(lambda r: ((r[0], r[1], r[2], r[3], b64decode(r[4]), r[5]), r[5]), output_type=ROUTED_TYPE)
        .set_parallelism(1)
    )
    updates = (
        env.from_collection([(u.encode(), CONTROL_TIMESTAMP) for u in control], type_info=CONTROL_TYPE).set_parallelism(
            1
        )
        if control
        else no_rule_updates(routed)
    )
    function = Journeys(JourneySettings(), RecordingJourneys(str(store)), RULES, report, segment_rules=segment_rules)
    journeys = (
        with_event_time(routed, 30 * 24 * 3600 * 1000)
        .key_by(lambda c: c[0], key_type=Types.STRING())
        .connect(control_broadcast(updates))
        .process(function, output_type=OUT_TYPE)
        .name("journeys")
        .uid("journeys")
        .process(SplitOutputs(), output_type=BYTES)
    )
    return env, journeys
