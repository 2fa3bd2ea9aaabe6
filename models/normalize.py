"""Normalization of identifiers and PII: lower-cased trimmed email, E.164 phone, salted hashes.

Raw email and phone never leave ingestion: :func:`normalize_identifiers` replaces them with
``HMAC-SHA256(salt, "<type>:<normalized value>")`` in hex. The salt comes from configuration.

Examples
--------
>>> normalize_email("  Ann.Smith@Example.COM ")
'ann.smith@example.com'
>>> normalize_email("not-an-email") is None
True
>>> normalize_phone("(415) 555-0132", default_country_code="1")
'+14155550132'
>>> normalize_phone("0044 20 7946 0958", default_country_code="1")
'+442079460958'
>>> normalize_phone("12", default_country_code="1") is None
True
>>> len(pii_hash("email", "a@b.co", salt="0123456789abcdef"))
64
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

from models.contract import PLAIN_IDENTIFIER_TYPES

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE_JUNK = re.compile(r"[\s().\-/]")
#: Identifiers passed on as they are (:data:`models.contract.PLAIN_IDENTIFIER_TYPES`); the PII
#: types (email, phone) are normalized and hashed by :func:`normalize_identifiers`.
PLAIN_ID_TYPES: tuple[str, ...] = PLAIN_IDENTIFIER_TYPES


def normalize_email(raw: str | None) -> str | None:
    """Trim and lower-case; ``None`` if it is not shaped like ``local@domain.tld``."""
    if raw is None:
        return None
    email = raw.strip().lower()
    return email if _EMAIL.match(email) else None


def normalize_phone(raw: str | None, default_country_code: str) -> str | None:
    """Best-effort E.164 (``+`` and 8 to 15 digits); ``None`` if it cannot be one.

    ``+`` or ``00`` start an international number; anything else is national and gets the
    default country code (a leading trunk ``0`` is dropped).
    """
    if raw is None:
        return None
    s = _PHONE_JUNK.sub("", raw.strip())
    if s.startswith("+"):
        digits = s[1:]
    elif s.startswith("00"):
        digits = s[2:]
    else:
        digits = default_country_code + (s[1:] if s.startswith("0") else s)
    if not digits.isdigit() or not 8 <= len(digits) <= 15 or digits[0] == "0":
        return None
    return "+" + digits


def pii_hash(kind: str, value: str, salt: str) -> str:
    """Keyed hash of a normalized identifier; the type is part of the message."""
    return hmac.new(salt.encode(), f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()


def normalize_identifiers(
    ids: dict[str, Any], salt: str, default_country_code: str
) -> tuple[dict[str, str | None], list[str]]:
    """Map raw identifiers to ``HashedIdentifiers``; returns (identifiers, warnings).

    Blank plain identifiers become ``None``. An email or phone that cannot be normalized is
    dropped with a warning (the event itself stays valid if another identifier remains).
    """
    out: dict[str, str | None] = {}
    warnings: list[str] = []
    for t in PLAIN_ID_TYPES:
        v = ids.get(t)
        out[t] = v.strip() if isinstance(v, str) and v.strip() else None
    email_raw, phone_raw = ids.get("email"), ids.get("phone")
    email = normalize_email(email_raw)
    phone = normalize_phone(phone_raw, default_country_code)
    if email_raw is not None and email_raw.strip() and email is None:
        warnings.append("email_dropped_unparseable")
    if phone_raw is not None and phone_raw.strip() and phone is None:
        warnings.append("phone_dropped_unparseable")
    out["email_hash"] = pii_hash("email", email, salt) if email else None
    out["phone_hash"] = pii_hash("phone", phone, salt) if phone else None
    return out, warnings
