"""When a profile's row is written: dirty -> writing -> confirmed -> cleared (pure).

The profile operator never blocks on its sink (Cassandra). Writes are **leading-edge
coalesced**: a change to a profile that was not written in the last ``coalesce_ms`` is
written at once, from the command itself (:data:`NOW` from :func:`on_change`: no timer, no
second state access); a change within the window marks the profile ``dirty`` and arms one
timer at the window's end (``next_write_at``), when its current row is written. So a profile
is written at most once per window, and a change waits at most one window.

Each issued write is marked ``writing`` in the state and has a confirmation timer. The
operator instance remembers its writes in flight (:class:`Lifecycle`), so a confirmation whose
write was answered needs no state access at all; otherwise (the write a deletion, or the
state waiting on it) the timer goes through the state, and :func:`step` says what to do:
check again later (:data:`Step.WAIT`), issue the row (:data:`Step.ISSUE`), wait for the
window (:data:`Step.LATER`), nothing (:data:`Step.IDLE`), or clear the state of a profile
merged away once its deletion is confirmed (:data:`Step.CLEAR`). A checkpoint taken while a
write is unconfirmed holds ``writing`` and the pending confirmation timer; after a restore
the new instance has no record of that write, so :func:`step` issues it again (idempotent:
the row's version is the same). A failed write raises :class:`WriteFailed`: the job restarts
from its last checkpoint and writes again.

Coalescing timers are kept in the state (``FoldState.timers``), so the operator registers
each one once, knows which firing timers are its own, and a test can see that none is left.

Examples
--------
>>> from models.profile_fold import FoldState
>>> st = FoldState(members=(("cookie_id", "ck1"),))
>>> on_change(st, now=1_000) is NOW                 # quiet profile: write it at once
True
>>> st.dirty = False                                # (ProfileFold.flush), then the write of version 7
>>> issued(st, version=7, now=1_000, coalesce_ms=500)
>>> on_change(st, now=1_010)                        # a change within the window: one timer at its end
1500
>>> st.dirty = True                                 # (ProfileFold.apply marks the change)
>>> on_change(st, now=1_100) is None                # already dirty: the timer is pending
True
>>> fired(st, 1500), step(st, Sent(7, done=False), now=1_500)  # the write not answered yet
(True, <Step.WAIT: 'wait'>)
>>> step(st, Sent(7, done=True), now=1_520), st.writing   # answered: the change goes out
(<Step.ISSUE: 'issue'>, None)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from models.profile_fold import FoldState


class Step(Enum):
    """What the operator does when one of the profile's lifecycle timers fires."""

    WAIT = "wait"  # the write in flight is unanswered: its confirmation timer comes back through the state
    ISSUE = "issue"  # flush the profile, issue the write, then :func:`issued`
    LATER = "later"  # a change waits for the coalescing window: arm ``next_write_at``
    IDLE = "idle"  # nothing to do: keep the state
    CLEAR = "clear"  # the profile is gone and its deletion confirmed: clear its state


class WriteFailed(RuntimeError):
    """The sink refused a profile write; the job fails and restarts from its last checkpoint."""


@dataclass(frozen=True)
class Sent:
    """This operator instance's record of a write it issued: its version and whether the sink
    answered (``error``: what failed)."""

    version: int
    done: bool = True
    error: str | None = None


class _Now:
    """:data:`NOW`: the change is written at once."""

    def __repr__(self) -> str:
        return "NOW"


#: :func:`on_change`'s answer when the change is written at once (from the command itself)
NOW = _Now()


def on_change(st: FoldState, now: int) -> _Now | int | None:
    """Before a command changes the profile: :data:`NOW` (issue the write right after the
    change), the timer at the coalescing window's end to register, or None (the change rides
    along with a write already due)."""
    if st.dirty:
        return None
    if now >= st.next_write_at:
        return NOW
    return arm(st, st.next_write_at)


def arm(st: FoldState, at: int) -> int | None:
    """Record a lifecycle timer at ``at``; returns ``at`` if the operator must register it
    (None: one at that time is already pending)."""
    if at in st.timers:
        return None
    st.timers = tuple(sorted((*st.timers, at)))
    return at


def fired(st: FoldState, at: int) -> bool:
    """A timer at ``at`` fired for this profile and reached its state: forget it; False if it
    was not a lifecycle timer of this profile (e.g. the buffered counters' timer, registered
    on any key).

    Confirmation timers are not recorded (:class:`Lifecycle` keeps them in memory): a timer
    that finds a write marked ``writing`` is taken as one (after a restore, the pending
    confirmation of a write this instance never saw answered). State restored from the
    release before timers were kept in it has none recorded while a write is due: any timer
    firing then counts as its lifecycle timer.

    >>> fired(FoldState(dirty=True), 5), fired(FoldState(), 5), fired(FoldState(dirty=True, timers=(9,)), 5)
    (True, False, False)
    >>> fired(FoldState(writing=3, timers=(9,)), 5)
    True
    """
    if at in st.timers:
        st.timers = tuple(t for t in st.timers if t != at)
        return True
    return st.writing is not None or (not st.timers and st.dirty)


def step(st: FoldState, sent: Sent | None, now: int) -> Step:
    """What to do now (see the module docs); updates ``writing`` and ``dirty``.

    Parameters
    ----------
    st : FoldState
        The profile's state, mutated in place.
    sent : Sent or None
        This instance's latest write of this profile not yet seen answered, if any (never
        after a restore).
    now : int
        The processing time.

    Raises
    ------
    WriteFailed
        The sink answered ``sent`` with an error.
    """
    if sent is not None:
        if not sent.done:
            return Step.WAIT
        if sent.error is not None:
            raise WriteFailed(f"write of version {sent.version} failed: {sent.error}")
        if st.writing == sent.version:
            st.writing = None
    elif st.writing is not None and not st.dirty:
        st.dirty = True  # restored with a write this instance never saw answered: issue it again
    if st.dirty:
        return Step.ISSUE if now >= st.next_write_at else Step.LATER
    if st.writing is None and not st.members:
        return Step.CLEAR
    return Step.IDLE


def issued(st: FoldState, version: int, now: int, coalesce_ms: int) -> None:
    """The operator issued the write of ``version``: mark it and open the coalescing window."""
    st.writing = version
    st.next_write_at = now + coalesce_ms


def later(st: FoldState) -> int | None:
    """:data:`Step.LATER`: the timer at the coalescing window's end (None: already pending)."""
    return arm(st, st.next_write_at)


@dataclass
class InFlight:
    """A write this operator instance issued and has not seen answered."""

    version: int
    ticket: Any  # has ``done`` and ``error`` (state.sinks.Ticket)
    confirm_at: int  # its pending confirmation timer (never at ``window_end``)
    window_end: int  # the profile's coalescing timers are all at this time (FoldState.next_write_at)
    delete: bool  # a deletion: once answered, the profile's state is cleared (through the state)
    recheck: bool = False  # the profile's state waits on it (Step.WAIT): confirm through the state
    #: earlier writes of the profile still unanswered when this one was issued (a leading-edge
    #: write can follow a slow one): confirmed with it, so a failure of theirs still fails the job
    earlier: tuple[Any, ...] = ()

    def unanswered(self) -> bool:
        return not self.ticket.done or any(not t.done for t in self.earlier)

    def error(self) -> str | None:
        """The first failure among this write and the earlier ones (None: none failed)."""
        return next((t.error for t in (*self.earlier, self.ticket) if t.done and t.error is not None), None)


class Fast(Enum):
    """:meth:`Lifecycle.on_timer`: what a firing timer needs."""

    DONE = "done"  # a confirmation handled in memory: no state access
    REARM = "rearm"  # a confirmation not answered yet: register :attr:`Lifecycle.rearmed`, no state access
    STATE = "state"  # read the profile's state and go on with :meth:`Lifecycle.with_state`


class Lifecycle:
    """The operator instance's side of the lifecycle for all its profiles (pure; the operator
    only moves state and timers in and out of Flink).

    A confirmation costs no state access when it can: the instance remembers its writes in
    flight (:class:`InFlight`) and their confirmation timers, so a firing confirmation whose
    write was answered is done in memory (:data:`Fast.DONE`). The profile's state keeps
    ``writing`` set until its next access, when :meth:`load` clears it (the instance
    remembers the last ``remember`` such answers). A ``writing`` left set (forgotten, or
    across a restore) is harmless: at worst a timer finding it issues the same row again
    (idempotent), and the next write replaces it.

    >>> from models.profile_fold import FoldState
    >>> lc, st = Lifecycle(coalesce_ms=500, confirm_ms=20), FoldState(members=(("cookie_id", "ck1"),))
    >>> on_change(st, now=1_000) is NOW
    True
    >>> class T: done, error = False, None
    >>> ticket = T()
    >>> lc.issued("p-1", st, version=7, ticket=ticket, now=1_000)  # the confirmation timer
    1020
    >>> lc.on_timer("p-1", at=1020, now=1020), lc.rearmed                 # not answered yet
    (<Fast.REARM: 'rearm'>, 1040)
    >>> ticket.done = True
    >>> lc.on_timer("p-1", at=1040, now=1040), st.writing                 # answered: no state access
    (<Fast.DONE: 'done'>, 7)
    >>> lc.load("p-1", st); st.writing is None                          # cleared on the next access
    True
    """

    def __init__(self, coalesce_ms: int, confirm_ms: int, remember: int = 100_000) -> None:
        from cachetools import LRUCache

        self.coalesce_ms, self.confirm_ms = coalesce_ms, confirm_ms
        self.in_flight: dict[str, InFlight] = {}
        self.answered: LRUCache[str, int] = LRUCache(maxsize=remember)  # profile -> version answered
        self.rearmed = 0  # the timer to register after Fast.REARM

    def load(self, pid: str, st: FoldState) -> None:
        """The profile's state was just read: clear ``writing`` of a write answered meanwhile."""
        version = self.answered.pop(pid, None)
        if version is not None and st.writing == version:
            st.writing = None

    def issued(self, pid: str, st: FoldState, version: int, ticket: Any, now: int) -> int:
        """The operator issued the write of ``version`` (the profile's current row): mark it;
        returns the confirmation timer to register. An earlier write of the profile still in
        flight stays watched (its failure fails the job at this write's confirmation); one
        already answered with an error raises :class:`WriteFailed` now."""
        earlier: tuple[Any, ...] = ()
        before = self.in_flight.get(pid)
        if before is not None:  # a write of this profile not confirmed yet: it stays watched
            failed = before.error()
            if failed is not None:
                raise WriteFailed(f"write of version {before.version} failed: {failed}")
            earlier = tuple(t for t in (*before.earlier, before.ticket) if not t.done)
        issued(st, version, now, self.coalesce_ms)
        w = InFlight(version, ticket, 0, st.next_write_at, not st.members or st.erasure is not None, earlier=earlier)
        self.answered.pop(pid, None)
        self.in_flight[pid] = w
        return self._confirm_at(w, now)

    def _confirm_at(self, w: InFlight, now: int) -> int:
        """Arm ``w``'s confirmation ``confirm_ms`` from now, never at the time of a coalescing
        timer (Flink keeps one timer per key and time: one firing could not be both)."""
        at = now + self.confirm_ms
        w.confirm_at = at + 1 if at == w.window_end else at
        return w.confirm_at

    def on_timer(self, pid: str, at: int, now: int) -> Fast:
        """A timer of key ``pid`` fired; raises :class:`WriteFailed` for a failed write."""
        w = self.in_flight.get(pid)
        if w is None or w.confirm_at != at:
            return Fast.STATE
        failed = w.error()
        if failed is not None:
            raise WriteFailed(f"write of version {w.version} (or an earlier one) failed: {failed}")
        if w.unanswered():
            self.rearmed = self._confirm_at(w, now)
            return Fast.REARM
        if w.delete or w.recheck:
            return Fast.STATE
        del self.in_flight[pid]
        self.answered[pid] = w.version
        return Fast.DONE

    def with_state(self, pid: str, st: FoldState, at: int, now: int) -> Step | None:
        """After :data:`Fast.STATE` and :meth:`load`: what to do (None: not a lifecycle timer
        of this profile). The operator then issues (:data:`Step.ISSUE`), registers
        :func:`later` (:data:`Step.LATER`), clears the state (:data:`Step.CLEAR`) or keeps it."""
        if not fired(st, at):
            return None
        w = self.in_flight.get(pid)
        sent = None if w is None else Sent(w.version, not w.unanswered(), w.error())
        if sent is not None and sent.done:
            del self.in_flight[pid]
        what = step(st, sent, now)
        if what is Step.WAIT:
            assert w is not None
            w.recheck = True  # its confirmation timer (pending) comes back through the state
        return what

    def pending(self, pid: str, st: FoldState | None) -> int:
        """The profile's pending lifecycle timers (recorded ones and its confirmation)."""
        return (0 if st is None else len(st.timers)) + (pid in self.in_flight)
