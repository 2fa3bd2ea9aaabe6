"""When a profile's row is written: dirty -> writing -> confirmed -> cleared (pure).

The profile operator never blocks on its sink (Cassandra): a change marks the profile
``dirty`` and arms a coalescing timer; when a lifecycle timer fires, :func:`step` says what
to do. A write goes out at most once per coalescing window (:data:`Step.ISSUE`: the
operator issues the profile's current row and records its version as ``writing``); a
confirmation timer then polls the write's ticket (:data:`Step.WAIT` while unanswered) until
the sink answered, and clears ``writing``. A checkpoint taken while a write is unconfirmed
holds ``writing`` and the pending timer; after a restore the new operator instance has no
ticket for that write, so :func:`step` issues it again (idempotent: the row's version is the
same). A profile merged away (no members) is deleted in the sink and, once that is
confirmed, its state is cleared (:data:`Step.CLEAR`). A failed write raises
:class:`WriteFailed`: the job restarts from its last checkpoint and writes again.

Lifecycle timers are kept in the state (``FoldState.timers``), so the operator registers
each one once, knows which firing timers are its own, and a test can see that none is left.

Examples
--------
>>> from models.profile_fold import FoldState
>>> st = FoldState(members=(("cookie_id", "ck1"),))
>>> on_change(st, now=1_000, coalesce_ms=500)      # first change: arm the coalescing timer
1500
>>> st.dirty = True                                 # (ProfileFold.apply marks the change)
>>> on_change(st, now=1_100, coalesce_ms=500) is None  # already dirty: the timer is pending
True
>>> fired(st, 1500), step(st, None)
(True, <Step.ISSUE: 'issue'>)
>>> st.dirty = False                                # (ProfileFold.flush), then the write of version 7
>>> issued(st, version=7, now=1_500, confirm_ms=20)
1520
>>> fired(st, 1520), step(st, Sent(7, done=False))  # not answered yet: check again later
(True, <Step.WAIT: 'wait'>)
>>> step(st, Sent(7, done=True)), st.writing      # confirmed
(<Step.IDLE: 'idle'>, None)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from models.profile_fold import FoldState


class Step(Enum):
    """What the operator does when one of the profile's lifecycle timers fires."""

    WAIT = "wait"  # the write in flight is unanswered: arm the confirmation timer again
    ISSUE = "issue"  # flush the profile, issue the write, then :func:`issued`
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


def on_change(st: FoldState, now: int, coalesce_ms: int) -> int | None:
    """Before a command changes the profile: the coalescing timer to register, if any.

    Only the first change after a write is issued arms one; later changes ride along.
    """
    if st.dirty:
        return None
    return arm(st, now + coalesce_ms)


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


def step(st: FoldState, sent: Sent | None) -> Step:
    """What to do now (see the module docs); updates ``writing`` and ``dirty``.

    Parameters
    ----------
    st : FoldState
        The profile's state, mutated in place.
    sent : Sent or None
        This instance's unconfirmed write of this profile, if any (never after a restore).

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
        return Step.ISSUE
    if st.writing is None and not st.members:
        return Step.CLEAR
    return Step.IDLE


def issued(st: FoldState, version: int, now: int, confirm_ms: int) -> int | None:
    """The operator issued the write of ``version``: record it; returns the confirmation timer
    to register (None: already pending)."""
    st.writing = version
    return arm(st, now + confirm_ms)


def waiting(st: FoldState, now: int, confirm_ms: int) -> int | None:
    """:data:`Step.WAIT`: the confirmation timer to register again."""
    return arm(st, now + confirm_ms)
