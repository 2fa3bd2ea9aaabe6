"""The contract constants equal what ``schemas/*.avsc`` say, and the code handles every symbol.

``models.contract`` is the one home of event types, channels, identifier types, payload
records and dead-letter reasons (read from the schemas); the modules that always exported
them re-export the same objects. The schema files are read here independently (plain JSON)
to compare. The second half checks that the code *knows* each symbol (a payload rule per
event type, code that emits each dead-letter reason, normalization and an identity priority
for each identifier type), and, on a copy of the schemas with one symbol added to each
enum and record, that these checks catch it.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from models import config, contract, events, identity, ingest, normalize, profile
from models.events import PAYLOAD_OF
from models.normalize import normalize_identifiers

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
#: The modules whose code turns records into DeadLetter reasons.
REASON_EMITTERS = ("models/avro_codec.py", "models/events.py", "models/ingest.py")


def _load(stem: str, directory: Path = SCHEMAS) -> dict[str, Any]:
    return json.loads((directory / f"{stem}.avsc").read_text())


def _find(node: Any, name: str) -> dict[str, Any]:
    """The definition of the named type ``name`` anywhere in a parsed schema (independent of models.contract)."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, list):
            stack.extend(n)
        elif isinstance(n, dict):
            if n.get("name") == name and n.get("type") in ("record", "enum"):
                return n
            stack.extend(v for k, v in n.items() if k in ("type", "fields", "items", "values"))
    raise KeyError(name)


def _symbols(stem: str, enum: str, directory: Path = SCHEMAS) -> tuple[str, ...]:
    return tuple(_find(_load(stem, directory), enum)["symbols"])


def _fields(stem: str, record: str, directory: Path = SCHEMAS) -> tuple[str, ...]:
    return tuple(f["name"] for f in _find(_load(stem, directory), record)["fields"])


# ---------------------------------------------------------------------------- equal to the schemas


def test_every_contract_constant_equals_its_schema() -> None:
    assert contract.EVENT_TYPES == _symbols("event", "EventType") == _symbols("normalized_event", "EventType")
    assert contract.CHANNELS == _symbols("event", "Channel") == _symbols("normalized_event", "Channel")
    assert contract.RAW_IDENTIFIER_TYPES == _fields("event", "Identifiers")
    assert contract.HASHED_IDENTIFIER_TYPES == _fields("normalized_event", "HashedIdentifiers")
    assert contract.DEAD_LETTER_REASONS == _symbols("dead_letter", "ErrorType")
    payload = next(f for f in _load("event")["fields"] if f["name"] == "payload")
    assert contract.PAYLOAD_RECORDS == tuple(b["name"] for b in payload["type"])
    normalized_payload = next(f for f in _load("normalized_event")["fields"] if f["name"] == "payload")
    assert contract.PAYLOAD_RECORDS == tuple(b["name"] for b in normalized_payload["type"])
    assert contract.INPUT_TOPICS == tuple(f"journey.events.{c}" for c in _symbols("event", "Channel"))
    assert {_load(p.stem)["namespace"] for p in SCHEMAS.glob("*.avsc")} == {contract.NAMESPACE}


def test_plain_and_pii_identifier_types_split_the_raw_ones_as_the_hashed_record_says() -> None:
    raw, hashed = _fields("event", "Identifiers"), _fields("normalized_event", "HashedIdentifiers")
    assert contract.PLAIN_IDENTIFIER_TYPES == tuple(t for t in raw if t in hashed)
    assert contract.PII_IDENTIFIER_TYPES == tuple(t for t in raw if t not in hashed)
    assert set(hashed) == set(contract.PLAIN_IDENTIFIER_TYPES) | {f"{t}_hash" for t in contract.PII_IDENTIFIER_TYPES}
    assert contract.PII_IDENTIFIER_TYPES == ("email", "phone")  # the two ingestion knows how to normalize


def test_the_names_other_modules_always_exported_are_the_contracts_objects() -> None:
    assert events.IDENTIFIER_TYPES is contract.RAW_IDENTIFIER_TYPES
    assert events.CHANNELS is contract.CHANNELS
    assert events.EVENT_TYPES is contract.EVENT_TYPES
    assert profile.IDENTIFIER_TYPES is contract.HASHED_IDENTIFIER_TYPES
    assert normalize.PLAIN_ID_TYPES is contract.PLAIN_IDENTIFIER_TYPES
    assert ingest.DEAD_LETTER_REASONS is contract.DEAD_LETTER_REASONS
    assert config.LIVE_INPUT_TOPICS is contract.INPUT_TOPICS
    from k8s.topics import INPUT_TOPICS

    assert INPUT_TOPICS is contract.INPUT_TOPICS


def test_defaults_have_one_home_in_the_config() -> None:
    settings = ingest.IngestSettings("x" * 16)
    cfg = config.IngestConfig(pii_salt="x" * 16)
    for name in ("default_country_code", "min_valid_timestamp_ms", "max_future_skew_ms", "job_name"):
        assert getattr(settings, name) == getattr(cfg, name), name
    assert config.ProfilesConfig().half_life_ms == profile.DEFAULT_HALF_LIFE_MS


# ---------------------------------------------------------------------------- the code knows every symbol


def _event_types_without_payload_rule(event_types: tuple[str, ...]) -> list[str]:
    return [t for t in event_types if t not in PAYLOAD_OF]


def _emitted_reasons() -> set[str]:
    """DeadLetter reasons the code emits: ``Rejection("...")`` and ``DecodeError("...")`` literals."""
    pattern = re.compile(r'\b(?:Rejection|DecodeError)\(\s*"([a-z_]+)"')
    return {m for path in REASON_EMITTERS for m in pattern.findall((ROOT / path).read_text())}


def _reasons_no_code_emits(reasons: tuple[str, ...]) -> list[str]:
    emitted = _emitted_reasons()
    return [r for r in reasons if r not in emitted]


def _identifier_types_not_normalized(raw: tuple[str, ...], hashed: tuple[str, ...]) -> list[str]:
    """Raw types whose value does not come out of ingestion under a hashed type, and hashed types
    ingestion never fills, for an event carrying a usable value of every raw type."""
    sample = {"email": " Ann@Example.COM ", "phone": "(415) 555-0132"}
    ids, warnings = normalize_identifiers({t: sample.get(t, f"v-{t}") for t in raw}, "s" * 16, "1")
    assert not warnings
    filled = {t for t, v in ids.items() if v is not None}
    return sorted((set(hashed) ^ filled) | {t for t in raw if t not in filled and f"{t}_hash" not in filled})


def _identifier_types_without_priority(hashed: tuple[str, ...]) -> list[str]:
    return [t for t in hashed if t not in identity.DEFAULT_PRIORITY]


def test_every_event_type_has_exactly_one_payload_rule_and_every_payload_record_is_used() -> None:
    assert tuple(PAYLOAD_OF) == contract.EVENT_TYPES  # same types, schema order
    assert not _event_types_without_payload_rule(contract.EVENT_TYPES)
    assert set(PAYLOAD_OF.values()) == set(contract.PAYLOAD_RECORDS)
    assert set(profile.ORDER_EVENT_TYPES) <= set(contract.EVENT_TYPES)
    assert {PAYLOAD_OF[t] for t in profile.ORDER_EVENT_TYPES} == {"Purchase"}


def test_the_code_emits_every_dead_letter_reason_and_no_other() -> None:
    assert _emitted_reasons() == set(contract.DEAD_LETTER_REASONS)
    assert not _reasons_no_code_emits(contract.DEAD_LETTER_REASONS)


def test_ingestion_turns_every_raw_identifier_type_into_a_hashed_one() -> None:
    assert not _identifier_types_not_normalized(contract.RAW_IDENTIFIER_TYPES, contract.HASHED_IDENTIFIER_TYPES)


def test_identity_resolution_ranks_every_hashed_identifier_type_once() -> None:
    assert sorted(identity.DEFAULT_PRIORITY) == sorted(contract.HASHED_IDENTIFIER_TYPES)
    assert set(identity.IdentityRules().unique_types) <= set(contract.HASHED_IDENTIFIER_TYPES)


# ---------------------------------------------------------------------------- a schema that gains a symbol


@pytest.fixture
def grown_schemas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A copy of schemas/ where each enum and identifier record the code depends on gained a member,
    read through models.contract's own loader (pointed at the copy, its cache cleared after)."""
    copy = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, copy)
    for stem in ("event", "normalized_event"):
        s = _load(stem, copy)
        _find(s, "EventType")["symbols"].append("teleport")
        _find(s, "Channel")["symbols"].append("kiosk")
        ids = _find(s, "Identifiers" if stem == "event" else "HashedIdentifiers")
        new = ["fax", "account_id"] if stem == "event" else ["fax_hash", "account_id"]
        ids["fields"] += [{"name": n, "type": ["null", "string"], "default": None} for n in new]
        (copy / f"{stem}.avsc").write_text(json.dumps(s))
    s = _load("dead_letter", copy)
    _find(s, "ErrorType")["symbols"].append("too_large")
    (copy / "dead_letter.avsc").write_text(json.dumps(s))
    monkeypatch.setattr(contract, "SCHEMA_DIR", copy)
    contract.schema.cache_clear()
    yield copy
    contract.schema.cache_clear()


def test_the_checks_fail_for_a_symbol_the_code_does_not_know(grown_schemas: Path) -> None:
    event_types = contract.enum_symbols("event", "EventType")
    reasons = contract.enum_symbols("dead_letter", "ErrorType")
    raw = contract.record_fields("event", "Identifiers")
    hashed = contract.record_fields("normalized_event", "HashedIdentifiers")
    assert event_types[-1] == "teleport" and reasons[-1] == "too_large"  # read from the copy
    assert contract.enum_symbols("event", "Channel")[-1] == "kiosk"
    assert _event_types_without_payload_rule(event_types) == ["teleport"]
    assert _reasons_no_code_emits(reasons) == ["too_large"]
    assert "fax" in _identifier_types_not_normalized(raw, hashed)  # a PII type nothing normalizes
    assert _identifier_types_without_priority(hashed) == ["fax_hash", "account_id"]
    # and the equality checks compare with the files, not with the code: the constants read at
    # import differ from the grown copy
    assert contract.EVENT_TYPES != _symbols("event", "EventType", grown_schemas)
    assert contract.CHANNELS != _symbols("event", "Channel", grown_schemas)


def test_values_of_an_earlier_schema_version_decode_as_the_current_one() -> None:
    """journey.identity keeps records written before IdentityEvent gained ``identifier_shared``:
    the catalog reads them with the version in schemas/history/ resolved to the current one."""
    import io
    import json

    import fastavro

    from models.avro_codec import MAGIC, SCHEMA_DIR, SchemaCatalog, crc64_fingerprint

    catalog = SchemaCatalog.load()
    history = sorted((SCHEMA_DIR / "history").glob("*.avsc"))
    assert history, "no earlier versions kept"
    old = json.loads((SCHEMA_DIR / "history" / "IdentityEvent-c2cac290f17dc60e.avsc").read_text())
    assert "identifier_shared" not in json.dumps(old)
    record = {
        "kind": "profile_merged",
        "profile_id": "p-1",
        "from_profile_id": "p-2",
        "identifier_type": None,
        "identifier_hash": None,
        "reason": "linked",
        "event_id": "e1",
        "occurred_at": 7,
    }
    buf = io.BytesIO(MAGIC + crc64_fingerprint(old))
    buf.seek(0, 2)
    fastavro.schemaless_writer(buf, fastavro.parse_schema(old), record)
    assert crc64_fingerprint(old) != catalog.codec("IdentityEvent").fingerprint
    assert catalog.decode(buf.getvalue(), expect="IdentityEvent") == ("IdentityEvent", record)
    for p in history:  # named by their fingerprint, and a current schema of that name exists
        raw = json.loads(p.read_text())
        assert p.stem == f"{raw['name'].rsplit('.', 1)[-1]}-{crc64_fingerprint(raw).hex()}"
        catalog.codec(raw["name"].rsplit(".", 1)[-1])
