"""``journey tail <topic>``: read any topic of the project as JSON lines, as a downstream
consumer sees it.

Records are read with ``isolation.level=read_committed`` (only committed transactions, as the
jobs' exactly-once sinks write them), from every partition, without a consumer group (nothing
is committed, no other reader is disturbed). Each value is decoded with the schema its
fingerprint names (the Avro single-object encoding of ``docs/events.md``); values that are
not Avro (``journey.control``, ``journey.control-results``: JSON) are printed as their JSON.
A value no schema of this release knows is printed with its error, never skipped silently.

One JSON object per line::

    {"topic": ..., "partition": 0, "offset": 17, "timestamp": 1764547200000, "key": "...",
     "schema": "Trigger", "record": {...}}

(``bytes`` values as base64 strings; ``"error"`` instead of ``"record"`` for an undecodable
value.) Without ``--follow`` the command stops once it has caught up with every partition
(its last stable offset: an open transaction's records are not waited for); with it, it
waits for new records until interrupted (Ctrl-C) or ``--max``.

Filters: ``--profile-id P`` keeps records about profile ``P`` (``profile_id`` or
``from_profile_id``); an identifier (``--customer-id``, ``--cookie-id``, ... or ``--email`` /
``--phone``, hashed with ``JOURNEY_PII_SALT`` as ingestion hashes them) keeps events that
carry it, identity changes of it, and sessions and triggers of its stream. An undecodable
value is printed under any filter (it cannot be told apart).

Exit status: 0, 2 (bad arguments, unknown topic, Kafka unreachable), 130 (interrupted).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
import uuid
from typing import Any, Callable, Iterator, Mapping

from models.avro_codec import DecodeError, SchemaCatalog
from models.config import ConfigError, ProfilesConfig
from state.kafka_clients import kafka_client_config, kafka_failure

from journey_cli.privacy import IDENTIFIERS, ReportError, identifier_of


class TailError(Exception):
    """Bad input or configuration: the message says what to do."""


def jsonable(v: Any) -> Any:
    """A decoded Avro value as plain JSON (bytes as base64; union branches as their value).

    >>> jsonable({"a": b"\\x00\\x01", "b": ("journey.v1.PageView", {"url": "/"}), "c": [1, None]})
    {'a': 'AAE=', 'b': {'url': '/'}, 'c': [1, None]}
    """
    if isinstance(v, (bytes, bytearray)):
        return base64.b64encode(bytes(v)).decode()
    if isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str) and isinstance(v[1], dict):
        return jsonable(v[1])  # fastavro's (record name, record) for a named union branch
    if isinstance(v, Mapping):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    return v


def decode_value(catalog: SchemaCatalog, value: bytes | None) -> dict[str, Any]:
    """``{"schema", "record"}`` for a value (``schema`` None: JSON or empty), or ``{"error"}``.

    >>> cat = SchemaCatalog.load()
    >>> decode_value(cat, b'{"rules": []}')
    {'schema': None, 'record': {'rules': []}}
    >>> decode_value(cat, b"\\xc3\\x01" + bytes(8))["error"].startswith("unknown_schema")
    True
    """
    if value is None:
        return {"schema": None, "record": None}
    if value[:2] == b"\xc3\x01":
        try:
            name, record = catalog.decode(value)
        except DecodeError as e:
            return {"error": str(e)}
        return {"schema": name, "record": jsonable(record)}
    try:
        return {"schema": None, "record": json.loads(value)}
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {"error": f"not_single_object_encoded: {len(value)} bytes, neither Avro nor JSON"}


def matcher(profile_id: str | None, identifier: tuple[str, str] | None) -> Callable[[Any], bool]:
    """The filter on a decoded record (both None: everything).

    >>> m = matcher(None, ("cookie_id", "ck1"))
    >>> m({"identifiers": {"cookie_id": "ck1", "customer_id": None}}), m({"stream": "cookie_id:ck1"})
    (True, True)
    >>> m({"identifier_type": "cookie_id", "identifier_hash": "ck1"}), m({"identifiers": {"cookie_id": "ck2"}})
    (True, False)
    >>> p = matcher("p-1", None)
    >>> p({"profile_id": "p-1"}), p({"profile_id": "p-2", "from_profile_id": "p-1"}), p({"profile_id": "p-2"}), p(None)
    (True, True, False, False)
    """
    if profile_id is None and identifier is None:
        return lambda _record: True

    def keep(record: Any) -> bool:
        if not isinstance(record, Mapping):
            return False
        if profile_id is not None and profile_id not in (record.get("profile_id"), record.get("from_profile_id")):
            return False
        if identifier is not None:
            t, v = identifier
            ids = record.get("identifiers")
            return (
                (isinstance(ids, Mapping) and ids.get(t) == v)
                or (record.get("identifier_type") == t and record.get("identifier_hash") == v)
                or record.get("stream") == f"{t}:{v}"
            )
        return True

    return keep


def tail(
    bootstrap: str,
    topic: str,
    start: str = "earliest",
    follow: bool = False,
    keep: Callable[[Any], bool] = lambda _r: True,
    limit: int | None = None,
    idle_s: float = 30.0,
) -> Iterator[dict[str, Any]]:
    """The topic's committed records as JSON-able dicts, filtered by ``keep``.

    Without ``follow``, stops once it has caught up with every partition (its last stable
    offset); raises :class:`TailError` if nothing arrives for ``idle_s`` before that.
    """
    from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, KafkaException, TopicPartition

    catalog = SchemaCatalog.load()
    # credentials: JOURNEY_KAFKA_* (docs/security.md); a refusal is reported in one line below,
    # so librdkafka's own log of it (one line per retry) is left out
    conf = kafka_client_config(
        bootstrap,
        {
            "group.id": f"journey-tail-{uuid.uuid4().hex[:12]}",  # never committed: assign() below
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "socket.timeout.ms": 10_000,
            "log_level": 2,
        },
    )
    consumer = Consumer(conf)
    try:
        try:
            md = consumer.list_topics(timeout=10)
        except KafkaException as e:
            raise TailError(kafka_failure(conf, e, consumer)) from None
        if topic not in md.topics or md.topics[topic].error is not None:
            known = ", ".join(sorted(t for t in md.topics if not t.startswith("_")))
            raise TailError(f"topic {topic!r} does not exist at {bootstrap} (topics: {known or 'none'})")
        partitions = sorted(md.topics[topic].partitions)
        offset = OFFSET_BEGINNING if start == "earliest" else OFFSET_END
        consumer.assign([TopicPartition(topic, p, offset) for p in partitions])
        at_end: set[int] = set()
        printed, last = 0, time.monotonic()
        while limit is None or printed < limit:
            msg = consumer.poll(0.5)
            if msg is None:
                if not follow and time.monotonic() - last > idle_s:
                    raise TailError(f"no record and no end of partition from {topic!r} in {idle_s:.0f} s")
                continue
            last = time.monotonic()
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition() or 0)
                    if not follow and at_end >= set(partitions):
                        return
                    continue
                raise TailError(f"reading {topic!r}: {err}")
            at_end.discard(msg.partition() or 0)
            decoded = decode_value(catalog, msg.value())
            if "error" not in decoded and not keep(decoded["record"]):
                continue
            key = msg.key()
            ts_type, ts = msg.timestamp()
            yield {
                "topic": msg.topic(),
                "partition": msg.partition(),
                "offset": msg.offset(),
                "timestamp": ts if ts_type else None,
                "key": None if key is None else key.decode("utf-8", "backslashreplace"),
                **decoded,
            }
            printed += 1
    finally:
        consumer.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="journey tail", description=__doc__.splitlines()[0].strip("`"))
    ap.add_argument("topic", help="e.g. journey.triggers, journey.identity, journey.normalized, journey.dlq")
    ap.add_argument("-f", "--follow", action="store_true", help="keep waiting for new records (Ctrl-C stops)")
    ap.add_argument("--from", dest="start", choices=("earliest", "latest"), default="earliest")
    ap.add_argument("-n", "--max", type=int, help="stop after this many records")
    ap.add_argument(
        "--bootstrap", help="Kafka bootstrap servers (default: JOURNEY_BOOTSTRAP_SERVERS or the local stack)"
    )
    who = ap.add_mutually_exclusive_group()
    who.add_argument("--profile-id")
    for opt, _, _ in IDENTIFIERS:
        who.add_argument(f"--{opt}")
    args = ap.parse_args(argv)
    try:
        if args.max is not None and args.max < 1:
            raise TailError(f"--max must be at least 1, got {args.max}")
        bootstrap = args.bootstrap or ProfilesConfig.from_env().bootstrap_servers
        identifier = None
        for opt, _, _ in IDENTIFIERS:
            value = getattr(args, opt.replace("-", "_"))
            if value is not None:
                identifier = identifier_of(opt, value, os.environ.get("JOURNEY_PII_SALT"))
        keep = matcher(args.profile_id, identifier)
        for line in tail(bootstrap, args.topic, args.start, args.follow, keep, args.max):
            print(json.dumps(line, sort_keys=True), flush=True)
    except (TailError, ReportError, ConfigError) as e:
        print(f"journey tail: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. | head
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
