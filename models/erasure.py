"""Erasure (GDPR art. 17 / CCPA delete): what an ``erasure_request`` removes, and the tombstones
that keep it removed (``docs/privacy.md``, "Erasure").

Semantics
---------
* An ``erasure_request`` names a person by any identifiers. It takes effect in **event time**:
  once event time passes the request's ``occurred_at`` (the identity stage's watermark), so
  every event of the person up to the request has been seen, whatever the order in which
  the input partitions were read.
* It erases the **raw identity component** of each of its identifiers: every identifier
  linked to them through events (links the rules refused included) and every profile of
  those identifiers. The raw component is what identity resolution itself works within
  (``docs/identity.md``), and it is the only choice that does not depend on the order of
  arrival: a link that arrives after the erasure can only join an identifier to an erased
  one, which it then erases too (below). Its cost: a person who shared an identifier with
  the requester (a shared device) is erased with them.
* The component's identifiers are **tombstoned**: an event carrying one of them is dropped
  before identity resolution (counted ``erased``), and the other identifiers it carries are
  erased with their own components (the closure above), so the final result is the same in
  every arrival order.
* A tombstone is :func:`tombstone_key` of the identifier (SHA-256 of ``type:value``; email
  and phone are already salted hashes), never the identifier itself.
* Cassandra rows are deleted at :data:`ERASED_TIMESTAMP`, above every write timestamp the
  jobs use (``USING TIMESTAMP 2 * version + 1`` with ``version < 2**61``), so a replayed or
  late write can never bring a row back.

Examples
--------
>>> tombstone_key(("customer_id", "C-1"))
't-f7e0624450498ac3b8ecb118a57831b4'
>>> ERASED_TIMESTAMP > 2 * ((1 << 61) - 1) + 1
True
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from models.identity import Node

#: the ``USING TIMESTAMP`` of every deletion an erasure makes: above any write of the jobs
ERASED_TIMESTAMP = 1 << 62
#: the event type that asks for an erasure
ERASURE_REQUEST = "erasure_request"


def tombstone_key(node: Node) -> str:
    """``t-`` + 32 hex digits of SHA-256 of ``type:value``: how a tombstone names an identifier."""
    return "t-" + hashlib.sha256(f"{node[0]}:{node[1]}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Tombstone:
    """Why an identifier is tombstoned: the request and when (event time) it took effect."""

    request_id: str
    at: int


@dataclass(frozen=True)
class PendingErasure:
    """An erasure request seen and not yet due (due when event time passes ``at``)."""

    request_id: str
    event_id: str
    at: int
    nodes: tuple[Node, ...]


@dataclass(frozen=True)
class Erased:
    """One executed erasure of one raw component: what the later stages must remove.

    ``profile_ids``: the live profiles (each gets an ``erase`` command); ``ids``: every profile
    id the component's rows can be under (the live ids and the canonical id of each identifier
    alone, as sessions written before a merge stay under an earlier id); ``nodes``: the
    identifiers (their ``identity_links`` rows and tombstones).
    """

    request_id: str
    event_id: str
    at: int
    profile_ids: tuple[str, ...]
    ids: tuple[str, ...]
    nodes: tuple[Node, ...]
    closure: bool  # True: found through an event that carried a tombstoned identifier


def request_id_of(event: Mapping[str, Any]) -> str:
    """The request id of a decoded ``erasure_request`` NormalizedEvent (its event id if the
    payload has none)."""
    payload = event.get("payload")
    body = payload[1] if isinstance(payload, tuple) else payload
    rid = body.get("request_id") if isinstance(body, Mapping) else None
    return str(rid) if rid else str(event["event_id"])


def tombstoned(nodes: Iterable[Node], tombstones: Mapping[str, Tombstone]) -> Tombstone | None:
    """The tombstone of the first of ``nodes`` that has one (None: none has)."""
    return next((t for t in (tombstones.get(tombstone_key(n)) for n in nodes) if t is not None), None)
