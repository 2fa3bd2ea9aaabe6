"""The ground truth of a dataset: what the pipeline must conclude from its records.

:class:`GroundTruth` gathers the planted persons (:class:`PersonTruth`), carts
(:class:`CartTruth`), bad records, duplicates and late events, with counts
(:meth:`GroundTruth.summary`) and the ``truth.json`` document the command line writes
(:meth:`GroundTruth.to_json`, :meth:`GroundTruth.write`, :meth:`GroundTruth.load`). A dataset
generated with planted supernodes (:mod:`generator.supernodes`) also says which identifier
values several persons use (:class:`SupernodeTruth`).

Examples
--------
>>> bad = BadRecordTruth(1, "malformed_avro", "trailing_bytes", "journey.events.web", None, b"x")
>>> t = GroundTruth(seed=1, params={}, persons=[], valid_event_ids=["e-1"], duplicates=[], bad_records=[bad],
...                 carts=[], late_events=[], out_of_order_event_ids=[], topic_counts={}, event_type_counts={},
...                 channel_counts={})
>>> s = t.summary()
>>> (s["records"], s["valid"], s["bad"], s["bad_by_error_type"]["malformed_avro"])
(2, 1, 1, 1)
>>> GroundTruth.from_json(t.to_json()) == t
True
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from models.contract import DEAD_LETTER_REASONS
from models.identity import IdentityRules

#: Version of the ``truth.json`` document (:meth:`GroundTruth.to_json`).
TRUTH_FORMAT_VERSION = 1
#: The behavioural types of planted persons (:attr:`PersonTruth.behaviour`).
BEHAVIOURS: tuple[str, ...] = ("browser", "bargain_hunter", "loyal_buyer", "cart_abandoner", "offline_shopper")


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
    churned_at : int or None
        A planted churner's last event (``occurred_at``): their sessions thin out before it and
        none follows (:func:`generator.journeys.churn_point`); ``None`` for everyone else.
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
    churned_at: int | None = None
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
    marketing_consent : bool or None
        The account's latest ``marketing`` consent when the cart was left (``None``: never
        given nor refused, the default applies).
    reminder_opened_at : int or None
        A left (``open``) cart whose owner opened an email hours after the cart's deadline
        (nothing else of theirs happens in between): its ``occurred_at``. It starts the
        escalation timer if the abandonment was published.
    recovered_at : int or None
        A left cart bought in a later session (hours to 3 days after, within the recovery
        window; then ``purchased`` is true): the purchase's ``occurred_at``.
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
    marketing_consent: bool | None = None
    reminder_opened_at: int | None = None
    recovered_at: int | None = None

    @property
    def escalation_expected(self) -> bool:
        """An escalation is planted: reminder opened, never bought, abandonment consented
        (a logged-in cart: its person holds the account's consent)."""
        return (
            self.reminder_opened_at is not None
            and self.recovered_at is None
            and self.marketing_consent is True
            and not self.anonymous
        )


@dataclass(frozen=True)
class BadRecordTruth:
    """A record that ingestion must dead-letter.

    Attributes
    ----------
    record_index : int
        Position in :attr:`generator.dataset.Dataset.records`.
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
        Positions of the copy and of the original in :attr:`generator.dataset.Dataset.records`.
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
        Its position in :attr:`generator.dataset.Dataset.records`.
    occurred_at : int
        Its event time.
    lateness_ms : int
        Latest ``occurred_at`` among all valid records produced before it, minus its own
        ``occurred_at``: between :data:`generator.faults.MIN_LATENESS_MS` and about
        :data:`generator.faults.MAX_LATENESS_MS`.
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


@dataclass(frozen=True)
class SupernodeTruth:
    """An identifier value planted as used by several persons (:mod:`generator.supernodes`).

    Attributes
    ----------
    kind : str
        One of :data:`SUPERNODE_KINDS`: ``kiosk`` (a store kiosk's ``device_id``, each user
        logs in on it), ``family_tablet`` (a ``device_id`` each family member logs in on) or
        ``call_centre_agent`` (an agent's ``customer_id`` on the CRM events of the calls they
        log, with each caller's phone).
    type, value : str
        The identifier as identity resolution sees it (``device_id`` and ``customer_id`` are
        not hashed, so the value is the raw one).
    person_ids : tuple of str
        The planted persons who used it (or whose calls the agent logged), in index order.
    co_type : str
        The identifier type it is seen with on events whose distinct values the sharing rule
        counts: the persons' ``customer_id`` (kiosk, tablet) or ``phone_hash`` (agent).
    co_values : int
        How many distinct values of ``co_type`` it is seen with.
    shared_by : str or None
        ``co_type`` if ``co_values`` is over its limit under the default rules
        (:data:`models.identity.DEFAULT_SHARED_LIMITS`): the identifier is *shared* (it links
        nothing, it is its own profile; ``Resolution.shared`` maps it to this type). ``None``
        below the limit: a family device, *ambiguous* (linked to several customer ids, all its
        links to them are refused; it is its own profile too).
    """

    kind: str
    type: str
    value: str
    person_ids: tuple[str, ...]
    co_type: str
    co_values: int
    shared_by: str | None

    @property
    def node(self) -> tuple[str, str]:
        """``(type, value)``: the identifier as :mod:`models.identity` names it."""
        return self.type, self.value


#: :attr:`SupernodeTruth.kind` values.
SUPERNODE_KINDS: tuple[str, ...] = ("kiosk", "family_tablet", "call_centre_agent")


def shared_by(type_: str, co_type: str, co_values: int, rules: IdentityRules | None = None) -> str | None:
    """``co_type`` if an identifier of ``type_`` seen with ``co_values`` distinct values of it
    is shared under ``rules`` (default: :class:`models.identity.IdentityRules`), else ``None``.

    >>> shared_by("device_id", "customer_id", 6), shared_by("device_id", "customer_id", 5)
    ('customer_id', None)
    >>> shared_by("customer_id", "phone_hash", 11), shared_by("customer_id", "phone_hash", 10)
    ('phone_hash', None)
    """
    limit = dict((rules or IdentityRules()).limits_of(type_)).get(co_type)
    return co_type if limit is not None and co_values > limit else None


@dataclass
class GroundTruth:
    """Everything a test needs to judge the pipeline's output on a :class:`generator.dataset.Dataset`.

    Attributes
    ----------
    seed : int
        The generator seed.
    params : dict
        The other :func:`generator.dataset.generate` arguments.
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
    journeys : dict of str to int
        What the journeys stage must find with its default settings (the counts of
        :meth:`generator.journey_truth.JourneyTruth.counts`, late events dropped): sessions,
        carts by final status, triggers. Empty in a ``truth.json`` written before journeys, and
        for a dataset with supernodes (the journeys oracle does not model shared identifiers).
    supernodes : list of SupernodeTruth
        Identifier values planted as used by several persons (kiosks, family tablets, a
        call-centre agent), in planting order; empty unless generated with ``supernodes``. A
        person's own identifiers (:class:`PersonTruth`) never include them.
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
    journeys: dict[str, int] = field(default_factory=dict)
    supernodes: list[SupernodeTruth] = field(default_factory=list)

    @property
    def shared_identifiers(self) -> dict[tuple[str, str], str]:
        """The planted identifiers that are shared, each with the co-observed type that makes
        it shared: what ``models.identity.resolve(...).shared`` must be on the dataset."""
        return {s.node: s.shared_by for s in self.supernodes if s.shared_by is not None}

    @property
    def family_devices(self) -> list[SupernodeTruth]:
        """The planted identifiers below every sharing limit (family tablets, or the kiosk of a
        :func:`generator.kiosk.kiosk_population` of 2 to 5 persons): ambiguous, each its own
        profile, all their links to the users' customer ids refused."""
        return [s for s in self.supernodes if s.shared_by is None]

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
            ``erased_persons``; with planted supernodes also ``shared_identifiers`` and
            ``family_devices``.
        """
        purchased = sum(1 for c in self.carts if c.purchased)
        out: dict[str, Any] = {
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
        if self.supernodes:  # absent otherwise: a dataset without supernodes keeps its bytes
            out["shared_identifiers"] = len(self.shared_identifiers)
            out["family_devices"] = len(self.family_devices)
        return out

    def to_json(self) -> dict[str, Any]:
        """The ``truth.json`` document (bad raw bytes as base64 under ``raw_b64``).

        Returns
        -------
        dict
            Keys: ``format_version``, ``seed``, ``params``, ``summary``, ``persons``,
            ``valid_event_ids``, ``duplicates``, ``bad_records`` (error type -> list),
            ``carts``, ``late_events``, ``out_of_order_event_ids``, ``journeys``; with planted
            supernodes also ``supernodes`` (:class:`SupernodeTruth` fields).
        """
        bad: dict[str, list[dict[str, Any]]] = {}
        for t, items in self.bad_by_error_type().items():
            bad[t] = [
                {
                    "record_index": b.record_index,
                    "variant": b.variant,
                    "topic": b.topic,
                    "event_id": b.event_id,
                    "raw_b64": base64.b64encode(b.raw).decode("ascii"),
                }
                for b in items
            ]
        doc: dict[str, Any] = {
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
            "journeys": dict(self.journeys),
        }
        if self.supernodes:
            doc["supernodes"] = [asdict(s) for s in self.supernodes]
        return doc

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
        bad = [
            BadRecordTruth(
                b["record_index"], t, b["variant"], b["topic"], b["event_id"], base64.b64decode(b["raw_b64"])
            )
            for t, items in doc["bad_records"].items()
            for b in items
        ]
        bad.sort(key=lambda b: b.record_index)
        s = doc["summary"]
        return cls(
            seed=doc["seed"],
            params=dict(doc["params"]),
            persons=[PersonTruth(**p) for p in doc["persons"]],
            valid_event_ids=list(doc["valid_event_ids"]),
            duplicates=[DuplicateTruth(**d) for d in doc["duplicates"]],
            bad_records=bad,
            carts=[CartTruth(**c) for c in doc["carts"]],
            late_events=[LateEventTruth(**e) for e in doc["late_events"]],
            out_of_order_event_ids=list(doc["out_of_order_event_ids"]),
            topic_counts=dict(s["topics"]),
            event_type_counts=dict(s["event_types"]),
            channel_counts=dict(s["channels"]),
            journeys=dict(doc.get("journeys", {})),
            supernodes=[
                SupernodeTruth(**{**s, "person_ids": tuple(s["person_ids"])}) for s in doc.get("supernodes", [])
            ],
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
