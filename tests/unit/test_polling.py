"""local.polling: the shared poll-until helper (a fake clock: no test here sleeps for real)."""

from __future__ import annotations

import doctest

import pytest

import local.polling
from local.polling import WaitTimeout, steady, wait_until


class FakeTime:
    """A clock that only moves when slept on; records the pauses."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _wait(t: FakeTime, check, timeout_s: float, interval_s: float, **kw):
    return wait_until(check, timeout_s, interval_s, "the thing", clock=t.clock, sleep=t.sleep, **kw)


def test_returns_the_first_value_that_holds_and_sleeps_between_checks() -> None:
    t = FakeTime()
    values = iter(["", "", "ready", "later"])
    assert _wait(t, lambda: next(values), 10, 2) == "ready"
    assert t.sleeps == [2, 2]


def test_checks_at_least_once_even_without_time() -> None:
    t = FakeTime()
    assert _wait(t, lambda: 7, 0, 1) == 7
    assert t.sleeps == []


def test_timeout_names_what_was_awaited_and_carries_the_last_value() -> None:
    t = FakeTime()
    n = iter(range(100))
    with pytest.raises(WaitTimeout) as info:
        _wait(t, lambda: next(n), 5, 2, until=lambda v: v > 50)
    e = info.value
    assert isinstance(e, TimeoutError)
    assert (e.what, e.timeout_s, e.last) == ("the thing", 5, 3)
    assert str(e) == "the thing: not reached after 5 s (last value: 3)"
    # checks at 0, 2, 4 and once more at the deadline (the last pause shortened to it)
    assert t.sleeps == [2, 2, 1] and t.now == 105


def test_the_last_value_can_be_used_on_timeout() -> None:
    t = FakeTime()
    try:
        got = _wait(t, lambda: [1, 2], 3, 1, until=lambda rs: len(rs) >= 5)
    except WaitTimeout as e:
        got = e.last
    assert got == [1, 2]


def test_exceptions_of_check_propagate_unless_retried() -> None:
    t = FakeTime()

    def broken() -> int:
        raise KeyError("boom")

    with pytest.raises(KeyError):
        _wait(t, broken, 10, 1)
    assert t.sleeps == []

    calls = iter([ConnectionError("not yet"), ConnectionError("still not"), 42])

    def flaky() -> int:
        v = next(calls)
        if isinstance(v, Exception):
            raise v
        return v

    assert _wait(t, flaky, 10, 1, retry_on=(ConnectionError,)) == 42

    with pytest.raises(WaitTimeout) as info:
        _wait(t, lambda: (_ for _ in ()).throw(ConnectionError("down")), 2, 1, retry_on=(ConnectionError,))
    assert isinstance(info.value.last, ConnectionError)
    assert info.value.__cause__ is info.value.last


def test_a_long_last_value_is_shortened_in_the_message() -> None:
    t = FakeTime()
    with pytest.raises(WaitTimeout) as info:
        _wait(t, lambda: "x" * 10_000, 1, 1, until=lambda v: False)
    assert len(str(info.value)) < 600 and info.value.last == "x" * 10_000


def test_steady_waits_for_two_equal_reads_that_meet_the_condition() -> None:
    t = FakeTime()
    reads = iter([{"received": 1}, {"received": 9}, {"received": 10}, {"received": 10}, {"received": 10}])
    got = _wait(t, lambda: next(reads), 60, 2, until=steady(lambda c: c["received"] >= 10))
    assert got == {"received": 10} and len(t.sleeps) == 3
    settled = steady(lambda v: v > 0)
    assert [settled(v) for v in (0, 0, 1, 1, 2)] == [False, False, False, True, False]


def test_doctests() -> None:
    result = doctest.testmod(local.polling, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 4 and result.failed == 0
