""":func:`kiosk_population`: one store kiosk shared by many persons, for benchmarks.

Each of ``persons`` persons logs in once on the kiosk (an ``identify`` carrying their
``customer_id`` and the kiosk's ``device_id``), then, hours later, browses at home on their own
cookie: a login there (``customer_id``, email, cookie) and ``events_per_person - 2`` product
views. With ``shared=False`` the very same events are drawn, except that each person's kiosk
login carries a ``device_id`` of their own instead of the kiosk's: a benchmark can compare the
identity graph with and without the shared identifier on otherwise equal input.

No faults: every record is valid, in event-time order. The truth is a
:class:`generator.truth.GroundTruth` like :func:`generator.dataset.generate`'s (persons, event
counts; ``supernodes`` names the kiosk, shared when its users are over the ``device_id`` /
``customer_id`` limit of 5, ambiguous from 2 to 5); carts, journeys and faults are empty.

Examples
--------
>>> ds = kiosk_population(7, 4, seed=1)
>>> len(ds.records), ds.truth.summary()["valid"]
(28, 28)
>>> [(s.kind, s.type, s.co_values, s.shared_by) for s in ds.truth.supernodes]
[('kiosk', 'device_id', 7, 'customer_id')]
>>> own = kiosk_population(7, 4, seed=1, shared=False)
>>> own.truth.supernodes, len(own.truth.persons[0].device_ids)
([], 1)
>>> [r.event_id for r in own.records] == [r.event_id for r in ds.records]
True
"""

from __future__ import annotations

from collections import Counter

from generator.actions import identify, view
from generator.catalog import EMAIL_DOMAINS, FIRST_NAMES, LAST_NAMES, LOCALES, STORES, USER_AGENTS
from generator.context import Generation
from generator.dataset import Dataset
from generator.encoding import JourneyEvent, identifiers, number_and_encode
from generator.persons import Person
from generator.records import GeneratedRecord, topic_of
from generator.timing import DAY_MS, DEFAULT_BASE_TIME_MS, HOUR_MS, SESSION_GAP_MS
from generator.truth import GroundTruth, PersonTruth, SupernodeTruth, shared_by
from models.contract import CHANNELS, EVENT_TYPES


def kiosk_population(
    persons: int,
    events_per_person: int,
    seed: int,
    *,
    shared: bool = True,
    base_time_ms: int = DEFAULT_BASE_TIME_MS,
    days: int = 1,
) -> Dataset:
    """``persons`` persons who each log in once on one store kiosk, then browse on their own cookie.

    Parameters
    ----------
    persons : int
        Persons (>= 1). Above 5 the kiosk is a shared identifier (it links nothing); from 2
        to 5 it is ambiguous (its links to their customer ids are refused).
    events_per_person : int
        Events of each person (>= 2): the kiosk login, the login on their cookie, then
        product views on it.
    seed : int
        Seed of the only random source: same arguments, same bytes.
    shared : bool, keyword-only
        ``True``: the kiosk logins carry the kiosk's ``device_id``; ``False``: each carries
        a ``device_id`` of the person's own (drawn in both cases, so nothing else differs).
    base_time_ms : int, keyword-only
        Start of the calendar (epoch ms); the kiosk logins fall within ``days`` days of it,
        the browsing 2 to 3 hours after each.
    days : int, keyword-only
        Length of the calendar (>= 1).

    Returns
    -------
    Dataset
        Valid records in event-time order, and their :class:`GroundTruth`.
    """
    for name, value, low in (("persons", persons, 1), ("events_per_person", events_per_person, 2), ("days", days, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")
    g = Generation(seed, persons, base_time_ms, days, 0.0, 0.0, 0.0, 0.0)
    rng = g.rng
    kiosk = g.unique(lambda: g.uuid().upper())
    is_supernode = shared and persons > 1  # a kiosk only one person uses is just their device
    for i in range(persons):
        customer_id = g.unique(lambda: f"cus_{rng.getrandbits(40):010x}")
        email = f"{rng.choice(FIRST_NAMES)}.{rng.choice(LAST_NAMES)}.{i}@{rng.choice(EMAIL_DOMAINS)}"
        cookie = g.unique(lambda: "ck." + g.uuid().replace("-", ""))
        own = g.unique(lambda: g.uuid().upper())
        device = kiosk if shared else own
        person = PersonTruth(
            person_id=f"p-{seed}-{i:06d}",
            behaviour="browser",
            customer_id=customer_id,
            email=email,
            email_variants=[email],
            phone=None,
            phone_variants=[],
            device_ids=[] if is_supernode else [device],
            cookie_ids=[cookie],
            loyalty_id=None,
            sessions=2,
        )
        p = Person(
            index=i,
            truth=person,
            key=person.person_id.encode(),
            device_os={device: "ios"},
            user_agent=rng.choice(USER_AGENTS),
            locale=rng.choice(LOCALES),
            home_store=rng.choice(STORES),
            phone_digits=None,
        )
        g.persons.append(p)
        t = base_time_ms + rng.randrange(days * DAY_MS)
        identify(g, p, t, "app", "login", identifiers(customer_id=customer_id, device_id=device), device)
        t += SESSION_GAP_MS + rng.randrange(HOUR_MS)
        identify(g, p, t, "web", "login", identifiers(customer_id=customer_id, email=email, cookie_id=cookie))
        ids = identifiers(customer_id=customer_id, cookie_id=cookie)
        for _ in range(events_per_person - 2):
            t = view(g, p, g.step(t), "web", ids, g.product(), rng.randint(2_000, 60_000))
    events: list[JourneyEvent] = sorted(
        (ev for p in g.persons for ev in p.events), key=lambda e: (e.occurred_at, e.person, e.pos)
    )
    number_and_encode(events, seed, g.codec)
    for p in g.persons:
        p.truth.event_ids = [ev.event_id for ev in p.events]
    records = [
        GeneratedRecord(
            topic_of(ev.channel),
            g.persons[ev.person].key,
            ev.value,
            "valid",
            event_id=ev.event_id,
            person_id=g.persons[ev.person].truth.person_id,
            event_type=ev.event_type,
            occurred_at=ev.occurred_at,
        )
        for ev in events
    ]
    supernodes = []
    if is_supernode:
        supernodes.append(
            SupernodeTruth(
                kind="kiosk",
                type="device_id",
                value=kiosk,
                person_ids=tuple(p.truth.person_id for p in g.persons),
                co_type="customer_id",
                co_values=persons,
                shared_by=shared_by("device_id", "customer_id", persons),
            )
        )
    topics = Counter(r.topic for r in records)
    types = Counter(ev.event_type for ev in events)
    channels = Counter(ev.channel for ev in events)
    truth = GroundTruth(
        seed=seed,
        params={
            "kiosk_population": True,
            "persons": persons,
            "events_per_person": events_per_person,
            "shared": shared,
            "base_time_ms": base_time_ms,
            "days": days,
        },
        persons=[p.truth for p in g.persons],
        valid_event_ids=sorted(ev.event_id for ev in events),
        duplicates=[],
        bad_records=[],
        carts=[],
        late_events=[],
        out_of_order_event_ids=[],
        topic_counts={topic_of(c): topics.get(topic_of(c), 0) for c in CHANNELS},
        event_type_counts={t: types.get(t, 0) for t in EVENT_TYPES},
        channel_counts={c: channels.get(c, 0) for c in CHANNELS},
        supernodes=supernodes,
    )
    return Dataset(records, truth)
