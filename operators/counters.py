"""Flink counters counted in Python and handed to Flink at most once per interval.

Each ``Counter.inc()`` of PyFlink's thread mode is a call into the JVM; profiled in the
profiles job it cost about 30 µs, as much as the rest of a small operator's work, and the
operators call several per record. :class:`BufferedCounters` adds in a Python dict and
pushes the sums to the Flink counters when ``interval_s`` has passed (checked with Python's
clock, no JVM call) and from a processing-time timer, so the counts also arrive when the
operator goes idle: the operator calls :meth:`tick` once per element (which keeps one timer
pending whenever counts may be waiting) and :meth:`on_timer` from its ``on_timer``.

Counters are metrics, not results: a count not yet pushed when a TaskManager dies is lost
with it, as Flink's own counters restart from zero after a failover.

**Levels instead of gauges.** A PyFlink gauge is a Python callable that the TaskManager's
metric thread calls into the embedded interpreter whenever the metrics are queried (the web
UI, REST, a reporter); when that happens while the job is cancelled or restarted, the call
takes a GIL that is gone and the whole TaskManager dies (SIGSEGV in ``take_gil``, seen on
this stack). So no operator registers a Python gauge: a value that goes up and down (a model's
AUC, a count read at start) is a *level*, kept in a Flink counter by :meth:`set`: each push
adds the change since the last push, so the counter always shows the level.
"""

from __future__ import annotations

import time
from typing import Any, Iterable, Mapping


class BufferedCounters:
    """Named Flink counters of one operator, pushed at most every ``interval_s`` seconds.

    >>> class Counter:
    ...     def __init__(self): self.n = 0
    ...     def inc(self, n=1): self.n += n
    >>> class Group:
    ...     def __init__(self): self.made = {}
    ...     def counter(self, name): return self.made.setdefault(name, Counter())
    >>> group = Group()
    >>> c = BufferedCounters(group, ["events", "commands"], interval_s=3600)
    >>> c.inc("events"); c.inc("commands", 2)
    >>> group.made["events"].n  # not pushed yet
    0
    >>> c.flush(); (group.made["events"].n, group.made["commands"].n)
    (1, 2)
    """

    def __init__(
        self, metric_group, names: Iterable[str], interval_s: float = 1.0, made: Mapping[str, Any] | None = None
    ) -> None:
        """``names``: counters made in ``metric_group``; ``made``: counters already made
        elsewhere (e.g. in a sub-group), by the name :meth:`inc` knows them by."""
        self._flink = {name: metric_group.counter(name) for name in names} | dict(made or {})
        self._pending = dict.fromkeys(self._flink, 0)
        self._levels: dict[str, int] = {}  # the levels set (:meth:`set`), as counted in _pending
        self._interval_s = interval_s
        self._last = time.monotonic()
        self._timer_at: int | None = None  # the counters' pending timer, if any

    def inc(self, name: str, n: int = 1) -> None:
        self._pending[name] += n

    def set(self, name: str, level: int) -> None:
        """Make counter ``name`` show ``level`` from the next push on (a gauge's value: the
        counter gets the change since the level last pushed).

        >>> class Counter:
        ...     def __init__(self): self.n = 0
        ...     def inc(self, n=1): self.n += n
        >>> class Group:
        ...     def counter(self, name): return Counter()
        >>> c = BufferedCounters(Group(), ["auc"], interval_s=3600)
        >>> c.set("auc", 870); c.flush(); c.set("auc", 850); c.flush(); c._flink["auc"].n
        850
        """
        self._pending[name] += level - self._levels.get(name, 0)
        self._levels[name] = level

    def flush(self) -> None:
        """Push every pending count to Flink now."""
        pending = self._pending
        for name, n in pending.items():
            if n:
                self._flink[name].inc(n)
                pending[name] = 0
        self._last = time.monotonic()

    def _flush_if_due(self) -> None:
        if time.monotonic() - self._last >= self._interval_s:
            self.flush()

    def tick(self, timer_service) -> None:
        """Once per element: push the counts if ``interval_s`` passed, and keep a
        processing-time timer pending so the counts of the last elements are pushed too."""
        self._flush_if_due()
        if self._timer_at is None:
            self._timer_at = timer_service.current_processing_time() + int(self._interval_s * 1000)
            timer_service.register_processing_time_timer(self._timer_at)

    def on_timer(self, timestamp: int) -> None:
        """From the operator's ``on_timer`` (any timer): pushes when it is the counters' timer
        (or a later one) and otherwise only if ``interval_s`` passed, so the operator's own
        frequent timers do not push on every firing."""
        if self._timer_at is not None and timestamp >= self._timer_at:
            self.flush()
            self._timer_at = None
        else:
            self._flush_if_due()
