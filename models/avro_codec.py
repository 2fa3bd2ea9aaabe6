"""Avro single-object encoding for every topic of the project.

Each Kafka value is ``C3 01`` + the 8-byte little-endian CRC-64-AVRO fingerprint of the
writer schema's parsing canonical form + the Avro binary body (the Avro specification's
*single-object encoding*, byte for byte what Java's ``BinaryMessageEncoder`` writes and
``BinaryMessageDecoder`` reads; ``tests/unit/test_avro_interop.py`` checks it against that
reference). A consumer looks the fingerprint up in :class:`SchemaCatalog` and decodes without
guessing; an unknown fingerprint is an explicit error, not a crash.

Examples
--------
>>> catalog = SchemaCatalog.load()
>>> codec = catalog.codec("DeadLetter")
>>> record = {"raw": b"x", "error_type": "malformed_avro", "error_detail": "eof",
...           "source_topic": "t", "source_partition": 0, "source_offset": 7,
...           "source_timestamp": 0, "job": "ingestion"}
>>> data = codec.encode(record)
>>> data[:2]
b'\\xc3\\x01'
>>> catalog.decode(data)[1]["source_offset"]
7
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
MAGIC = b"\xc3\x01"
HEADER_LEN = len(MAGIC) + 8


def short_name(record_name: str) -> str:
    """``journey.v1.Purchase`` -> ``Purchase`` (union branches are read as full names)."""
    return record_name.rsplit(".", 1)[-1]


class DecodeError(ValueError):
    """A value that is not a decodable single-object-encoded Avro record.

    ``error_type`` is one of the DeadLetter ``ErrorType`` symbols.
    """

    def __init__(self, error_type: str, detail: str) -> None:
        super().__init__(f"{error_type}: {detail}")
        self.error_type = error_type
        self.detail = detail


@dataclass(frozen=True)
class Codec:
    """Encoder/decoder for one writer schema.

    Unions of records (the event ``payload``) are written and read as ``(record name, dict)``
    tuples, so the branch is explicit and never guessed from the fields.
    """

    name: str
    schema: Any  # fastavro parsed schema
    fingerprint: bytes  # 8 bytes, little-endian CRC-64-AVRO
    #: an earlier version's codec: the current schema of the record, which it is read as
    #: (Avro schema resolution); None: this is the current version
    reader: Any = None

    def encode(self, record: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        buf.write(MAGIC)
        buf.write(self.fingerprint)
        fastavro.schemaless_writer(buf, self.schema, record)
        return buf.getvalue()

    def decode_body(self, data: bytes) -> dict[str, Any]:
        buf = io.BytesIO(data)
        buf.seek(HEADER_LEN)
        try:
            record = fastavro.schemaless_reader(
                buf, self.schema, self.reader, return_record_name=True, return_record_name_override=True
            )
        except Exception as e:  # fastavro raises EOFError, UnicodeDecodeError, IndexError, ...
            raise DecodeError("malformed_avro", f"{type(e).__name__}: {e}") from None
        if buf.tell() != len(data):
            raise DecodeError("malformed_avro", f"{len(data) - buf.tell()} trailing bytes after the record")
        return record  # type: ignore[return-value]


def _without_logical_types(node: Any) -> Any:
    """Timestamps stay epoch-ms ints in Python (fastavro would turn them into datetimes).

    The parsing canonical form ignores logicalType, so the fingerprint is unchanged.
    """
    if isinstance(node, dict):
        return {k: _without_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_without_logical_types(v) for v in node]
    return node


def crc64_fingerprint(schema: Any) -> bytes:
    """The 8 fingerprint bytes of a single-object header, in the order they go on the wire.

    Parameters
    ----------
    schema : Any
        An Avro schema as parsed JSON (a record dict, a primitive name, a union list, ...).

    Returns
    -------
    bytes
        The CRC-64-AVRO fingerprint of the schema's Parsing Canonical Form, little-endian, as
        the specification and Java's ``BinaryMessageEncoder`` write it. Java's
        ``SchemaNormalization.parsingFingerprint64`` is the same number as a signed long:
        ``int.from_bytes(crc64_fingerprint(s), "little", signed=True)``.

    Notes
    -----
    fastavro's ``fingerprint(..., "CRC-64-AVRO")`` already returns these 8 bytes, little-endian,
    as hex: they are used as they are. Reading that hex as a number and packing it again
    reverses them (the header Java's ``BinaryMessageDecoder`` cannot read).

    Examples
    --------
    The specification's test data gives 7195948357588979594 (``0x63dd24e7cc258f8a``) for
    ``"null"``:

    >>> (MAGIC + crc64_fingerprint("null")).hex(" ")
    'c3 01 8a 8f 25 cc e7 24 dd 63'
    >>> int.from_bytes(crc64_fingerprint("null"), "little", signed=True)
    7195948357588979594
    """
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


class SchemaCatalog:
    """All schemas in ``schemas/``, indexed by record name and by fingerprint, and the earlier
    versions of them in ``schemas/history/`` (``<Name>-<fingerprint>.avsc``), by fingerprint
    only: a value written with an earlier version is decoded as the current one (Avro schema
    resolution, e.g. an enum that has gained a symbol), so a topic's older records stay
    readable after its schema evolved."""

    def __init__(self, schemas: dict[str, dict[str, Any]], history: dict[str, dict[str, Any]] | None = None) -> None:
        self._by_name: dict[str, Codec] = {}
        self._by_fp: dict[bytes, Codec] = {}
        for raw in schemas.values():
            parsed = fastavro.parse_schema(_without_logical_types(raw))
            codec = Codec(raw["name"], parsed, crc64_fingerprint(raw))
            self._by_name[codec.name] = codec
            self._by_fp[codec.fingerprint] = codec
        for stem, raw in (history or {}).items():
            current = self._by_name.get(raw["name"])
            if current is None:
                raise ValueError(f"schemas/history/{stem}.avsc: no current schema named {raw['name']!r}")
            old = Codec(raw["name"], fastavro.parse_schema(_without_logical_types(raw)), crc64_fingerprint(raw))
            if stem != f"{short_name(raw['name'])}-{old.fingerprint.hex()}":
                raise ValueError(
                    f"schemas/history/{stem}.avsc: name it {short_name(raw['name'])}-{old.fingerprint.hex()}"
                )
            self._by_fp.setdefault(old.fingerprint, Codec(old.name, old.schema, old.fingerprint, current.schema))

    @classmethod
    def load(cls, directory: Path = SCHEMA_DIR) -> "SchemaCatalog":
        files = sorted(directory.glob("*.avsc"))
        if not files:
            raise FileNotFoundError(f"no .avsc schemas in {directory}")
        history = sorted((directory / "history").glob("*.avsc"))
        return cls(
            {p.stem: json.loads(p.read_text()) for p in files}, {p.stem: json.loads(p.read_text()) for p in history}
        )

    def codec(self, name: str) -> Codec:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no schema named {name!r}; known: {sorted(self._by_name)}") from None

    def decode(self, data: bytes, expect: str | None = None) -> tuple[str, dict[str, Any]]:
        """Decode a single-object-encoded value; returns (schema name, record).

        Raises :class:`DecodeError` for anything that is not a known, well-formed record
        (and, with ``expect``, for a record of another schema).
        """
        if len(data) < HEADER_LEN or data[:2] != MAGIC:
            raise DecodeError(
                "not_single_object_encoded", f"value of {len(data)} bytes does not start with C3 01 + fingerprint"
            )
        codec = self._by_fp.get(bytes(data[2:HEADER_LEN]))
        if codec is None or (expect is not None and codec.name != expect):
            raise DecodeError(
                "unknown_schema",
                f"fingerprint {bytes(data[2:HEADER_LEN]).hex()} is not "
                f"{'a known schema' if codec is None else f'the {expect} schema'}",
            )
        return codec.name, codec.decode_body(bytes(data))
