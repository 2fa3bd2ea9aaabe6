"""Kafka clients (confluent_kafka) of the project's commands: their settings with the
credentials of :class:`models.config.KafkaAuth`, and one line on why a client got nowhere
(docs/security.md). The Flink jobs' Java clients take :meth:`KafkaAuth.java_properties`
instead (flink_jobs/kafka_io.py)."""

from __future__ import annotations

from typing import Any, Mapping

from models.config import KafkaAuth


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


def kafka_client_config(
    bootstrap: str, settings: Mapping[str, Any] | None = None, auth: KafkaAuth | None = None
) -> dict[str, Any]:
    """The config of a confluent_kafka client: ``bootstrap.servers``, the credentials (``auth``,
    else ``JOURNEY_KAFKA_*`` of the environment), ``settings``, and a :class:`KafkaErrors`
    ``error_cb`` that :func:`kafka_failure` reads."""
    auth = KafkaAuth.from_env() if auth is None else auth
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
    text = str(exc) if exc is not None else "no answer"
    if conf.get("security.protocol", "PLAINTEXT") == "PLAINTEXT" and "_TRANSPORT" in text and _listening(str(where)):
        # something listens there but dropped us: a SASL listener drops a client that does not
        # authenticate (a refused connection, nothing listening, is the plain "cannot reach" below)
        return (
            f"cannot reach Kafka at {where}: the broker closed the connection ({text}): if it requires "
            f"authentication, set JOURNEY_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT, JOURNEY_KAFKA_SASL_USERNAME "
            f"and JOURNEY_KAFKA_SASL_PASSWORD"
        )
    return f"cannot reach Kafka at {where}: {text}"
