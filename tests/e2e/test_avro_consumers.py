"""The consumer programs of docs/events.md, run exactly as written against a real Kafka topic.

docs/events.md ("Consuming without the project's code") documents a Java consumer
(``org.apache.avro:avro`` ``BinaryMessageDecoder`` + ``kafka-clients``) and a Python one
(``confluent-kafka`` + ``fastavro``, nothing of the project). This module takes both code
blocks out of the doc, runs them against a topic of its own on the local stack holding
``Event`` records written by ``models.avro_codec`` in a committed transaction, after one
record of an aborted transaction, and compares what they print (Avro's JSON encoding, one
line per record) with the records that were written, field for field. So the documented
consumers work, they read the project's single-object encoding, and they read
``read_committed``.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from fastavro.schema import expand_schema

from local.polling import wait_until
from models.avro_codec import SCHEMA_DIR, SchemaCatalog
from tests.interop.avro_reference import (
    differences,
    documented_examples,
    from_avro_json,
    reference_classpath,
    run_java_source,
    snippet,
)

pytestmark = pytest.mark.e2e

DOCS = Path(__file__).resolve().parents[2] / "docs" / "events.md"
EVENT_SCHEMA_FILE = SCHEMA_DIR / "event.avsc"
EVENT = SchemaCatalog.load().codec("Event")
TIMEOUT_S = 90.0
#: what the Python consumer may import: the standard library modules it uses, confluent-kafka, fastavro
PYTHON_CONSUMER_IMPORTS = {"io", "json", "sys", "confluent_kafka", "fastavro"}


@dataclass(frozen=True)
class EventTopic:
    """A topic of this module's own: ``aborted`` at offset 0 (aborted transaction), then ``committed``."""

    bootstrap: str
    name: str
    aborted: dict[str, Any]
    committed: list[dict[str, Any]]


@pytest.fixture(scope="module")
def event_topic(local_stack: str) -> Iterator[EventTopic]:
    name = f"interop-test-{uuid.uuid4().hex}"
    admin = AdminClient({"bootstrap.servers": local_stack})
    admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])[name].result(timeout=30)
    groups = [f"{name}-java", f"{name}-python", f"{name}-check"]
    try:
        examples = {r["event_id"]: r for kind, r in documented_examples(DOCS.read_text()) if kind == "Event"}
        topic = EventTopic(
            local_stack, name, examples["web-0001"], [examples["web-0012"], examples["web-0007"], examples["crm-0013"]]
        )
        producer = Producer({"bootstrap.servers": local_stack, "transactional.id": f"{name}-producer"})
        producer.init_transactions(30)
        producer.begin_transaction()
        producer.produce(name, EVENT.encode(topic.aborted))
        producer.flush(30)
        producer.abort_transaction(30)
        producer.begin_transaction()
        for record in topic.committed:
            producer.produce(name, EVENT.encode(record))
        producer.commit_transaction(30)
        yield topic
    finally:
        for future in admin.delete_consumer_groups(groups, request_timeout=30).values():
            try:
                future.result()
            except Exception:  # a group that never committed does not exist
                pass
        admin.delete_topics([name])[name].result(timeout=30)


def _printed_records(stdout: str) -> list[Any]:
    schema = expand_schema(json.loads(EVENT_SCHEMA_FILE.read_text()))
    return [from_avro_json(schema, json.loads(line)) for line in stdout.splitlines() if line.strip()]


def _assert_prints_the_committed_records(program: str, stdout: str, topic: EventTopic) -> None:
    printed = _printed_records(stdout)
    ids = [r["event_id"] for r in printed]
    assert topic.aborted["event_id"] not in ids, f"{program} printed the record of the aborted transaction"
    assert ids == [r["event_id"] for r in topic.committed], f"{program} printed {ids}"
    found = [f"{r['event_id']}: {d}" for r, p in zip(topic.committed, printed) for d in differences(r, p)]
    assert not found, f"{program}: " + "\n".join(found)


def test_the_topic_holds_the_aborted_record_first_so_read_committed_matters(event_topic: EventTopic) -> None:
    consumer = Consumer(
        {
            "bootstrap.servers": event_topic.bootstrap,
            "group.id": f"{event_topic.name}-check",
            "isolation.level": "read_uncommitted",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.assign([TopicPartition(event_topic.name, 0, 0)])
        msg = wait_until(
            lambda: consumer.poll(1.0),
            TIMEOUT_S,
            0,
            f"a record at offset 0 of {event_topic.name}",
            until=lambda m: m is not None and not m.error(),
        )
        assert (msg.offset(), msg.value()) == (0, EVENT.encode(event_topic.aborted))
    finally:
        consumer.close()


def test_java_consumer_of_the_docs_prints_the_committed_project_records_field_for_field(
    event_topic: EventTopic, tmp_path: Path
) -> None:
    source = tmp_path / "JourneyTopicReader.java"
    source.write_text(snippet(DOCS.read_text(), "java-consumer"))
    stdout = run_java_source(
        source,
        [
            event_topic.bootstrap,
            event_topic.name,
            str(EVENT_SCHEMA_FILE),
            f"{event_topic.name}-java",
            str(len(event_topic.committed)),
        ],
        reference_classpath(kafka_clients=True),
        TIMEOUT_S,
        cwd=tmp_path,
    )
    print(stdout)  # shown by pytest -rP, and on failure
    _assert_prints_the_committed_records("the Java consumer", stdout, event_topic)


def test_python_consumer_of_the_docs_uses_only_confluent_kafka_and_fastavro() -> None:
    tree = ast.parse(snippet(DOCS.read_text(), "python-consumer"))
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= PYTHON_CONSUMER_IMPORTS, f"the Python consumer imports {sorted(imported)}"
    assert {"confluent_kafka", "fastavro"} <= imported


def test_python_consumer_of_the_docs_prints_the_committed_project_records_field_for_field(
    event_topic: EventTopic, tmp_path: Path
) -> None:
    script = tmp_path / "journey_topic_reader.py"
    script.write_text(snippet(DOCS.read_text(), "python-consumer"))
    # -I: no PYTHONPATH, no script or working directory on sys.path, so nothing of the project
    cmd = [
        sys.executable,
        "-I",
        str(script),
        event_topic.bootstrap,
        event_topic.name,
        str(EVENT_SCHEMA_FILE),
        f"{event_topic.name}-python",
        str(len(event_topic.committed)),
    ]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=tmp_path)
    except subprocess.TimeoutExpired as e:
        pytest.fail(
            f"the Python consumer did not finish in {TIMEOUT_S:.0f} s\nstdout:\n{e.stdout}\nstderr:\n{e.stderr}",
            pytrace=False,
        )
    assert r.returncode == 0, f"the Python consumer exited with {r.returncode}:\n{r.stderr[-4000:]}"
    print(r.stdout)
    _assert_prints_the_committed_records("the Python consumer", r.stdout, event_topic)
