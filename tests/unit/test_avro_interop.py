"""The project's single-object encoding is the Avro specification's, checked against its Java reference.

The Java side is ``org.apache.avro:avro`` 1.12.2 itself (``local/maven/avro/pom.xml``, fetched by
``make setup`` into ``.stack/lib/avro``), driven by ``tests/interop/AvroInterop.java``: one JVM
for the whole module, every schema of ``schemas/`` in one request. Both directions are compared
field for field: records the reference writes with ``BinaryMessageEncoder`` decode in
``models.avro_codec``, and values the project writes decode in ``BinaryMessageDecoder``. The
records are varied and valid for each schema (``tests.interop.avro_reference.RecordFactory``:
every union branch and enum symbol, edge values), the documented examples of docs/events.md,
and the reference's own ``RandomData``. No servers are needed.

The CRC-64-AVRO fingerprints are also checked against the specification's test data, which
does not need Java.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastavro.schema import to_parsing_canonical_form

from models.avro_codec import HEADER_LEN, MAGIC, SCHEMA_DIR, SchemaCatalog, crc64_fingerprint
from models.ingest import Accepted, IngestSettings, Ingestor, SourceRecord
from tests.interop.avro_reference import (
    AVRO_INTEROP_JAVA,
    RecordFactory,
    differences,
    documented_examples,
    from_avro_json,
    reference_classpath,
    run_java_source,
)

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "events.md"
CATALOG = SchemaCatalog.load()
SCHEMA_FILES = sorted(SCHEMA_DIR.glob("*.avsc"))
SEED = 20260101
GENERATED_PER_SCHEMA = 60
RANDOM_PER_SCHEMA = 25

# The CRC-64-AVRO test data of the Avro project: every case of share/test/data/schema-tests.txt
# in github.com/apache/avro (read at commit 0ea74a36cebb2e5fbc37e599814a05c33cb7d424) that has a
# `<<fingerprint` line: (case, input schema, parsing canonical form, fingerprint as the signed
# long Java's SchemaNormalization.parsingFingerprint64 returns). The file notes that the Java
# implementation cross-checks these values with a direct implementation of the algorithm.
SPEC_FINGERPRINTS: tuple[tuple[str, str, str, int], ...] = (
    ("000", '"null"', '"null"', 7195948357588979594),
    ("002", '"boolean"', '"boolean"', -6970731678124411036),
    ("004", '"int"', '"int"', 8247732601305521295),
    ("006", '"long"', '"long"', -3434872931120570953),
    ("008", '"float"', '"float"', 5583340709985441680),
    ("010", '"double"', '"double"', -8181574048448539266),
    ("012", '"bytes"', '"bytes"', 5746618253357095269),
    ("014", '"string"', '"string"', -8142146995180207161),
    ("016", "[  ]", "[]", -1241056759729112623),
    ("017", '[ "int"  ]', '["int"]', -5232228896498058493),
    ("018", '[ "int" , {"type":"boolean"} ]', '["int","boolean"]', 5392556393470105090),
    (
        "019",
        '{"fields":[], "type":"record", "name":"foo"}',
        '{"name":"foo","type":"record","fields":[]}',
        -4824392279771201922,
    ),
    (
        "020",
        '{"fields":[], "type":"record", "name":"foo", "namespace":"x.y"}',
        '{"name":"x.y.foo","type":"record","fields":[]}',
        5916914534497305771,
    ),
    (
        "021",
        '{"fields":[], "type":"record", "name":"a.b.foo", "namespace":"x.y"}',
        '{"name":"a.b.foo","type":"record","fields":[]}',
        -4616218487480524110,
    ),
    (
        "022",
        '{"fields":[], "type":"record", "name":"foo", "doc":"Useful info"}',
        '{"name":"foo","type":"record","fields":[]}',
        -4824392279771201922,
    ),
    (
        "023",
        '{"fields":[], "type":"record", "name":"foo", "aliases":["foo","bar"]}',
        '{"name":"foo","type":"record","fields":[]}',
        -4824392279771201922,
    ),
    (
        "024",
        '{"fields":[], "type":"record", "name":"foo", "doc":"foo", "aliases":["foo","bar"]}',
        '{"name":"foo","type":"record","fields":[]}',
        -4824392279771201922,
    ),
    (
        "025",
        '{"fields":[{"type":{"type":"boolean"}, "name":"f1"}], "type":"record", "name":"foo"}',
        '{"name":"foo","type":"record","fields":[{"name":"f1","type":"boolean"}]}',
        7843277075252814651,
    ),
    (
        "026",
        '{ "fields":[{"type":"boolean", "aliases":[], "name":"f1", "default":"true"},\n'
        '            {"order":"descending","name":"f2","doc":"Hello","type":"int"}],\n'
        '  "type":"record", "name":"foo"\n}',
        '{"name":"foo","type":"record","fields":[{"name":"f1","type":"boolean"},{"name":"f2","type":"int"}]}',
        -4860222112080293046,
    ),
    (
        "027",
        '{"type":"enum", "name":"foo", "symbols":["A1"]}',
        '{"name":"foo","type":"enum","symbols":["A1"]}',
        -6342190197741309591,
    ),
    (
        "028",
        '{"namespace":"x.y.z", "type":"enum", "name":"foo", "doc":"foo bar", "symbols":["A1", "A2"]}',
        '{"name":"x.y.z.foo","type":"enum","symbols":["A1","A2"]}',
        -4448647247586288245,
    ),
    ("029", '{"name":"foo","type":"fixed","size":15}', '{"name":"foo","type":"fixed","size":15}', 1756455273707447556),
    (
        "030",
        '{"namespace":"x.y.z", "type":"fixed", "name":"foo", "doc":"foo bar", "size":32}',
        '{"name":"x.y.z.foo","type":"fixed","size":32}',
        -3064184465700546786,
    ),
    ("031", '{ "items":{"type":"null"}, "type":"array"}', '{"type":"array","items":"null"}', -589620603366471059),
    ("032", '{ "values":"string", "type":"map"}', '{"type":"map","values":"string"}', -8732877298790414990),
    (
        "033",
        '{"name":"PigValue","type":"record",\n'
        '   "fields":[{"name":"value", "type":["null", "int", "long", "PigValue"]}]}',
        '{"name":"PigValue","type":"record","fields":[{"name":"value","type":["null","int","long","PigValue"]}]}',
        -1759257747318642341,
    ),
)

#: Inputs fastavro's parser refuses (Java's accepts them); their canonical form is used instead.
FASTAVRO_REFUSES = {"026": 'the default "true" of the boolean field f1 is a string'}


@dataclass(frozen=True)
class Case:
    """What the module sends the reference for one schema file.

    ``records`` are in the project's notation, ``avro_json`` are the same records in Avro's
    JSON encoding, ``project_values`` are them encoded by ``models.avro_codec``.
    """

    file: Path
    name: str
    expanded_schema: Any
    records: list[Any]
    avro_json: list[str]
    project_values: list[bytes]
    documented: int  # the first `documented` records are the examples of docs/events.md


def _case(file: Path) -> Case:
    raw = json.loads(file.read_text())
    codec = CATALOG.codec(raw["name"])
    factory = RecordFactory(raw, seed=SEED)
    examples = [r for name, r in documented_examples(DOCS.read_text()) if name == raw["name"]]
    pairs = []
    for record in examples:
        pairs.append((record, _avro_json_of_project_record(factory.schema, record)))
    pairs += [factory.record() for _ in range(GENERATED_PER_SCHEMA)]
    assert factory.covered == factory.choices(), f"{file.name}: raise GENERATED_PER_SCHEMA"
    return Case(
        file,
        raw["name"],
        factory.schema,
        [r for r, _ in pairs],
        [json.dumps(j, ensure_ascii=False) for _, j in pairs],
        [codec.encode(r) for r, _ in pairs],
        len(examples),
    )


def _avro_json_of_project_record(schema: Any, value: Any) -> Any:
    """A documented example (project notation) in Avro's JSON encoding; unions by the value's type."""
    if isinstance(schema, list):
        if value is None:
            return None
        if isinstance(value, tuple):
            (branch,) = [b for b in schema if isinstance(b, dict) and b.get("name") == value[0]]
            return {value[0]: _avro_json_of_project_record(branch, value[1])}
        branch = next(b for b in schema if _holds(b, value))
        name = branch if isinstance(branch, str) else branch.get("name", branch["type"])
        return {name: _avro_json_of_project_record(branch, value)}
    t = schema if isinstance(schema, str) else schema["type"]
    if t == "record":
        return {f["name"]: _avro_json_of_project_record(f["type"], value[f["name"]]) for f in schema["fields"]}
    if t == "array":
        return [_avro_json_of_project_record(schema["items"], v) for v in value]
    if t == "map":
        return {k: _avro_json_of_project_record(schema["values"], v) for k, v in value.items()}
    if t == "bytes":
        return value.decode("latin-1")
    return value


def _holds(branch: Any, value: Any) -> bool:
    """Whether a (non-null, untagged) union value can be of this branch; the first that can is taken."""
    t = branch if isinstance(branch, str) else branch["type"]
    if isinstance(t, (dict, list)):
        return _holds(t, value)
    if isinstance(value, bool):
        return t == "boolean"
    allowed = {
        int: ("int", "long"),
        float: ("float", "double"),
        str: ("string", "enum"),
        bytes: ("bytes", "fixed"),
        list: ("array",),
        dict: ("map", "record"),
    }[type(value)]
    return t in allowed and (t != "enum" or value in branch["symbols"])


@pytest.fixture(scope="module")
def cases() -> dict[str, Case]:
    return {c.name: c for c in map(_case, SCHEMA_FILES)}


@pytest.fixture(scope="module")
def reference(cases: dict[str, Case], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The Java reference's answers, by schema name (one JVM run for the whole module)."""
    classpath = reference_classpath()
    request = {
        "seed": SEED,
        "random_records": RANDOM_PER_SCHEMA,
        "schemas": [
            {"file": str(c.file), "avro_json": c.avro_json, "single_object_hex": [v.hex() for v in c.project_values]}
            for c in cases.values()
        ],
    }
    path = tmp_path_factory.mktemp("avro-interop") / "request.json"
    path.write_text(json.dumps(request))
    response = json.loads(run_java_source(AVRO_INTEROP_JAVA, [str(path)], classpath, timeout_s=120))
    assert response["avro_version"] == "1.12.2", response["avro_version"]
    by_name = {r["name"].rsplit(".", 1)[-1]: r for r in response["schemas"]}
    assert set(by_name) == set(cases)
    return by_name


def _fail_on_differences(what: str, found: list[str]) -> None:
    if found:
        pytest.fail(f"{what}: {len(found)} differences, e.g.\n  " + "\n  ".join(found[:15]), pytrace=False)


# --- the specification ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "case, schema, canonical, fingerprint64", SPEC_FINGERPRINTS, ids=[c[0] for c in SPEC_FINGERPRINTS]
)
def test_fingerprint_is_the_specifications_crc64_avro_test_vector_written_little_endian(
    case: str, schema: str, canonical: str, fingerprint64: int
) -> None:
    parsed = json.loads(schema if case not in FASTAVRO_REFUSES else canonical)
    assert to_parsing_canonical_form(parsed) == canonical
    fp = crc64_fingerprint(parsed)
    assert int.from_bytes(fp, "little", signed=True) == fingerprint64, (
        f"case {case}: got {fp.hex(' ')}, the specification's bytes are {fingerprint64.to_bytes(8, 'little', signed=True).hex(' ')}"
    )


def test_single_object_headers_are_the_ones_of_the_specification_and_the_avro_projects_tests() -> None:
    # "null": the header of issue 9 (7195948357588979594 little-endian); "int": the header that
    # test_single_object_encoding_header of lang/ruby/test/test_fingerprints.rb in
    # github.com/apache/avro expects (fingerprint 8247732601305521295 = 0x7275d51a3f395c8f).
    assert MAGIC + crc64_fingerprint("null") == bytes.fromhex("C3 01 8A 8F 25 CC E7 24 DD 63")
    assert MAGIC + crc64_fingerprint({"type": "int"}) == bytes.fromhex("c3 01 8f 5c 39 3f 1a d5 75 72")


# --- the Java reference --------------------------------------------------------------------


def test_every_schema_has_the_fingerprint_and_header_of_the_java_reference(
    cases: dict[str, Case], reference: dict[str, Any]
) -> None:
    for name, case in cases.items():
        java = reference[name]
        codec = CATALOG.codec(name)
        assert codec.fingerprint == java["fingerprint64"].to_bytes(8, "little", signed=True), name
        java_headers = {bytes.fromhex(e["hex"])[:HEADER_LEN] for e in java["encoded"] if "hex" in e}
        java_headers |= {bytes.fromhex(e["hex"])[:HEADER_LEN] for e in java["random"]}
        assert java_headers == {MAGIC + codec.fingerprint}, (
            f"{name}: BinaryMessageEncoder writes {sorted(h.hex(' ') for h in java_headers)}, "
            f"the project {(MAGIC + codec.fingerprint).hex(' ')}"
        )
        assert {v[:HEADER_LEN] for v in case.project_values} == {MAGIC + codec.fingerprint}


@pytest.mark.parametrize("schema_file", SCHEMA_FILES, ids=[p.stem for p in SCHEMA_FILES])
def test_records_encoded_by_java_reference_decode_in_project_field_for_field(
    schema_file: Path, cases: dict[str, Case], reference: dict[str, Any]
) -> None:
    name = json.loads(schema_file.read_text())["name"]
    case, java = cases[name], reference[name]
    assert len(java["encoded"]) == len(case.records)
    found = []
    for i, (record, encoded) in enumerate(zip(case.records, java["encoded"])):
        if "error" in encoded:
            found.append(f"record {i}: the reference could not encode it: {encoded['error']}")
            continue
        try:
            decoded_name, decoded = CATALOG.decode(bytes.fromhex(encoded["hex"]), expect=name)
        except ValueError as e:
            found.append(f"record {i}: the project cannot decode the reference's value: {e}")
            continue
        found += [f"record {i}: {d}" for d in differences(record, decoded)]
    _fail_on_differences(f"{schema_file.name}, BinaryMessageEncoder -> models.avro_codec", found)


@pytest.mark.parametrize("schema_file", SCHEMA_FILES, ids=[p.stem for p in SCHEMA_FILES])
def test_records_encoded_by_project_decode_in_java_reference_field_for_field(
    schema_file: Path, cases: dict[str, Case], reference: dict[str, Any]
) -> None:
    name = json.loads(schema_file.read_text())["name"]
    case, java = cases[name], reference[name]
    assert len(java["decoded"]) == len(case.records)
    found = []
    for i, (record, decoded) in enumerate(zip(case.records, java["decoded"])):
        if "error" in decoded:
            found.append(
                f"record {i}: BinaryMessageDecoder refused the project's value "
                f"{case.project_values[i][:HEADER_LEN].hex(' ')} ...: {decoded['error']}"
            )
            continue
        read_back = from_avro_json(case.expanded_schema, json.loads(decoded["avro_json"]))
        found += [f"record {i}: {d}" for d in differences(record, read_back)]
    _fail_on_differences(f"{schema_file.name}, models.avro_codec -> BinaryMessageDecoder", found)


@pytest.mark.parametrize("schema_file", SCHEMA_FILES, ids=[p.stem for p in SCHEMA_FILES])
def test_random_records_of_the_java_reference_decode_in_project_field_for_field(
    schema_file: Path, cases: dict[str, Case], reference: dict[str, Any]
) -> None:
    name = json.loads(schema_file.read_text())["name"]
    case, java = cases[name], reference[name]
    assert len(java["random"]) == RANDOM_PER_SCHEMA
    found = []
    for i, item in enumerate(java["random"]):
        expected = from_avro_json(case.expanded_schema, json.loads(item["avro_json"]))
        try:
            decoded = CATALOG.decode(bytes.fromhex(item["hex"]), expect=name)[1]
        except ValueError as e:
            found.append(f"RandomData record {i}: {e}")
            continue
        found += [f"RandomData record {i}: {d}" for d in differences(expected, decoded)]
    _fail_on_differences(f"{schema_file.name}, RandomData + BinaryMessageEncoder -> models.avro_codec", found)


def test_documented_events_written_by_the_java_reference_are_accepted_by_ingestion(
    cases: dict[str, Case], reference: dict[str, Any]
) -> None:
    case = cases["Event"]
    assert case.documented == 17
    ingestor = Ingestor(IngestSettings("interop-test-salt-0123456789"), CATALOG)
    for i in range(case.documented):
        value = bytes.fromhex(reference["Event"]["encoded"][i]["hex"])
        event_time = case.records[i]["occurred_at"]
        result = ingestor.process(SourceRecord(value, "journey.events.web", 0, i, event_time + 1000))
        assert isinstance(result, Accepted), (
            f"{case.records[i]['event_id']} from BinaryMessageEncoder: {CATALOG.decode(result.value)[1]}"
        )


def test_fingerprint_table_of_the_docs_gives_the_java_references_signed_longs(reference: dict[str, Any]) -> None:
    rows = re.findall(r"^\| `(\w+)` \| `schemas/[\w.]+` \| `([0-9a-f]{16})` \| `(-?\d+)` \|$", DOCS.read_text(), re.M)
    assert {name for name, _, _ in rows} == set(reference)
    for name, hex_bytes, signed in rows:
        assert int(signed) == reference[name]["fingerprint64"], f"docs/events.md row {name}"
        assert bytes.fromhex(hex_bytes) == int(signed).to_bytes(8, "little", signed=True), name
