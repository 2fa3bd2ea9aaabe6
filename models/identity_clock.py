"""The event-time clock of the profiles job: one place that sees every command (pure).

With identity resolved by many subtasks (:mod:`models.identity_partitioned`), no subtask sees
all events, but event time must still be declared in one place (``docs/journeys.md``, Time):
the clock stage, one subtask after the resolve stage, sees every command. It

* passes each command on with a timestamp for the watermark generator that follows it
  (bounded out-of-orderness over the commands' event times),
* declares event time complete up to the newest event seen when the input has been idle for
  a while (a *tick*: the journeys' timers fire without new input),
* says when an erasure request is due (:class:`models.identity_partitioned.EraseDue`, for the
  request's home) once event time passes it, and holds the watermark just before the
  request's time until the home reports it carried out: the stages after it receive the
  erasure's commands while their event time is still before it, as they did when one
  router did everything.

Holding the watermark is done with the timestamps alone: while a request at ``t`` is pending,
no command is stamped later than ``t + bound``, so the generator's watermark (the largest
stamp minus the bound, minus one) stays below ``t``.

Examples
--------
>>> clock = IdentityClock(bound_ms=10, state=ClockState())
>>> clock.observe(100), clock.stamp(100)
([], 100)
>>> clock.pending("r1", at=120, home=("customer_id", "c1"))
[]
>>> clock.stamp(200)  # held: the watermark (stamp - 10 - 1) stays before 120
130
>>> clock.observe(200)  # event time passed the request: due at its home
[('r1', ('customer_id', 'c1'))]
>>> clock.done("r1"); clock.stamp(200)
200
"""

from __future__ import annotations

from dataclasses import dataclass, field

from models.identity import Node


@dataclass
class PendingRequest:
    """An erasure request the clock waits on: when, at which home, and whether it was sent."""

    at: int
    home: Node
    sent: bool = False


@dataclass
class ClockState:
    """What the clock keeps in Flink state (one value: it has one key)."""

    max_event_time: int = -1
    last_tick: int = -1
    pending: dict[str, PendingRequest] = field(default_factory=dict)


class IdentityClock:
    def __init__(self, bound_ms: int, state: ClockState) -> None:
        self.bound, self.state = bound_ms, state

    def watermark(self) -> int:
        """Event time complete so far by the clock's own count (the newest time minus the bound,
        minus one), or the last tick if that is later."""
        st = self.state
        return max(st.max_event_time - self.bound - 1, st.last_tick)

    def stamp(self, at: int) -> int:
        """The timestamp to pass a command at event time ``at`` on with (held below pending
        erasure requests)."""
        if not self.state.pending:
            return at
        return min(at, min(p.at for p in self.state.pending.values()) + self.bound)

    def observe(self, at: int) -> list[tuple[str, Node]]:
        """An event's time: the requests that are now due, to send to their homes."""
        if at > self.state.max_event_time:
            self.state.max_event_time = at
            return self._due()
        return []

    def pending(self, request_id: str, at: int, home: Node) -> list[tuple[str, Node]]:
        """An erasure request seen at ``home``; due at once if event time already passed it."""
        self.state.pending.setdefault(request_id, PendingRequest(at, home))
        return self._due()

    def done(self, request_id: str) -> None:
        """The home carried the request out (or found nothing to erase)."""
        self.state.pending.pop(request_id, None)

    def tick(self, idle: bool, reassert: bool) -> tuple[int | None, list[tuple[str, Node]]]:
        """A check of an idle input: when the input was ``idle`` since the last check and newer
        events came, event time is complete up to the newest (the tick's time); ``reassert``
        (after a restore, watermarks are not in checkpoints) declares the last tick again.
        Returns the tick's time (None: none) and the requests now due."""
        st = self.state
        if idle and st.max_event_time > st.last_tick:
            st.last_tick = st.max_event_time
            return st.last_tick, self._due()
        if reassert and st.last_tick >= 0:
            return st.last_tick, self._due()
        return None, []

    def _due(self) -> list[tuple[str, Node]]:
        w = self.watermark()
        out = []
        for rid, p in sorted(self.state.pending.items(), key=lambda kv: (kv[1].at, kv[0])):
            if p.at <= w and not p.sent:
                p.sent = True
                out.append((rid, p.home))
        return out
