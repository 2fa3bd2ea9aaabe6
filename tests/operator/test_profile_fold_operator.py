"""The profile fold operator on Flink's mini-cluster against an injected recording store, with
a failed write in the middle (the job restores from its last checkpoint and carries on).

The commands are those the identity router sends for a generated data set, moved state
included, in the order of a pure simulation of the job (tests/unit/test_profile_pipeline.py).
The rows the store ends with must equal the offline oracle, and the operator's lifecycle
report must show that no state is left for profiles merged away and no lifecycle timer is left
pending for any profile.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
from pyflink.common import Types, WatermarkStrategy
from pyflink.datastream.connectors.number_seq import NumberSequenceSource

from models.avro_codec import SchemaCatalog
from models.identity_router import CommandKind, ProfileCommand
from models.profile_commands import encode_command
from operators.identity_router import COMMAND_TYPE
from operators.profile_fold import MOVED_TAG, REPORT_TAG, FoldProfiles
from state.sinks import RecordingSink, read_recorded
from tests.operator.mini_cluster import thread_mode_env
from tests.profile_oracle import CassandraModel, assert_same, events, oracle
from tests.unit.test_profile_pipeline import Simulation

pytestmark = pytest.mark.operator

TICK = "~tick"  # a profile id no event has: commands that only keep the job alive while timers fire
TICKS = 6000  # at most 60 s of ticks (PacedTicks): room for the last timers on a loaded machine
QUIET_S = 2.0  # the rows are final once they carry the oracle's versions and stayed so this long
SETTLE_TICKS = 300  # then 3 s more of ticks: the last confirmations; the rest of the ticks are dropped


class Recorder(Simulation):
    """The pure simulation, remembering every command in the order the folds get them."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.commands: list[ProfileCommand] = []

    def _apply(self, commands, db) -> None:
        commands = list(commands)
        self.commands += commands
        super()._apply(commands, db)


def commands_of(evs) -> list[tuple]:
    sim = Recorder(random.Random(5), 4, 0.3)
    db = CassandraModel()
    for e in evs:
        sim.step(e, db)
    sim.drain(db)
    codec = SchemaCatalog.load().codec("NormalizedEvent")
    out = []
    for c in sim.commands:
        if c.kind is CommandKind.EVENT:
            c = ProfileCommand(
                profile_id=c.profile_id,
                kind=c.kind,
                version=c.version,
                atom=c.atom,
                payload=codec.encode(c.payload),
                members=c.members,
                evict=c.evict,
                ghosts=c.ghosts,
            )
        out.append(encode_command(c))
    return out


class PacedTicks:
    """The flat map the commands go through: each tick sleeps 10 ms, so the job stays alive while
    the fold's processing-time timers (coalescing, confirmation, a restore's re-issues) do
    their work; Flink drops pending processing-time timers at the end of a bounded input.

    A fixed number of ticks is a guess that a loaded machine can beat (with 12 s of them a CI
    run once ended with a profile's row a version short, the failure too few ticks give here;
    the tick profile's own deletions are written every window, so they do not count). The
    ticks go on until
    the recorded rows carry the oracle's versions and stayed so for ``QUIET_S``, then for
    ``SETTLE_TICKS`` more; the rest are dropped. After a restore the map is a new instance
    and paces again. Only how long the job runs depends on the oracle: the assertions after it
    are the same, so a job that never gets there fails them after ``TICKS`` ticks."""

    def __init__(self, writes: str, want: dict[str, int]) -> None:
        self.writes, self.want = writes, want
        self.ticks = 0
        self.final_at: int | None = None  # the tick at which the rows were final
        self.seen: dict[str, int] = {}  # the rows' versions at the last look, and since when
        self.seen_at = 0.0

    def __call__(self, c: tuple) -> list[tuple]:
        if c[0] != TICK:
            return [c]
        if self.final_at is not None and self.ticks - self.final_at >= SETTLE_TICKS:
            return []  # the job is done: the rest of the ticks are dropped here
        import time

        time.sleep(0.01)
        self.ticks += 1
        if self.final_at is None and self.ticks % 50 == 0 and self._final(time.time()):
            self.final_at = self.ticks
        return [c]

    def _final(self, now: float) -> bool:
        """The rows (the ticks' own aside) carry the oracle's versions and have not changed
        for ``QUIET_S``."""
        path = Path(self.writes)
        if not path.exists():
            return False
        got = {pid: version for pid, (version, _) in read_recorded(path).items() if pid != TICK}
        if got != self.seen:
            self.seen, self.seen_at = got, now
            return False
        return now - self.seen_at >= QUIET_S and all(got.get(pid) == version for pid, version in self.want.items())


def test_fold_operator_with_a_failed_write_restores_and_leaves_rows_equal_to_the_oracle_and_nothing_behind(
    tmp_path: Path,
) -> None:
    evs = list(events())
    commands = commands_of(evs)
    assert any(c[1] == "state" for c in commands) and any('"members":[]' in c[3] for c in commands)
    ticks = [(TICK, "touch", 1, '{"members":[]}', b"", 0)] * TICKS
    rows = commands + ticks

    writes = tmp_path / "writes.jsonl"
    want = oracle(evs)
    env = thread_mode_env(
        parallelism=2,
        settings={
            "execution.checkpointing.interval": "200 ms",
            "execution.checkpointing.min-pause": "50 ms",
            "restart-strategy.type": "fixed-delay",
            "restart-strategy.fixed-delay.attempts": "3",
            "restart-strategy.fixed-delay.delay": "500 ms",
        },
    )
    # the source must resume where its checkpoint says: from_collection (a legacy input-format
    # source) starts over after a restore, so a restore from a checkpoint folded the commands
    # before it twice (a CI run: 64 events folded into a profile of 53); a number sequence
    # (FLIP-27, its position in the checkpoint) gives the index of the next command
    folded = (
        env.from_source(NumberSequenceSource(0, len(rows) - 1), WatermarkStrategy.no_watermarks(), "commands")
        .set_parallelism(1)
        .map(lambda i: rows[i], output_type=COMMAND_TYPE)
        .set_parallelism(1)
        .flat_map(
            PacedTicks(str(writes), {pid: version for pid, (version, _) in want.items()}), output_type=COMMAND_TYPE
        )
        .set_parallelism(1)
        .key_by(lambda c: c[0], key_type=Types.STRING())
        .process(
            FoldProfiles(
                RecordingSink(str(writes), fail_write=40),
                coalesce_ms=50,
                half_life_ms=30 * 24 * 3600 * 1000,
                confirm_ms=10,
                report=True,
                group_size=4,
                group_ms=4,
            ),
            output_type=Types.STRING(),
        )
        .name("fold-profiles")
        .uid("fold-profiles")
    )
    report_type = Types.TUPLE([Types.STRING(), Types.BOOLEAN(), Types.INT()])
    # PyFlink runs only side outputs the graph consumes: the moved atoms go nowhere here (the
    # commands above already hold their arrival as "state" commands)
    dropped_moves = (
        folded.get_side_output(MOVED_TAG).filter(lambda _: False).map(lambda _: ("", False, 0), output_type=report_type)
    )
    last: dict[str, tuple[bool, int]] = {}
    with folded.get_side_output(REPORT_TAG).union(dropped_moves).execute_and_collect("operator-test-fold") as results:
        for pid, holds_state, timers in results:
            last[pid] = (holds_state, timers)

    assert writes.with_suffix(".failed").exists(), "the injected write failure never happened: no restore tested"
    per_request = Counter(tuple(json.loads(line)["request"]) for line in writes.read_text().splitlines())
    assert max(per_request.values()) > 1, "no two profiles' writes went out in one request"
    assert max(per_request.values()) <= 4, "a request held more writes than group_size"
    got = {pid: row for pid, row in read_recorded(writes).items() if pid != TICK}
    assert_same({pid: (version, row) for pid, (version, row) in got.items() if row is not None}, want)
    last.pop(TICK)  # the last tick's own timer is pending when the input ends
    assert not any(timers for _, timers in last.values()), {pid: v for pid, v in last.items() if v[1]}
    gone = {pid for pid, (_, row) in got.items() if row is None}
    assert gone, "no profile was merged away: the clearing of state is not exercised"
    assert not [pid for pid in gone if last.get(pid, (False, 0))[0]], "state left for profiles merged away"
    assert all(last[pid][0] for pid in want), "a live profile lost its state"
