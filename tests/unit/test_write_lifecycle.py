"""The write lifecycle (models/write_lifecycle.py) under any interleaving of changes, timers,
sink answers, failed writes, checkpoints and restores: once everything has been answered, the
sink holds the profile's last state, and no state and no timer is left behind.

The simulation plays the operator (operators/profile_fold.py) around the pure
:class:`~models.write_lifecycle.Lifecycle`: one profile, a sink that applies writes by
version (``USING TIMESTAMP``), Flink's checkpoints (the profile's state as last stored, the
key's pending timers, the commands' offsets) and restores (state and timers from the
checkpoint, the instance's memory lost, commands after the checkpoint replayed, writes already
sent still arriving or lost). The state changes only where the operator stores it; a foreign
timer (the buffered counters') may fire on the key; the instance may forget which writes were
answered (its memory of them is bounded).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from hypothesis import example, given, settings
from hypothesis import strategies as st

from models.profile_fold import FoldState
from models.write_lifecycle import NOW, Fast, Lifecycle, Sent, Step, WriteFailed, fired, later, on_change, step

COALESCE, CONFIRM = 50, 7
MEMBERS = (("cookie_id", "ck1"),)
PID = "p-1"


@dataclass
class Ticket:
    version: int
    row: int | None  # the profile's content (None: delete)
    done: bool = False
    error: str | None = None
    run: int = 0  # the operator instance that issued it (Sim.restores at the time)


@dataclass
class Sim:
    state: FoldState | None = field(default_factory=lambda: FoldState(members=MEMBERS))
    now: int = 0
    commands: list[bool] = field(default_factory=list)  # True: merged away (members cleared)
    lifecycle: Lifecycle = field(default_factory=lambda: Lifecycle(COALESCE, CONFIRM))
    in_flight: list[Ticket] = field(default_factory=list)
    sink: dict[str, int | None] = field(default_factory=lambda: {"version": -1, "row": None})
    checkpoint: tuple[FoldState | None, list[int], int] = (None, [], 0)
    registered: list[int] = field(default_factory=list)  # Flink's timers of this key
    writes: list[int] = field(default_factory=list)  # when each write of this run was issued
    runs: list[list[int]] = field(default_factory=list)  # the writes before each restore or clearing
    state_reads: int = 0  # timer firings that read the state
    failed_unraised: list[Ticket] = field(default_factory=list)  # failed writes the operator did not raise yet
    restores: int = 0

    def __post_init__(self) -> None:
        self.checkpoint = (copy.deepcopy(self.state), [], 0)

    # --- the operator
    def command(self, away: bool, number: int | None = None) -> None:
        """Apply command ``number`` (1-based; a new one if None). Its version is its number,
        as the router's component event count only grows."""
        if number is None:
            self.commands.append(away)
            number = len(self.commands)
        st = copy.deepcopy(self.state) if self.state is not None else FoldState()
        self.lifecycle.load(PID, st)
        plan = on_change(st, self.now)
        st.dirty = True  # ProfileFold.apply
        st.folded = number
        st.members = () if away else MEMBERS
        if plan is NOW:
            self._issue(st)
        elif isinstance(plan, int):
            self._register(plan)
        self.state = st  # stored

    def fire_due(self) -> None:
        for at in sorted(t for t in self.registered if t <= self.now):
            self.registered.remove(at)
            self._on_timer(at)

    def _on_timer(self, at: int) -> None:
        fast = self.lifecycle.on_timer(PID, at, self.now)  # may raise WriteFailed
        if fast is Fast.REARM:
            self._register(self.lifecycle.rearmed)
        if fast is not Fast.STATE or self.state is None:
            return
        self.state_reads += 1
        st = copy.deepcopy(self.state)
        self.lifecycle.load(PID, st)
        what = self.lifecycle.with_state(PID, st, at, self.now)
        if what is None:
            return  # not stored
        if what is Step.LATER:
            self._register(later(st))
        elif what is Step.ISSUE:
            self._issue(st)
        if what is Step.CLEAR:
            self.state = None
            self.runs.append(self.writes)  # the window goes with the state: a new profile may be written at once
            self.writes = []
        else:
            self.state = st

    def _issue(self, st: FoldState) -> None:
        st.dirty = False  # ProfileFold.flush
        ticket = Ticket(st.folded, st.folded if st.members else None, run=self.restores)
        self.in_flight.append(ticket)
        self.writes.append(self.now)
        self._register(self.lifecycle.issued(PID, st, ticket.version, ticket, self.now))

    def _register(self, at: int | None) -> None:
        if at is not None and at not in self.registered:  # Flink keeps one timer per key and time
            self.registered.append(at)

    # --- the world around it
    def answer(self, ok: bool) -> None:
        if not self.in_flight:
            return
        t = self.in_flight.pop(0)
        t.done, t.error = True, None if ok else "timeout"
        if not ok and t.run == self.restores:  # (an earlier instance's write: written again since)
            self.failed_unraised.append(t)
        if ok and t.version >= self.sink["version"]:  # USING TIMESTAMP: the higher version wins
            self.sink = {"version": t.version, "row": t.row}

    def foreign_timer(self, after: int) -> None:
        """The buffered counters' timer, registered while this key was current."""
        self._register(self.now + after)

    def take_checkpoint(self) -> None:
        self.checkpoint = (copy.deepcopy(self.state), list(self.registered), len(self.commands))

    def restore(self) -> None:
        state, registered, offset = self.checkpoint
        self.state = copy.deepcopy(state)
        self.registered = list(registered)
        self.lifecycle = Lifecycle(COALESCE, CONFIRM)  # a new instance: nothing in memory
        self.restores += 1
        self.failed_unraised.clear()  # whatever failed before is written again from the checkpoint
        self.runs.append(self.writes)
        self.writes = []
        for number, away in enumerate(self.commands[offset:], start=offset + 1):
            self.command(away, number)

    def safely(self, action) -> None:
        try:
            action()
        except WriteFailed:
            self.restore()

    def drain(self) -> None:
        for _ in range(10_000):
            if not self.registered and not self.in_flight:
                return
            self.now += 1
            while self.in_flight and self.in_flight[0].done is False:
                self.answer(True)
            self.safely(self.fire_due)
        raise AssertionError("the lifecycle did not settle")


ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("change"), st.booleans()),
        st.tuples(st.just("tick"), st.integers(1, 60)),
        st.tuples(st.just("answer"), st.booleans()),
        st.tuples(st.just("checkpoint"), st.none()),
        st.tuples(st.just("restore"), st.none()),
        st.tuples(st.just("foreign"), st.integers(0, 60)),
        st.tuples(st.just("forget"), st.none()),
    ),
    max_size=60,
)


def play(actions) -> Sim:
    sim = Sim()
    for kind, arg in actions:
        if kind == "change":
            sim.safely(lambda: sim.command(away=arg))
        elif kind == "tick":
            sim.now += arg
            sim.safely(sim.fire_due)
        elif kind == "answer":
            sim.answer(arg)
        elif kind == "checkpoint":
            sim.take_checkpoint()
        elif kind == "foreign":
            sim.foreign_timer(arg)
        elif kind == "forget":
            sim.lifecycle.answered.clear()
        else:
            sim.restore()
    sim.drain()
    return sim


@settings(max_examples=800, deadline=None)
@given(ACTIONS)
@example([("change", False), ("tick", 60), ("answer", False), ("change", False)])  # a failure under a newer write
def test_after_everything_is_answered_the_sink_holds_the_last_state_and_nothing_is_left(actions) -> None:
    sim = play(actions)
    folded = len(sim.commands)
    away = bool(sim.commands) and sim.commands[-1]
    if folded:
        assert sim.sink["version"] == folded, "the last change was never written"
        assert sim.sink["row"] == (None if away else folded)
    if away or not folded:
        assert sim.state is None or (not folded and sim.state == FoldState(members=MEMBERS)), (
            "a profile merged away keeps state"
        )
    else:
        assert sim.state is not None
        assert (sim.state.dirty, sim.state.timers) == (False, ())
        assert sim.state.writing in (None, folded), "a write marked in flight that is not the last, answered one"
    assert sim.registered == [] and sim.lifecycle.in_flight == {}
    assert sim.failed_unraised == [], "a failed write that never failed the job"
    for writes in [*sim.runs, sim.writes]:  # coalescing: at most one write per window (per run and life of the state)
        assert all(b - a >= COALESCE for a, b in zip(writes, writes[1:])), writes


def test_a_write_unconfirmed_at_a_checkpoint_is_issued_again_after_the_restore() -> None:
    sim = Sim()
    sim.command(away=False)  # issues version 1 at once
    assert sim.state.writing == 1 and len(sim.in_flight) == 1
    sim.take_checkpoint()  # holds writing=1 and the confirmation timer
    sim.in_flight.clear()  # the write is lost with the crash
    sim.restore()
    sim.drain()
    assert sim.sink == {"version": 1, "row": 1}


def test_a_failed_write_fails_the_operator() -> None:
    st_ = FoldState(members=MEMBERS, writing=3)
    try:
        step(st_, Sent(3, done=True, error="unavailable"), now=0)
    except WriteFailed as e:
        assert "version 3" in str(e)
    else:
        raise AssertionError("a failed write must fail the job")


def test_changes_while_dirty_arm_no_second_timer_and_foreign_timers_are_ignored() -> None:
    st_ = FoldState(members=MEMBERS, next_write_at=COALESCE)
    assert on_change(st_, 0) == COALESCE
    st_.dirty = True
    assert on_change(st_, 10) is None
    assert fired(st_, 999) is False and st_.timers == (COALESCE,)


def test_a_change_to_a_quiet_profile_is_written_at_once_and_the_next_at_the_window_end() -> None:
    sim = Sim()
    sim.command(away=False)  # quiet: written from the command itself, no coalescing timer
    assert sim.writes == [0] and sim.registered == [CONFIRM]
    sim.now = 5
    sim.command(away=False)  # within the window: one timer at its end
    assert sim.registered == [CONFIRM, COALESCE] and sim.writes == [0]
    sim.drain()
    assert sim.writes == [0, COALESCE] and sim.sink == {"version": 2, "row": 2}


def test_the_confirmation_of_an_answered_write_reads_no_state_and_the_next_access_clears_the_mark() -> None:
    sim = Sim()
    sim.command(away=False)
    sim.answer(True)
    sim.now = CONFIRM
    sim.fire_due()
    assert sim.state_reads == 0 and sim.lifecycle.in_flight == {} and sim.registered == []
    assert sim.state.writing == 1  # not stored: the state was not touched
    sim.now = COALESCE + 1
    sim.command(away=False)  # the next access clears it, then writes version 2 at once
    assert sim.state.writing == 2 and sim.lifecycle.answered.get(PID) is None


def test_a_deletion_is_confirmed_through_the_state_which_it_clears() -> None:
    sim = Sim()
    sim.command(away=True)
    sim.answer(True)
    sim.now = CONFIRM
    sim.fire_due()
    assert sim.state_reads == 1 and sim.state is None


def test_a_change_that_waited_on_an_unanswered_write_goes_out_once_that_write_is_answered() -> None:
    sim = play([("change", False), ("change", False), ("tick", 60)])  # the window ends, write 1 unanswered
    assert sim.sink == {"version": 2, "row": 2} and sim.state.dirty is False


def test_a_confirmation_never_shares_its_time_with_the_coalescing_timer() -> None:
    # the unanswered write's confirmation, re-armed at 43 + 7 = 50, would fall on the window's end
    # (one Flink timer per key and time): it moves to 51, and the window's timer still acts
    sim = play([("change", False), ("change", False), ("tick", 43)])
    assert sim.sink == {"version": 2, "row": 2}


def test_a_write_that_failed_while_a_newer_one_was_issued_still_fails_the_operator() -> None:
    """A leading-edge write can follow one that is still in flight (Cassandra slower than the
    coalescing window); the earlier write's failure must not be lost with it."""
    sim = Sim()
    sim.command(away=False)  # written at once (version 1)
    sim.now += COALESCE + 10
    sim.fire_due()  # its confirmation: not answered, re-armed
    sim.answer(False)  # version 1 fails
    failed_before = sim.restores
    sim.safely(lambda: sim.command(away=False))  # the window is over: version 2 is written at once
    sim.now += CONFIRM + 1
    sim.safely(sim.fire_due)
    assert sim.restores == failed_before + 1, "the failure of version 1 was dropped"
