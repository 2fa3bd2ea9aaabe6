""":func:`generate`: the entry point, and the :class:`Dataset` it returns.

A run plays every planted person's journey (:mod:`generator.journeys`), encodes the events
(:mod:`generator.encoding`), plans production order with the injected faults
(:mod:`generator.faults`), and assembles the records in that order together with the
:class:`generator.truth.GroundTruth` that describes them, including what the journeys stage
must find (:func:`journey_events`, :mod:`generator.journey_truth`).

Examples
--------
>>> ds = generate(seed=3, persons=5)
>>> [r.kind for r in ds.records].count("valid") == len(ds.truth.valid_event_ids)
True
>>> ds.max_valid_occurred_at_ms >= ds.truth.params["base_time_ms"]
True
>>> generate(seed=3, persons=0)
Traceback (most recent call last):
...
ValueError: persons must be a positive int, got 0
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from generator.context import Generation
from generator.encoding import JourneyEvent, number_and_encode
from generator.faults import bad_records, duplicates, jitter, make_late, swap_adjacent
from generator.journey_truth import journey_truth
from generator.journeys import play_journeys
from generator.persons import PHONE_COUNTRY_CODE
from generator.records import GeneratedRecord, PendingRecord, topic_of
from generator.supernodes import Supernodes
from generator.timing import DAY_MS, DEFAULT_BASE_TIME_MS, MIN_VALID_TIMESTAMP_MS, YEAR_2100_MS
from generator.truth import BadRecordTruth, DuplicateTruth, GroundTruth, LateEventTruth
from models.contract import CHANNELS, EVENT_TYPES
from models.events import iso_utc
from models.normalize import normalize_email, normalize_phone

#: Defaults of :func:`generate` (and of ``python -m generator``).
DEFAULT_BAD_RATIO = 0.02
DEFAULT_DUP_RATIO = 0.03
DEFAULT_LATE_RATIO = 0.02
DEFAULT_REORDER_RATIO = 0.03
DEFAULT_DAYS = 14


@dataclass
class Dataset:
    """Generated records in production order plus their ground truth.

    Attributes
    ----------
    records : list of GeneratedRecord
        Produce them in this order.
    truth : GroundTruth
        What the pipeline should conclude from them.
    """

    records: list[GeneratedRecord]
    truth: GroundTruth

    def summary(self) -> dict[str, Any]:
        """Same as :meth:`GroundTruth.summary`."""
        return self.truth.summary()

    @property
    def max_valid_occurred_at_ms(self) -> int | None:
        """Latest ``occurred_at`` of a valid record (``None`` if there is none).

        Ingestion rejects events more than its future skew after the Kafka timestamp, so
        a dataset must not be produced before this time (minus the skew).
        """
        times = [r.occurred_at for r in self.records if r.kind == "valid" and r.occurred_at is not None]
        return max(times) if times else None


def generate(
    seed: int,
    persons: int,
    base_time_ms: int = DEFAULT_BASE_TIME_MS,
    bad_ratio: float = DEFAULT_BAD_RATIO,
    dup_ratio: float = DEFAULT_DUP_RATIO,
    late_ratio: float = DEFAULT_LATE_RATIO,
    *,
    reorder_ratio: float = DEFAULT_REORDER_RATIO,
    days: int = DEFAULT_DAYS,
    min_valid_timestamp_ms: int = MIN_VALID_TIMESTAMP_MS,
    supernodes: Supernodes | None = None,
) -> Dataset:
    """Generate a deterministic synthetic dataset with ground truth.

    Parameters
    ----------
    seed : int
        Seed of the only random source (``random.Random(seed)``); same arguments, same bytes.
    persons : int
        Number of planted persons (at least 1). Every behaviour appears once ``persons >= 5``;
        all 17 event types and 5 channels appear for ``persons >= 50`` (erasures need 20).
    base_time_ms : int
        Start of the synthetic calendar (epoch ms), at or after ``min_valid_timestamp_ms``.
        Events occur over ``days`` days after it (a person's last sessions may spill over by a
        few days). It must be far enough in the past for the dataset to be produced now:
        ingestion rejects events more than its future skew (24 h by default) after the Kafka
        timestamp.
    bad_ratio : float
        Bad records per valid event, in [0, 1); when positive, at least one of each of the
        eight dead-letter error types is generated (they cycle through the types).
    dup_ratio : float
        Duplicate records per valid event, in [0, 1]; each duplicates a distinct event.
    late_ratio : float
        Fraction of valid events made late, in [0, 1) (fewer near the end of the calendar,
        where no event occurs hours afterwards).
    reorder_ratio : float, keyword-only
        Probability that a pair of adjacent events of a session is swapped, in [0, 1).
    days : int, keyword-only
        Length of the calendar, at least 1.
    min_valid_timestamp_ms : int, keyword-only
        The lower bound of ``occurred_at`` of the ingestion the dataset is meant for (epoch
        ms, >= 0): by default the live bound 2000-01-01; for history before it, the backfill
        bound (``JOURNEY_BACKFILL_MIN_VALID_TIMESTAMP_MS``). The ``invalid_timestamp`` bad
        records are impossible under it (:func:`generator.bad_records.invalid_timestamps`).
    supernodes : Supernodes or None, keyword-only
        Plant store kiosks, family tablets and a call-centre agent login used by several
        persons (:mod:`generator.supernodes`; truth in :attr:`GroundTruth.supernodes`). ``None``
        (the default): none, and the dataset is exactly what it was before supernodes existed.
        Needs :attr:`Supernodes.persons_needed` persons who are not erased. The journeys
        oracle does not model shared identifiers: :attr:`GroundTruth.journeys` is then empty.

    Returns
    -------
    Dataset
        Records in production order and the :class:`GroundTruth`.

    Raises
    ------
    ValueError
        For an argument out of range.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")
    if isinstance(persons, bool) or not isinstance(persons, int) or persons < 1:
        raise ValueError(f"persons must be a positive int, got {persons!r}")
    if (
        isinstance(min_valid_timestamp_ms, bool)
        or not isinstance(min_valid_timestamp_ms, int)
        or min_valid_timestamp_ms < 0
    ):
        raise ValueError(
            f"min_valid_timestamp_ms must be an epoch-ms int >= 0 (ingestion never accepts events "
            f"before the Unix epoch), got {min_valid_timestamp_ms!r}"
        )
    if isinstance(base_time_ms, bool) or not isinstance(base_time_ms, int) or base_time_ms < min_valid_timestamp_ms:
        raise ValueError(
            f"base_time_ms must be an epoch-ms int at or after min_valid_timestamp_ms="
            f"{min_valid_timestamp_ms} ({iso_utc(min_valid_timestamp_ms)}), got {base_time_ms!r}"
            + (
                f" ({iso_utc(base_time_ms)}); for history, pass the lower bound of the backfill topics "
                f"(JOURNEY_BACKFILL_MIN_VALID_TIMESTAMP_MS) as min_valid_timestamp_ms"
                if isinstance(base_time_ms, int) and base_time_ms >= 0
                else ""
            )
        )
    if base_time_ms + (days + 30) * DAY_MS >= YEAR_2100_MS:
        raise ValueError(f"base_time_ms={base_time_ms} is too close to the year 2100")
    for name, value, upper in (
        ("bad_ratio", bad_ratio, 1.0),
        ("late_ratio", late_ratio, 1.0),
        ("reorder_ratio", reorder_ratio, 1.0),
    ):
        if not isinstance(value, (int, float)) or not 0.0 <= value < upper:
            raise ValueError(f"{name} must be in [0, {upper}), got {value!r}")
    if not isinstance(dup_ratio, (int, float)) or not 0.0 <= dup_ratio <= 1.0:
        raise ValueError(f"dup_ratio must be in [0, 1], got {dup_ratio!r}")
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ValueError(f"days must be a positive int, got {days!r}")
    if supernodes is not None and not isinstance(supernodes, Supernodes):
        raise ValueError(f"supernodes must be a generator.supernodes.Supernodes or None, got {supernodes!r}")
    g = Generation(
        seed,
        persons,
        base_time_ms,
        days,
        float(bad_ratio),
        float(dup_ratio),
        float(late_ratio),
        float(reorder_ratio),
        min_valid_timestamp_ms,
        supernodes,
    )
    return _run(g)


def _run(g: Generation) -> Dataset:
    """Journeys, then production order with the faults (in this order of random draws), then the dataset."""
    events = play_journeys(g)
    number_and_encode(events, g.seed, g.codec)
    for p in g.persons:
        p.truth.event_ids = [ev.event_id for ev in p.events]
    jitter(g, events)
    out_of_order, swapped = swap_adjacent(g)
    late = make_late(g, events, swapped | planted_journey_events(g))
    pending: list[PendingRecord] = []
    record_of: dict[int, PendingRecord] = {}  # id(event) -> its valid record
    for ev in events:
        person = g.persons[ev.person]
        rec = PendingRecord(
            ev.prod_ms,
            len(pending),
            "valid",
            topic_of(ev.channel),
            person.key,
            ev.value,
            event_id=ev.event_id,
            person_id=person.truth.person_id,
            event_type=ev.event_type,
            occurred_at=ev.occurred_at,
        )
        pending.append(rec)
        record_of[id(ev)] = rec
    pending += duplicates(g, events, record_of, seq=len(pending))
    pending += bad_records(g, len(events), seq=len(pending))
    pending.sort(key=lambda r: (r.prod_ms, r.seq))
    for i, r in enumerate(pending):
        r.index = i
    return Dataset([r.generated() for r in pending], _ground_truth(g, pending, events, out_of_order, late))


def planted_journey_events(g: Generation) -> set[int]:
    """``id()`` of the events a planted cart follow-up depends on, never made late: the
    followed carts' events, the reminder opens, and the identify, CRM and consent events of
    their owners (the links and consent that make the abandonment published and the open theirs)."""
    followed = [c for c in g.carts if c.reminder_opened_at is not None or c.recovered_at is not None]
    carts = {c.cart_id for c in followed}
    opens = {(c.person_id, c.reminder_opened_at) for c in followed if c.reminder_opened_at is not None}
    owners = {c.person_id for c in followed}
    out: set[int] = set()
    for p in g.persons:
        if p.truth.person_id not in owners:
            continue
        for ev in p.events:
            if (
                ev.payload[1].get("cart_id") in carts
                or ev.event_type in ("identify", "crm_update", "consent_update")
                or (ev.event_type == "email_open" and (p.truth.person_id, ev.occurred_at) in opens)
            ):
                out.add(id(ev))
    return out


def journey_events(events: list[JourneyEvent]) -> list[dict[str, Any]]:
    """The events as :func:`generator.journey_truth.journey_truth` reads them: email and phone
    normalized (the job sees their salted hashes: the same equalities)."""
    out = []
    for ev in events:
        ids = dict(ev.identifiers)
        email, phone = ids.pop("email", None), ids.pop("phone", None)
        ids["email_hash"] = normalize_email(email) if email is not None else None
        ids["phone_hash"] = normalize_phone(phone, PHONE_COUNTRY_CODE) if phone is not None else None
        out.append(
            {
                "event_id": ev.event_id,
                "event_type": ev.event_type,
                "channel": ev.channel,
                "occurred_at": ev.occurred_at,
                "identifiers": ids,
                "payload": ev.payload,
                "context": ev.context,
            }
        )
    return out


def _ground_truth(
    g: Generation,
    pending: list[PendingRecord],
    events: list[JourneyEvent],
    out_of_order: list[JourneyEvent],
    late: list[JourneyEvent],
) -> GroundTruth:
    """The truth of a run, from its records in production order."""
    # lateness as produced: latest occurred_at among valid records produced before it
    stream_latest: int | None = None
    person_latest: dict[str, int] = {}
    lateness: dict[str, tuple[int, int]] = {}
    index_of: dict[str, int] = {}
    for r in pending:
        if r.kind != "valid" or r.person_id is None or r.occurred_at is None or r.event_id is None:
            continue
        index_of[r.event_id] = r.index
        mine = person_latest.get(r.person_id, r.occurred_at)
        lateness[r.event_id] = (
            max(stream_latest or r.occurred_at, r.occurred_at) - r.occurred_at,
            max(mine, r.occurred_at) - r.occurred_at,
        )
        stream_latest = r.occurred_at if stream_latest is None else max(stream_latest, r.occurred_at)
        person_latest[r.person_id] = max(mine, r.occurred_at)
    late_truth = sorted(
        (
            LateEventTruth(
                ev.event_id,
                g.persons[ev.person].truth.person_id,
                index_of[ev.event_id],
                ev.occurred_at,
                *lateness[ev.event_id],
            )
            for ev in late
        ),
        key=lambda e: e.record_index,
    )
    dups = [
        DuplicateTruth(r.event_id or "", r.index, r.original.index if r.original else -1)
        for r in pending
        if r.kind == "duplicate"
    ]
    bad = [
        BadRecordTruth(r.index, r.error_type or "", r.variant, r.topic, r.event_id, r.value)
        for r in pending
        if r.kind == "bad"
    ]
    topic_counts = Counter(r.topic for r in pending)
    type_counts = Counter(ev.event_type for ev in events)
    channel_counts = Counter(ev.channel for ev in events)
    params: dict[str, Any] = {
        "persons": g.n_persons,
        "base_time_ms": g.base,
        "days": g.days,
        "bad_ratio": g.bad_ratio,
        "dup_ratio": g.dup_ratio,
        "late_ratio": g.late_ratio,
        "reorder_ratio": g.reorder_ratio,
        "min_valid_timestamp_ms": g.min_valid,
    }
    if g.supernodes is not None:  # absent otherwise: a dataset without supernodes keeps its bytes
        params["supernodes"] = asdict(g.supernodes)
    return GroundTruth(
        seed=g.seed,
        params=params,
        persons=[p.truth for p in g.persons],
        valid_event_ids=sorted(ev.event_id for ev in events),
        duplicates=dups,
        bad_records=bad,
        carts=list(g.carts),
        late_events=late_truth,
        out_of_order_event_ids=[ev.event_id for ev in sorted(out_of_order, key=lambda e: index_of[e.event_id])],
        topic_counts={topic_of(c): topic_counts.get(topic_of(c), 0) for c in CHANNELS},
        event_type_counts={t: type_counts.get(t, 0) for t in EVENT_TYPES},
        channel_counts={c: channel_counts.get(c, 0) for c in CHANNELS},
        # the journeys oracle links every identifier an event carries (docs/journeys.md): it does
        # not model shared identifiers, so a dataset with supernodes has no journeys truth
        journeys={}
        if g.supernodes is not None
        else journey_truth(journey_events(events), [ev.event_id for ev in late]).counts(),
        supernodes=list(g.supernode_truth),
    )
