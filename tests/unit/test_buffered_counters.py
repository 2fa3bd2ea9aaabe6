"""BufferedCounters: counts reach Flink's counters exactly, including after the last element
(a processing-time timer is pending after every tick)."""

from __future__ import annotations

from operators.counters import BufferedCounters


class FakeCounter:
    def __init__(self) -> None:
        self.n = 0
        self.calls = 0

    def inc(self, n: int = 1) -> None:
        self.n += n
        self.calls += 1


class FakeGroup:
    def __init__(self) -> None:
        self.counters: dict[str, FakeCounter] = {}

    def counter(self, name: str) -> FakeCounter:
        return self.counters.setdefault(name, FakeCounter())


class FakeTimers:
    def __init__(self) -> None:
        self.now = 1_000
        self.registered: list[int] = []

    def current_processing_time(self) -> int:
        return self.now

    def register_processing_time_timer(self, t: int) -> None:
        self.registered.append(t)


def test_counts_are_pushed_once_per_interval_and_by_the_timer_after_the_last_element() -> None:
    group, timers = FakeGroup(), FakeTimers()
    c = BufferedCounters(group, ["events"], interval_s=3600)
    for _ in range(1000):
        c.tick(timers)
        c.inc("events")
    assert group.counters["events"].n == 0  # nothing pushed inside the interval
    assert timers.registered == [1_000 + 3_600_000]  # one timer pending, not one per element
    c.on_timer(timers.registered[0] - 1)  # another timer of the operator: not due, no push
    assert group.counters["events"].n == 0
    c.on_timer(timers.registered[0])  # the counters' timer
    assert (group.counters["events"].n, group.counters["events"].calls) == (1000, 1)
    timers.now += 5_000
    c.tick(timers)
    c.inc("events", 5)
    assert timers.registered[1:] == [6_000 + 3_600_000]  # a new timer for the counts after the push
    c.on_timer(timers.registered[1])
    assert group.counters["events"].n == 1005


def test_a_due_interval_pushes_on_the_next_tick_without_a_timer() -> None:
    group, timers = FakeGroup(), FakeTimers()
    c = BufferedCounters(group, ["a", "b"], interval_s=0)
    c.inc("a", 3)
    c.tick(timers)
    assert (group.counters["a"].n, group.counters["b"].calls) == (3, 0)  # zero counts are not pushed
