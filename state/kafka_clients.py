"""Kafka clients (confluent_kafka) of the project's commands: their settings with the
credentials of :class:`models.config.KafkaAuth`, and one line on why a client got nowhere
(docs/security.md). The Flink jobs' Java clients take :meth:`KafkaAuth.java_properties`
instead (flink_jobs/kafka_io.py)."""

from __future__ import annotations

from typing import Any, Mapping

from models.config import KafkaAuth
from state.tls import check_kafka_ca


class KafkaErrors:
    """``error_cb`` of a confluent_kafka client: keeps the errors librdkafka reports (an
    authentication failure shows only there: the call itself just times out)."""

    def __init__(self) -> None:
        self.errors: list = []

    def __call__(self, err: object) -> None:
        self.errors.append(err)

    def authentication(self) -> str | None:
        """The broker's message of the last authentication failure, if any."""
        for err in reversed(self.errors):
            if getattr(err, "code", lambda: None)() == -169:  # KafkaError._AUTHENTICATION
                return str(err.str())
        return None

    def tls(self) -> str | None:
        """librdkafka's message of the last failed TLS handshake (an untrusted certificate, a
        host name the certificate does not cover), if any."""
        for err in reversed(self.errors):
            text = str(getattr(err, "str", lambda: err)())
            if getattr(err, "code", lambda: None)() == -181 or "SSL handshake failed" in text:  # KafkaError._SSL
                return text
        return None


def kafka_client_config(
    bootstrap: str, settings: Mapping[str, Any] | None = None, auth: KafkaAuth | None = None
) -> dict[str, Any]:
    """The config of a confluent_kafka client: ``bootstrap.servers``, the credentials (``auth``,
    else ``JOURNEY_KAFKA_*`` of the environment), ``settings``, and a :class:`KafkaErrors`
    ``error_cb`` that :func:`kafka_failure` reads. A CA file (``JOURNEY_KAFKA_SSL_CA_LOCATION``)
    that is missing or no PEM certificate is a ``ConfigError`` here."""
    auth = KafkaAuth.from_env() if auth is None else auth
    check_kafka_ca(auth)
    return {"bootstrap.servers": bootstrap, **auth.librdkafka(), **(settings or {}), "error_cb": KafkaErrors()}


def _listening(bootstrap: str, timeout_s: float = 2.0) -> bool:
    """Whether the first bootstrap server accepts a TCP connection."""
    import socket

    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


def kafka_failure(conf: Mapping[str, object], exc: BaseException | None = None, client: Any = None) -> str:
    """One line on why a client of ``conf`` (from :func:`kafka_client_config`) got nowhere;
    ``client`` (the producer, consumer or admin client) is polled once so that the errors it
    has queued (an authentication failure) reach ``error_cb`` first."""
    if client is not None:
        try:
            client.poll(0)
        except Exception:  # noqa: BLE001 - only serving callbacks; the failure is reported below
            pass
    where = conf.get("bootstrap.servers")
    errors = conf.get("error_cb")
    refused = errors.authentication() if isinstance(errors, KafkaErrors) else None
    if refused is not None:
        return (
            f"Kafka at {where} refused the credentials of {conf.get('sasl.username')!r} "
            f"({conf.get('sasl.mechanism')}): {refused}"
        )
    handshake = errors.tls() if isinstance(errors, KafkaErrors) else None
    if handshake is not None:
        ca = conf.get("ssl.ca.location")
        trust = f"the CA file {ca}" if ca else "the system's trust store (JOURNEY_KAFKA_SSL_CA_LOCATION is not set)"
        return (
            f"Kafka at {where}: the TLS handshake failed, the broker's certificate was not accepted against "
            f"{trust}: {handshake.splitlines()[0]}: set JOURNEY_KAFKA_SSL_CA_LOCATION to the PEM file of the CA "
            f"that signed the brokers' certificates (whose names must cover {where})"
        )
    text = str(exc) if exc is not None else "no answer"
    protocol = str(conf.get("security.protocol", "PLAINTEXT"))
    if protocol in ("PLAINTEXT", "SASL_PLAINTEXT") and "_TRANSPORT" in text and _listening(str(where)):
        # something listens there but dropped us: a SASL listener drops a client that does not
        # authenticate, a TLS listener one that does not start TLS (a refused connection,
        # nothing listening, is the plain "cannot reach" below)
        if protocol == "PLAINTEXT":
            return (
                f"cannot reach Kafka at {where}: the broker closed the connection ({text}): if it requires "
                f"authentication, set JOURNEY_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT (SASL_SSL with TLS, and "
                f"JOURNEY_KAFKA_SSL_CA_LOCATION), JOURNEY_KAFKA_SASL_USERNAME and JOURNEY_KAFKA_SASL_PASSWORD"
            )
        return (
            f"cannot reach Kafka at {where}: the broker closed the connection ({text}): if its listener uses "
            f"TLS, set JOURNEY_KAFKA_SECURITY_PROTOCOL=SASL_SSL and JOURNEY_KAFKA_SSL_CA_LOCATION"
        )
    if protocol == "SSL" and "_TRANSPORT" in text and _listening(str(where)):
        return (
            f"cannot reach Kafka at {where}: the broker closed the connection ({text}): if it requires "
            f"authentication, set JOURNEY_KAFKA_SECURITY_PROTOCOL=SASL_SSL, JOURNEY_KAFKA_SASL_USERNAME and "
            f"JOURNEY_KAFKA_SASL_PASSWORD"
        )
    return f"cannot reach Kafka at {where}: {text}"
