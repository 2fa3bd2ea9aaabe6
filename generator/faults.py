"""The faults a dataset injects into production order: reordering, lateness, duplicates, bad records.

Valid events are produced at their event time plus a small jitter (:func:`jitter`); then

* **out-of-order** -- two adjacent events of one person's session swap production times
  (:func:`swap_adjacent`);
* **late** -- events are produced right after an event (of any person) that occurred 2 to 8
  hours later (:func:`make_late`);
* **duplicates** -- byte copies of valid records, produced again seconds to two hours after
  the original (:func:`duplicates`);
* **bad records** -- cycling through the dead-letter error types, at random times and
  topics (:func:`bad_records`, values from :mod:`generator.bad_records`).

Every function draws from the run's random source in a fixed order (the order above).

Examples
--------
>>> from generator.context import Generation
>>> from generator.journeys import play_journeys
>>> g = Generation(seed=5, persons=8, base_time_ms=1_790_000_000_000, days=3, bad_ratio=0.0, dup_ratio=0.0,
...                late_ratio=0.05, reorder_ratio=0.3)
>>> events = play_journeys(g)
>>> jitter(g, events)
>>> out_of_order, swapped = swap_adjacent(g)
>>> all(a.prod_ms > g.persons[a.person].events[a.pos + 1].prod_ms for a in out_of_order)  # now after the next
True
>>> late = make_late(g, events, swapped)
>>> len(late) > 0 and all(max(e.occurred_at for e in events if e.prod_ms < ev.prod_ms) - ev.occurred_at
...                       >= MIN_LATENESS_MS for ev in late)
True
"""

from __future__ import annotations

import bisect

from generator.bad_records import bad_value
from generator.context import Generation
from generator.encoding import JourneyEvent
from generator.records import PendingRecord, topic_of
from generator.timing import DAY_MS, HOUR_MS, MAX_PRODUCE_JITTER_MS, MINUTE_MS, SECOND_MS
from models.contract import CHANNELS, DEAD_LETTER_REASONS

#: A late event is produced right after an event (of any person) that occurred this much later.
MIN_LATENESS_MS = 2 * HOUR_MS
MAX_LATENESS_MS = 8 * HOUR_MS
#: Adjacent events closer than this may be swapped (out-of-order within a session).
MAX_REORDER_GAP_MS = 10 * MINUTE_MS
#: Duplicates are produced this long after the original.
MIN_DUP_DELAY_MS = SECOND_MS
MAX_DUP_DELAY_MS = 2 * HOUR_MS


def jitter(g: Generation, events: list[JourneyEvent]) -> None:
    """Produce every event at its event time plus up to :data:`generator.timing.MAX_PRODUCE_JITTER_MS`."""
    for ev in events:
        ev.prod_ms = ev.occurred_at + g.rng.randrange(0, MAX_PRODUCE_JITTER_MS)


def swap_adjacent(g: Generation) -> tuple[list[JourneyEvent], set[int]]:
    """Swap the production times of adjacent events of a session (with ``g.reorder_ratio``).

    Returns
    -------
    out_of_order : list of JourneyEvent
        The first event of each swapped pair (now produced after the next one).
    swapped : set of int
        ``id()`` of every event in a swap (membership only).
    """
    swapped: set[int] = set()
    out_of_order: list[JourneyEvent] = []
    for p in g.persons:
        i = 0
        while i < len(p.events) - 1:
            a, b = p.events[i], p.events[i + 1]
            if b.occurred_at - a.occurred_at < MAX_REORDER_GAP_MS and g.rng.random() < g.reorder_ratio:
                a.prod_ms, b.prod_ms = b.prod_ms, a.prod_ms
                swapped.update((id(a), id(b)))
                out_of_order.append(a)
                i += 2
            else:
                i += 1
    return out_of_order, swapped


def make_late(g: Generation, events: list[JourneyEvent], swapped: set[int]) -> list[JourneyEvent]:
    """Make ``g.late_ratio`` of the events late: produced right after an event that occurred
    2-8 hours later (none of them swapped, none the target of another late event).

    ``events`` are in event-time order. Returns the late events.
    """
    rng = g.rng
    n_late = round(g.late_ratio * len(events))
    late: list[JourneyEvent] = []
    late_ids: set[int] = set()
    targets: set[int] = set()
    occurred = [ev.occurred_at for ev in events]
    candidates = [ev for ev in events if id(ev) not in swapped]
    rng.shuffle(candidates)
    for ev in candidates:
        if len(late) >= n_late:
            break
        if id(ev) in targets:
            continue
        j = bisect.bisect_right(occurred, ev.occurred_at + rng.randint(MIN_LATENESS_MS, MAX_LATENESS_MS)) - 1
        while (
            j >= 0
            and occurred[j] >= ev.occurred_at + MIN_LATENESS_MS
            and (id(events[j]) in swapped or id(events[j]) in late_ids)
        ):
            j -= 1
        if j < 0 or occurred[j] < ev.occurred_at + MIN_LATENESS_MS:
            continue
        ev.prod_ms = events[j].prod_ms + rng.randint(SECOND_MS, MINUTE_MS)
        late.append(ev)
        late_ids.add(id(ev))
        targets.add(id(events[j]))
    return late


def duplicates(
    g: Generation, events: list[JourneyEvent], record_of: dict[int, PendingRecord], seq: int
) -> list[PendingRecord]:
    """Byte copies of ``g.dup_ratio`` of the valid records (each copied once), some time after the original.

    ``record_of`` maps ``id(event)`` to its valid record; ``seq`` is the first sequence number.
    """
    rng = g.rng
    out: list[PendingRecord] = []
    n_dup = min(round(g.dup_ratio * len(events)), len(events))
    for ev in rng.sample(events, n_dup):
        orig = record_of[id(ev)]
        out.append(
            PendingRecord(
                orig.prod_ms + rng.randint(MIN_DUP_DELAY_MS, MAX_DUP_DELAY_MS),
                seq + len(out),
                "duplicate",
                orig.topic,
                orig.key,
                orig.value,
                original=orig,
                event_id=orig.event_id,
                person_id=orig.person_id,
                event_type=orig.event_type,
                occurred_at=orig.occurred_at,
            )
        )
    return out


def bad_records(g: Generation, n_valid: int, seq: int) -> list[PendingRecord]:
    """``g.bad_ratio`` bad records per valid event (at least one of each error type when
    positive), cycling through the error types, each borrowing a random person's identity,
    at a random time of the calendar, to a random channel's topic.

    ``seq`` is the first sequence number.
    """
    rng = g.rng
    out: list[PendingRecord] = []
    n_bad = round(g.bad_ratio * n_valid)
    if g.bad_ratio > 0:
        n_bad = max(n_bad, len(DEAD_LETTER_REASONS))
    horizon = g.days * DAY_MS
    for k in range(n_bad):
        error_type = DEAD_LETTER_REASONS[k % len(DEAD_LETTER_REASONS)]
        p = rng.choice(g.persons)
        t = g.base + rng.randrange(0, horizon)
        event_id = f"bad-{g.seed}-{k:06d}"
        value, variant, raw_event = bad_value(g, error_type, p, t, event_id)
        decodable = raw_event is not None
        eid = raw_event["event_id"] if raw_event is not None and raw_event["event_id"].strip() else None
        out.append(
            PendingRecord(
                t + rng.randrange(0, MAX_PRODUCE_JITTER_MS),
                seq + len(out),
                "bad",
                topic_of(rng.choice(CHANNELS)),
                p.key if decodable else None,
                value,
                error_type=error_type,
                variant=variant,
                event_id=eid,
                person_id=p.truth.person_id if decodable else None,
                event_type=raw_event["event_type"] if raw_event is not None else None,
                occurred_at=raw_event["occurred_at"] if raw_event is not None else None,
            )
        )
    return out
