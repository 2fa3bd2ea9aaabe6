"""TLS of the clients (state/tls.py) and the local variant's certificates (local/tls.py): CA
files checked in one line, and the Cassandra driver's SSLContext verifying certificate and host
name, against a real TLS server on 127.0.0.1 (the ssl module, in a thread: no Cassandra)."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

from local import tls as local_tls
from models.config import CassandraAuth, ConfigError, KafkaAuth
from state.kafka_clients import kafka_client_config
from state.tls import cassandra_ssl_context, check_ca_file, client_ssl_context
import state.tls as tls_module


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> local_tls.TlsFiles:
    return local_tls.ensure(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory) -> local_tls.TlsFiles:
    """A second, unrelated CA: its certificate must not be trusted for the first's server."""
    return local_tls.ensure(tmp_path_factory.mktemp("other"))


def test_the_local_certificate_is_for_127_0_0_1_and_localhost_signed_by_the_local_ca(certs):
    text = subprocess.run(
        ["openssl", "x509", "-in", str(certs.cert), "-noout", "-ext", "subjectAltName"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "IP Address:127.0.0.1" in text and "DNS:localhost" in text
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(certs.ca), str(certs.cert)], capture_output=True, text=True
    )
    assert verify.returncode == 0, verify.stderr
    assert certs.keystore.stat().st_size > 0 and oct(certs.key.stat().st_mode & 0o777) == "0o600"
    again = local_tls.ensure(certs.ca.parent)  # made once: a second call keeps them
    assert again.ca.read_bytes() == certs.ca.read_bytes()


def _serve_once(certs: local_tls.TlsFiles) -> tuple[int, threading.Thread]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(certs.cert), str(certs.key))
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        with listener:
            listener.settimeout(10)
            conn, _ = listener.accept()
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls_conn:
                    tls_conn.sendall(b"ok")
            except (ssl.SSLError, OSError):
                pass  # the client refused the handshake

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return port, t


def _handshake(ctx: ssl.SSLContext, port: int, server_hostname: str = "127.0.0.1") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_hostname) as conn:
            return conn.recv(2)


def test_cassandra_context_verifies_certificate_and_host_name(certs, other_ca):
    ctx = cassandra_ssl_context(CassandraAuth(ssl_ca=str(certs.ca)))
    assert ctx is not None and ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    for name in ("127.0.0.1", "localhost"):  # the certificate's names
        port, t = _serve_once(certs)
        assert _handshake(ctx, port, name) == b"ok"
        t.join(5)
    port, t = _serve_once(certs)  # a name the certificate does not have
    with pytest.raises(ssl.SSLCertVerificationError, match="match|mismatch"):
        _handshake(ctx, port, "journey.example")
    t.join(5)
    port, t = _serve_once(certs)  # another CA
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        _handshake(client_ssl_context(str(other_ca.ca)), port)
    t.join(5)
    port, t = _serve_once(certs)  # no CA: the system's trust store, which does not know the local CA
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        _handshake(cassandra_ssl_context(CassandraAuth(ssl=True)), port)  # type: ignore[arg-type]
    t.join(5)


def test_no_tls_no_context():
    assert cassandra_ssl_context(CassandraAuth("u", "p")) is None


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing.pem", "no such file"),
        (lambda d: d, "is not a file"),
        (lambda d: _write(d / "empty.pem", ""), "holds no PEM certificate"),
        (lambda d: _write(d / "key.pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), "no PEM"),
        (
            lambda d: _write(d / "broken.pem", "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"),
            "is not a valid PEM certificate file",
        ),
    ],
)
def test_a_bad_ca_file_is_refused_in_one_line_naming_the_setting(tmp_path, make, message):
    path = str(make(tmp_path))
    for setting, build in (
        ("JOURNEY_CASSANDRA_SSL_CA", lambda: cassandra_ssl_context(CassandraAuth(ssl_ca=path))),
        (
            "JOURNEY_KAFKA_SSL_CA_LOCATION",
            lambda: kafka_client_config("h:9", auth=KafkaAuth("SSL", ssl_ca_location=path)),
        ),
    ):
        with pytest.raises(ConfigError) as e:
            build()
        assert str(e.value).startswith(f"{setting}={path}") and message in str(e.value), str(e.value)
        assert "\n" not in str(e.value)


def test_an_unreadable_ca_file_is_refused(tmp_path, certs, monkeypatch):
    path = tmp_path / "ca.pem"
    path.write_bytes(certs.ca.read_bytes())
    path.chmod(0)
    if os.geteuid() == 0:  # root reads every file: make the open fail as it would for a user

        def refuse(*args, **kwargs):
            raise PermissionError(13, "Permission denied", str(path))

        monkeypatch.setattr(tls_module, "open", refuse, raising=False)
    with pytest.raises(ConfigError, match="cannot be read"):
        check_ca_file("JOURNEY_KAFKA_SSL_CA_LOCATION", str(path))


def test_a_good_ca_file_passes_and_reaches_the_client_config(certs):
    check_ca_file("JOURNEY_KAFKA_SSL_CA_LOCATION", str(certs.ca))
    conf = kafka_client_config("h:9", auth=KafkaAuth("SSL", ssl_ca_location=str(certs.ca)))
    assert conf["ssl.ca.location"] == str(certs.ca) and conf["security.protocol"] == "SSL"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
