"""Seeded synthetic customer journeys, with injected faults and the ground truth to check them.

:func:`generate` plants persons with several identifiers each (customer id, messy email and
phone, one or two devices and cookies, sometimes a loyalty card) and a behavioural type, plays
their journeys across the five channels (anonymous web browsing, logins, carts, purchases,
app and push, email campaigns, CRM updates, store visits, consent and erasure), and encodes
every event as a single-object-encoded ``journey.v1.Event``. It then injects the faults an
ingestion pipeline must survive:

* **duplicates** -- exact byte copies of valid events, produced again seconds to two hours
  after the original (same ``event_id``);
* **out-of-order** -- two adjacent events of one person's session swapped in production order;
* **late** -- events produced after events (of any person) that occurred 2 to 8 hours later;
* **bad records** -- one kind per dead-letter error type (``models.ingest.DEAD_LETTER_REASONS``),
  each with the error the ingestion stage must report.

A dataset targets one lower bound of ``occurred_at`` (``min_valid_timestamp_ms``, by default
ingestion's live bound 2000-01-01): its valid events occur after it and its ``invalid_timestamp``
records are impossible under it. History datasets (a ``base_time_ms`` in 2010 or the 1990s) pass
the bound of the backfill topics they are meant for (``JOURNEY_BACKFILL_MIN_VALID_TIMESTAMP_MS``,
docs/operations.md).

Everything is drawn from one ``random.Random(seed)``: the same arguments give the same bytes on
every run and every machine. Nothing is checked against the ingestion code here; the unit tests
run every record through :class:`models.ingest.Ingestor` independently.

Examples
--------
>>> ds = generate(seed=3, persons=5)
>>> ds.records == generate(seed=3, persons=5).records
True
>>> s = ds.summary()
>>> s["records"] == s["valid"] + s["duplicate"] + s["bad"] == len(ds.records)
True
>>> sorted({r.kind for r in ds.records})
['bad', 'duplicate', 'valid']
"""

from __future__ import annotations

import base64
import bisect
import json
import math
import random
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Literal

from models.avro_codec import HEADER_LEN, MAGIC, Codec, DecodeError, SchemaCatalog
from models.events import CHANNELS, EVENT_TYPES, PAYLOAD_OF, iso_utc
from models.ingest import DEAD_LETTER_REASONS
from models.normalize import normalize_phone

SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

#: 2026-09-21T14:13:20Z, the default start of the synthetic calendar.
DEFAULT_BASE_TIME_MS = 1_790_000_000_000
#: 2000-01-01T00:00:00Z: ingestion's lower bound on live topics (``JOURNEY_MIN_VALID_TIMESTAMP_MS``),
#: the default for the datasets. History datasets pass the backfill bound instead.
MIN_VALID_TIMESTAMP_MS = 946_684_800_000
#: 2100-01-01T00:00:00Z, used for the far-future invalid timestamp.
YEAR_2100_MS = 4_102_444_800_000

NAMESPACE = "journey.v1."
CURRENCY = "USD"
TRUTH_FORMAT_VERSION = 1

BEHAVIOURS: tuple[str, ...] = ("browser", "bargain_hunter", "loyal_buyer", "cart_abandoner", "offline_shopper")
_BEHAVIOUR_WEIGHTS: tuple[float, ...] = (0.25, 0.2, 0.2, 0.2, 0.15)

#: Two events of one session are at least this far apart, more than the production jitter.
MIN_STEP_MS = 3 * SECOND_MS
#: Production jitter added to ``occurred_at`` (always below :data:`MIN_STEP_MS`).
MAX_PRODUCE_JITTER_MS = 1_500
#: Sessions of one person are separated by at least this much inactivity.
SESSION_GAP_MS = 2 * HOUR_MS
#: A late event is produced right after an event (of any person) that occurred this much later.
MIN_LATENESS_MS = 2 * HOUR_MS
MAX_LATENESS_MS = 8 * HOUR_MS
#: Adjacent events closer than this may be swapped (out-of-order within a session).
MAX_REORDER_GAP_MS = 10 * MINUTE_MS
#: Duplicates are produced this long after the original.
MIN_DUP_DELAY_MS = SECOND_MS
MAX_DUP_DELAY_MS = 2 * HOUR_MS

RecordKind = Literal["valid", "duplicate", "bad"]
RECORD_KINDS: tuple[str, ...] = ("valid", "duplicate", "bad")

_CATEGORIES: tuple[tuple[str, float, float, tuple[str, ...]], ...] = (
    ("shoes", 35.0, 180.0, ("running shoes", "sneakers", "boots", "sandals")),
    ("apparel", 12.0, 140.0, ("rain jacket", "jeans", "t-shirt", "hoodie")),
    ("electronics", 25.0, 900.0, ("headphones", "smart watch", "charger", "speaker")),
    ("home", 9.0, 260.0, ("coffee maker", "lamp", "bed sheets", "blender")),
    ("beauty", 6.0, 85.0, ("face cream", "shampoo", "perfume", "lipstick")),
    ("sports", 15.0, 320.0, ("yoga mat", "tennis racket", "dumbbells", "bike helmet")),
    ("toys", 8.0, 95.0, ("lego set", "puzzle", "board game", "plush bear")),
    ("books", 7.0, 45.0, ("cookbook", "thriller", "travel guide", "sci-fi novel")),
)
_FIRST_NAMES: tuple[str, ...] = (
    "ann", "ben", "carla", "dev", "elena", "farid", "grace", "hiro", "ines", "jamal", "kim", "luca",
    "maya", "nils", "olga", "pedro", "quinn", "rosa", "sam", "tara", "uma", "victor", "wen", "yusuf", "zoe",
)
_LAST_NAMES: tuple[str, ...] = (
    "smith", "garcia", "chen", "okafor", "muller", "rossi", "tanaka", "silva", "novak", "kowalski",
    "dubois", "haddad", "larsen", "patel", "nguyen", "obrien", "schmidt", "costa", "ivanova", "moreau",
)
_EMAIL_DOMAINS: tuple[str, ...] = (
    "example.com", "example.org", "example.net", "mail.example", "inbox.example", "post.example.co",
)
_AREA_CODES: tuple[str, ...] = ("415", "212", "312", "617", "206", "303", "512", "646", "702", "808")
_USER_AGENTS: tuple[str, ...] = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/129.0",
    "Mozilla/5.0 (X11; Linux x86_64) Firefox/131.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) Mobile/15E148",
)
_LOCALES: tuple[str, ...] = ("en-US", "en-GB", "es-US", "fr-CA", "de-DE")
_CITIES: tuple[str, ...] = ("San Francisco", "New York", "Chicago", "Boston", "Seattle", "Denver", "Austin")
_STORES: tuple[str, ...] = tuple(f"store-{k:03d}" for k in range(1, 21))
_CAMPAIGNS: tuple[str, ...] = tuple(f"cmp-{k:03d}" for k in range(1, 13))
_REFERRERS: tuple[str | None, ...] = (None, None, "https://www.google.example/", "https://social.example/feed")


def topic_of(channel: str) -> str:
    """The input topic of a channel.

    Parameters
    ----------
    channel : str
        One of :data:`models.events.CHANNELS`.

    Returns
    -------
    str
        ``journey.events.<channel>``.
    """
    return f"journey.events.{channel}"


# --------------------------------------------------------------------------- public data model


@dataclass(frozen=True)
class GeneratedRecord:
    """One Kafka record to produce, in production order.

    Attributes
    ----------
    topic : str
        ``journey.events.<channel>``; bad records go to a random channel's topic.
    key : bytes or None
        The person's stable key (``person_id``), so one person's events share a partition.
        ``None`` for bad records that are not decodable at all.
    value : bytes
        The Kafka value (a single-object-encoded ``Event`` unless the record is bad).
    kind : {"valid", "duplicate", "bad"}
        ``duplicate`` is a byte-identical copy of an earlier ``valid`` record.
    event_id : str or None
        The event id, where the value carries a non-blank one.
    expected_error : str or None
        For ``bad`` records: the DeadLetter ``error_type`` ingestion must report.
    person_id : str or None
        The planted person the record belongs to (bad records may borrow a person's identity).
    event_type : str or None
        The event type, where the value carries one.
    occurred_at : int or None
        ``occurred_at`` in epoch ms, where the value carries one.
    """

    topic: str
    key: bytes | None
    value: bytes
    kind: RecordKind
    event_id: str | None = None
    expected_error: str | None = None
    person_id: str | None = None
    event_type: str | None = None
    occurred_at: int | None = None


@dataclass
class PersonTruth:
    """A planted person: behaviour, every raw identifier, and what their journey contains.

    Attributes
    ----------
    person_id : str
        Ground-truth identity (also the Kafka key of the person's records).
    behaviour : str
        One of :data:`BEHAVIOURS`.
    customer_id : str
        Shop account id (carried as is).
    email : str
        The normalized email (what every raw variant normalizes to).
    email_variants : list of str
        Raw spellings used in events (messy casing and whitespace), in first-use order.
    phone : str or None
        The E.164 phone, if the person has one.
    phone_variants : list of str
        Raw phone formats used in events, in first-use order.
    device_ids, cookie_ids : list of str
        One or two each; each is linked to ``customer_id`` by at least one event.
    loyalty_id : str or None
        Loyalty card, if any; linked to ``phone`` by at least one store event.
    erased : bool
        The person's last event is an ``erasure_request``.
    sessions : int
        Number of activity bursts in event time: gaps inside a burst are under 10 minutes,
        gaps between bursts at least 2 hours (so any 30-minute sessionizer finds exactly these).
    online_orders, store_orders : int
        Number of ``purchase`` and ``store_purchase`` events.
    revenue : float
        Sum of the totals of all orders, rounded to cents.
    event_ids : list of str
        The person's valid event ids in event-time order.
    """

    person_id: str
    behaviour: str
    customer_id: str
    email: str
    email_variants: list[str]
    phone: str | None
    phone_variants: list[str]
    device_ids: list[str]
    cookie_ids: list[str]
    loyalty_id: str | None
    erased: bool = False
    sessions: int = 0
    online_orders: int = 0
    store_orders: int = 0
    revenue: float = 0.0
    event_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CartTruth:
    """An online cart and how it ended.

    Attributes
    ----------
    cart_id, person_id, channel : str
        The cart, its owner and the channel of its events (``web`` or ``app``).
    opened_at, last_event_at : int
        ``occurred_at`` of the first ``add_to_cart`` and of the cart's last event.
    anonymous : bool
        Items were added while only a cookie identified the visitor.
    checkout_started, purchased : bool
        Whether ``checkout_started`` / ``purchase`` events exist for the cart.
    order_id : str or None
        The purchase's order id.
    units : int
        Units left in the cart at its last event.
    value : float
        ``sum(quantity * unit_price)`` of what is left, rounded to cents (the purchase total).
    """

    cart_id: str
    person_id: str
    channel: str
    opened_at: int
    last_event_at: int
    anonymous: bool
    checkout_started: bool
    purchased: bool
    order_id: str | None
    units: int
    value: float


@dataclass(frozen=True)
class BadRecordTruth:
    """A record that ingestion must dead-letter.

    Attributes
    ----------
    record_index : int
        Position in :attr:`Dataset.records`.
    error_type : str
        The expected DeadLetter ``error_type``.
    variant : str
        How the record was broken (for humans).
    topic : str
        Where it is produced.
    event_id : str or None
        Its event id, if it carries a non-blank one.
    raw : bytes
        The exact value (base64 in ``truth.json``).
    """

    record_index: int
    error_type: str
    variant: str
    topic: str
    event_id: str | None
    raw: bytes


@dataclass(frozen=True)
class DuplicateTruth:
    """A byte-identical re-send of a valid record.

    Attributes
    ----------
    event_id : str
        The shared event id.
    record_index, original_index : int
        Positions of the copy and of the original in :attr:`Dataset.records`.
    """

    event_id: str
    record_index: int
    original_index: int


@dataclass(frozen=True)
class LateEventTruth:
    """A valid event produced after events that occurred 2 to 8 hours later.

    Attributes
    ----------
    event_id, person_id : str
        The event and its person.
    record_index : int
        Its position in :attr:`Dataset.records`.
    occurred_at : int
        Its event time.
    lateness_ms : int
        Latest ``occurred_at`` among all valid records produced before it, minus its own
        ``occurred_at``: between :data:`MIN_LATENESS_MS` and about :data:`MAX_LATENESS_MS`.
        This is how far event time had advanced in the stream when it arrived.
    person_lateness_ms : int
        The same over the records of its own person only (they share a partition); often 0,
        as a person is rarely active in the hours after any given event.
    """

    event_id: str
    person_id: str
    record_index: int
    occurred_at: int
    lateness_ms: int
    person_lateness_ms: int


@dataclass
class GroundTruth:
    """Everything a test needs to judge the pipeline's output on a :class:`Dataset`.

    Attributes
    ----------
    seed : int
        The generator seed.
    params : dict
        The other :func:`generate` arguments.
    persons : list of PersonTruth
        The planted persons.
    valid_event_ids : list of str
        Every distinct valid event id, sorted.
    duplicates : list of DuplicateTruth
        The duplicate records, in production order.
    bad_records : list of BadRecordTruth
        The bad records, in production order.
    carts : list of CartTruth
        Every online cart, purchased or not.
    late_events : list of LateEventTruth
        Planted late events, in production order.
    out_of_order_event_ids : list of str
        Events produced right after the same person's next event (adjacent swap in a session).
    topic_counts, event_type_counts, channel_counts : dict of str to int
        Records per topic (all kinds); valid events per type and per channel.
    """

    seed: int
    params: dict[str, Any]
    persons: list[PersonTruth]
    valid_event_ids: list[str]
    duplicates: list[DuplicateTruth]
    bad_records: list[BadRecordTruth]
    carts: list[CartTruth]
    late_events: list[LateEventTruth]
    out_of_order_event_ids: list[str]
    topic_counts: dict[str, int]
    event_type_counts: dict[str, int]
    channel_counts: dict[str, int]

    @property
    def duplicate_count(self) -> int:
        """Number of duplicate records."""
        return len(self.duplicates)

    @property
    def late_event_ids(self) -> list[str]:
        """Ids of the late events, in production order."""
        return [e.event_id for e in self.late_events]

    def bad_by_error_type(self) -> dict[str, list[BadRecordTruth]]:
        """Bad records grouped by expected error type (every type present as a key)."""
        out: dict[str, list[BadRecordTruth]] = {t: [] for t in DEAD_LETTER_REASONS}
        for b in self.bad_records:
            out[b.error_type].append(b)
        return out

    def summary(self) -> dict[str, Any]:
        """Counts of everything, as plain JSON-able values.

        Returns
        -------
        dict
            ``records``, ``valid``, ``duplicate``, ``bad``, ``persons``, ``behaviours``,
            ``bad_by_error_type``, ``topics``, ``event_types``, ``channels``, ``carts``,
            ``carts_purchased``, ``carts_abandoned``, ``late_events``, ``out_of_order_events``,
            ``erased_persons``.
        """
        purchased = sum(1 for c in self.carts if c.purchased)
        return {
            "records": len(self.valid_event_ids) + len(self.duplicates) + len(self.bad_records),
            "valid": len(self.valid_event_ids),
            "duplicate": len(self.duplicates),
            "bad": len(self.bad_records),
            "persons": len(self.persons),
            "behaviours": {b: sum(1 for p in self.persons if p.behaviour == b) for b in BEHAVIOURS},
            "bad_by_error_type": {t: len(v) for t, v in self.bad_by_error_type().items()},
            "topics": dict(self.topic_counts),
            "event_types": dict(self.event_type_counts),
            "channels": dict(self.channel_counts),
            "carts": len(self.carts),
            "carts_purchased": purchased,
            "carts_abandoned": len(self.carts) - purchased,
            "late_events": len(self.late_events),
            "out_of_order_events": len(self.out_of_order_event_ids),
            "erased_persons": sum(1 for p in self.persons if p.erased),
        }

    def to_json(self) -> dict[str, Any]:
        """The ``truth.json`` document (bad raw bytes as base64 under ``raw_b64``).

        Returns
        -------
        dict
            Keys: ``format_version``, ``seed``, ``params``, ``summary``, ``persons``,
            ``valid_event_ids``, ``duplicates``, ``bad_records`` (error type -> list),
            ``carts``, ``late_events``, ``out_of_order_event_ids``.
        """
        bad: dict[str, list[dict[str, Any]]] = {}
        for t, items in self.bad_by_error_type().items():
            bad[t] = [{"record_index": b.record_index, "variant": b.variant, "topic": b.topic,
                       "event_id": b.event_id, "raw_b64": base64.b64encode(b.raw).decode("ascii")}
                      for b in items]
        return {
            "format_version": TRUTH_FORMAT_VERSION,
            "seed": self.seed,
            "params": dict(self.params),
            "summary": self.summary(),
            "persons": [asdict(p) for p in self.persons],
            "valid_event_ids": list(self.valid_event_ids),
            "duplicates": [asdict(d) for d in self.duplicates],
            "bad_records": bad,
            "carts": [asdict(c) for c in self.carts],
            "late_events": [asdict(e) for e in self.late_events],
            "out_of_order_event_ids": list(self.out_of_order_event_ids),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "GroundTruth":
        """Rebuild a :class:`GroundTruth` from :meth:`to_json` output.

        Parameters
        ----------
        doc : dict
            A parsed ``truth.json``.

        Returns
        -------
        GroundTruth
        """
        if doc.get("format_version") != TRUTH_FORMAT_VERSION:
            raise ValueError(f"truth format_version {doc.get('format_version')!r} is not {TRUTH_FORMAT_VERSION}")
        bad = [BadRecordTruth(b["record_index"], t, b["variant"], b["topic"], b["event_id"],
                              base64.b64decode(b["raw_b64"]))
               for t, items in doc["bad_records"].items() for b in items]
        bad.sort(key=lambda b: b.record_index)
        s = doc["summary"]
        return cls(
            seed=doc["seed"], params=dict(doc["params"]),
            persons=[PersonTruth(**p) for p in doc["persons"]],
            valid_event_ids=list(doc["valid_event_ids"]),
            duplicates=[DuplicateTruth(**d) for d in doc["duplicates"]],
            bad_records=bad,
            carts=[CartTruth(**c) for c in doc["carts"]],
            late_events=[LateEventTruth(**e) for e in doc["late_events"]],
            out_of_order_event_ids=list(doc["out_of_order_event_ids"]),
            topic_counts=dict(s["topics"]), event_type_counts=dict(s["event_types"]),
            channel_counts=dict(s["channels"]),
        )

    def write(self, path: str | Path) -> Path:
        """Write :meth:`to_json` to ``path`` (parents created); returns the path."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")
        return p

    @classmethod
    def load(cls, path: str | Path) -> "GroundTruth":
        """Read a ``truth.json`` written by :meth:`write`."""
        return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))


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


# --------------------------------------------------------------------------- internal model


@dataclass(frozen=True)
class _Product:
    product_id: str
    category: str
    name: str
    price: float


@dataclass
class _Event:
    """A valid event while the journey is being built."""

    person: int
    pos: int  # index in the person's event list
    event_type: str
    channel: str
    occurred_at: int
    identifiers: dict[str, str | None]
    payload: tuple[str, dict[str, Any]]
    context: dict[str, str]
    event_id: str = ""
    value: bytes = b""
    prod_ms: int = 0


@dataclass
class _Person:
    index: int
    truth: PersonTruth
    key: bytes
    device_os: dict[str, str]
    user_agent: str
    locale: str
    home_store: str
    phone_digits: str | None  # 10-digit national number behind every raw phone variant
    events: list[_Event] = field(default_factory=list)


@dataclass
class _Pending:
    """A record waiting for its place in production order."""

    prod_ms: int
    seq: int
    kind: RecordKind
    topic: str
    key: bytes | None
    value: bytes
    original: "_Pending | None" = None
    error_type: str | None = None
    variant: str = ""
    event_id: str | None = None
    person_id: str | None = None
    event_type: str | None = None
    occurred_at: int | None = None
    index: int = -1


def _ids(customer_id: str | None = None, email: str | None = None, phone: str | None = None,
         device_id: str | None = None, cookie_id: str | None = None,
         loyalty_id: str | None = None) -> dict[str, str | None]:
    return {"customer_id": customer_id, "email": email, "phone": phone, "device_id": device_id,
            "cookie_id": cookie_id, "loyalty_id": loyalty_id}


def _money(x: float) -> float:
    return round(x, 2)


class _Synth:
    """One generation run; all randomness comes from ``self.rng``."""

    def __init__(self, seed: int, persons: int, base_time_ms: int, days: int, bad_ratio: float,
                 dup_ratio: float, late_ratio: float, reorder_ratio: float,
                 min_valid_timestamp_ms: int = MIN_VALID_TIMESTAMP_MS) -> None:
        self.seed = seed
        self.min_valid = min_valid_timestamp_ms
        self.n_persons = persons
        self.base = base_time_ms
        self.days = days
        self.bad_ratio = bad_ratio
        self.dup_ratio = dup_ratio
        self.late_ratio = late_ratio
        self.reorder_ratio = reorder_ratio
        self.rng = random.Random(seed)
        self.catalog = SchemaCatalog.load()
        self.codec: Codec = self.catalog.codec("Event")
        self.products = self._make_products()
        self.cheap = sorted(self.products, key=lambda p: p.price)[: len(self.products) // 3]
        self.persons: list[_Person] = []
        self.carts: list[CartTruth] = []
        self._used_ids: set[str] = set()  # membership only; never iterated (determinism)
        self._counters: dict[str, int] = {}

    # ----------------------------------------------------------------- small helpers

    def _next(self, name: str) -> int:
        n = self._counters.get(name, 0) + 1
        self._counters[name] = n
        return n

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _unique(self, make: Callable[[], str]) -> str:
        for _ in range(1000):
            v = make()
            if v not in self._used_ids:
                self._used_ids.add(v)
                return v
        raise RuntimeError("could not draw a unique identifier")  # pragma: no cover

    def _step(self, t: int, lo: int = MIN_STEP_MS, hi: int = 90 * SECOND_MS) -> int:
        return t + self.rng.randint(lo, hi)

    def _make_products(self) -> list[_Product]:
        out: list[_Product] = []
        for cat, lo, hi, names in _CATEGORIES:
            for k in range(30):
                price = _money(self.rng.uniform(lo, hi))
                price = _money(math.floor(price) + self.rng.choice((0.99, 0.49, 0.0, 0.95)))
                out.append(_Product(f"sku-{cat[:3]}-{k:03d}", cat, self.rng.choice(names), max(price, 0.99)))
        return out

    def _product(self, bargain: bool = False) -> _Product:
        return self.rng.choice(self.cheap if bargain else self.products)

    # ----------------------------------------------------------------- persons

    def _make_person(self, index: int, behaviour: str) -> _Person:
        rng = self.rng
        person_id = f"p-{self.seed}-{index:06d}"
        customer_id = self._unique(lambda: f"cus_{rng.getrandbits(40):010x}")

        def make_email() -> str:
            sep = rng.choice((".", "_", ""))
            local = f"{rng.choice(_FIRST_NAMES)}{sep}{rng.choice(_LAST_NAMES)}{rng.randint(1, 9999)}"
            return f"{local}@{rng.choice(_EMAIL_DOMAINS)}"

        def make_phone() -> str:
            return f"{rng.choice(_AREA_CODES)}{rng.randint(200, 999)}{rng.randint(0, 9999):04d}"

        email = self._unique(make_email)
        loyalty = (behaviour == "offline_shopper" or rng.random() < (0.5 if behaviour == "loyal_buyer" else 0.15))
        phone_digits = self._unique(make_phone) if loyalty or rng.random() < 0.85 else None
        devices = [self._unique(lambda: self._uuid().upper()) for _ in range(1 if rng.random() < 0.65 else 2)]
        cookies = [self._unique(lambda: "ck." + self._uuid().replace("-", ""))
                   for _ in range(1 if rng.random() < 0.6 else 2)]
        loyalty_id = self._unique(lambda: f"LOY{rng.randint(10**9, 10**10 - 1)}") if loyalty else None
        truth = PersonTruth(
            person_id=person_id, behaviour=behaviour, customer_id=customer_id,
            email=email, email_variants=[],
            phone=normalize_phone(phone_digits, "1") if phone_digits else None,
            phone_variants=[], device_ids=devices, cookie_ids=cookies, loyalty_id=loyalty_id,
        )
        p = _Person(index=index, truth=truth, key=person_id.encode(),
                    device_os={d: rng.choice(("ios", "android")) for d in devices},
                    user_agent=rng.choice(_USER_AGENTS), locale=rng.choice(_LOCALES), home_store=rng.choice(_STORES),
                    phone_digits=phone_digits)
        return p

    def _email(self, p: _Person) -> str:
        """A raw spelling of the person's email (messy in about half the events)."""
        e = p.truth.email
        local, domain = e.split("@")
        style = self.rng.randrange(8)
        raw = (e, e, e, e.upper(), f"  {e} ", f"{local.capitalize()}@{domain.upper()}",
               f"\t{local.title()}@{domain.capitalize()}", f" {e.upper()}\n")[style]
        if raw not in p.truth.email_variants:
            p.truth.email_variants.append(raw)
        return raw

    def _phone(self, p: _Person) -> str | None:
        """A raw format of the person's phone, or ``None`` if they have none."""
        d = p.phone_digits
        if d is None:
            return None
        a, b, c = d[:3], d[3:6], d[6:]
        raw = self.rng.choice((f"({a}) {b}-{c}", f"+1 {a} {b} {c}", f"{a}.{b}.{c}", f"{a}{b}{c}",
                               f"+1-{a}-{b}-{c}", f"001 {a} {b} {c}", f"{a}-{b}-{c}", f"+1 ({a}) {b}-{c}"))
        if raw not in p.truth.phone_variants:
            p.truth.phone_variants.append(raw)
        return raw

    def _context(self, p: _Person, channel: str, device: str | None = None) -> dict[str, str]:
        if channel == "web":
            return {"user_agent": p.user_agent, "locale": p.locale}
        if channel == "app":
            return {"locale": p.locale, "os": p.device_os.get(device or "", "ios")}
        if channel == "email":
            return {"esp": "mailer-1"}
        if channel == "pos":
            return {"terminal": f"t{self.rng.randint(1, 6)}"}
        return {"source": "crm-sync"}

    def _emit(self, p: _Person, t: int, event_type: str, channel: str, ids: dict[str, str | None],
              payload: dict[str, Any], device: str | None = None) -> _Event:
        ev = _Event(p.index, len(p.events), event_type, channel, t, ids,
                    (NAMESPACE + PAYLOAD_OF[event_type], payload), self._context(p, channel, device))
        p.events.append(ev)
        return ev

    # ----------------------------------------------------------------- session pieces

    def _app_open(self, p: _Person, device: str) -> dict[str, Any]:
        return {"app_version": f"5.{self.rng.randint(0, 9)}.{self.rng.randint(0, 3)}", "os": p.device_os[device]}

    def _page_view(self, p: _Person, t: int, ids: dict[str, str | None], referrer: str | None = None) -> None:
        section = self.rng.choice(("", "new", "sale", "c/" + self.rng.choice(_CATEGORIES)[0], "help/shipping"))
        self._emit(p, t, "page_view", "web", ids, {
            "url": f"https://shop.example.com/{section}", "referrer": referrer,
            "title": section.split("/")[-1].replace("-", " ").title() or "Home"})

    def _views(self, p: _Person, t: int, channel: str, ids: dict[str, str | None], n: int,
               bargain: bool = False, long_dwell: bool = False, device: str | None = None) -> int:
        """``n`` product views (some preceded by a search); returns the time after the last."""
        rng = self.rng
        for _ in range(n):
            if rng.random() < (0.6 if bargain else 0.35):
                t = self._step(t)
                prod = self._product(bargain)
                q = f"{rng.choice(('sale', 'cheap', 'discount'))} {prod.name}" if bargain else prod.name
                self._emit(p, t, "search", channel, ids, {"query": q, "results": rng.randint(0, 180)}, device)
            t = self._step(t)
            prod = self._product(bargain)
            dwell = rng.randint(40_000, 220_000) if long_dwell else rng.randint(2_000, 25_000 if bargain else 60_000)
            self._emit(p, t, "product_view", channel, ids, {"product_id": prod.product_id, "category": prod.category,
                                                           "price": prod.price, "dwell_ms": dwell}, device)
            t += dwell
        return t

    def _identify(self, p: _Person, t: int, channel: str, method: str, ids: dict[str, str | None],
                  device: str | None = None) -> None:
        self._emit(p, t, "identify", channel, ids, {"method": method}, device)

    def _cart(self, p: _Person, t: int, channel: str, ids: dict[str, str | None], outcome: str,
              bargain: bool = False, anonymous_ids: dict[str, str | None] | None = None,
              device: str | None = None) -> int:
        """A cart: adds (and maybe removes), then ``open``, ``checkout`` or ``purchase``.

        With ``anonymous_ids`` the items are added anonymously and the visitor identifies
        (method ``checkout``) before checking out.
        """
        rng = self.rng
        cart_id = f"cart-{self.seed}-{self._next('cart'):07d}"
        lines: list[list[Any]] = []  # [product, quantity, unit_price]
        add_ids = anonymous_ids if anonymous_ids is not None else ids
        opened_at = t
        for k in range(rng.randint(2, 5) if bargain else rng.randint(1, 4)):
            if k:
                t = self._step(t)
            prod = self._product(bargain)
            qty = rng.randint(1, 3)
            price = _money(prod.price * (rng.choice((0.7, 0.8, 0.9)) if bargain and rng.random() < 0.5 else 1.0))
            self._emit(p, t, "add_to_cart", channel, add_ids, {"cart_id": cart_id, "product_id": prod.product_id,
                                                              "category": prod.category, "quantity": qty,
                                                              "unit_price": price}, device)
            lines.append([prod, qty, price])
        if rng.random() < (0.6 if bargain else 0.25):
            t = self._step(t)
            line = rng.choice(lines)
            removed = rng.randint(1, line[1])
            self._emit(p, t, "remove_from_cart", channel, add_ids,
                       {"cart_id": cart_id, "product_id": line[0].product_id, "category": line[0].category,
                        "quantity": removed, "unit_price": line[2]}, device)
            line[1] -= removed
            if not any(q for _, q, _ in lines):
                t = self._step(t)
                prod = self._product(bargain)
                self._emit(p, t, "add_to_cart", channel, add_ids, {"cart_id": cart_id, "product_id": prod.product_id,
                                                                  "category": prod.category, "quantity": 1,
                                                                  "unit_price": prod.price}, device)
                lines.append([prod, 1, prod.price])
        kept = [ln for ln in lines if ln[1] > 0]
        units = sum(ln[1] for ln in kept)
        value = _money(sum(ln[1] * ln[2] for ln in kept))
        order_id: str | None = None
        if outcome in ("checkout", "purchase"):
            if anonymous_ids is not None:
                t = self._step(t)
                linking = {**anonymous_ids, **{k: v for k, v in ids.items() if v}, "email": self._email(p)}
                self._identify(p, t, channel, "checkout", linking, device)
            t = self._step(t, 10 * SECOND_MS, 120 * SECOND_MS)
            self._emit(p, t, "checkout_started", channel, ids,
                       {"cart_id": cart_id, "cart_value": value, "items": units}, device)
        if outcome == "purchase":
            t = self._step(t, 20 * SECOND_MS, 180 * SECOND_MS)
            order_id = f"ord-{self.seed}-{self._next('order'):07d}"
            self._emit(p, t, "purchase", channel, ids, {
                "order_id": order_id, "cart_id": cart_id, "currency": CURRENCY, "total": value,
                "items": [{"product_id": pr.product_id, "category": pr.category, "quantity": q, "unit_price": up}
                          for pr, q, up in kept],
                "store_id": None}, device)
            p.truth.online_orders += 1
            p.truth.revenue = _money(p.truth.revenue + value)
        self.carts.append(CartTruth(cart_id=cart_id, person_id=p.truth.person_id, channel=channel, opened_at=opened_at,
                                    last_event_at=t, anonymous=anonymous_ids is not None,
                                    checkout_started=outcome in ("checkout", "purchase"),
                                    purchased=outcome == "purchase", order_id=order_id, units=units, value=value))
        return t

    # ----------------------------------------------------------------- sessions (start -> end time)

    def _s_signup(self, p: _Person, t: int) -> int:
        """Anonymous browsing on the first cookie, then signup/login linking cookie, account and email."""
        tr = p.truth
        anon = _ids(cookie_id=tr.cookie_ids[0])
        self._page_view(p, t, anon, self.rng.choice(_REFERRERS))
        t = self._views(p, t, "web", anon, self.rng.randint(1, 3))
        t = self._step(t)
        self._identify(p, t, "web", self.rng.choice(("signup", "login", "newsletter")),
                       _ids(customer_id=tr.customer_id, email=self._email(p), cookie_id=tr.cookie_ids[0]))
        if self.rng.random() < 0.3:
            t = self._step(t)
            self._emit(p, t, "consent_update", "web", _ids(customer_id=tr.customer_id, cookie_id=tr.cookie_ids[0]),
                       {"purpose": "marketing", "granted": self.rng.random() < 0.7})
        known = _ids(customer_id=tr.customer_id, cookie_id=tr.cookie_ids[0])
        return self._views(p, t, "web", known, self.rng.randint(0, 2))

    def _s_crm(self, p: _Person, t: int) -> int:
        tr = p.truth
        ids = _ids(customer_id=tr.customer_id, email=self._email(p), phone=self._phone(p))
        attributes = {"tier": self.rng.choice(("bronze", "silver", "gold")), "city": self.rng.choice(_CITIES),
                      "preferred_store": p.home_store}
        self._emit(p, t, "crm_update", "crm", ids, {"attributes": attributes})
        return t

    def _s_anon_cookie(self, p: _Person, t: int, cookie: str) -> int:
        """Browsing on a not-yet-identified cookie (another browser)."""
        anon = _ids(cookie_id=cookie)
        self._page_view(p, t, anon, self.rng.choice(_REFERRERS))
        return self._views(p, t, "web", anon, self.rng.randint(1, 4))

    def _s_cookie_login(self, p: _Person, t: int, cookie: str) -> int:
        tr = p.truth
        self._page_view(p, t, _ids(cookie_id=cookie))
        t = self._step(t)
        self._identify(p, t, "web", "login", _ids(customer_id=tr.customer_id, email=self._email(p), cookie_id=cookie))
        return self._views(p, t, "web", _ids(customer_id=tr.customer_id, cookie_id=cookie), self.rng.randint(1, 3))

    def _s_app_first(self, p: _Person, t: int, device: str) -> int:
        """First use of a device: anonymous app_open, then login linking device and account."""
        tr = p.truth
        self._emit(p, t, "app_open", "app", _ids(device_id=device), self._app_open(p, device), device)
        t = self._step(t)
        self._identify(p, t, "app", self.rng.choice(("login", "login", "signup")),
                       _ids(customer_id=tr.customer_id, email=self._email(p), device_id=device), device)
        known = _ids(customer_id=tr.customer_id, device_id=device)
        return self._views(p, t, "app", known, self.rng.randint(0, 2), device=device)

    def _s_consent(self, p: _Person, t: int) -> int:
        tr = p.truth
        if self.rng.random() < 0.5:
            ids = _ids(customer_id=tr.customer_id, cookie_id=self.rng.choice(tr.cookie_ids))
            channel, device = "web", None
            self._page_view(p, t, ids)
            t = self._step(t)
        else:
            device = self.rng.choice(tr.device_ids)
            ids, channel = _ids(customer_id=tr.customer_id, device_id=device), "app"
        for purpose in self.rng.sample(("personalization", "marketing", "analytics"), self.rng.randint(1, 3)):
            self._emit(p, t, "consent_update", channel, ids,
                       {"purpose": purpose, "granted": self.rng.random() < 0.75}, device)
            t = self._step(t)
        return t

    def _s_store(self, p: _Person, t: int, purchase: bool, with_phone: bool) -> int:
        """A store visit: loyalty scan, then (maybe) a store purchase."""
        rng, tr = self.rng, p.truth
        assert tr.loyalty_id is not None
        store = p.home_store if rng.random() < 0.8 else rng.choice(_STORES)
        ids = _ids(loyalty_id=tr.loyalty_id, phone=self._phone(p) if with_phone else None)
        items = [(self._product(tr.behaviour == "bargain_hunter"), rng.randint(1, 3)) for _ in range(rng.randint(1, 5))]
        total = _money(sum(q * pr.price for pr, q in items))
        points = int(total) if purchase else -rng.choice((0, 50, 100, 200))
        self._emit(p, t, "loyalty_scan", "pos", ids, {"store_id": store, "points": points})
        if purchase:
            t = self._step(t, 30 * SECOND_MS, 200 * SECOND_MS)
            buyer = _ids(loyalty_id=tr.loyalty_id, phone=self._phone(p) if with_phone else None)
            self._emit(p, t, "store_purchase", "pos", buyer, {
                "order_id": f"so-{self.seed}-{self._next('store_order'):07d}", "cart_id": None, "currency": CURRENCY,
                "total": total, "items": [{"product_id": pr.product_id, "category": pr.category, "quantity": q,
                                           "unit_price": pr.price} for pr, q in items],
                "store_id": store})
            tr.store_orders += 1
            tr.revenue = _money(tr.revenue + total)
        return t

    def _s_web(self, p: _Person, t: int, cart: str | None = None, bargain: bool = False, long_dwell: bool = False,
               anonymous: bool = False, referrer: str | None = None) -> int:
        """A web visit on one of the person's cookies, logged in unless ``anonymous``."""
        tr = p.truth
        cookie = self.rng.choice(tr.cookie_ids)
        anon = _ids(cookie_id=cookie)
        ids = _ids(customer_id=tr.customer_id, cookie_id=cookie)
        self._page_view(p, t, anon if anonymous else ids, referrer)
        t = self._views(p, t, "web", anon if anonymous else ids, self.rng.randint(1, 5), bargain, long_dwell)
        if cart is not None:
            t = self._step(t)
            t = self._cart(p, t, "web", ids, cart, bargain, anonymous_ids=anon if anonymous else None)
        return t

    def _s_app(self, p: _Person, t: int, cart: str | None = None, bargain: bool = False) -> int:
        tr = p.truth
        device = self.rng.choice(tr.device_ids)
        ids = _ids(customer_id=tr.customer_id, device_id=device)
        self._emit(p, t, "app_open", "app", ids, self._app_open(p, device), device)
        t = self._views(p, t, "app", ids, self.rng.randint(1, 4), bargain, device=device)
        if cart is not None:
            t = self._step(t)
            t = self._cart(p, t, "app", ids, cart, bargain, device=device)
        return t

    def _s_push(self, p: _Person, t: int, bargain: bool = False) -> int:
        tr = p.truth
        device = self.rng.choice(tr.device_ids)
        ids = _ids(customer_id=tr.customer_id, device_id=device)
        self._emit(p, t, "push_open", "app", ids, {"campaign_id": self.rng.choice(_CAMPAIGNS),
                                                   "message_id": f"push-{self.seed}-{self._next('push'):07d}",
                                                   "link_url": None}, device)
        t = self._step(t)
        return self._s_app(p, t, bargain=bargain)

    def _s_email(self, p: _Person, t: int, click: bool, visit: bool = False, bargain: bool = False) -> int:
        """Email open (and click, and the resulting site visit)."""
        campaign = self.rng.choice(_CAMPAIGNS)
        message = f"msg-{self.seed}-{self._next('message'):07d}"
        self._emit(p, t, "email_open", "email", _ids(email=self._email(p)),
                   {"campaign_id": campaign, "message_id": message, "link_url": None})
        if not click:
            return t
        t = self._step(t)
        link = f"https://shop.example.com/{'sale' if bargain else 'new'}?utm_campaign={campaign}"
        self._emit(p, t, "email_click", "email", _ids(email=self._email(p)),
                   {"campaign_id": campaign, "message_id": message, "link_url": link})
        if visit:
            t = self._step(t)
            t = self._s_web(p, t, bargain=bargain, referrer=link)
        return t

    def _s_erasure(self, p: _Person, t: int) -> int:
        tr = p.truth
        channel = self.rng.choice(("crm", "web"))
        self._emit(p, t, "erasure_request", channel,
                   _ids(customer_id=tr.customer_id, email=self._email(p),
                        cookie_id=tr.cookie_ids[0] if channel == "web" else None),
                   {"request_id": f"er-{self.seed}-{self._next('erasure'):05d}",
                    "regulation": self.rng.choice(("gdpr", "ccpa"))})
        tr.erased = True
        return t

    # ----------------------------------------------------------------- journeys

    def _interleave(self, a: list[Callable[[int], int]], b: list[Callable[[int], int]]) -> list[Callable[[int], int]]:
        """Random merge keeping the order within ``a`` and within ``b``."""
        out: list[Callable[[int], int]] = []
        i = j = 0
        while i < len(a) or j < len(b):
            left_a, left_b = len(a) - i, len(b) - j
            if left_b == 0 or (left_a and self.rng.random() < left_a / (left_a + left_b)):
                out.append(a[i])
                i += 1
            else:
                out.append(b[j])
                j += 1
        return out

    def _plan(self, p: _Person, erase: bool) -> list[Callable[[int], int]]:
        rng, tr = self.rng, p.truth
        core: list[Callable[[int], int]] = [lambda t: self._s_crm(p, t)]
        for c in tr.cookie_ids[1:]:
            core += [lambda t, c=c: self._s_anon_cookie(p, t, c), lambda t, c=c: self._s_cookie_login(p, t, c)]
        for d in tr.device_ids:
            core.append(lambda t, d=d: self._s_app_first(p, t, d))
        core.append(lambda t: self._s_consent(p, t))
        if tr.loyalty_id is not None:
            first_buy = tr.behaviour == "offline_shopper" or rng.random() < 0.5
            core.append(lambda t, b=first_buy: self._s_store(p, t, purchase=b, with_phone=True))

        beh: list[Callable[[int], int]] = []
        kind = tr.behaviour
        if kind == "browser":
            beh += [lambda t: self._s_web(p, t, long_dwell=True, anonymous=rng.random() < 0.3)
                    for _ in range(rng.randint(3, 6))]
            if rng.random() < 0.3:
                beh.append(lambda t: self._s_web(p, t, cart="open", long_dwell=True))
            beh += [lambda t: self._s_app(p, t) for _ in range(rng.randint(0, 2))]
            beh += [lambda t: self._s_email(p, t, click=False) for _ in range(rng.randint(1, 3))]
            if rng.random() < 0.4:
                beh.append(lambda t: self._s_email(p, t, click=True, visit=True))
        elif kind == "bargain_hunter":
            beh += [lambda t: self._s_web(p, t, bargain=True) for _ in range(rng.randint(2, 4))]
            outcomes = ["purchase"] + [rng.choice(("purchase", "checkout", "open", "open"))
                                       for _ in range(rng.randint(1, 2))]
            rng.shuffle(outcomes)
            beh += [lambda t, o=o: self._s_web(p, t, cart=o, bargain=True) for o in outcomes]
            beh += [lambda t: self._s_email(p, t, click=True, visit=True, bargain=True)
                    for _ in range(rng.randint(2, 4))]
            beh += [lambda t: self._s_push(p, t, bargain=True) for _ in range(rng.randint(0, 2))]
        elif kind == "loyal_buyer":
            for _ in range(rng.randint(3, 6)):
                if rng.random() < 0.5:
                    beh.append(lambda t: self._s_web(p, t, cart="purchase"))
                else:
                    beh.append(lambda t: self._s_app(p, t, cart="purchase"))
            beh += [lambda t: self._s_app(p, t) for _ in range(rng.randint(1, 3))]
            beh += [lambda t: self._s_push(p, t) for _ in range(rng.randint(1, 3))]
            beh += [lambda t: self._s_email(p, t, click=rng.random() < 0.3) for _ in range(rng.randint(1, 3))]
            if tr.loyalty_id is not None:
                beh += [lambda t: self._s_store(p, t, purchase=True, with_phone=rng.random() < 0.3)
                        for _ in range(rng.randint(1, 2))]
        elif kind == "cart_abandoner":
            outcomes = ["checkout"] + [rng.choice(("open", "checkout")) for _ in range(rng.randint(1, 3))]
            rng.shuffle(outcomes)
            for o in outcomes:
                if rng.random() < 0.7:
                    beh.append(lambda t, o=o: self._s_web(p, t, cart=o, anonymous=rng.random() < 0.4))
                else:
                    beh.append(lambda t, o=o: self._s_app(p, t, cart=o))
            beh += [lambda t: self._s_web(p, t) for _ in range(rng.randint(1, 2))]
            beh += [lambda t: self._s_email(p, t, click=True, visit=rng.random() < 0.5)
                    for _ in range(rng.randint(1, 2))]
        else:  # offline_shopper
            beh += [lambda t: self._s_store(p, t, purchase=rng.random() < 0.75, with_phone=rng.random() < 0.3)
                    for _ in range(rng.randint(2, 5))]
            beh.append(lambda t: self._s_web(p, t))
            beh += [lambda t: self._s_email(p, t, click=False) for _ in range(rng.randint(1, 2))]
            beh.append(lambda t: self._s_crm(p, t))
        rng.shuffle(beh)
        plan = [lambda t: self._s_signup(p, t)] + self._interleave(core, beh)
        if erase:
            plan.append(lambda t: self._s_erasure(p, t))
        return plan

    def _play(self, p: _Person, plan: list[Callable[[int], int]]) -> None:
        """Run the sessions at increasing start times, at least :data:`SESSION_GAP_MS` apart."""
        horizon = self.days * DAY_MS
        starts = sorted(self.rng.randrange(0, horizon) for _ in plan)
        end = None
        for start, session in zip(starts, plan):
            t = self.base + start
            if end is not None:
                t = max(t, end + SESSION_GAP_MS + self.rng.randrange(0, HOUR_MS))
            end = session(t)
        p.truth.sessions = len(plan)

    def _build_persons(self) -> list[_Event]:
        rng = self.rng
        behaviours = list(BEHAVIOURS[: min(self.n_persons, len(BEHAVIOURS))])
        behaviours += rng.choices(BEHAVIOURS, weights=_BEHAVIOUR_WEIGHTS, k=self.n_persons - len(behaviours))
        rng.shuffle(behaviours)
        n_erase = round(self.n_persons * 0.02) if self.n_persons >= 20 else 0
        n_erase = max(n_erase, 1) if self.n_persons >= 20 else 0
        erased = set(rng.sample(range(self.n_persons), n_erase))
        for i, b in enumerate(behaviours):
            p = self._make_person(i, b)
            self.persons.append(p)
            self._play(p, self._plan(p, i in erased))
        events = [ev for p in self.persons for ev in p.events]
        events.sort(key=lambda e: (e.occurred_at, e.person, e.pos))
        for n, ev in enumerate(events):
            ev.event_id = f"ev-{self.seed}-{n:08d}"
            ev.value = self.codec.encode(self._record(ev))
        for p in self.persons:
            p.truth.event_ids = [ev.event_id for ev in p.events]
        return events

    @staticmethod
    def _record(ev: _Event) -> dict[str, Any]:
        return {"event_id": ev.event_id, "event_type": ev.event_type, "channel": ev.channel,
                "occurred_at": ev.occurred_at, "schema_version": 1, "identifiers": ev.identifiers,
                "context": ev.context, "payload": ev.payload}

    # ----------------------------------------------------------------- faults

    def _base_event(self, p: _Person, t: int, event_id: str) -> dict[str, Any]:
        """A valid raw event for ``p`` to be broken by a bad-record builder."""
        tr = p.truth
        prod = self._product()
        return {"event_id": event_id, "event_type": "product_view", "channel": "web", "occurred_at": t,
                "schema_version": 1, "identifiers": _ids(customer_id=tr.customer_id, cookie_id=tr.cookie_ids[0]),
                "context": {"user_agent": p.user_agent},
                "payload": (NAMESPACE + "ProductView", {"product_id": prod.product_id, "category": prod.category,
                                                         "price": prod.price, "dwell_ms": 12_000})}

    def _cart_event(self, base: dict[str, Any], qty: int, price: float) -> dict[str, Any]:
        prod = self._product()
        return {**base, "event_type": "add_to_cart",
                "payload": (NAMESPACE + "CartChange", {"cart_id": f"cart-{self.seed}-bad-{self._next('badcart'):05d}",
                                                       "product_id": prod.product_id, "category": prod.category,
                                                       "quantity": qty, "unit_price": price})}

    def _purchase_event(self, base: dict[str, Any], qty: int, price: float) -> dict[str, Any]:
        prod = self._product()
        return {**base, "event_type": "purchase",
                "payload": (NAMESPACE + "Purchase", {
                    "order_id": f"ord-{self.seed}-bad-{self._next('badorder'):05d}", "cart_id": None,
                    "currency": CURRENCY, "total": _money(qty * price),
                    "items": [{"product_id": prod.product_id, "category": prod.category, "quantity": qty,
                               "unit_price": price}], "store_id": None})}

    def _decode_error(self, data: bytes) -> str | None:
        try:
            self.catalog.decode(data, expect="Event")
        except DecodeError as e:
            return e.error_type
        return None

    def _bad(self, error_type: str, p: _Person, t: int, event_id: str) -> tuple[bytes, str, dict[str, Any] | None]:
        """Build one bad value; returns (value, variant, the raw event if it is decodable)."""
        rng = self.rng
        base = self._base_event(p, t, event_id)
        if error_type == "not_single_object_encoded":
            v = rng.randrange(4)
            if v == 0:
                data = rng.randbytes(rng.randint(10, 120))
                if data[:2] == MAGIC:
                    data = b"\x00" + data
                return data, "random_bytes", None
            if v == 1:
                doc = {**base, "payload": base["payload"][1]}
                return json.dumps(doc).encode(), "json_text", None
            if v == 2:
                return MAGIC + rng.randbytes(rng.randint(1, HEADER_LEN - len(MAGIC) - 1)), "header_too_short", None
            good = self.codec.encode(base)
            return b"\xc3\x00" + good[2:], "wrong_magic_version", None
        if error_type == "unknown_schema":
            body = self.codec.encode(base)[HEADER_LEN:]
            if rng.random() < 0.25:
                dl = self.catalog.codec("DeadLetter").encode({
                    "raw": b"x", "error_type": "malformed_avro", "error_detail": "synthetic",
                    "source_topic": "journey.events.web", "source_partition": 0, "source_offset": rng.randint(0, 10**6),
                    "source_timestamp": t, "job": "journey-ingestion"})
                return dl, "other_project_schema", None
            while True:
                data = MAGIC + rng.randbytes(8) + body
                if self._decode_error(data) == "unknown_schema":
                    return data, "unknown_fingerprint", None
        if error_type == "malformed_avro":
            good = self.codec.encode(base)
            v = rng.randrange(3)
            if v == 1:
                return good + rng.randbytes(rng.randint(1, 8)), "trailing_bytes", None
            if v == 2:
                for _ in range(50):
                    data = good[:HEADER_LEN] + rng.randbytes(rng.randint(3, 40))
                    if self._decode_error(data) == "malformed_avro":
                        return data, "garbage_body", None
            for _ in range(50):
                data = good[: rng.randint(HEADER_LEN, len(good) - 1)]
                if self._decode_error(data) == "malformed_avro":
                    return data, "truncated_body", None
            return good[:HEADER_LEN], "truncated_body", None
        if error_type == "missing_event_id":
            ev = {**base, "event_id": rng.choice(("", "   ", "\t"))}
            return self.codec.encode(ev), "blank_event_id", ev
        if error_type == "missing_identifiers":
            v = rng.randrange(4)
            ids, variant = {
                0: (_ids(), "all_null"),
                1: (_ids(customer_id="", cookie_id="   "), "blank_strings"),
                2: (_ids(email=rng.choice(("john.doe(at)example.com", "not-an-email", "jane@localhost"))),
                    "only_unparseable_email"),
                3: (_ids(phone=rng.choice(("12", "call me", "555"))), "only_unparseable_phone"),
            }[v]
            ev = {**base, "identifiers": ids}
            return self.codec.encode(ev), variant, ev
        if error_type == "invalid_timestamp":
            ts, variant = rng.choice(invalid_timestamps(self.min_valid))
            ev = {**base, "occurred_at": ts}
            return self.codec.encode(ev), variant, ev
        if error_type == "payload_mismatch":
            v = rng.randrange(3)
            if v == 0:
                ev = {**base, "event_type": "purchase",
                      "payload": (NAMESPACE + "Search", {"query": "shoes", "results": 4})}
                variant = "purchase_with_search"
            elif v == 1:
                ev = {**base, "event_type": "add_to_cart",
                      "payload": (NAMESPACE + "PageView",
                                  {"url": "https://shop.example.com/", "referrer": None, "title": None})}
                variant = "add_to_cart_with_page_view"
            else:
                ev = {**self._purchase_event(base, 1, 9.99), "event_type": "store_purchase"}
                ev = {**ev, "payload": (NAMESPACE + "LoyaltyScan", {"store_id": _STORES[0], "points": 10})}
                variant = "store_purchase_with_loyalty_scan"
            return self.codec.encode(ev), variant, ev
        if error_type == "invalid_field":
            v = rng.randrange(6)
            if v == 0:
                ev, variant = self._purchase_event(base, 2, -rng.choice((1.0, 19.99))), "purchase_negative_unit_price"
            elif v == 1:
                ev, variant = self._purchase_event(base, -rng.randint(1, 3), 12.5), "purchase_negative_quantity"
            elif v == 2:
                ev, variant = self._cart_event(base, 1, -4.99), "cart_negative_unit_price"
            elif v == 3:
                ev, variant = self._cart_event(base, rng.choice((0, -2)), 4.99), "cart_non_positive_quantity"
            elif v == 4:
                name, pl = base["payload"]
                ev = {**base, "payload": (name, {**pl, "dwell_ms": -rng.randint(1, 5000)})}
                variant = "negative_dwell_ms"
            else:
                name, pl = base["payload"]
                ev, variant = {**base, "payload": (name, {**pl, "price": float("nan")})}, "nan_price"
            return self.codec.encode(ev), variant, ev
        raise ValueError(f"unknown error type {error_type!r}")  # pragma: no cover

    # ----------------------------------------------------------------- assembly

    def run(self) -> Dataset:
        rng = self.rng
        events = self._build_persons()
        seq = 0
        pending: list[_Pending] = []
        by_event: dict[int, _Pending] = {}
        for ev in events:
            ev.prod_ms = ev.occurred_at + rng.randrange(0, MAX_PRODUCE_JITTER_MS)
        # out-of-order: swap the production times of adjacent events in a session
        swapped: set[int] = set()  # id() of events in a swap; membership only
        out_of_order: list[_Event] = []
        for p in self.persons:
            i = 0
            while i < len(p.events) - 1:
                a, b = p.events[i], p.events[i + 1]
                if b.occurred_at - a.occurred_at < MAX_REORDER_GAP_MS and rng.random() < self.reorder_ratio:
                    a.prod_ms, b.prod_ms = b.prod_ms, a.prod_ms
                    swapped.update((id(a), id(b)))
                    out_of_order.append(a)
                    i += 2
                else:
                    i += 1
        # late: produce right after an event (any person) that occurred 2-8 hours later
        n_late = round(self.late_ratio * len(events))
        late: list[_Event] = []
        late_ids: set[int] = set()
        targets: set[int] = set()
        occurred = [ev.occurred_at for ev in events]  # events are sorted by occurred_at
        candidates = [ev for ev in events if id(ev) not in swapped]
        rng.shuffle(candidates)
        for ev in candidates:
            if len(late) >= n_late:
                break
            if id(ev) in targets:
                continue
            j = bisect.bisect_right(occurred, ev.occurred_at + rng.randint(MIN_LATENESS_MS, MAX_LATENESS_MS)) - 1
            while j >= 0 and occurred[j] >= ev.occurred_at + MIN_LATENESS_MS and (
                    id(events[j]) in swapped or id(events[j]) in late_ids):
                j -= 1
            if j < 0 or occurred[j] < ev.occurred_at + MIN_LATENESS_MS:
                continue
            ev.prod_ms = events[j].prod_ms + rng.randint(SECOND_MS, MINUTE_MS)
            late.append(ev)
            late_ids.add(id(ev))
            targets.add(id(events[j]))
        for ev in events:
            rec = _Pending(ev.prod_ms, seq, "valid", topic_of(ev.channel), self.persons[ev.person].key, ev.value,
                           event_id=ev.event_id, person_id=self.persons[ev.person].truth.person_id,
                           event_type=ev.event_type, occurred_at=ev.occurred_at)
            seq += 1
            pending.append(rec)
            by_event[id(ev)] = rec
        # duplicates: byte copies of valid events, some time after the original
        n_dup = min(round(self.dup_ratio * len(events)), len(events))
        for ev in rng.sample(events, n_dup):
            orig = by_event[id(ev)]
            pending.append(_Pending(orig.prod_ms + rng.randint(MIN_DUP_DELAY_MS, MAX_DUP_DELAY_MS), seq, "duplicate",
                                    orig.topic, orig.key, orig.value, original=orig, event_id=orig.event_id,
                                    person_id=orig.person_id, event_type=orig.event_type, occurred_at=orig.occurred_at))
            seq += 1
        # bad records: at least one of each error type when bad_ratio > 0
        n_bad = round(self.bad_ratio * len(events))
        if self.bad_ratio > 0:
            n_bad = max(n_bad, len(DEAD_LETTER_REASONS))
        horizon = self.days * DAY_MS
        for k in range(n_bad):
            error_type = DEAD_LETTER_REASONS[k % len(DEAD_LETTER_REASONS)]
            p = rng.choice(self.persons)
            t = self.base + rng.randrange(0, horizon)
            event_id = f"bad-{self.seed}-{k:06d}"
            value, variant, raw_event = self._bad(error_type, p, t, event_id)
            decodable = raw_event is not None
            eid = raw_event["event_id"] if decodable and raw_event["event_id"].strip() else None
            pending.append(_Pending(t + rng.randrange(0, MAX_PRODUCE_JITTER_MS), seq, "bad",
                                    topic_of(rng.choice(CHANNELS)), p.key if decodable else None, value,
                                    error_type=error_type, variant=variant, event_id=eid,
                                    person_id=p.truth.person_id if decodable else None,
                                    event_type=raw_event["event_type"] if decodable else None,
                                    occurred_at=raw_event["occurred_at"] if decodable else None))
            seq += 1
        pending.sort(key=lambda r: (r.prod_ms, r.seq))
        for i, r in enumerate(pending):
            r.index = i
        return self._dataset(pending, events, out_of_order, late)

    def _dataset(self, pending: list[_Pending], events: list[_Event], out_of_order: list[_Event],
                 late: list[_Event]) -> Dataset:
        records = [GeneratedRecord(topic=r.topic, key=r.key, value=r.value, kind=r.kind, event_id=r.event_id,
                                   expected_error=r.error_type, person_id=r.person_id, event_type=r.event_type,
                                   occurred_at=r.occurred_at) for r in pending]
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
            lateness[r.event_id] = (max(stream_latest or r.occurred_at, r.occurred_at) - r.occurred_at,
                                    max(mine, r.occurred_at) - r.occurred_at)
            stream_latest = r.occurred_at if stream_latest is None else max(stream_latest, r.occurred_at)
            person_latest[r.person_id] = max(mine, r.occurred_at)
        late_truth = sorted((LateEventTruth(ev.event_id, self.persons[ev.person].truth.person_id, index_of[ev.event_id],
                                            ev.occurred_at, *lateness[ev.event_id]) for ev in late),
                            key=lambda e: e.record_index)
        dups = [DuplicateTruth(r.event_id or "", r.index, r.original.index if r.original else -1)
                for r in pending if r.kind == "duplicate"]
        bad = [BadRecordTruth(r.index, r.error_type or "", r.variant, r.topic, r.event_id, r.value)
               for r in pending if r.kind == "bad"]
        topic_counts = Counter(r.topic for r in pending)
        type_counts = Counter(ev.event_type for ev in events)
        channel_counts = Counter(ev.channel for ev in events)
        truth = GroundTruth(
            seed=self.seed,
            params={"persons": self.n_persons, "base_time_ms": self.base, "days": self.days,
                    "bad_ratio": self.bad_ratio, "dup_ratio": self.dup_ratio, "late_ratio": self.late_ratio,
                    "reorder_ratio": self.reorder_ratio, "min_valid_timestamp_ms": self.min_valid},
            persons=[p.truth for p in self.persons],
            valid_event_ids=sorted(ev.event_id for ev in events),
            duplicates=dups,
            bad_records=bad,
            carts=list(self.carts),
            late_events=late_truth,
            out_of_order_event_ids=[ev.event_id for ev in sorted(out_of_order, key=lambda e: index_of[e.event_id])],
            topic_counts={topic_of(c): topic_counts.get(topic_of(c), 0) for c in CHANNELS},
            event_type_counts={t: type_counts.get(t, 0) for t in EVENT_TYPES},
            channel_counts={c: channel_counts.get(c, 0) for c in CHANNELS},
        )
        return Dataset(records, truth)


def invalid_timestamps(min_valid_timestamp_ms: int) -> tuple[tuple[int, str], ...]:
    """The ``(occurred_at, variant)`` choices of ``invalid_timestamp`` bad records for a lower bound.

    Each is impossible under that bound whatever the Kafka timestamp before 2099: before the
    bound (if there is room before it), before the Unix epoch (for any bound but the default,
    whose datasets keep their bytes), or in the year 2100 (beyond any future skew).

    Parameters
    ----------
    min_valid_timestamp_ms : int
        The lower bound of ``occurred_at`` the dataset targets (>= 0).

    Returns
    -------
    tuple of (int, str)

    Examples
    --------
    >>> [v for _, v in invalid_timestamps(MIN_VALID_TIMESTAMP_MS)]
    ['epoch_5ms', 'year_2100', 'year_1999']
    >>> [v for _, v in invalid_timestamps(631_152_000_000)]  # a 1990-01-01 backfill bound
    ['epoch_5ms', 'year_2100', 'year_1989', 'before_epoch']
    >>> invalid_timestamps(0)
    ((4102444800000, 'year_2100'), (-86400000, 'before_epoch'))
    """
    lo = min_valid_timestamp_ms
    choices: list[tuple[int, str]] = [(5, "epoch_5ms")] if lo > 5 else []
    choices.append((YEAR_2100_MS, "year_2100"))
    if lo >= DAY_MS:
        year = datetime.fromtimestamp((lo - DAY_MS) / 1000, tz=timezone.utc).year
        choices.append((lo - DAY_MS, f"year_{year}"))
    if lo != MIN_VALID_TIMESTAMP_MS:
        choices.append((-DAY_MS, "before_epoch"))
    return tuple(choices)


def generate(seed: int, persons: int, base_time_ms: int = DEFAULT_BASE_TIME_MS, bad_ratio: float = 0.02,
             dup_ratio: float = 0.03, late_ratio: float = 0.02, *, reorder_ratio: float = 0.03,
             days: int = 14, min_valid_timestamp_ms: int = MIN_VALID_TIMESTAMP_MS) -> Dataset:
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
        records are impossible under it (:func:`invalid_timestamps`).

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
    if isinstance(min_valid_timestamp_ms, bool) or not isinstance(min_valid_timestamp_ms, int) \
            or min_valid_timestamp_ms < 0:
        raise ValueError(f"min_valid_timestamp_ms must be an epoch-ms int >= 0 (ingestion never accepts events "
                         f"before the Unix epoch), got {min_valid_timestamp_ms!r}")
    if isinstance(base_time_ms, bool) or not isinstance(base_time_ms, int) or base_time_ms < min_valid_timestamp_ms:
        raise ValueError(f"base_time_ms must be an epoch-ms int at or after min_valid_timestamp_ms="
                         f"{min_valid_timestamp_ms} ({iso_utc(min_valid_timestamp_ms)}), got {base_time_ms!r}"
                         + (f" ({iso_utc(base_time_ms)}); for history, pass the lower bound of the backfill topics "
                            f"(JOURNEY_BACKFILL_MIN_VALID_TIMESTAMP_MS) as min_valid_timestamp_ms"
                            if isinstance(base_time_ms, int) and base_time_ms >= 0 else ""))
    if base_time_ms + (days + 30) * DAY_MS >= YEAR_2100_MS:
        raise ValueError(f"base_time_ms={base_time_ms} is too close to the year 2100")
    for name, value, upper in (("bad_ratio", bad_ratio, 1.0), ("late_ratio", late_ratio, 1.0),
                               ("reorder_ratio", reorder_ratio, 1.0)):
        if not isinstance(value, (int, float)) or not 0.0 <= value < upper:
            raise ValueError(f"{name} must be in [0, {upper}), got {value!r}")
    if not isinstance(dup_ratio, (int, float)) or not 0.0 <= dup_ratio <= 1.0:
        raise ValueError(f"dup_ratio must be in [0, 1], got {dup_ratio!r}")
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ValueError(f"days must be a positive int, got {days!r}")
    return _Synth(seed, persons, base_time_ms, days, float(bad_ratio), float(dup_ratio), float(late_ratio),
                  float(reorder_ratio), min_valid_timestamp_ms).run()
