"""Planted persons: their identifiers, and the messy raw spellings events carry them in.

:func:`make_person` draws a person of a behaviour with a customer id, an email, usually a
phone, one or two devices and cookies and sometimes a loyalty card (every value unique in
the run). :func:`raw_email` and :func:`raw_phone` give the raw form an event carries (messy
casing, whitespace and phone formats), recording each variant in the person's truth.

Examples
--------
>>> from generator.context import Generation
>>> g = Generation(seed=5, persons=1, base_time_ms=0, days=1, bad_ratio=0.0, dup_ratio=0.0, late_ratio=0.0,
...                reorder_ratio=0.0)
>>> p = make_person(g, 0, "offline_shopper")
>>> p.truth.person_id, p.key, p.truth.loyalty_id is not None, p.truth.phone.startswith("+1")
('p-5-000000', b'p-5-000000', True, True)
>>> from models.normalize import normalize_email
>>> normalize_email(raw_email(g, p)) == p.truth.email and p.truth.email_variants != []
True
"""

from __future__ import annotations

from dataclasses import dataclass, field

from generator.catalog import AREA_CODES, EMAIL_DOMAINS, FIRST_NAMES, LAST_NAMES, LOCALES, STORES, USER_AGENTS
from generator.context import Generation
from generator.encoding import JourneyEvent
from generator.truth import PersonTruth
from models.normalize import normalize_phone

#: How often each of :data:`generator.truth.BEHAVIOURS` is drawn (beyond one person of each).
BEHAVIOUR_WEIGHTS: tuple[float, ...] = (0.25, 0.2, 0.2, 0.2, 0.15)
#: The synthetic phone numbers are North American (10 digits): E.164 country code 1.
PHONE_COUNTRY_CODE = "1"


@dataclass
class Person:
    """A planted person while the run builds their journey.

    Attributes
    ----------
    index : int
        Position in :attr:`generator.context.Generation.persons`.
    truth : PersonTruth
        What the ground truth says about them (filled in as the journey is played).
    key : bytes
        The Kafka key of their records (``person_id``).
    device_os : dict of str to str
        ``ios`` or ``android`` per device id.
    user_agent, locale, home_store : str
        Fixed per person.
    phone_digits : str or None
        The 10-digit national number behind every raw phone variant.
    events : list of JourneyEvent
        Their valid events, in the order played (event time).
    """

    index: int
    truth: PersonTruth
    key: bytes
    device_os: dict[str, str]
    user_agent: str
    locale: str
    home_store: str
    phone_digits: str | None
    events: list[JourneyEvent] = field(default_factory=list)


def make_person(g: Generation, index: int, behaviour: str) -> Person:
    """Draw the person number ``index`` of a behaviour, with identifiers unique in the run."""
    rng = g.rng
    person_id = f"p-{g.seed}-{index:06d}"
    customer_id = g.unique(lambda: f"cus_{rng.getrandbits(40):010x}")

    def make_email() -> str:
        sep = rng.choice((".", "_", ""))
        local = f"{rng.choice(FIRST_NAMES)}{sep}{rng.choice(LAST_NAMES)}{rng.randint(1, 9999)}"
        return f"{local}@{rng.choice(EMAIL_DOMAINS)}"

    def make_phone() -> str:
        return f"{rng.choice(AREA_CODES)}{rng.randint(200, 999)}{rng.randint(0, 9999):04d}"

    email = g.unique(make_email)
    loyalty = behaviour == "offline_shopper" or rng.random() < (0.5 if behaviour == "loyal_buyer" else 0.15)
    phone_digits = g.unique(make_phone) if loyalty or rng.random() < 0.85 else None
    devices = [g.unique(lambda: g.uuid().upper()) for _ in range(1 if rng.random() < 0.65 else 2)]
    cookies = [g.unique(lambda: "ck." + g.uuid().replace("-", "")) for _ in range(1 if rng.random() < 0.6 else 2)]
    loyalty_id = g.unique(lambda: f"LOY{rng.randint(10**9, 10**10 - 1)}") if loyalty else None
    truth = PersonTruth(
        person_id=person_id,
        behaviour=behaviour,
        customer_id=customer_id,
        email=email,
        email_variants=[],
        phone=normalize_phone(phone_digits, PHONE_COUNTRY_CODE) if phone_digits else None,
        phone_variants=[],
        device_ids=devices,
        cookie_ids=cookies,
        loyalty_id=loyalty_id,
    )
    return Person(
        index=index,
        truth=truth,
        key=person_id.encode(),
        device_os={d: rng.choice(("ios", "android")) for d in devices},
        user_agent=rng.choice(USER_AGENTS),
        locale=rng.choice(LOCALES),
        home_store=rng.choice(STORES),
        phone_digits=phone_digits,
    )


def raw_email(g: Generation, p: Person) -> str:
    """A raw spelling of the person's email (messy in about half the events)."""
    e = p.truth.email
    local, domain = e.split("@")
    style = g.rng.randrange(8)
    raw = (
        e,
        e,
        e,
        e.upper(),
        f"  {e} ",
        f"{local.capitalize()}@{domain.upper()}",
        f"\t{local.title()}@{domain.capitalize()}",
        f" {e.upper()}\n",
    )[style]
    if raw not in p.truth.email_variants:
        p.truth.email_variants.append(raw)
    return raw


def raw_phone(g: Generation, p: Person) -> str | None:
    """A raw format of the person's phone, or ``None`` if they have none."""
    d = p.phone_digits
    if d is None:
        return None
    a, b, c = d[:3], d[3:6], d[6:]
    raw = g.rng.choice(
        (
            f"({a}) {b}-{c}",
            f"+1 {a} {b} {c}",
            f"{a}.{b}.{c}",
            f"{a}{b}{c}",
            f"+1-{a}-{b}-{c}",
            f"001 {a} {b} {c}",
            f"{a}-{b}-{c}",
            f"+1 ({a}) {b}-{c}",
        )
    )
    if raw not in p.truth.phone_variants:
        p.truth.phone_variants.append(raw)
    return raw
