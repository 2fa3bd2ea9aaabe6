"""TLS of the project's clients (docs/security.md): the CA files of ``JOURNEY_KAFKA_SSL_CA_LOCATION``
and ``JOURNEY_CASSANDRA_SSL_CA`` checked where they are used, and the ``ssl.SSLContext`` of the
Cassandra driver.

The context verifies the server's certificate (``CERT_REQUIRED``) and its host name
(``check_hostname``: the certificate's subject alternative names must cover the address the
client connects to, an IP address included), TLS 1.2 at least. It is built from the CA *path*
in the process that connects: an ``SSLContext`` cannot be pickled, so the factories the jobs
ship to the TaskManagers carry the path (:class:`models.config.CassandraAuth`) and each
TaskManager builds its own.
"""

from __future__ import annotations

import os
import ssl

from models.config import CassandraAuth, ConfigError, KafkaAuth

_PEM_CERTIFICATE = "-----BEGIN CERTIFICATE-----"


def check_ca_file(setting: str, path: str) -> None:
    """Refuse, in one line naming ``setting``, a CA file that is missing, unreadable or holds no
    PEM certificate that loads."""
    if not os.path.exists(path):
        raise ConfigError(f"{setting}={path}: no such file (the PEM file of the CA certificates)")
    if not os.path.isfile(path):
        raise ConfigError(f"{setting}={path} is not a file (the PEM file of the CA certificates)")
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            text = f.read(4_000_000)
    except OSError as e:
        raise ConfigError(f"{setting}={path} cannot be read: {e.strerror or e}") from None
    if _PEM_CERTIFICATE not in text:
        raise ConfigError(f"{setting}={path} holds no PEM certificate ({_PEM_CERTIFICATE} ...)")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
    except (ssl.SSLError, ValueError) as e:
        raise ConfigError(f"{setting}={path} is not a valid PEM certificate file: {e}") from None


def client_ssl_context(ca_file: str = "", setting: str = "CA file") -> ssl.SSLContext:
    """A client ``SSLContext`` that verifies the server's certificate and host name against
    ``ca_file`` (PEM), or the system's trust store when it is empty."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname on, CERT_REQUIRED
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file:
        check_ca_file(setting, ca_file)
        ctx.load_verify_locations(cafile=ca_file)
    else:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    return ctx


def cassandra_ssl_context(auth: CassandraAuth) -> ssl.SSLContext | None:
    """The Cassandra driver's ``ssl_context`` for ``auth`` (None: no TLS)."""
    if not auth.tls:
        return None
    return client_ssl_context(auth.ssl_ca, "JOURNEY_CASSANDRA_SSL_CA")


def check_kafka_ca(auth: KafkaAuth) -> None:
    """:func:`check_ca_file` of ``JOURNEY_KAFKA_SSL_CA_LOCATION``, if set."""
    if auth.ssl_ca_location:
        check_ca_file("JOURNEY_KAFKA_SSL_CA_LOCATION", auth.ssl_ca_location)


def check_cassandra_ca(auth: CassandraAuth) -> None:
    """:func:`check_ca_file` of ``JOURNEY_CASSANDRA_SSL_CA``, if set."""
    if auth.ssl_ca:
        check_ca_file("JOURNEY_CASSANDRA_SSL_CA", auth.ssl_ca)
