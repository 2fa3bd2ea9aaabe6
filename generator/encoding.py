"""Journey events as they are built, and their encoding as ``journey.v1.Event`` records.

A :class:`JourneyEvent` is a valid event while journeys are played; once every person's
journey is known, :func:`number_and_encode` gives the events their ids in event-time order
and their Kafka values (single-object encoding, :mod:`models.avro_codec`).

Examples
--------
>>> identifiers(cookie_id="ck.1")
{'customer_id': None, 'email': None, 'phone': None, 'device_id': None, 'cookie_id': 'ck.1', 'loyalty_id': None}
>>> from models.avro_codec import SchemaCatalog
>>> catalog = SchemaCatalog.load()
>>> codec = catalog.codec("Event")
>>> ev = JourneyEvent(0, 0, "search", "web", 1_790_000_000_000, identifiers(cookie_id="ck.1"),
...                   (NAMESPACE + "Search", {"query": "boots", "results": 3}), {"locale": "en-US"})
>>> number_and_encode([ev], seed=7, codec=codec)
>>> ev.event_id, catalog.decode(ev.value)[1]["payload"]
('ev-7-00000000', ('journey.v1.Search', {'query': 'boots', 'results': 3}))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from models.avro_codec import Codec
from models.contract import RAW_IDENTIFIER_TYPES

#: Namespace of the payload records (``journey.v1.PageView``, ...).
NAMESPACE = "journey.v1."
#: ``schema_version`` of every generated event.
SCHEMA_VERSION = 1


def identifiers(**given: str | None) -> dict[str, str | None]:
    """An ``Identifiers`` record: the given identifier types, ``None`` for the others.

    Raises
    ------
    TypeError
        For a name that is not an identifier type of the ``Event`` schema.
    """
    unknown = sorted(set(given) - set(RAW_IDENTIFIER_TYPES))
    if unknown:
        raise TypeError(f"not identifier types of an Event: {unknown}")
    return {t: given.get(t) for t in RAW_IDENTIFIER_TYPES}


@dataclass
class JourneyEvent:
    """A valid event while the journey is being built.

    Attributes
    ----------
    person : int
        Index of the person in the run.
    pos : int
        Index in the person's event list.
    event_type, channel : str
        As in the ``Event``.
    occurred_at : int
        Event time, epoch ms.
    identifiers, payload, context
        As in the ``Event`` (``payload`` as ``(record full name, fields)``).
    event_id, value
        Set by :func:`number_and_encode`.
    prod_ms : int
        When the record is produced (set when faults are planned).
    """

    person: int
    pos: int
    event_type: str
    channel: str
    occurred_at: int
    identifiers: dict[str, str | None]
    payload: tuple[str, dict[str, Any]]
    context: dict[str, str]
    event_id: str = ""
    value: bytes = b""
    prod_ms: int = 0


def event_record(ev: JourneyEvent) -> dict[str, Any]:
    """The ``Event`` record of a journey event, for the codec."""
    return {
        "event_id": ev.event_id,
        "event_type": ev.event_type,
        "channel": ev.channel,
        "occurred_at": ev.occurred_at,
        "schema_version": SCHEMA_VERSION,
        "identifiers": ev.identifiers,
        "context": ev.context,
        "payload": ev.payload,
    }


def number_and_encode(events: list[JourneyEvent], seed: int, codec: Codec) -> None:
    """Give ``events`` (in event-time order) their ids ``ev-<seed>-<n>`` and encoded values, in place."""
    for n, ev in enumerate(events):
        ev.event_id = f"ev-{seed}-{n:08d}"
        ev.value = codec.encode(event_record(ev))
