"""What the dead-letter queue keeps of a rejected record: no raw personal data (``docs/privacy.md``).

``journey.dlq`` used to hold the rejected Kafka value byte for byte, and a rejected event
carries raw emails and phones. :func:`redact` decides what is kept instead, by one of two
documented forms (``DeadLetter.raw_form``):

* ``pii_hashed`` — the record decodes as an ``Event`` (it was rejected by a contract rule):
  the same event, re-encoded with the same writer schema, its ``identifiers.email`` and
  ``identifiers.phone`` replaced by ``hmac:<salted HMAC-SHA256>`` — of the normalized value
  (the same hash as ``email_hash`` / ``phone_hash`` in ``journey.normalized``, so an operator
  can find the person's other events) or, when it does not normalize, ``hmac-raw:<hash>`` of
  the value as sent. Everything else stays as the producer sent it: the field that broke the
  contract is there to read.
* ``masked_prefix`` — the bytes do not decode as an ``Event``: the first
  :data:`PREFIX_BYTES` bytes, every ASCII letter replaced by ``x`` and every digit by ``0``
  (so no name, address, email or phone survives, not even a fragment of a truncated body),
  the single-object header (magic and schema fingerprint: which writer schema) kept as is.
  What is left shows the shape (JSON text, Avro framing, lengths) of what the producer sent.

Both come with ``raw_size`` (bytes received) and ``raw_digest`` (salted HMAC-SHA256 of the
exact bytes: an operator holding the producer's copy and the salt can prove it is that
record; nobody else can test guesses against it).

Examples
--------
>>> mask_prefix(b'{"email": "Ann.Lee@Example.com", "phone": "+1 (555) 010-2030"}')
b'{"xxxxx": "xxx.xxx@xxxxxxx.xxx", "xxxxx": "+0 (000) 000-0000"}'
>>> mask_prefix(b"\\xc3\\x01ABCDEFGH" + b"john")  # the header kept, the body masked
b'\\xc3\\x01ABCDEFGHxxxx'
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from models.avro_codec import HEADER_LEN, MAGIC, DecodeError, SchemaCatalog
from models.normalize import normalize_email, normalize_phone, pii_hash

#: how much of an undecodable record is kept (masked)
PREFIX_BYTES = 512
PII_FIELDS = ("email", "phone")
_MASK = bytes(
    ord("x") if chr(b).isascii() and chr(b).isalpha() else ord("0") if chr(b).isdigit() and b < 128 else b
    for b in range(256)
)


@dataclass(frozen=True)
class Redacted:
    """What the DLQ keeps of a rejected record (the ``DeadLetter`` fields of the same names)."""

    raw: bytes
    raw_form: str  # "pii_hashed" | "masked_prefix"
    raw_size: int
    raw_digest: str


def mask_prefix(data: bytes) -> bytes:
    """The first :data:`PREFIX_BYTES` of ``data``, ASCII letters and digits masked; a
    single-object header (magic + fingerprint) is kept as is."""
    head = data[:HEADER_LEN] if data[: len(MAGIC)] == MAGIC else b""
    return head + data[len(head) : PREFIX_BYTES].translate(_MASK)


def hash_pii_value(kind: str, raw: str, salt: str, default_country_code: str) -> str:
    """``hmac:<hash>`` of the normalized value (as ``journey.normalized`` has it), or
    ``hmac-raw:<hash>`` of the value as sent when it does not normalize.

    >>> hash_pii_value("email", " Ann@X.com", "s" * 16, "1") == "hmac:" + pii_hash("email", "ann@x.com", "s" * 16)
    True
    >>> hash_pii_value("phone", "call me", "s" * 16, "1").startswith("hmac-raw:")
    True
    """
    norm = normalize_email(raw) if kind == "email" else normalize_phone(raw, default_country_code)
    if norm is not None:
        return "hmac:" + pii_hash(kind, norm, salt)
    return "hmac-raw:" + pii_hash(kind, raw, salt)


def redact(data: bytes, catalog: SchemaCatalog, salt: str, default_country_code: str) -> Redacted:
    """What the DLQ keeps of the rejected value ``data`` (see the module doc)."""
    digest = hmac.new(salt.encode(), data, hashlib.sha256).hexdigest()
    try:
        name, event = catalog.decode(data, expect="Event")
    except DecodeError:
        return Redacted(mask_prefix(data), "masked_prefix", len(data), digest)
    ids: dict[str, Any] = dict(event.get("identifiers") or {})
    for kind in PII_FIELDS:
        v = ids.get(kind)
        if isinstance(v, str) and v:
            ids[kind] = hash_pii_value(kind, v, salt, default_country_code)
    event["identifiers"] = ids
    return Redacted(catalog.codec(name).encode(event), "pii_hashed", len(data), digest)
