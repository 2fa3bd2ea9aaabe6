"""Poll until a condition holds: the one waiting loop of the stack scripts, jobs and tests.

:func:`wait_until` calls ``check()`` every ``interval_s`` seconds until its value satisfies
``until`` (truthy by default) and returns that value; past ``timeout_s`` it raises
:class:`WaitTimeout`, a :class:`TimeoutError` whose message names what was awaited and the
last value seen, and which carries that value (``.last``) for callers that carry on with
it. The last check happens at the deadline (the final sleep is shortened), so that value is
as fresh as it can be. :func:`steady` is the ``until`` for values that must also stop
changing (metrics that reach the REST API with a lag).

Exceptions of ``check`` propagate, except those listed in ``retry_on``, which count as
"not yet" (a broker still electing a leader); the last one is chained to the timeout.

Examples
--------
>>> readings = iter([0, 0, 3, 5])
>>> wait_until(lambda: next(readings), timeout_s=5, interval_s=0, what="a reading")
3
>>> wait_until(lambda: 0, timeout_s=0.05, interval_s=0.01, what="the answer")
Traceback (most recent call last):
...
local.polling.WaitTimeout: the answer: not reached after 0.05 s (last value: 0)
>>> try:
...     wait_until(lambda: [1, 2], 0.02, 0.01, "three records", until=lambda rs: len(rs) >= 3)
... except WaitTimeout as e:
...     e.last
[1, 2]
"""

from __future__ import annotations

import time
from typing import Any, Callable, TypeVar

T = TypeVar("T")

__all__ = ["WaitTimeout", "steady", "wait_until"]


class WaitTimeout(TimeoutError):
    """:func:`wait_until` gave up.

    Attributes
    ----------
    what : str
        What was awaited.
    timeout_s : float
        How long it was awaited.
    last : Any
        The last value ``check`` returned (or the last exception listed in ``retry_on``;
        ``None`` if ``check`` never returned).
    """

    def __init__(self, what: str, timeout_s: float, last: Any) -> None:
        self.what, self.timeout_s, self.last = what, timeout_s, last
        shown = repr(last)
        if len(shown) > 500:
            shown = shown[:500] + "..."
        super().__init__(f"{what}: not reached after {timeout_s:g} s (last value: {shown})")


def wait_until(
    check: Callable[[], T],
    timeout_s: float,
    interval_s: float = 1.0,
    what: str = "a condition",
    *,
    until: Callable[[T], Any] = bool,
    retry_on: tuple[type[BaseException], ...] = (),
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``check`` until ``until(value)`` holds; return that value.

    Parameters
    ----------
    check : callable
        Reads the current value (a job state, records, counters); called at least once.
    timeout_s : float
        Give up after this many seconds (measured with ``clock``).
    interval_s : float
        Pause between checks (0: none, for a ``check`` that blocks by itself, like a
        consumer's ``poll``).
    what : str
        What is awaited, for the timeout's message (``"job 4d37 RUNNING"``).
    until : callable, keyword-only
        Whether a value is the one awaited (default: truthy).
    retry_on : tuple of exception types, keyword-only
        Exceptions of ``check`` that mean "not yet" instead of failing the wait.
    clock, sleep : callable, keyword-only
        Time source and pause (for tests).

    Returns
    -------
    The first value of ``check`` that satisfies ``until``.

    Raises
    ------
    WaitTimeout
        When ``timeout_s`` passed first; ``.last`` holds the last value.
    """
    deadline = clock() + timeout_s
    last: Any = None
    while True:
        try:
            value = check()
        except retry_on as exc:
            last = exc
        else:
            if until(value):
                return value
            last = value
        remaining = deadline - clock()
        if remaining <= 0:
            cause = last if isinstance(last, BaseException) else None
            raise WaitTimeout(what, timeout_s, last) from cause
        sleep(min(interval_s, remaining))


def steady(condition: Callable[[T], Any] = lambda value: True) -> Callable[[T], bool]:
    """An ``until`` for :func:`wait_until`: ``condition`` holds and the value equals the previous one.

    Each predicate remembers the value it saw last, so make a new one for every wait.

    Examples
    --------
    >>> readings = iter([1, 4, 6, 6])
    >>> wait_until(lambda: next(readings), 5, 0, "six, twice", until=steady(lambda n: n >= 5))
    6
    >>> settled = steady()
    >>> [settled(v) for v in (1, 1, 2, 3, 3)]
    [False, True, False, False, True]
    """
    previous: list[Any] = []

    def settled(value: T) -> bool:
        same = bool(previous) and previous[0] == value
        previous[:] = [value]
        return same and bool(condition(value))

    return settled
