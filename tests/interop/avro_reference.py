"""What the Avro interoperability tests share: the Java reference's jars, records, comparison.

- :func:`reference_classpath` finds ``org.apache.avro:avro`` (and ``kafka-clients``) under
  ``local.stack.LIB``, or fails the test with what to run.
- :class:`RecordFactory` makes seeded, valid, varied records for any Avro schema, each both in
  the project's notation (what ``models.avro_codec`` encodes and decodes) and in Avro's JSON
  encoding (what the reference's ``JsonDecoder`` reads).
- :func:`from_avro_json` reads Avro's JSON encoding back into the project's notation, so what
  the reference decoded can be compared with what was sent, field for field
  (:func:`differences`).

The project's notation: records are dicts, ``bytes`` are ``bytes``, timestamps stay epoch-ms
ints, and a union value whose branch is one of two or more record branches is the tuple
``(full record name, dict)`` (fastavro's ``return_record_name`` with
``return_record_name_override``); other union values are the value itself.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import struct
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fastavro.schema import expand_schema

from local.stack import LIB
from models.events import IDENTIFIER_TYPES, PAYLOAD_OF

INTEROP_DIR = Path(__file__).resolve().parent
AVRO_INTEROP_JAVA = INTEROP_DIR / "AvroInterop.java"
AVRO_LIB = LIB / "avro"
KAFKA_LIB = LIB / "kafka"

_PRIMITIVES = ("null", "boolean", "int", "long", "float", "double", "bytes", "string")
_TIMESTAMP_LOGICAL_TYPES = ("timestamp-millis", "local-timestamp-millis")


def reference_classpath(*, kafka_clients: bool = False) -> str:
    """The Java classpath of the Avro reference (and kafka-clients), or fail the test.

    Parameters
    ----------
    kafka_clients : bool
        Also put ``kafka-clients`` from ``.stack/lib/kafka`` on it (for a Kafka consumer).

    Returns
    -------
    str
        A ``java -cp`` value.
    """
    if shutil.which("java") is None:
        pytest.fail(
            "java is not on PATH: the Avro interop tests run the Java reference; run `make setup` "
            "(it installs Java 17)",
            pytrace=False,
        )
    if not list(AVRO_LIB.glob("avro-*.jar")):
        pytest.fail(
            f"the Avro Java reference (org.apache.avro:avro, local/maven/avro/pom.xml) is missing "
            f"from {AVRO_LIB}: run `make setup` (or `.venv/bin/python local/stack.py fetch`)",
            pytrace=False,
        )
    entries = [f"{AVRO_LIB}/*"]
    if kafka_clients:
        jars = sorted(KAFKA_LIB.glob("kafka-clients-*.jar"))
        if not jars:
            pytest.fail(f"kafka-clients is missing from {KAFKA_LIB}: run `make setup`", pytrace=False)
        entries.append(str(jars[-1]))
    return ":".join(entries)


def run_java_source(source: Path, args: list[str], classpath: str, timeout_s: float, cwd: Path | None = None) -> str:
    """Run a single-file Java program with the source launcher and return its stdout.

    Parameters
    ----------
    source : Path
        The ``.java`` file (Java 11+ compiles it in memory).
    args : list of str
        Its command-line arguments.
    classpath : str
        From :func:`reference_classpath`.
    timeout_s : float
        Fail the test if it has not finished by then.
    cwd : Path, optional
        Working directory.

    Returns
    -------
    str
        Standard output; the test fails with stderr if the exit code is not 0.
    """
    cmd = ["java", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", classpath, str(source), *args]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, cwd=cwd)
    except subprocess.TimeoutExpired as e:
        pytest.fail(
            f"{source.name} did not finish in {timeout_s:.0f} s\nstdout:\n{e.stdout}\nstderr:\n{e.stderr}",
            pytrace=False,
        )
    if r.returncode != 0:
        pytest.fail(f"{source.name} exited with {r.returncode}\nstderr:\n{r.stderr[-4000:]}", pytrace=False)
    return r.stdout


def _branch_name(schema: Any) -> str:
    """A union branch's name in Avro's JSON encoding: the full name or the type name."""
    if isinstance(schema, str):
        return schema
    if schema["type"] in ("record", "enum", "fixed"):
        return str(schema["name"])
    if schema["type"] in ("array", "map"):
        return str(schema["type"])
    return _branch_name(schema["type"])


def _is_record(schema: Any) -> bool:
    return isinstance(schema, dict) and schema["type"] == "record"


def _tags_record_name(union: list[Any]) -> bool:
    """Whether a record value of this union is a ``(name, dict)`` tuple in the project's notation."""
    return sum(_is_record(b) for b in union) > 1


class RecordFactory:
    """Seeded, valid, varied records of one Avro schema, in two notations at once.

    Union branches, enum symbols, array and map sizes are taken in turn at each place of the
    schema, so enough records visit every branch and symbol (:meth:`choices` lists them,
    :attr:`covered` says which were taken); numbers, strings and bytes start with edge values
    (extremes of int and long, empty, NUL, non-ASCII and non-BMP text, all 256 byte values)
    and go on at random.

    Parameters
    ----------
    schema : Any
        The schema as parsed JSON (named types are resolved with fastavro's ``expand_schema``).
    seed : int
        Seed of the random values.

    Examples
    --------
    >>> f = RecordFactory({"type": "record", "name": "r", "namespace": "t", "fields": [
    ...     {"name": "u", "type": ["null", "string"]}]}, seed=1)
    >>> f.record()
    ({'u': None}, {'u': None})
    >>> f.record()
    ({'u': ''}, {'u': {'string': ''}})
    >>> f.covered == f.choices()
    True
    """

    _INTS = (0, -1, 1, 2**31 - 1, -(2**31), 63, -64, 64)
    _LONGS = (0, -1, 1, 2**63 - 1, -(2**63), 2**31, -(2**31) - 1)
    _TIMESTAMPS = (1_767_263_400_000, 0, -1, 946_684_800_000, 253_402_300_799_999)
    _DOUBLES = (0.0, 129.99, -1.5, 1e308, 5e-324, -2.2250738585072014e-308, 1 / 3)
    _STRINGS = (
        "",
        "ascii",
        "Ünïcødé ß",
        "日本語テキスト",
        "cart 🛒 emoji",
        'quote " backslash \\ slash /',
        "line\nbreak\ttab\rcr",
        "nul \x00 byte",
        "\u2028\u2029",
        "é" * 40,
    )
    _BYTES = (b"", bytes(range(256)), b"\x00", b"\xc3\x01", b"\xff" * 3)
    _ALPHABET = 'abcxyzABCXYZ0189 -_.@:/"\\\n\tßéü日本🛒\x00\x7f'

    def __init__(self, schema: Any, seed: int) -> None:
        self.schema = expand_schema(schema)
        self._rng = random.Random(seed)
        self._turns: Counter[str] = Counter()
        self.covered: set[tuple[str, str]] = set()

    def record(self) -> tuple[Any, Any]:
        """The next record: ``(project notation, Avro JSON encoding as a JSON tree)``."""
        return self._value(self.schema, _branch_name(self.schema))

    def choices(self) -> set[tuple[str, str]]:
        """Every (place, union branch or enum symbol) of the schema (no recursive schemas)."""
        out: set[tuple[str, str]] = set()

        def walk(schema: Any, path: str) -> None:
            if isinstance(schema, list):
                for b in schema:
                    out.add((path, _branch_name(b)))
                    walk(b, f"{path}|{_branch_name(b)}")
            elif isinstance(schema, dict):
                t = schema["type"]
                if t == "record":
                    for f in schema["fields"]:
                        walk(f["type"], f"{path}.{f['name']}")
                elif t == "enum":
                    out.update((path, s) for s in schema["symbols"])
                elif t == "array":
                    walk(schema["items"], f"{path}[]")
                elif t == "map":
                    walk(schema["values"], f"{path}{{}}")
                elif isinstance(t, (dict, list)):
                    walk(t, path)

        walk(self.schema, _branch_name(self.schema))
        return out

    def _turn(self, path: str) -> int:
        n = self._turns[path]
        self._turns[path] += 1
        return n

    def _pick(self, path: str, edges: tuple[Any, ...]) -> Any | None:
        """The next edge value of this place, or None once they are used up."""
        n = self._turn(path + "#edge")
        return edges[n] if n < len(edges) else None

    def _text(self) -> str:
        return "".join(self._rng.choice(self._ALPHABET) for _ in range(self._rng.randint(0, 24)))

    def _value(self, schema: Any, path: str) -> tuple[Any, Any]:
        if isinstance(schema, list):
            branch = schema[self._turn(path) % len(schema)]
            name = _branch_name(branch)
            self.covered.add((path, name))
            value, js = self._value(branch, f"{path}|{name}")
            if branch == "null" or (isinstance(branch, dict) and branch["type"] == "null"):
                return None, None
            if _is_record(branch) and _tags_record_name(schema):
                value = (branch["name"], value)
            return value, {name: js}
        if isinstance(schema, str):
            return self._primitive(schema, None, path)
        t = schema["type"]
        if isinstance(t, (dict, list)):
            return self._value(t, path)
        if t in _PRIMITIVES:
            return self._primitive(t, schema.get("logicalType"), path)
        if t == "record":
            value, js = {}, {}
            for f in schema["fields"]:
                value[f["name"]], js[f["name"]] = self._value(f["type"], f"{path}.{f['name']}")
            return value, js
        if t == "enum":
            symbol = schema["symbols"][self._turn(path) % len(schema["symbols"])]
            self.covered.add((path, symbol))
            return symbol, symbol
        if t == "array":
            pairs = [self._value(schema["items"], f"{path}[]") for _ in range(self._turn(path) % 4)]
            return [v for v, _ in pairs], [j for _, j in pairs]
        if t == "map":
            value, js = {}, {}
            for _ in range(self._turn(path) % 4):
                key = self._text()
                value[key], js[key] = self._value(schema["values"], f"{path}{{}}")
            return value, js
        if t == "fixed":
            data = self._rng.randbytes(schema["size"])
            return data, data.decode("latin-1")
        raise NotImplementedError(f"{path}: no generator for Avro type {t!r}")

    def _primitive(self, t: str, logical: str | None, path: str) -> tuple[Any, Any]:
        rng = self._rng
        value: Any
        if t == "null":
            return None, None
        if t == "boolean":
            value = self._turn(path) % 2 == 1
        elif t == "int":
            value = self._pick(path, self._INTS)
            value = rng.randint(-(2**31), 2**31 - 1) if value is None else value
        elif t == "long" and logical in _TIMESTAMP_LOGICAL_TYPES:
            value = self._pick(path, self._TIMESTAMPS)
            value = rng.randint(946_684_800_000, 4_102_444_800_000) if value is None else value
        elif t == "long":
            value = self._pick(path, self._LONGS)
            value = rng.randint(-(2**63), 2**63 - 1) if value is None else value
        elif t in ("float", "double"):
            value = self._pick(path, self._DOUBLES)
            if value is None:
                value = rng.uniform(-1e6, 1e6) if rng.random() < 0.7 else rng.random() * 10.0 ** rng.randint(-300, 300)
            if t == "float":
                value = struct.unpack("<f", struct.pack("<f", max(min(value, 3e38), -3e38)))[0]
        elif t == "string":
            value = self._pick(path, self._STRINGS)
            value = self._text() if value is None else value
        elif t == "bytes":
            value = self._pick(path, self._BYTES)
            value = rng.randbytes(rng.randint(0, 32)) if value is None else value
            return value, value.decode("latin-1")
        else:
            raise NotImplementedError(f"{path}: no generator for Avro type {t!r}")
        return value, value


def from_avro_json(schema: Any, node: Any) -> Any:
    """A value in Avro's JSON encoding (parsed JSON) -> the project's notation.

    Parameters
    ----------
    schema : Any
        The writer schema, expanded (``fastavro.schema.expand_schema``: named types inline,
        full names).
    node : Any
        ``json.loads`` of the Avro JSON encoding of one value of that schema.

    Returns
    -------
    Any
        The value as ``models.avro_codec`` decodes it (see the module docstring).

    Examples
    --------
    >>> s = expand_schema({"type": "record", "name": "r", "namespace": "t", "fields": [
    ...     {"name": "b", "type": "bytes"}, {"name": "u", "type": ["null", "string"]}]})
    >>> from_avro_json(s, {"b": "\\u00c3\\u0001", "u": {"string": "x"}})
    {'b': b'\\xc3\\x01', 'u': 'x'}
    """
    if isinstance(schema, list):
        if node is None:
            if not any(_branch_name(b) == "null" for b in schema):
                raise ValueError(f"null for a union without a null branch: {schema}")
            return None
        ((name, inner),) = node.items()
        (branch,) = [b for b in schema if _branch_name(b) == name]
        value = from_avro_json(branch, inner)
        return (name, value) if _is_record(branch) and _tags_record_name(schema) else value
    t = schema if isinstance(schema, str) else schema["type"]
    if isinstance(t, (dict, list)):
        return from_avro_json(t, node)
    if t in ("bytes", "fixed"):
        return str(node).encode("latin-1")
    if t in ("float", "double"):
        return float(node)
    if t == "record":
        return {f["name"]: from_avro_json(f["type"], node[f["name"]]) for f in schema["fields"]}
    if t == "array":
        return [from_avro_json(schema["items"], v) for v in node]
    if t == "map":
        return {k: from_avro_json(schema["values"], v) for k, v in node.items()}
    return node


def differences(expected: Any, actual: Any, path: str = "$") -> list[str]:
    """Every place where two values differ, field for field (types included: True is not 1).

    Examples
    --------
    >>> for d in differences({"a": [1, 2], "b": ("x", {"c": b"\\x00"})}, {"a": [1, 3], "b": ("x", {"c": b"\\x01"})}):
    ...     print(d)
    $.a[1]: expected 2, got 3
    $.b.x.c: expected b'\\x00', got b'\\x01'
    """
    if type(expected) is not type(actual):
        return [f"{path}: expected {expected!r} ({type(expected).__name__}), got {actual!r} ({type(actual).__name__})"]
    if isinstance(expected, dict):
        out = [f"{path}: missing field {k!r}" for k in expected if k not in actual]
        out += [f"{path}: unexpected field {k!r}" for k in actual if k not in expected]
        for k in expected:
            if k in actual:
                out += differences(expected[k], actual[k], f"{path}.{k}")
        return out
    if isinstance(expected, tuple) and len(expected) == 2 and isinstance(expected[0], str):
        if expected[0] != actual[0]:
            return [f"{path}: expected union branch {expected[0]}, got {actual[0]}"]
        return differences(expected[1], actual[1], f"{path}.{expected[0].rsplit('.', 1)[-1]}")
    if isinstance(expected, (list, tuple)):
        if len(expected) != len(actual):
            return [f"{path}: expected {len(expected)} items, got {len(actual)}"]
        return [d for i, (e, a) in enumerate(zip(expected, actual)) for d in differences(e, a, f"{path}[{i}]")]
    return [] if expected == actual else [f"{path}: expected {expected!r}, got {actual!r}"]


def documented_examples(docs_text: str) -> list[tuple[str, dict[str, Any]]]:
    """The ``<!-- example: Name -->`` records of docs/events.md, in the project's notation.

    The docs list only the non-null identifiers of an ``Event`` and show its payload as the
    record itself; here every identifier is present and the payload is the
    ``(record name, dict)`` tuple; ``DeadLetter.raw`` (hex in the docs) is ``bytes``.
    """
    return [(name, as_project_notation(name, record)) for name, record in docs_examples(docs_text)]


def docs_examples(docs_text: str) -> list[tuple[str, dict[str, Any]]]:
    """The ``<!-- example: Name -->`` records of docs/events.md as the docs show them."""
    return [
        (m.group(1), json.loads(m.group(2)))
        for m in re.finditer(r"<!-- example: (\w+) -->\s*```json\n(.*?)\n```", docs_text, re.S)
    ]


def as_project_notation(schema_name: str, record: dict[str, Any]) -> dict[str, Any]:
    """Docs notation -> codec notation (a copy): payload union as (name, record), all identifiers, bytes."""
    r = json.loads(json.dumps(record))
    if schema_name == "Event":
        r["identifiers"] = {t: r["identifiers"].get(t) for t in IDENTIFIER_TYPES}
    if schema_name in ("Event", "NormalizedEvent"):
        r["payload"] = ("journey.v1." + PAYLOAD_OF[r["event_type"]], r["payload"])
    if schema_name == "DeadLetter":
        r["raw"] = bytes.fromhex(r["raw"])
    return r


def snippet(docs_text: str, name: str) -> str:
    """The code block after ``<!-- snippet: name -->`` in docs/events.md."""
    m = re.search(rf"<!-- snippet: {re.escape(name)}\b[^>]*-->\s*```\w+\n(.*?)\n```", docs_text, re.S)
    if m is None:
        raise AssertionError(f"docs/events.md has no code block marked <!-- snippet: {name} -->")
    return m.group(1) + "\n"
