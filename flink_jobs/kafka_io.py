"""Kafka sources and sinks of the jobs (exactly-once, read_committed)."""

from __future__ import annotations

from pyflink.common.serialization import ByteArraySchema
from pyflink.datastream import DataStream
from pyflink.datastream.connectors.kafka import DeliveryGuarantee, KafkaRecordSerializationSchema, KafkaSink
from pyflink.table import StreamTableEnvironment

from models.config import KafkaAuth, check_ordered_topic, check_transaction_timeout
from state.kafka_clients import kafka_client_config, kafka_failure

_SOURCE_TABLE = "kafka_raw_events"


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def raw_kafka_source(
    t_env: StreamTableEnvironment, cfg, topic_pattern: str | None = None, table: str = _SOURCE_TABLE
) -> DataStream:
    """Rows of ``operators.ingest.RAW_RECORD_TYPE``: value, topic, partition, offset, timestamp (epoch ms).

    ``topic_pattern`` overrides ``cfg.input_topic_pattern``; ``table`` names the temporary table
    (one per source of a job). No watermarks (the profiles job assigns event time after its
    router).

    The DataStream KafkaSource of PyFlink only hands over values, so this uses the Kafka
    table connector with the ``raw`` format and metadata columns, then converts to a stream.
    """
    options = {
        "connector": "kafka",
        "topic-pattern": topic_pattern or cfg.input_topic_pattern,
        "properties.bootstrap.servers": cfg.bootstrap_servers,
        "properties.group.id": cfg.group_id,
        "properties.isolation.level": "read_committed",
        "properties.client.id.prefix": cfg.job_name,
        "scan.startup.mode": "group-offsets",
        "properties.auto.offset.reset": "earliest",
        "scan.topic-partition-discovery.interval": "30 s",
        "format": "raw",
    }
    # credentials and TLS (docs/security.md): security.protocol, sasl.mechanism, sasl.jaas.config,
    # ssl.truststore.type=PEM and ssl.truststore.location (the CA)
    options.update({f"properties.{k}": v for k, v in cfg.kafka_auth().java_properties().items()})
    if cfg.bounded:
        options["scan.bounded.mode"] = "latest-offset"
    with_clause = ",\n  ".join(f"{_sql_str(k)} = {_sql_str(v)}" for k, v in options.items())
    t_env.execute_sql(f"DROP TEMPORARY TABLE IF EXISTS {table}")
    t_env.execute_sql(f"""
CREATE TEMPORARY TABLE {table} (
  `value` BYTES,
  `topic` STRING METADATA VIRTUAL,
  `partition` INT METADATA VIRTUAL,
  `offset` BIGINT METADATA VIRTUAL,
  `ts` TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL
) WITH (
  {with_clause}
)""")
    # epoch ms computed in SQL (zone-independent: both sides are TIMESTAMP_LTZ; BIGINT before
    # the * 1000, TIMESTAMPDIFF returns INT and would overflow), so no
    # per-record Python step is needed to turn a java.time.Instant into a number
    table = t_env.sql_query(f"""
SELECT `value`, `topic`, `partition`, `offset`,
       CAST(TIMESTAMPDIFF(SECOND, TO_TIMESTAMP_LTZ(0, 3), `ts`) AS BIGINT) * 1000
         + EXTRACT(MILLISECOND FROM `ts`) AS timestamp_ms
FROM {table}""")
    return t_env.to_data_stream(table)


def broker_transaction_max_timeout_ms(bootstrap: str, timeout_s: float = 10.0, auth: KafkaAuth | None = None) -> int:
    """``transaction.max.timeout.ms`` as the brokers report it (the smallest, if they differ)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, ConfigResource

    conf = kafka_client_config(bootstrap, auth=auth)
    admin = AdminClient(conf)
    try:
        brokers = admin.list_topics(timeout=timeout_s).brokers
    except KafkaException as e:
        raise ConnectionError(kafka_failure(conf, e, admin)) from None
    if not brokers:
        raise ConnectionError(f"no Kafka broker answered at {bootstrap}")
    resources = [ConfigResource(ConfigResource.Type.BROKER, str(b)) for b in brokers]
    values = []
    for fut in admin.describe_configs(resources, request_timeout=timeout_s).values():
        values.append(int(fut.result()["transaction.max.timeout.ms"].value))
    return min(values)


def topic_partitions(bootstrap: str, topic: str, timeout_s: float = 10.0, auth: KafkaAuth | None = None) -> int | None:
    """Number of partitions of ``topic`` (None: it does not exist)."""
    from confluent_kafka.admin import AdminClient

    meta = AdminClient(kafka_client_config(bootstrap, auth=auth)).list_topics(topic=topic, timeout=timeout_s)
    t = meta.topics.get(topic)
    if t is None or t.error is not None:
        return None
    return len(t.partitions)


def check_against_broker(cfg, ordered_topics: tuple[str, ...] = ()) -> None:
    """The transaction-timeout guard with the brokers' real limit, and the single-partition
    check of ``ordered_topics`` (raises ``ConfigError``). The CA files of the config
    (``JOURNEY_KAFKA_SSL_CA_LOCATION``, ``JOURNEY_CASSANDRA_SSL_CA``) are checked first: a job
    must not be submitted with one its TaskManagers cannot read."""
    from state.tls import check_cassandra_ca, check_kafka_ca

    check_kafka_ca(cfg.kafka_auth())
    if hasattr(cfg, "cassandra_auth"):
        check_cassandra_ca(cfg.cassandra_auth())
    check_transaction_timeout(
        cfg.transaction_timeout_ms,
        cfg.checkpoint_timeout_ms,
        cfg.restart_delay_ms,
        broker_transaction_max_timeout_ms(cfg.bootstrap_servers, auth=cfg.kafka_auth()),
    )
    for topic in ordered_topics:
        check_ordered_topic(topic, topic_partitions(cfg.bootstrap_servers, topic, auth=cfg.kafka_auth()))


def bytes_sink(cfg, topic: str) -> KafkaSink:
    """EXACTLY_ONCE sink of byte values to one topic, transactional id ``<prefix>-<topic>``.

    Refuses (``ConfigError``) a transaction timeout that could lose output.
    """
    check_transaction_timeout(
        cfg.transaction_timeout_ms,
        cfg.checkpoint_timeout_ms,
        cfg.restart_delay_ms,
        cfg.broker_transaction_max_timeout_ms,
    )
    serializer = (
        KafkaRecordSerializationSchema.builder()
        .set_topic(topic)
        .set_value_serialization_schema(ByteArraySchema())
        .build()
    )
    builder = (
        KafkaSink.builder()
        .set_bootstrap_servers(cfg.bootstrap_servers)
        .set_record_serializer(serializer)
        .set_delivery_guarantee(DeliveryGuarantee.EXACTLY_ONCE)
        .set_transactional_id_prefix(f"{cfg.transactional_id_prefix}-{topic}")
        .set_property("transaction.timeout.ms", str(cfg.transaction_timeout_ms))
        .set_property("enable.idempotence", "true")
        .set_property("acks", "all")
    )
    for key, value in cfg.kafka_auth().java_properties().items():  # credentials, TLS (docs/security.md)
        builder = builder.set_property(key, value)
    return builder.build()


def sink_bytes(stream: DataStream, cfg, topic: str, parallelism: int | None = None) -> None:
    """Exactly-once sink of ``stream`` to ``topic``; ``parallelism`` 1 keeps the stream's
    order when it comes from a single subtask (forward, chained to it)."""
    sink = stream.sink_to(bytes_sink(cfg, topic)).name(f"kafka-sink: {topic}").uid(f"kafka-sink-{topic}")
    if parallelism is not None:
        sink.set_parallelism(parallelism)
