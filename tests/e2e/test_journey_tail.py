"""``journey tail`` (journey_cli/tail.py) on the real broker: the installed console script reads
a topic of project records as a downstream consumer would (read_committed, every partition),
decodes each value with the schema its fingerprint names, filters by profile or identifier,
follows new records, and says clearly what is wrong instead of a stack trace."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from models.avro_codec import SchemaCatalog
from tests.interop.avro_reference import as_project_notation, docs_examples

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
JOURNEY = Path(sys.executable).parent / "journey"  # the console script of pyproject.toml
GARBAGE = b"\x00not avro, not json\xff"


def _encoded(catalog: SchemaCatalog) -> list[tuple[str, dict[str, Any], bytes]]:
    """The documented examples of docs/events.md that carry a profile id or identifiers."""
    out = []
    for name, record in docs_examples((ROOT / "docs" / "events.md").read_text()):
        if name in ("Trigger", "Session", "IdentityEvent", "NormalizedEvent"):
            out.append((name, record, catalog.codec(name).encode(as_project_notation(name, record))))
    assert {n for n, _, _ in out} == {"Trigger", "Session", "IdentityEvent", "NormalizedEvent"}
    return out


@pytest.fixture(scope="module")
def topic(local_stack: str) -> Iterator[tuple[str, list[tuple[str, dict[str, Any], bytes]]]]:
    """A 2-partition topic: an aborted record, then the examples, a JSON value and garbage, committed."""
    name = f"tail-test-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": local_stack})
    admin.create_topics([NewTopic(name, num_partitions=2, replication_factor=1)])[name].result(timeout=30)
    records = _encoded(SchemaCatalog.load())
    try:
        p = Producer({"bootstrap.servers": local_stack, "transactional.id": f"{name}-tx"})
        p.init_transactions(30)
        p.begin_transaction()
        p.produce(name, records[0][2], partition=0, key=b"aborted")
        p.flush(30)
        p.abort_transaction(30)
        p.begin_transaction()
        for i, (_, _, value) in enumerate(records):
            p.produce(name, value, partition=i % 2, key=f"k{i}".encode())
        p.produce(name, b'{"rules": []}', partition=1)
        p.produce(name, GARBAGE, partition=0)
        p.commit_transaction(30)
        yield name, records
    finally:
        admin.delete_topics([name])[name].result(timeout=30)


def run(bootstrap: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(JOURNEY), "tail", *args, "--bootstrap", bootstrap], capture_output=True, text=True, timeout=timeout
    )


def lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_every_committed_record_decoded_by_its_schema_and_nothing_aborted(local_stack, topic) -> None:
    name, records = topic
    r = run(local_stack, name)
    assert r.returncode == 0, r.stderr
    got = lines(r.stdout)
    assert "aborted" not in [g["key"] for g in got]
    avro = [g for g in got if g.get("schema")]
    assert sorted(g["schema"] for g in avro) == sorted(n for n, _, _ in records)
    for g in avro:
        (want,) = [rec for n, rec, _ in records if n == g["schema"]]
        for field in ("profile_id", "event_id", "trigger_id", "session_id"):
            assert g["record"].get(field) == want.get(field)
        assert g["topic"] == name and g["partition"] in (0, 1) and isinstance(g["offset"], int)
    assert {"schema": None, "record": {"rules": []}}.items() <= next(
        g for g in got if g.get("record") == {"rules": []}
    ).items()
    (bad,) = [g for g in got if "error" in g]
    assert bad["error"].startswith("not_single_object_encoded") and "record" not in bad
    assert len(got) == len(records) + 2


def test_filters_keep_only_the_profile_or_the_identifier_asked_for(local_stack, topic) -> None:
    name, records = topic
    trigger = next(rec for n, rec, _ in records if n == "Trigger")
    got = lines(run(local_stack, name, "--profile-id", trigger["profile_id"]).stdout)
    assert got and all(
        trigger["profile_id"] in (g["record"].get("profile_id"), g["record"].get("from_profile_id"))
        for g in got
        if "record" in g
    )
    assert any(g.get("schema") == "Trigger" for g in got)  # the undecodable record comes under any filter
    event = next(rec for n, rec, _ in records if n == "NormalizedEvent")
    id_type, id_value = next((t, v) for t, v in event["identifiers"].items() if v and t in ("cookie_id", "customer_id"))
    got = lines(run(local_stack, name, f"--{id_type.replace('_', '-')}", id_value).stdout)
    assert any(g.get("schema") == "NormalizedEvent" for g in got)
    assert all(
        g["record"].get("identifiers", {}).get(id_type) == id_value
        or g["record"].get("stream") == f"{id_type}:{id_value}"
        or (g["record"].get("identifier_type"), g["record"].get("identifier_hash")) == (id_type, id_value)
        for g in got
        if "record" in g  # an undecodable value is printed under any filter (it cannot be told apart)
    )
    assert [g for g in got if "error" in g], "the undecodable value was filtered away"
    assert [g for g in lines(run(local_stack, name, "--profile-id", "p-nobody").stdout) if "error" not in g] == []


def test_follow_prints_a_record_committed_after_it_started(local_stack, topic) -> None:
    name, records = topic
    before = len(records) + 2
    proc = subprocess.Popen(
        [str(JOURNEY), "tail", name, "--follow", "-n", str(before + 1), "--bootstrap", local_stack],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = [json.loads(proc.stdout.readline()) for _ in range(before)]  # caught up: now it waits
        time.sleep(1)
        assert proc.poll() is None, "--follow stopped at the end of the topic"
        p = Producer({"bootstrap.servers": local_stack, "transactional.id": f"{name}-late"})
        p.init_transactions(30)
        p.begin_transaction()
        p.produce(name, records[0][2], partition=1, key=b"late")
        p.commit_transaction(30)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    (late,) = lines(out)
    assert late["key"] == "late" and late["schema"] == records[0][0]
    assert len(first) == before


def test_an_unknown_topic_and_an_unreachable_broker_are_clear_errors(local_stack) -> None:
    r = run(local_stack, "no-such-topic-xyz")
    assert r.returncode == 2 and "topic 'no-such-topic-xyz' does not exist" in r.stderr and "Traceback" not in r.stderr
    r = run("127.0.0.1:1", "journey.triggers")
    assert r.returncode == 2 and "cannot reach Kafka at 127.0.0.1:1" in r.stderr and "Traceback" not in r.stderr
    r = run(local_stack, "journey.triggers", "-n", "0")
    assert r.returncode == 2 and "--max" in r.stderr
