"""Typed, validated configuration for the jobs. No globals, nothing read at import time.

:meth:`IngestConfig.from_env` builds one from ``JOURNEY_*`` environment variables (the
k8s manifests and the Makefile set them); every field can also be passed directly.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from typing import Mapping

from models.contract import INPUT_TOPICS
from models.journeys import JourneySettings
from models.samples import LearnerSettings
from models.profile import DEFAULT_HALF_LIFE_MS

_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_PREFIX = re.compile(r"^[A-Za-z0-9._-]{1,100}$")

# Defaults shared with the pure ingestion logic (models.ingest.IngestSettings), the generator
# and the producer: defined here once, imported there.
#: 2000-01-01T00:00:00Z: the default lower bound of ``occurred_at`` on live topics.
DEFAULT_MIN_VALID_TIMESTAMP_MS = 946_684_800_000
#: 24 h: how far ``occurred_at`` may be after the Kafka record timestamp by default.
DEFAULT_MAX_FUTURE_SKEW_MS = 24 * 3600 * 1000
#: Country code given to national phone numbers (E.164) by default.
DEFAULT_COUNTRY_CODE = "1"
#: Default Kafka bootstrap servers (the local stack).
DEFAULT_BOOTSTRAP_SERVERS = "127.0.0.1:9092"
#: Name of the ingestion job (also the ``job`` of its dead letters).
INGESTION_JOB_NAME = "journey-ingestion"
#: Name of the identity + profiles job.
PROFILES_JOB_NAME = "journey-profiles"
#: Lower bounds below this (1973-03-03T09:46:40Z, other than 0) are refused as epoch seconds.
SECONDS_SUSPECT_BELOW_MS = 100_000_000_000
#: 2100-01-01T00:00:00Z: lower bounds from here on are refused (every event would be rejected).
LOWER_BOUND_CEILING_MS = 4_102_444_800_000
#: The live input topics, which a backfill pattern must never loosen (:data:`models.contract.INPUT_TOPICS`).
LIVE_INPUT_TOPICS: tuple[str, ...] = INPUT_TOPICS


#: how long a restarted operator waits for an unreachable Cassandra (JOURNEY_CASSANDRA_WAIT_MS)
CASSANDRA_WAIT_MS = 300_000


class ConfigError(ValueError):
    """A configuration value is missing or out of range; the message names the setting."""


# ---------------------------------------------------------------- credentials (docs/security.md)

#: Kafka ``security.protocol`` values the clients are configured for.
KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL")
#: The protocols that encrypt (TLS) and verify the brokers' certificates.
KAFKA_TLS_PROTOCOLS = ("SASL_SSL", "SSL")
#: SASL mechanisms (SCRAM only: PLAIN would send the password itself).
KAFKA_SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256")
#: The SCRAM login module as the Flink Kafka SQL connector jar has it (it shades kafka-clients:
#: the unshaded class name is not in the jar, and JAAS would fail to load it).
SHADED_SCRAM_LOGIN_MODULE = "org.apache.flink.kafka.shaded.org.apache.kafka.common.security.scram.ScramLoginModule"
_MASK = "***"


def _check_credential(setting: str, value: str) -> None:
    # JAAS config values are double-quoted strings: refuse what would end or escape the quotes
    bad = [c for c in value if c in '"\\' or ord(c) < 32]
    if bad:
        raise ConfigError(
            f"{setting} contains a character not allowed in credentials ({bad[0]!r} : quote, backslash or control)"
        )


def _check_path(setting: str, value: str) -> None:
    # a file path handed to librdkafka, a Java client property and a Flink SQL option
    if value != value.strip() or any(ord(c) < 32 for c in value):
        raise ConfigError(f"{setting}={value!r} is not a usable file path (blank or control characters)")


@dataclass(frozen=True)
class KafkaAuth:
    """How every Kafka client of the project authenticates (``JOURNEY_KAFKA_*``).

    ``security_protocol`` PLAINTEXT (default, the local stack): no credentials, and none may be
    given. SASL_PLAINTEXT: SASL ``sasl_mechanism`` (SCRAM-SHA-512 by default) with
    ``sasl_username`` and ``sasl_password``, both required. SASL_SSL: the same over TLS; SSL:
    TLS without SASL (no credentials). With TLS the brokers' certificates are verified, host
    name included, against ``ssl_ca_location`` (a PEM file of CA certificates), or the system's
    trust store when it is empty; a CA without TLS is refused (it would be ignored). The
    password never appears in the repr. Whether the CA file is there and readable is checked
    where it is used (:func:`state.tls.check_ca_file`: models stay free of I/O).
    """

    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-512"
    sasl_username: str = ""
    sasl_password: str = field(default="", repr=False)
    ssl_ca_location: str = ""

    def __post_init__(self) -> None:
        if self.security_protocol not in KAFKA_SECURITY_PROTOCOLS:
            raise ConfigError(
                f"JOURNEY_KAFKA_SECURITY_PROTOCOL={self.security_protocol!r} must be one of "
                f"{', '.join(KAFKA_SECURITY_PROTOCOLS)}"
            )
        if self.sasl_mechanism not in KAFKA_SASL_MECHANISMS:
            raise ConfigError(
                f"JOURNEY_KAFKA_SASL_MECHANISM={self.sasl_mechanism!r} must be one of {', '.join(KAFKA_SASL_MECHANISMS)}"
            )
        if self.sasl_username and not self.sasl_password:
            raise ConfigError("JOURNEY_KAFKA_SASL_USERNAME is set but JOURNEY_KAFKA_SASL_PASSWORD is not")
        if self.sasl_password and not self.sasl_username:
            raise ConfigError("JOURNEY_KAFKA_SASL_PASSWORD is set but JOURNEY_KAFKA_SASL_USERNAME is not")
        if self.sasl:
            if not self.sasl_username:
                raise ConfigError(
                    f"JOURNEY_KAFKA_SECURITY_PROTOCOL={self.security_protocol} needs JOURNEY_KAFKA_SASL_USERNAME "
                    f"and JOURNEY_KAFKA_SASL_PASSWORD"
                )
        elif self.sasl_username:
            raise ConfigError(
                f"JOURNEY_KAFKA_SASL_USERNAME is set but JOURNEY_KAFKA_SECURITY_PROTOCOL={self.security_protocol}: "
                f"the credentials would not be used; set JOURNEY_KAFKA_SECURITY_PROTOCOL="
                f"{'SASL_SSL' if self.tls else 'SASL_PLAINTEXT (or SASL_SSL)'}"
            )
        _check_credential("JOURNEY_KAFKA_SASL_USERNAME", self.sasl_username)
        _check_credential("JOURNEY_KAFKA_SASL_PASSWORD", self.sasl_password)
        if self.ssl_ca_location:
            _check_path("JOURNEY_KAFKA_SSL_CA_LOCATION", self.ssl_ca_location)
            if not self.tls:
                raise ConfigError(
                    f"JOURNEY_KAFKA_SSL_CA_LOCATION is set but JOURNEY_KAFKA_SECURITY_PROTOCOL={self.security_protocol} "
                    f"does not use TLS: the CA would be ignored; set JOURNEY_KAFKA_SECURITY_PROTOCOL="
                    f"{'SASL_SSL' if self.sasl else 'SSL (or SASL_SSL)'}"
                )

    @property
    def sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        """Whether the clients speak TLS to the brokers (SASL_SSL, SSL)."""
        return self.security_protocol in KAFKA_TLS_PROTOCOLS

    def __repr__(self) -> str:
        pw = _MASK if self.sasl_password else ""
        return (
            f"KafkaAuth(security_protocol={self.security_protocol!r}, sasl_mechanism={self.sasl_mechanism!r}, "
            f"sasl_username={self.sasl_username!r}, sasl_password={pw!r}, ssl_ca_location={self.ssl_ca_location!r})"
        )

    __str__ = __repr__

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "KafkaAuth":
        """``JOURNEY_KAFKA_SECURITY_PROTOCOL``, ``_SASL_MECHANISM``, ``_SASL_USERNAME``, ``_SASL_PASSWORD``,
        ``_SSL_CA_LOCATION``."""
        env = os.environ if env is None else env
        return cls(
            **{
                f.name: env[f"JOURNEY_KAFKA_{f.name.upper()}"]
                for f in fields(cls)
                if f"JOURNEY_KAFKA_{f.name.upper()}" in env
            }
        )

    def librdkafka(self) -> dict[str, str]:
        """The settings of a confluent_kafka (librdkafka) client: merge into its config."""
        conf = {"security.protocol": self.security_protocol}
        if self.sasl:
            conf.update(
                {
                    "sasl.mechanism": self.sasl_mechanism,
                    "sasl.username": self.sasl_username,
                    "sasl.password": self.sasl_password,
                }
            )
        if self.tls:
            # the host name is checked against the certificate (librdkafka's default since 2.0;
            # said here so that no older default or other setting turns it off)
            conf["ssl.endpoint.identification.algorithm"] = "https"
            if self.ssl_ca_location:
                conf["ssl.ca.location"] = self.ssl_ca_location
        return conf

    def java_properties(self, login_module: str = SHADED_SCRAM_LOGIN_MODULE) -> dict[str, str]:
        """The properties of a Java Kafka client (the Flink connector's sources and sinks).

        The CA goes in as a PEM trust store (``ssl.truststore.type=PEM``, kafka-clients 2.7+;
        the connector jar shades 4.2): no JKS/PKCS12 file to make from it."""
        props = {"security.protocol": self.security_protocol}
        if self.sasl:
            props.update(
                {
                    "sasl.mechanism": self.sasl_mechanism,
                    "sasl.jaas.config": (
                        f'{login_module} required username="{self.sasl_username}" password="{self.sasl_password}";'
                    ),
                }
            )
        if self.tls:
            props["ssl.endpoint.identification.algorithm"] = "https"
            if self.ssl_ca_location:
                props.update({"ssl.truststore.type": "PEM", "ssl.truststore.location": self.ssl_ca_location})
        return props


@dataclass(frozen=True)
class CassandraAuth:
    """How the project's Cassandra clients connect: ``PasswordAuthenticator`` credentials
    (``JOURNEY_CASSANDRA_USERNAME`` / ``_PASSWORD``: both or neither; neither connects without
    authenticating) and client encryption (``JOURNEY_CASSANDRA_SSL``: TLS, the server's
    certificate verified, host name included, against the system's trust store;
    ``JOURNEY_CASSANDRA_SSL_CA``: against this PEM file of CA certificates instead, which turns
    TLS on by itself). Picklable, with the CA as a path: the jobs ship it to the TaskManagers,
    which build their own ``ssl.SSLContext`` from it (:func:`state.tls.cassandra_ssl_context`).
    The password never appears in the repr. A false value is one without credentials."""

    username: str = ""
    password: str = field(default="", repr=False)
    ssl: bool = False
    ssl_ca: str = ""

    def __post_init__(self) -> None:
        if self.username and not self.password:
            raise ConfigError("JOURNEY_CASSANDRA_USERNAME is set but JOURNEY_CASSANDRA_PASSWORD is not")
        if self.password and not self.username:
            raise ConfigError("JOURNEY_CASSANDRA_PASSWORD is set but JOURNEY_CASSANDRA_USERNAME is not")
        if self.ssl_ca:
            _check_path("JOURNEY_CASSANDRA_SSL_CA", self.ssl_ca)

    @property
    def tls(self) -> bool:
        """Whether the clients speak TLS to Cassandra."""
        return self.ssl or bool(self.ssl_ca)

    def __bool__(self) -> bool:
        return bool(self.username)

    def __repr__(self) -> str:
        return (
            f"CassandraAuth(username={self.username!r}, password={_MASK if self.password else ''!r}, "
            f"ssl={self.tls!r}, ssl_ca={self.ssl_ca!r})"
        )

    __str__ = __repr__

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "CassandraAuth":
        env = os.environ if env is None else env
        ssl = _parse("cassandra_ssl", env.get("JOURNEY_CASSANDRA_SSL", "false"), "bool")
        return cls(
            env.get("JOURNEY_CASSANDRA_USERNAME", ""),
            env.get("JOURNEY_CASSANDRA_PASSWORD", ""),
            bool(ssl),
            env.get("JOURNEY_CASSANDRA_SSL_CA", ""),
        )


class CassandraClientSettings:
    """What both jobs do with their Cassandra settings (the fields ``cassandra_host``,
    ``cassandra_port``, ``keyspace``, ``cassandra_username``, ``cassandra_password``,
    ``cassandra_ssl``, ``cassandra_ssl_ca`` and ``cassandra_wait_ms`` are each config's own)."""

    cassandra_host: str
    cassandra_port: int
    keyspace: str
    cassandra_username: str
    cassandra_password: str
    cassandra_ssl: bool
    cassandra_ssl_ca: str
    cassandra_wait_ms: int

    def cassandra_auth(self) -> CassandraAuth:
        """The Cassandra credentials and TLS settings of this config (validated)."""
        return CassandraAuth(
            self.cassandra_username, self.cassandra_password, self.cassandra_ssl, self.cassandra_ssl_ca
        )

    def cassandra_target(self) -> tuple[str, int, str, CassandraAuth, float]:
        """``(host, port, keyspace, auth, wait_s)``: the arguments of the store and ledger
        factories the jobs ship to the TaskManagers (state/)."""
        wait_s = self.cassandra_wait_ms / 1000
        return self.cassandra_host, self.cassandra_port, self.keyspace, self.cassandra_auth(), wait_s

    def _check_cassandra(self) -> None:
        self.cassandra_auth()
        if self.cassandra_wait_ms < 0:
            raise ConfigError(
                f"cassandra_wait_ms (JOURNEY_CASSANDRA_WAIT_MS) must be 0 or more, got {self.cassandra_wait_ms}"
            )


@dataclass(frozen=True)
class FlinkJobSettings:
    """What every job of the project configures the same way: Kafka, checkpoints, restarts.

    Attributes
    ----------
    unaligned_checkpoints:
        Checkpoint barriers overtake records queued between operators, so checkpoints
        complete quickly under backpressure (a backlog, a slow Python operator). The queued
        records are stored in the checkpoint instead. The profiles job always takes aligned
        checkpoints (its identity stages rely on them: docs/identity.md).
    restart_attempts, restart_interval_ms, restart_delay_ms:
        Failure-rate restarts: after a failure the job restarts ``restart_delay_ms`` later,
        as long as it failed at most ``restart_attempts`` times within the last
        ``restart_interval_ms``; faster than that (a crash loop) it fails for good. Unlike a
        fixed number of attempts, failures spread out in time (a lost TaskManager now and
        then, over months) never use the allowance up. A TaskManager loss can cost a few
        attempts: the JobManager retries the lost slots until the heartbeat times out.
        ``restart_attempts`` 0: never restart.
    transaction_timeout_ms:
        Kafka producer transaction timeout of the exactly-once sinks. Must exceed checkpoint
        timeout + restart delay (a transaction must outlive the slowest checkpoint plus a
        restart, or the broker aborts it and committed-looking output is lost) and stay at or
        below the broker's ``transaction.max.timeout.ms`` (900000 on the local broker).
    """

    bootstrap_servers: str = DEFAULT_BOOTSTRAP_SERVERS
    group_id: str = "journey"
    job_name: str = "journey"
    bounded: bool = False
    parallelism: int = 2
    checkpoint_interval_ms: int = 2_000
    checkpoint_timeout_ms: int = 60_000
    restart_delay_ms: int = 5_000
    restart_attempts: int = 10
    restart_interval_ms: int = 300_000
    rocksdb: bool = True
    unaligned_checkpoints: bool = True
    jars: tuple[str, ...] = field(default_factory=tuple)
    transactional_id_prefix: str = "journey"
    transaction_timeout_ms: int = 300_000
    broker_transaction_max_timeout_ms: int = 900_000
    # credentials (docs/security.md): from a Secret in k8s; passwords never in the repr
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = field(default="", repr=False)
    kafka_ssl_ca_location: str = ""

    def kafka_auth(self) -> KafkaAuth:
        """The Kafka credentials and TLS settings of this config (validated)."""
        return KafkaAuth(
            self.kafka_security_protocol,
            self.kafka_sasl_mechanism,
            self.kafka_sasl_username,
            self.kafka_sasl_password,
            self.kafka_ssl_ca_location,
        )

    def __post_init__(self) -> None:
        self.kafka_auth()
        for name in (
            "parallelism",
            "checkpoint_interval_ms",
            "checkpoint_timeout_ms",
            "transaction_timeout_ms",
            "restart_interval_ms",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("restart_attempts", "restart_delay_ms"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(self, name)}")
        if not _PREFIX.match(self.transactional_id_prefix):
            raise ConfigError(f"transactional_id_prefix={self.transactional_id_prefix!r} must match {_PREFIX.pattern}")
        check_transaction_timeout(
            self.transaction_timeout_ms,
            self.checkpoint_timeout_ms,
            self.restart_delay_ms,
            self.broker_transaction_max_timeout_ms,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object):
        """Read ``JOURNEY_<FIELD>`` variables (upper-case field names); overrides win."""
        return cls(**_values_from_env(cls, env, overrides))  # type: ignore[arg-type]


@dataclass(frozen=True)
class IngestConfig(FlinkJobSettings, CassandraClientSettings):
    """Settings of the ingestion job.

    Attributes
    ----------
    pii_salt:
        Secret salt for hashing email and phone. Required, at least 16 characters; never
        a default in code (from a secret in k8s, from ``.stack/`` in the local demo).
    min_valid_timestamp_ms:
        Lower bound of ``occurred_at`` (epoch ms, inclusive) on live topics; protects live
        traffic from zeroed or reset clocks. Default 2000-01-01T00:00:00Z.
    max_future_skew_ms:
        How far ``occurred_at`` may be after the Kafka record timestamp, on every topic.
    backfill_topic_pattern, backfill_min_valid_timestamp_ms:
        History backfill (docs/operations.md): on input topics whose whole name matches the
        regex ``backfill_topic_pattern``, ``occurred_at`` is bounded below by
        ``backfill_min_valid_timestamp_ms`` instead of ``min_valid_timestamp_ms``. Both or
        neither; the pattern must not match the live ``journey.events.<channel>`` topics nor
        the output topics. ``occurred_at`` is never accepted before the Unix epoch, and the
        future bound applies to backfill topics as to live ones.
    cassandra_wait_ms:
        How long an operator that opens (at start or after a restart) waits for an
        unreachable Cassandra before it fails (default 5 min). A Cassandra outage fails the
        job once (a write fails); the restarted tasks then wait here instead of failing again
        and again until the restart strategy gives up (10 failures in 5 min).
    erasure_ledger, cassandra_host, cassandra_port, keyspace:
        ``cassandra`` (default): when the job starts it reads the erasure ledger (Cassandra
        ``erased_identifiers``, docs/privacy.md) and drops every event of an erased person
        (counted ``erased``); a job that cannot read it does not start. ``off``: no ledger
        (a deployment without the profiles stage; erasure is then the identity stage's alone).
    """

    pii_salt: str = field(default="", repr=False)
    erasure_ledger: str = "cassandra"
    cassandra_host: str = "127.0.0.1"
    cassandra_port: int = 9042
    cassandra_username: str = ""
    cassandra_password: str = field(default="", repr=False)
    cassandra_ssl: bool = False
    cassandra_ssl_ca: str = ""
    cassandra_wait_ms: int = CASSANDRA_WAIT_MS
    keyspace: str = "journey"
    input_topic_pattern: str = r"journey\.events\..*"
    output_topic: str = "journey.normalized"
    dlq_topic: str = "journey.dlq"
    group_id: str = INGESTION_JOB_NAME
    transactional_id_prefix: str = INGESTION_JOB_NAME
    job_name: str = INGESTION_JOB_NAME
    dedupe_ttl_ms: int = 24 * 3600 * 1000
    max_future_skew_ms: int = DEFAULT_MAX_FUTURE_SKEW_MS
    min_valid_timestamp_ms: int = DEFAULT_MIN_VALID_TIMESTAMP_MS  # 2000-01-01T00:00:00Z
    default_country_code: str = DEFAULT_COUNTRY_CODE
    backfill_topic_pattern: str = ""
    backfill_min_valid_timestamp_ms: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_cassandra()
        if not self.pii_salt or len(self.pii_salt) < 16:
            raise ConfigError("pii_salt (JOURNEY_PII_SALT) must be set to a secret of at least 16 characters")
        for name in ("output_topic", "dlq_topic"):
            if not _TOPIC.match(getattr(self, name)):
                raise ConfigError(f"{name}={getattr(self, name)!r} is not a valid Kafka topic name")
        try:
            re.compile(self.input_topic_pattern)
        except re.error as e:
            raise ConfigError(f"input_topic_pattern={self.input_topic_pattern!r} is not a regex: {e}") from None
        for name in ("dedupe_ttl_ms", "max_future_skew_ms"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if not self.default_country_code.isdigit() or not 1 <= len(self.default_country_code) <= 3:
            raise ConfigError(f"default_country_code={self.default_country_code!r} must be 1-3 digits")
        if self.erasure_ledger not in ("cassandra", "off"):
            raise ConfigError(f"erasure_ledger={self.erasure_ledger!r} must be 'cassandra' or 'off'")
        if not re.match(r"^[a-z][a-z0-9_]{0,47}$", self.keyspace):
            raise ConfigError(f"keyspace={self.keyspace!r} is not a valid Cassandra keyspace name")
        check_time_bounds(
            self.min_valid_timestamp_ms,
            self.backfill_topic_pattern,
            self.backfill_min_valid_timestamp_ms,
            input_topic_pattern=self.input_topic_pattern,
            output_topics=(self.output_topic, self.dlq_topic),
        )


@dataclass(frozen=True)
class ProfilesConfig(FlinkJobSettings, CassandraClientSettings):
    """Settings of the identity + profiles job (reads journey.normalized, writes Cassandra).

    Attributes
    ----------
    feedback_topic:
        Internal topic that carries profile state between keys on merges and splits; the
        job writes it (exactly-once) and reads it back. One per deployment: never share it.
    coalesce_ms:
        A profile is written to Cassandra at most once per this many milliseconds.
    cassandra_wait_ms:
        As for :class:`IngestConfig`: how long a (re)starting operator waits for Cassandra.
    confirm_ms:
        How long after issuing a profile write the fold checks that Cassandra answered (and
        again as long as it has not): a timer firing, handled in memory when the write was
        answered (a deletion, or a change waiting on the write, also reads and writes the
        profile's state). Must exceed ``write_group_ms``.
    write_group_size, write_group_ms:
        Profile writes of one subtask go to Cassandra together, as one request of at most
        ``write_group_size`` profiles, sent at the latest ``write_group_ms`` after its first
        write (keep a group under Cassandra's ``batch_size_fail_threshold``, 50 KiB by
        default; a profile row is about 1 KiB).
    """

    input_topic_pattern: str = r"journey\.normalized"
    identity_topic: str = "journey.identity"
    feedback_topic: str = "journey.profile-moves"
    group_id: str = PROFILES_JOB_NAME
    job_name: str = PROFILES_JOB_NAME
    transactional_id_prefix: str = PROFILES_JOB_NAME
    cassandra_host: str = "127.0.0.1"
    cassandra_port: int = 9042
    cassandra_username: str = ""
    cassandra_password: str = field(default="", repr=False)
    cassandra_ssl: bool = False
    cassandra_ssl_ca: str = ""
    cassandra_wait_ms: int = CASSANDRA_WAIT_MS
    keyspace: str = "journey"
    coalesce_ms: int = 1_000
    confirm_ms: int = 30
    write_group_size: int = 8
    write_group_ms: int = 10
    half_life_ms: int = DEFAULT_HALF_LIFE_MS
    # the journeys stage (docs/journeys.md)
    sessions_topic: str = "journey.sessions"
    triggers_topic: str = "journey.triggers"
    late_topic: str = "journey.late"
    # rule segments (docs/segments.md): the rules run until journey.control replaces them
    segments_topic: str = "journey.segments"
    scores_topic: str = "journey.scores"  # the online models (docs/learning.md)
    control_topic: str = "journey.control"
    control_results_topic: str = "journey.control-results"
    segment_rules: str = ""  # a YAML/JSON rules file; empty: the shipped rules/segments.yaml
    out_of_orderness_ms: int = 10 * 60_000
    idle_advance_ms: int = 5_000
    # homes per linked component (docs/identity.md, "Supernodes"): a shared identifier's
    # customers keep homes of their own (models.identity.IdentityRules.shared_homes)
    identity_shared_homes: bool = False
    # the stage's own settings, defaults from their one home (models.journeys.JourneySettings)
    session_gap_ms: int = JourneySettings.session_gap_ms
    allowed_lateness_ms: int = JourneySettings.allowed_lateness_ms
    cart_timeout_ms: int = JourneySettings.cart_timeout_ms
    escalation_timeout_ms: int = JourneySettings.escalation_timeout_ms
    recovery_window_ms: int = JourneySettings.recovery_window_ms
    high_intent_dwell_ms: int = JourneySettings.high_intent_dwell_ms
    high_intent_views: int = JourneySettings.high_intent_views
    offer_engagement: int = JourneySettings.offer_engagement
    engagement_window_ms: int = JourneySettings.engagement_window_ms
    marketing_consent_default: bool = JourneySettings.marketing_consent_default
    personalization_consent_default: bool = JourneySettings.personalization_consent_default
    analytics_consent_default: bool = JourneySettings.analytics_consent_default
    churn_window_ms: int = JourneySettings.churn_window_ms
    # the online models (docs/learning.md): an abandoned cart of a person at least this likely
    # to buy gets a reminder, below it an offer
    reminder_propensity: float = LearnerSettings.reminder_propensity

    def learner_settings(self) -> LearnerSettings:
        """The online models' :class:`models.samples.LearnerSettings` from this config."""
        return LearnerSettings(reminder_propensity=self.reminder_propensity)

    def journey_settings(self) -> JourneySettings:
        """The journeys stage's :class:`models.journeys.JourneySettings` from this config."""
        return JourneySettings(**{f.name: getattr(self, f.name) for f in fields(JourneySettings)})

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_cassandra()
        try:
            self.journey_settings()
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if self.out_of_orderness_ms < 0 or self.idle_advance_ms < 0:
            raise ConfigError("out_of_orderness_ms and idle_advance_ms must not be negative")
        if not 0.0 <= self.reminder_propensity <= 1.0:
            raise ConfigError(
                f"JOURNEY_REMINDER_PROPENSITY={self.reminder_propensity!r} must be a probability from 0 to 1"
            )
        if self.bounded:
            raise ConfigError(
                "the profiles job cannot run bounded: it reads its own feedback topic, "
                "which never ends (stop it with a savepoint instead)"
            )
        for name in ("cassandra_port", "coalesce_ms", "confirm_ms", "half_life_ms", "write_group_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.write_group_ms < self.confirm_ms:
            raise ConfigError(
                f"write_group_ms ({self.write_group_ms}) must be at least 0 and less than confirm_ms "
                f"({self.confirm_ms}): a write is checked only after its group has gone out"
            )
        if not re.match(r"^[a-z][a-z0-9_]{0,47}$", self.keyspace):
            raise ConfigError(f"keyspace={self.keyspace!r} is not a valid Cassandra keyspace name")
        topics = (
            "identity_topic",
            "feedback_topic",
            "sessions_topic",
            "triggers_topic",
            "late_topic",
            "segments_topic",
            "scores_topic",
            "control_topic",
            "control_results_topic",
        )
        for name in topics:
            if not _TOPIC.match(getattr(self, name)):
                raise ConfigError(f"{name}={getattr(self, name)!r} is not a valid Kafka topic name")
        if len({getattr(self, n) for n in topics}) != len(topics):
            raise ConfigError(f"the topics {', '.join(topics)} must all differ")
        try:
            if re.fullmatch(self.input_topic_pattern, self.feedback_topic):
                raise ConfigError(
                    f"input_topic_pattern={self.input_topic_pattern!r} matches the feedback topic "
                    f"{self.feedback_topic!r}"
                )
        except re.error as e:
            raise ConfigError(f"input_topic_pattern={self.input_topic_pattern!r} is not a regex: {e}") from None

    def load_segment_rules(self) -> list:
        """The rule segments to start with (``segment_rules``, else the shipped file), each
        validated; a bad file is a :class:`ConfigError` naming the rule and the problem."""
        from models.segments import DEFAULT_RULES_PATH, RuleError, RuleSet, load_rules

        try:
            rules = load_rules(self.segment_rules or DEFAULT_RULES_PATH)
            RuleSet.of(rules)
        except RuleError as e:
            raise ConfigError(f"JOURNEY_SEGMENT_RULES: {e}") from None
        return rules

    def source_topic_pattern(self) -> str:
        """One Kafka source for the input topics and the feedback topic."""
        return f"(?:{self.input_topic_pattern})|{re.escape(self.feedback_topic)}"


def _values_from_env(cls: type, env: Mapping[str, str] | None, overrides: Mapping[str, object]) -> dict[str, object]:
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    for f in fields(cls):
        raw = env.get(f"JOURNEY_{f.name.upper()}")
        if raw is not None:
            values[f.name] = _parse(f.name, raw, f.type)
    values.update(overrides)
    return values


def _parse(name: str, raw: str, typ: object) -> object:
    t = str(typ)
    try:
        if t == "int":
            return int(raw)
        if t == "int | None":
            return int(raw) if raw.strip() else None
        if t == "float":
            return float(raw)
        if t == "bool":
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("1", "true", "yes")
        if t.startswith("tuple"):
            return tuple(p for p in raw.split(";") if p)
    except ValueError:
        hint = (
            " (epoch milliseconds, UTC: 1990-01-01 is 631152000000; date -u -d 1990-01-01 +%s000 prints it)"
            if name.endswith("_timestamp_ms")
            else ""
        )
        raise ConfigError(f"JOURNEY_{name.upper()}={raw!r} is not a valid {t}{hint}") from None
    return raw


def check_ordered_topic(topic: str, partitions: int | None) -> None:
    """Refuse an ordered change-log topic that is missing or has more than one partition.

    The profiles job writes ``journey.identity`` from its single identity subtask in
    resolution order; consumers take an identifier's last ``identifier_linked`` as its
    profile, which only holds within one partition.

    >>> check_ordered_topic("journey.identity", 1)
    >>> check_ordered_topic("journey.identity", 6)
    Traceback (most recent call last):
    ...
    models.config.ConfigError: topic 'journey.identity' has 6 partitions; it must have exactly 1 ...
    """
    if partitions is None:
        raise ConfigError(
            f"topic {topic!r} does not exist: create it with 1 partition (python -m k8s.topics, or make topics locally)"
        )
    if partitions != 1:
        why = (
            "rule updates apply in the order they were published"
            if "control" in topic
            else "an identifier's last identifier_linked is its profile only within one partition"
        )
        raise ConfigError(
            f"topic {topic!r} has {partitions} partitions; it must have exactly 1 (an ordered "
            f"log: {why}). Recreate it with 1 partition (delete it, then python -m k8s.topics; "
            f"on the local stack: make reset)"
        )


def check_transaction_timeout(
    transaction_timeout_ms: int, checkpoint_timeout_ms: int, restart_delay_ms: int, broker_max_ms: int
) -> None:
    """Refuse Kafka transaction timeouts that can lose committed output.

    >>> check_transaction_timeout(300_000, 60_000, 5_000, 900_000)
    >>> check_transaction_timeout(60_000, 60_000, 5_000, 900_000)
    Traceback (most recent call last):
    ...
    models.config.ConfigError: transaction_timeout_ms=60000 must be above checkpoint_timeout_ms + restart_delay_ms = 65000 ...
    """
    floor = checkpoint_timeout_ms + restart_delay_ms
    if transaction_timeout_ms <= floor:
        raise ConfigError(
            f"transaction_timeout_ms={transaction_timeout_ms} must be above checkpoint_timeout_ms + "
            f"restart_delay_ms = {floor} ... otherwise Kafka aborts transactions that Flink still "
            f"expects to commit after a slow checkpoint or a restart"
        )
    if transaction_timeout_ms > broker_max_ms:
        raise ConfigError(
            f"transaction_timeout_ms={transaction_timeout_ms} is above the broker's "
            f"transaction.max.timeout.ms={broker_max_ms}: the producer would be refused at start"
        )


def _iso(ms: int) -> str:
    from models.events import iso_utc  # local: models.events pulls in the Avro codec

    return iso_utc(ms)


def check_lower_bound(setting: str, value: int) -> None:
    """Refuse a lower bound of ``occurred_at`` that cannot be meant.

    Parameters
    ----------
    setting : str
        The ``JOURNEY_*`` variable the value came from (named in the error).
    value : int
        Epoch milliseconds; 0 (the Unix epoch) is the most permissive bound there is.

    Raises
    ------
    ConfigError
        If the value is negative (before the Unix epoch), looks like epoch seconds (between
        1 and 99999999999 ms, i.e. before 1973-03-03), or is 2100-01-01 or later.

    Examples
    --------
    >>> check_lower_bound("JOURNEY_MIN_VALID_TIMESTAMP_MS", 631_152_000_000)  # 1990-01-01
    >>> check_lower_bound("JOURNEY_MIN_VALID_TIMESTAMP_MS", 0)  # anything since the epoch
    >>> check_lower_bound("JOURNEY_BACKFILL_MIN_VALID_TIMESTAMP_MS", 631_152_000)
    Traceback (most recent call last):
    ...
    models.config.ConfigError: JOURNEY_BACKFILL_MIN_VALID_TIMESTAMP_MS=631152000
    (1970-01-08T07:19:12Z) looks like epoch seconds: in milliseconds that is 631152000000
    (1990-01-01T00:00:00Z); use 0 to accept everything since the Unix epoch
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{setting}={value!r} must be an int of epoch milliseconds")
    if value < 0:
        raise ConfigError(
            f"{setting}={value} ({_iso(value)}) is before the Unix epoch: negative timestamps are "
            f"never accepted; use 0 to accept everything since 1970-01-01T00:00:00Z"
        )
    if 0 < value < SECONDS_SUSPECT_BELOW_MS:
        raise ConfigError(
            f"{setting}={value} ({_iso(value)}) looks like epoch seconds: in milliseconds that is "
            f"{value * 1000} ({_iso(value * 1000)}); use 0 to accept everything since the Unix epoch"
        )
    if value >= LOWER_BOUND_CEILING_MS:
        raise ConfigError(
            f"{setting}={value} ({_iso(value)}) is 2100-01-01 or later: every event would be "
            f"dead-lettered (epoch microseconds? the setting is in milliseconds)"
        )


def check_time_bounds(
    min_valid_timestamp_ms: int,
    backfill_topic_pattern: str,
    backfill_min_valid_timestamp_ms: int | None,
    *,
    input_topic_pattern: str | None = None,
    output_topics: tuple[str, ...] = (),
) -> None:
    r"""Refuse time bounds of ingestion that are nonsense or would loosen live traffic.

    Parameters
    ----------
    min_valid_timestamp_ms : int
        Lower bound on live topics (``JOURNEY_MIN_VALID_TIMESTAMP_MS``).
    backfill_topic_pattern : str
        Regex over whole topic names (``JOURNEY_BACKFILL_TOPIC_PATTERN``); ``""`` for none.
    backfill_min_valid_timestamp_ms : int or None
        Lower bound on backfill topics (``JOURNEY_BACKFILL_MIN_VALID_TIMESTAMP_MS``).
    input_topic_pattern : str or None, keyword-only
        The job's subscription. A backfill pattern naming one topic must name one it reads.
    output_topics : tuple of str, keyword-only
        Topics the job writes; a backfill pattern must not match them.

    Raises
    ------
    ConfigError
        Naming the ``JOURNEY_*`` variable: a lower bound refused by :func:`check_lower_bound`;
        a pattern without a bound or a bound without a pattern; a pattern that is not a regex
        or matches a live ``journey.events.<channel>`` topic or an output topic; a single backfill
        topic the input pattern does not subscribe to. A backfill bound after the live one is
        fine: the earliest real date of a 2010 history is a tighter check than 2000-01-01.

    Examples
    --------
    >>> check_time_bounds(946_684_800_000, r"journey\.events\.backfill", 631_152_000_000,
    ...                   input_topic_pattern=r"journey\.events\..*")
    >>> check_time_bounds(946_684_800_000, r"journey\.events\..*", 0)
    Traceback (most recent call last):
    ...
    models.config.ConfigError: JOURNEY_BACKFILL_TOPIC_PATTERN='journey\\.events\\..*' matches the live
    topic journey.events.web: ...
    """
    check_lower_bound("JOURNEY_MIN_VALID_TIMESTAMP_MS", min_valid_timestamp_ms)
    pattern, bound = backfill_topic_pattern, backfill_min_valid_timestamp_ms
    if not pattern:
        if bound is not None:
            raise ConfigError(
                f"JOURNEY_BACKFILL_MIN_VALID_TIMESTAMP_MS={bound} is set but "
                f"JOURNEY_BACKFILL_TOPIC_PATTERN is not: the bound would apply to no topic; set the "
                f"pattern of the backfill topics (e.g. journey\\.events\\.backfill)"
            )
        return
    if bound is None:
        raise ConfigError(
            f"JOURNEY_BACKFILL_TOPIC_PATTERN={pattern!r} needs JOURNEY_BACKFILL_MIN_VALID_TIMESTAMP_MS: "
            f"the earliest real date of the history, in epoch ms (e.g. 631152000000 = 1990-01-01; "
            f"0 accepts anything since 1970, including zeroed dates)"
        )
    check_lower_bound("JOURNEY_BACKFILL_MIN_VALID_TIMESTAMP_MS", bound)
    try:
        regex = re.compile(pattern)
    except re.error as e:
        raise ConfigError(f"JOURNEY_BACKFILL_TOPIC_PATTERN={pattern!r} is not a regex: {e}") from None
    for topic in LIVE_INPUT_TOPICS:
        if regex.fullmatch(topic):
            raise ConfigError(
                f"JOURNEY_BACKFILL_TOPIC_PATTERN={pattern!r} matches the live topic {topic}: live "
                f"traffic would lose its lower bound; produce history to topics of its own (e.g. "
                f"journey.events.backfill), or lower JOURNEY_MIN_VALID_TIMESTAMP_MS for a whole job"
            )
    for topic in output_topics:
        if regex.fullmatch(topic):
            raise ConfigError(f"JOURNEY_BACKFILL_TOPIC_PATTERN={pattern!r} matches the output topic {topic}")
    single = pattern.replace("\\.", ".")
    if input_topic_pattern and _TOPIC.match(single) and regex.fullmatch(single):
        subscribed: object
        try:
            subscribed = re.fullmatch(input_topic_pattern, single)
        except re.error:
            subscribed = True  # reported by the input_topic_pattern check
        if not subscribed:
            raise ConfigError(
                f"JOURNEY_BACKFILL_TOPIC_PATTERN={pattern!r} names the topic {single}, which "
                f"JOURNEY_INPUT_TOPIC_PATTERN={input_topic_pattern!r} does not subscribe to: its records "
                f"would never be read; name it journey.events.<something> or widen the input pattern"
            )
