"""The local auth variant's TLS material (docs/security.md), made with ``openssl`` under the
stack directory (``<JOURNEY_STACK_DIR>/tls``, git-ignored), once per stack directory:

- ``ca.pem`` / ``ca.key``: a local CA (the file clients trust: ``JOURNEY_KAFKA_SSL_CA_LOCATION``,
  ``JOURNEY_CASSANDRA_SSL_CA``);
- ``server.pem`` / ``server.key``: the servers' certificate, signed by that CA, for
  ``IP:127.0.0.1`` and ``DNS:localhost`` (the clients verify the host name);
- ``server.p12``: the same key and certificate chain as a PKCS12 keystore (password
  :data:`KEYSTORE_PASSWORD`) for Kafka's and Cassandra's Java TLS.

For local development only: the CA key sits next to the certificates, unprotected.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

#: password of the PKCS12 keystore (a fixed local-development value, like the stack's credentials)
KEYSTORE_PASSWORD = "journey-local-dev"
#: what the server certificate covers: the servers listen on 127.0.0.1 only
SERVER_SAN = "IP:127.0.0.1,DNS:localhost"
CA_DAYS, SERVER_DAYS = 3650, 825


class TlsError(RuntimeError):
    """The certificates could not be made."""


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path
    keystore: Path
    keystore_password: str = KEYSTORE_PASSWORD


def files(directory: Path) -> TlsFiles:
    """Where the material of ``directory`` is (made or not)."""
    return TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key", directory / "server.p12")


def _openssl(*args: str, cwd: Path) -> None:
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise TlsError(f"openssl {args[0]} failed: {r.stderr.strip()[-2000:]}")


def ensure(directory: Path) -> TlsFiles:
    """Make the CA, the server certificate and the keystore in ``directory`` unless they are
    there; safe when two stack processes (Kafka's and Cassandra's start) call it at once."""
    if shutil.which("openssl") is None:
        raise TlsError("openssl not found on PATH: install it (apt-get install openssl)")
    directory.mkdir(parents=True, exist_ok=True)
    out = files(directory)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if all(p.exists() for p in (out.ca, out.cert, out.key, out.keystore)):
            return out
        tmp = directory / "tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(mode=0o700)
        (tmp / "ca.ext").write_text(
            "basicConstraints=critical,CA:TRUE,pathlen:0\n"
            "keyUsage=critical,keyCertSign,cRLSign\n"
            "subjectKeyIdentifier=hash\n"
        )
        (tmp / "server.ext").write_text(
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n"
            f"subjectAltName={SERVER_SAN}\n"
            "subjectKeyIdentifier=hash\n"
            "authorityKeyIdentifier=keyid,issuer\n"
        )
        _openssl("genrsa", "-out", "ca.key", "2048", cwd=tmp)
        _openssl(
            "req", "-new", "-key", "ca.key", "-subj", "/CN=journey local development CA", "-out", "ca.csr", cwd=tmp
        )
        _openssl(
            "x509", "-req", "-in", "ca.csr", "-signkey", "ca.key", "-days", str(CA_DAYS),
            "-extfile", "ca.ext", "-out", "ca.pem", cwd=tmp,
        )  # fmt: skip
        _openssl("genrsa", "-out", "server.key", "2048", cwd=tmp)
        _openssl("req", "-new", "-key", "server.key", "-subj", "/CN=localhost", "-out", "server.csr", cwd=tmp)
        _openssl(
            "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", "2",
            "-days", str(SERVER_DAYS), "-extfile", "server.ext", "-out", "server.pem", cwd=tmp,
        )  # fmt: skip
        _openssl(
            "pkcs12", "-export", "-in", "server.pem", "-inkey", "server.key", "-certfile", "ca.pem",
            "-name", "server", "-passout", f"pass:{KEYSTORE_PASSWORD}", "-out", "server.p12", cwd=tmp,
        )  # fmt: skip
        for name in ("ca.key", "server.key", "server.p12"):
            (tmp / name).chmod(0o600)
        for name in ("ca.key", "server.key", "server.pem", "server.p12", "ca.pem"):  # ca.pem last: "made"
            (tmp / name).replace(directory / name)
        shutil.rmtree(tmp, ignore_errors=True)
    return out
