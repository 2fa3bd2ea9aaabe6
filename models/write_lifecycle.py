"""When a profile's row is written: dirty -> writing -> confirmed -> cleared (pure).

The profile operator never blocks on its sink (Cassandra). Writes are **leading-edge
coalesced**: a change to a profile that was not written in the last ``coalesce_ms`` is
written at once, from the command itself (:data:`NOW` from :func:`on_change`: no timer, no
second state access); a change within the window marks the profile ``dirty`` and arms one
timer at the window's end (``next_write_at``), when its current row is written. So a profile
is written at most once per window, and a change waits at most one window.

Each issued write is recorded as ``writing`` and arms a confirmation timer; when a lifecycle
timer fires, :func:`step` says what to do: check the write's ticket again later
(:data:`Step.WAIT` while unanswered), issue the row (:data:`Step.ISSUE`), wait for the window
(:data:`Step.LATER`), nothing (:data:`Step.IDLE`), or clear the state of a profile merged away
once its deletion is confirmed (:data:`Step.CLEAR`). A checkpoint taken while a write is
unconfirmed holds ``writing`` and the pending timer; after a restore the new operator
instance has no ticket for that write, so :func:`step` issues it again (idempotent: the
row's version is the same). A failed write raises :class:`WriteFailed`: the job restarts
from its last checkpoint and writes again.

Lifecycle timers are kept in the state (``FoldState.timers``), so the operator registers
each one once, knows which firing timers are its own, and a test can see that none is left.

Examples
--------
>>> from models.profile_fold import FoldState
>>> st = FoldState(members=(("cookie_id", "ck1"),))
>>> on_change(st, now=1_000) is NOW   # quiet profile: write it at once
True
>>> st.dirty = False                                # (ProfileFold.flush), then the write of version 7
>>> issued(st, version=7, now=1_000, confirm_ms=20, coalesce_ms=500)
1020
>>> on_change(st, now=1_010)       # a change within the window: one timer at its end
1500
>>> st.dirty = True                                 # (ProfileFold.apply marks the change)
>>> on_change(st, now=1_100) is None  # already dirty: the timer is pending
True
>>> fired(st, 1020), step(st, Sent(7, done=False), now=1_020)  # not answered yet: check again later
(True, <Step.WAIT: 'wait'>)
>>> step(st, Sent(7, done=True), now=1_040), st.writing   # confirmed; the change waits for the window
(<Step.LATER: 'later'>, None)
>>> fired(st, 1500), step(st, None, now=1_500)
(True, <Step.ISSUE: 'issue'>)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from models.profile_fold import FoldState


class Step(Enum):
    """What the operator does when one of the profile's lifecycle timers fires."""

    WAIT = "wait"  # the write in flight is unanswered: arm the confirmation timer again
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
    """A timer at ``at`` fired for this profile: forget it; False if it was not a lifecycle
    timer of this profile (e.g. the buffered counters' timer, registered on any key).

    State restored from the release before timers were kept in it has none recorded while a
    write is due or unconfirmed (with this release that cannot be: a pending write always
    has a pending timer): any timer firing then counts as its lifecycle timer.

    >>> fired(FoldState(dirty=True), 5), fired(FoldState(), 5), fired(FoldState(dirty=True, timers=(9,)), 5)
    (True, False, False)
    """
    if at in st.timers:
        st.timers = tuple(t for t in st.timers if t != at)
        return True
    return not st.timers and (st.dirty or st.writing is not None)


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


def issued(st: FoldState, version: int, now: int, confirm_ms: int, coalesce_ms: int) -> int | None:
    """The operator issued the write of ``version``: record it and open the coalescing window;
    returns the confirmation timer to register (None: already pending)."""
    st.writing = version
    st.next_write_at = now + coalesce_ms
    return arm(st, now + confirm_ms)


def waiting(st: FoldState, now: int, confirm_ms: int) -> int | None:
    """:data:`Step.WAIT`: the confirmation timer to register again."""
    return arm(st, now + confirm_ms)


def later(st: FoldState) -> int | None:
    """:data:`Step.LATER`: the timer at the coalescing window's end (None: already pending)."""
    return arm(st, st.next_write_at)
