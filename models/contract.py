"""The contract's constants, read from the Avro schemas: their one home in the code.

Event types, channels, identifier types and dead-letter reasons are defined once, in
``schemas/*.avsc``. This module reads them from there; every other module imports them from
here (``models.events``, ``models.profile``, ``models.normalize``, ``models.ingest``,
``models.config`` and ``k8s.topics`` re-export the names they always had).
``tests/unit/test_contract.py`` checks each constant against the schema files and fails when
a schema gains a symbol the code does not handle.

Loading: the schema files named below are read and parsed with :mod:`json` when this module
is first imported, once per process (a few small files of the checkout, the same ones
:class:`models.avro_codec.SchemaCatalog` reads, so every import gets the same values; no
other side effect, and no Avro library is imported, so light modules such as
``models.config`` and ``k8s.topics`` can use it).

Examples
--------
>>> CHANNELS
('web', 'app', 'crm', 'pos', 'email')
>>> RAW_IDENTIFIER_TYPES[:3], HASHED_IDENTIFIER_TYPES[:3]
(('customer_id', 'email', 'phone'), ('customer_id', 'email_hash', 'phone_hash'))
>>> PII_IDENTIFIER_TYPES
('email', 'phone')
>>> INPUT_TOPICS[0], DEAD_LETTER_REASONS[0]
('journey.events.web', 'not_single_object_encoded')
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any, Iterator

#: The directory of the ``.avsc`` files (also the one :mod:`models.avro_codec` loads).
SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"


@cache
def schema(stem: str) -> dict[str, Any]:
    """The parsed JSON of ``schemas/<stem>.avsc`` (read once per process)."""
    path = SCHEMA_DIR / f"{stem}.avsc"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"schema {path} is missing: the contract constants are read from schemas/ next to models/"
        ) from None


def _named_types(node: Any) -> Iterator[dict[str, Any]]:
    """Every named type (record, enum, fixed) defined anywhere in a schema, depth first."""
    if isinstance(node, list):
        for branch in node:
            yield from _named_types(branch)
    elif isinstance(node, dict):
        if node.get("type") in ("record", "enum", "fixed"):
            yield node
        for f in node.get("fields", ()):
            yield from _named_types(f["type"])
        for key in ("items", "values"):
            if key in node:
                yield from _named_types(node[key])


def named_type(stem: str, name: str) -> dict[str, Any]:
    """The definition of the type ``name`` (short name) in ``schemas/<stem>.avsc``."""
    for node in _named_types(schema(stem)):
        if node["name"].rsplit(".", 1)[-1] == name:
            return node
    raise KeyError(f"schemas/{stem}.avsc defines no type named {name!r}")


def enum_symbols(stem: str, enum: str) -> tuple[str, ...]:
    """The symbols of an enum, in schema order.

    >>> enum_symbols("dead_letter", "ErrorType")[-1]
    'invalid_field'
    """
    node = named_type(stem, enum)
    if node["type"] != "enum":
        raise KeyError(f"{enum} in schemas/{stem}.avsc is a {node['type']}, not an enum")
    return tuple(node["symbols"])


def record_fields(stem: str, record: str) -> tuple[str, ...]:
    """The field names of a record, in schema order.

    >>> record_fields("event", "Identify")
    ('method',)
    """
    node = named_type(stem, record)
    if node["type"] != "record":
        raise KeyError(f"{record} in schemas/{stem}.avsc is a {node['type']}, not a record")
    return tuple(f["name"] for f in node["fields"])


def union_records(stem: str, field: str) -> tuple[str, ...]:
    """Short names of the record branches of a top-level union field, in schema order."""
    for f in schema(stem)["fields"]:
        if f["name"] == field:
            return tuple(
                b["name"].rsplit(".", 1)[-1] for b in f["type"] if isinstance(b, dict) and b.get("type") == "record"
            )
    raise KeyError(f"schemas/{stem}.avsc has no field {field!r}")


#: Namespace of the topic records (``journey.v1``): union branches are read as ``<NAMESPACE>.<record>``.
NAMESPACE: str = schema("event")["namespace"]
#: ``Event.event_type`` (``EventType``), the same in ``NormalizedEvent``.
EVENT_TYPES: tuple[str, ...] = enum_symbols("event", "EventType")
#: ``Event.channel`` (``Channel``), the same in ``NormalizedEvent``.
CHANNELS: tuple[str, ...] = enum_symbols("event", "Channel")
#: Record names of the ``Event.payload`` union (which event type carries which: ``models.events.PAYLOAD_OF``).
PAYLOAD_RECORDS: tuple[str, ...] = union_records("event", "payload")
#: Identifier types of a produced ``Event`` (``Identifiers``: raw email and phone), ingestion input only.
RAW_IDENTIFIER_TYPES: tuple[str, ...] = record_fields("event", "Identifiers")
#: Identifier types of a ``NormalizedEvent`` (``HashedIdentifiers``): what every stage after
#: ingestion, the identity graph, profiles and Cassandra use.
HASHED_IDENTIFIER_TYPES: tuple[str, ...] = record_fields("normalized_event", "HashedIdentifiers")
#: Raw identifier types that ingestion passes on as they are (trimmed).
PLAIN_IDENTIFIER_TYPES: tuple[str, ...] = tuple(t for t in RAW_IDENTIFIER_TYPES if t in HASHED_IDENTIFIER_TYPES)
#: Raw identifier types that are PII: ingestion replaces ``<type>`` by the salted hash ``<type>_hash``.
PII_IDENTIFIER_TYPES: tuple[str, ...] = tuple(t for t in RAW_IDENTIFIER_TYPES if t not in HASHED_IDENTIFIER_TYPES)
#: ``DeadLetter.error_type`` (``ErrorType``): why ingestion rejected a record.
DEAD_LETTER_REASONS: tuple[str, ...] = enum_symbols("dead_letter", "ErrorType")

#: Producers send events of channel ``c`` to ``journey.events.<c>``.
INPUT_TOPIC_PREFIX = "journey.events."
#: The live input topics, one per channel.
INPUT_TOPICS: tuple[str, ...] = tuple(INPUT_TOPIC_PREFIX + c for c in CHANNELS)
