"""Send a generated :class:`~generator.synth.Dataset` to Kafka, in order, at an optional rate.

Records are produced with an idempotent producer (``acks=all``, ``enable.idempotence=true``,
``linger.ms=5``) so retries neither duplicate nor reorder within a partition: the only
duplicates on the topics are the ones the dataset planted. Kafka timestamps are left to the
producer (``CreateTime`` = wall clock at produce time), which is what ingestion judges
``occurred_at`` against; also for history datasets (never the historical time: the broker's
time-based retention would delete such records within days). A history dataset goes to one
backfill topic (``topic=``, e.g. ``journey.events.backfill``; docs/operations.md).

Examples
--------
>>> from generator.synth import generate
>>> report = produce(generate(seed=1, persons=5), "127.0.0.1:9092")  # doctest: +SKIP
>>> report.delivered == report.total  # doctest: +SKIP
True
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from confluent_kafka import Producer
from tqdm import tqdm

from generator.dataset import Dataset
from generator.records import GeneratedRecord
from models.config import DEFAULT_MAX_FUTURE_SKEW_MS
from state.kafka_clients import kafka_client_config, kafka_failure
from models.events import iso_utc

__all__ = ["DEFAULT_MAX_FUTURE_SKEW_MS", "ProduceError", "ProduceReport", "check_produce_time", "produce"]
#: A legal Kafka topic name.
TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


class ProduceError(RuntimeError):
    """Producing failed: the broker is unreachable, a topic is missing, or records were not delivered."""


@dataclass(frozen=True)
class ProduceReport:
    """What :func:`produce` did.

    Attributes
    ----------
    total : int
        Records handed to the producer.
    delivered : int
        Records acknowledged by the broker (equal to ``total`` when :func:`produce` returns).
    per_topic : dict of str to int
        Delivered records per topic.
    elapsed_s : float
        Wall-clock seconds from the first send to the end of the final flush.
    """

    total: int
    delivered: int
    per_topic: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0

    @property
    def records_per_s(self) -> float:
        """Average throughput (0 when nothing took any time)."""
        return self.delivered / self.elapsed_s if self.elapsed_s > 0 else 0.0


def check_produce_time(dataset: Dataset, now_ms: int, max_future_skew_ms: int = DEFAULT_MAX_FUTURE_SKEW_MS) -> None:
    """Refuse a dataset whose valid events would be rejected as from the future.

    Parameters
    ----------
    dataset : Dataset
        The dataset to produce.
    now_ms : int
        The Kafka timestamp the records will get (wall clock now).
    max_future_skew_ms : int
        Ingestion's tolerance for ``occurred_at`` after the Kafka timestamp (by default
        :data:`models.config.DEFAULT_MAX_FUTURE_SKEW_MS`, ingestion's default).

    Raises
    ------
    ValueError
        If the latest valid ``occurred_at`` is beyond ``now_ms + max_future_skew_ms``. How far
        in the past the events are does not matter here: that is the lower bound's business
        (the live bound or the backfill bound the dataset was generated for).

    Examples
    --------
    >>> from generator.synth import generate
    >>> history = generate(1, 2, base_time_ms=883_612_800_000, min_valid_timestamp_ms=631_152_000_000)  # 1998
    >>> check_produce_time(history, now_ms=1_790_000_000_000)
    >>> check_produce_time(history, now_ms=883_612_800_000)
    Traceback (most recent call last):
    ...
    ValueError: the dataset's latest valid event occurs at ... (1998-...), more than 86400000 ms after now ...
    """
    latest = dataset.max_valid_occurred_at_ms
    if latest is not None and latest > now_ms + max_future_skew_ms:
        raise ValueError(
            f"the dataset's latest valid event occurs at {latest} ms ({iso_utc(latest)}), more than "
            f"{max_future_skew_ms} ms after now ({now_ms} ms, {iso_utc(now_ms)}): ingestion would dead-letter "
            f"valid events as invalid_timestamp; generate with an earlier base_time_ms"
        )


def produce(
    dataset: Dataset,
    bootstrap: str,
    rate: float | None = None,
    progress: bool = True,
    *,
    config: Mapping[str, Any] | None = None,
    flush_timeout_s: float = 120.0,
    producer_factory: Callable[[dict[str, Any]], Any] | None = None,
    topic_prefix: str = "journey",
    topic: str | None = None,
) -> ProduceReport:
    """Produce every record of ``dataset`` in order and wait until all are acknowledged.

    Parameters
    ----------
    dataset : Dataset
        Records are sent in ``dataset.records`` order, with their key and value.
    bootstrap : str
        Kafka ``bootstrap.servers``.
    rate : float or None
        Target records per second (paced against the start time); ``None`` sends flat out.
    progress : bool
        Show a tqdm progress bar on stderr.
    config : mapping, keyword-only
        Extra librdkafka settings, applied over the defaults (``acks=all``,
        ``enable.idempotence=true``, ``linger.ms=5``, ``message.timeout.ms=60000``).
    flush_timeout_s : float, keyword-only
        How long the final flush may take.
    producer_factory : callable, keyword-only
        Builds the producer from its config (default ``confluent_kafka.Producer``); for tests.
    topic_prefix : str, keyword-only
        Replaces the leading ``journey`` of every topic (``journey.events.web`` ->
        ``<prefix>.events.web``), so tests can use topics of their own.
    topic : str or None, keyword-only
        Send every record to this one topic instead (a backfill topic for a history
        dataset); keys still keep each person's records in order.

    Returns
    -------
    ProduceReport
        Counts per topic and elapsed time.

    Raises
    ------
    ValueError
        For a non-positive ``rate``, an invalid ``topic`` or one given with ``topic_prefix``, or a
        dataset whose events would be judged from the future.
    ProduceError
        If the broker is unreachable, a topic does not exist, or any record was not delivered.
    """
    if rate is not None and not rate > 0:
        raise ValueError(f"rate must be positive records/s or None, got {rate!r}")
    if topic is not None and (not TOPIC_NAME.match(topic) or topic_prefix != "journey"):
        raise ValueError(f"topic={topic!r} must be a valid Kafka topic name and not combined with topic_prefix")
    check_produce_time(dataset, int(time.time() * 1000))
    # credentials: JOURNEY_KAFKA_* of the environment (docs/security.md)
    conf: dict[str, Any] = kafka_client_config(
        bootstrap,
        {
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "message.timeout.ms": 60_000,
            "client.id": "journey-generator",
        },
    )
    conf.update(config or {})
    producer = (producer_factory or Producer)(conf)

    def target_topic(rec: GeneratedRecord) -> str:
        if topic is not None:
            return topic
        return topic_prefix + rec.topic[len("journey") :] if rec.topic.startswith("journey.") else rec.topic

    _check_topics(producer, sorted({target_topic(r) for r in dataset.records}), bootstrap, conf)

    per_topic: dict[str, int] = {}
    errors: list[str] = []
    delivered = 0

    def on_delivery(err: Any, msg: Any) -> None:
        nonlocal delivered
        if err is not None:
            errors.append(f"{msg.topic()}: {err}")
            return
        delivered += 1
        per_topic[msg.topic()] = per_topic.get(msg.topic(), 0) + 1

    total = len(dataset.records)
    bar = tqdm(total=total, file=sys.stderr, disable=not progress, unit="rec", desc="produce", dynamic_ncols=True)
    start = time.monotonic()
    try:
        for i, rec in enumerate(dataset.records):
            if rate is not None:
                wait = start + i / rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            while True:
                try:
                    producer.produce(target_topic(rec), value=rec.value, key=rec.key, on_delivery=on_delivery)
                    break
                except BufferError:  # local queue full: let deliveries drain
                    producer.poll(0.05)
            producer.poll(0)
            bar.update(1)
        remaining = producer.flush(flush_timeout_s)
    finally:
        bar.close()
    elapsed = time.monotonic() - start
    if remaining:
        raise ProduceError(
            f"{remaining} of {total} records were still undelivered after a {flush_timeout_s} s flush to {bootstrap}"
        )
    if errors:
        shown = "; ".join(errors[:5])
        raise ProduceError(f"{len(errors)} of {total} records failed delivery to {bootstrap} (first: {shown})")
    return ProduceReport(total=total, delivered=delivered, per_topic=dict(sorted(per_topic.items())), elapsed_s=elapsed)


def _check_topics(
    producer: Any, topics: list[str], bootstrap: str, conf: dict[str, Any], timeout_s: float = 10.0
) -> None:
    """Fail fast, with a clear message, if the broker is down or refuses us (credentials), or a
    topic is missing."""
    try:
        md = producer.list_topics(timeout=timeout_s)
    except Exception as e:  # confluent_kafka.KafkaException
        raise ProduceError(f"{kafka_failure(conf, e, producer)} (within {timeout_s} s)") from None
    missing = [t for t in topics if t not in md.topics or md.topics[t].error is not None]
    if missing:
        raise ProduceError(
            f"topics missing on {bootstrap}: {', '.join(missing)} (the broker does not auto-create "
            f"topics; create them first)"
        )
