"""Offline oracle of what ``journey.dlq`` keeps of a rejected value (docs/privacy.md, "The
dead-letter queue"), written from the documented policy with fastavro directly: not the job's
codec (``models.avro_codec``) nor its redaction (``models.dlq``). Only the documented
normalization and hash of an identifier (``models.normalize``, checked on its own examples)
are shared."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from models.normalize import normalize_email, normalize_phone, pii_hash

SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "event.avsc"
KEEP = 512


def _plain(node: Any) -> Any:
    """The schema without logical types (the records' longs stay longs)."""
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


_RAW = json.loads(SCHEMA.read_text())
_PARSED = fastavro.parse_schema(_plain(_RAW))
_HEADER = b"\xc3\x01" + bytes.fromhex(fingerprint(to_parsing_canonical_form(_RAW), "CRC-64-AVRO"))


def _as_event(data: bytes) -> dict[str, Any] | None:
    if not data.startswith(_HEADER):
        return None
    buf = io.BytesIO(data[len(_HEADER) :])
    try:
        rec = fastavro.schemaless_reader(buf, _PARSED, None)
    except Exception:
        return None
    if buf.tell() != len(data) - len(_HEADER):
        return None  # trailing bytes
    return rec  # type: ignore[return-value]


def _hashed(kind: str, raw: str, salt: str) -> str:
    norm = normalize_email(raw) if kind == "email" else normalize_phone(raw, "1")
    return f"hmac:{pii_hash(kind, norm, salt)}" if norm else f"hmac-raw:{pii_hash(kind, raw, salt)}"


def expected(data: bytes, salt: str) -> tuple[bytes, str, int, str]:
    """``(raw, raw_form, raw_size, raw_digest)`` the DLQ must hold for the rejected ``data``."""
    digest = hmac.new(salt.encode(), data, hashlib.sha256).hexdigest()
    event = _as_event(data)
    if event is None:
        head = data[:10] if data[:2] == b"\xc3\x01" else b""
        body = bytes(
            ord("x") if (65 <= b <= 90 or 97 <= b <= 122) else ord("0") if 48 <= b <= 57 else b
            for b in data[len(head) : KEEP]
        )
        return head + body, "masked_prefix", len(data), digest
    ids = event["identifiers"]
    for kind in ("email", "phone"):
        if ids.get(kind):
            ids[kind] = _hashed(kind, ids[kind], salt)
    out = io.BytesIO()
    fastavro.schemaless_writer(out, _PARSED, event)
    return _HEADER + out.getvalue(), "pii_hashed", len(data), digest
