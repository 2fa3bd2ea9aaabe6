"""Local stack: a single-node KRaft Kafka broker, a single-node Cassandra and a Flink
standalone cluster, all on 127.0.0.1, with data and logs under ``.stack/`` (git-ignored).

Usage::

    python local/stack.py up [kafka|cassandra|flink ...]     # idempotent; waits for health
    python local/stack.py down [component ...]
    python local/stack.py status
    python local/stack.py reset                               # down + delete data and logs
    python local/stack.py fetch                               # Maven jars into .stack/lib

Every component has a start, a health check with a time limit, and a stop. On failure the
tail of the component's log is printed and the exit code is non-zero.

Several stacks can run side by side: ``JOURNEY_STACK_DIR`` moves the data, logs and pid files
and ``JOURNEY_STACK_PORT_OFFSET`` shifts every port. The test suite runs its own stack this
way (``.stack/test``, ports + 10000: Kafka 19092, Cassandra 19042, Flink 18081), so ``make
test`` never touches what ``make demo`` built. Downloaded jars stay in ``.stack/lib``.

``JOURNEY_STACK_AUTH=1`` starts the auth variant (docs/security.md): Kafka's client listener
takes SASL_SSL (TLS) with SCRAM-SHA-512 only, Cassandra runs ``PasswordAuthenticator`` and
client encryption (TLS only); the certificates are made with openssl under ``<stack dir>/tls``
(local/tls.py: a local CA and a certificate for 127.0.0.1 and localhost); the credentials are
the fixed local-development values :data:`KAFKA_USER` / :data:`KAFKA_PASSWORD` and
:data:`CASSANDRA_USER` / :data:`CASSANDRA_PASSWORD`. :func:`auth_env` gives them and the CA as
``JOURNEY_*`` settings, ``python local/stack.py env`` prints them as ``export`` lines. A stack
directory is formatted with or without auth once: use a directory of its own for the variant.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import shlex
import signal
import socket
import subprocess
import tempfile
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
STACK = Path(os.environ.get("JOURNEY_STACK_DIR", ROOT / ".stack")).resolve()
LIB = ROOT / ".stack" / "lib"  # shared by every stack of the checkout
DATA = STACK / "data"
LOGS = STACK / "logs"
RUN = STACK / "run"
CONF = STACK / "conf"
MIN_FREE_DISK_BYTES = 2 * 1024**3


def _auth_on() -> bool:
    raw = os.environ.get("JOURNEY_STACK_AUTH", "0")
    if raw not in ("0", "1"):
        raise SystemExit(f"JOURNEY_STACK_AUTH={raw!r} must be 0 or 1")
    return raw == "1"


#: The auth variant (``JOURNEY_STACK_AUTH=1``): SASL/SCRAM Kafka, PasswordAuthenticator Cassandra.
AUTH = _auth_on()
# Fixed local-development credentials of the auth variant (never use them anywhere else).
KAFKA_SASL_MECHANISM = "SCRAM-SHA-512"
KAFKA_ADMIN_USER, KAFKA_ADMIN_PASSWORD = "admin", "admin-local-dev"  # the broker's own (inter-broker)
KAFKA_USER, KAFKA_PASSWORD = "journey", "journey-local-dev"  # the jobs, the generator, the CLI
CASSANDRA_SUPERUSER, CASSANDRA_SUPERUSER_PASSWORD = "cassandra", "cassandra"  # Cassandra's default
CASSANDRA_USER, CASSANDRA_PASSWORD = "journey", "journey-local-dev"
#: the auth variant's TLS material (local/tls.py): ca.pem is what clients trust
TLS_DIR = STACK / "tls"
TLS_CA = TLS_DIR / "ca.pem"
KAFKA_CLIENT_PROTOCOL = "SASL_SSL" if AUTH else "PLAINTEXT"


def auth_env() -> dict[str, str]:
    """The ``JOURNEY_*`` credential and TLS settings of this stack's clients (empty without auth)."""
    if not AUTH:
        return {}
    return {
        "JOURNEY_KAFKA_SECURITY_PROTOCOL": KAFKA_CLIENT_PROTOCOL,
        "JOURNEY_KAFKA_SASL_MECHANISM": KAFKA_SASL_MECHANISM,
        "JOURNEY_KAFKA_SASL_USERNAME": KAFKA_USER,
        "JOURNEY_KAFKA_SASL_PASSWORD": KAFKA_PASSWORD,
        "JOURNEY_KAFKA_SSL_CA_LOCATION": str(TLS_CA),
        "JOURNEY_CASSANDRA_USERNAME": CASSANDRA_USER,
        "JOURNEY_CASSANDRA_PASSWORD": CASSANDRA_PASSWORD,
        "JOURNEY_CASSANDRA_SSL_CA": str(TLS_CA),
    }


def _tls_files():
    """The auth variant's CA, server certificate and keystore, made on first use (local/tls.py)."""
    if str(ROOT) not in sys.path:  # run as `python local/stack.py`
        sys.path.insert(0, str(ROOT))
    from local import tls

    try:
        return tls.ensure(TLS_DIR)
    except tls.TlsError as e:
        raise StackError(str(e)) from None


def _cassandra_ssl_kwargs() -> dict:
    """The auth variant's driver TLS: the local CA, host name checked (as the project's clients)."""
    if not AUTH:
        return {}
    import ssl

    return {"ssl_context": ssl.create_default_context(cafile=str(TLS_CA))}


def _port_offset() -> int:
    raw = os.environ.get("JOURNEY_STACK_PORT_OFFSET", "0")
    try:
        offset = int(raw)
    except ValueError:
        raise SystemExit(f"JOURNEY_STACK_PORT_OFFSET={raw!r} is not an integer") from None
    if not 0 <= offset <= 50000:
        raise SystemExit(f"JOURNEY_STACK_PORT_OFFSET={offset} must be within 0..50000")
    return offset


PORT_OFFSET = _port_offset()
KAFKA_PORT, KAFKA_CONTROLLER_PORT = 9092 + PORT_OFFSET, 9093 + PORT_OFFSET
CASSANDRA_PORT, CASSANDRA_STORAGE_PORT = 9042 + PORT_OFFSET, 7000 + PORT_OFFSET
CASSANDRA_JMX_PORT = 7199 + PORT_OFFSET
FLINK_REST_PORT, FLINK_RPC_PORT = 8081 + PORT_OFFSET, 6123 + PORT_OFFSET
# Flink's Prometheus endpoints: the JobManager and each TaskManager take the first free port
# (also the extra TaskManagers the chaos suite starts)
PROMETHEUS_PORTS = range(9249 + PORT_OFFSET, 9257 + PORT_OFFSET)
# Thread mode embeds one CPython per TaskManager process: one TaskManager per core uses the
# machine (two GILs on two cores), and every job the project runs at once gets a slot in each
# (ingestion and profiles today; sessions/carts and segments/scores next): see _flink_config_yaml.
FLINK_TASK_MANAGERS = 2
FLINK_SLOTS_PER_TASK_MANAGER = 4

CASSANDRA_JVM_OPTS = [
    "-Xms1G",
    "-Xmx1G",
    "-XX:+UseG1GC",
    "-XX:+ParallelRefProcEnabled",
    "-Djdk.attach.allowAttachSelf=true",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dcassandra-foreground=yes",
    f"-Dcassandra.jmx.local.port={CASSANDRA_JMX_PORT}",
    "-Dcassandra.skip_wait_for_gossip_to_settle=0",
    "-Dcassandra.initial_token=0",
    "--add-exports",
    "java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-exports",
    "java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED",
    "--add-exports",
    "java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-exports",
    "java.rmi/sun.rmi.server=ALL-UNNAMED",
    "--add-exports",
    "java.sql/java.sql=ALL-UNNAMED",
    "--add-exports",
    "java.base/java.lang.ref=ALL-UNNAMED",
    "--add-exports",
    "jdk.unsupported/sun.misc=ALL-UNNAMED",
    "--add-exports",
    "jdk.attach/sun.tools.attach=ALL-UNNAMED",
    "--add-opens",
    "java.base/java.lang.module=ALL-UNNAMED",
    "--add-opens",
    "java.base/jdk.internal.loader=ALL-UNNAMED",
    "--add-opens",
    "java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-opens",
    "java.base/jdk.internal.reflect=ALL-UNNAMED",
    "--add-opens",
    "java.base/jdk.internal.math=ALL-UNNAMED",
    "--add-opens",
    "java.base/jdk.internal.module=ALL-UNNAMED",
    "--add-opens",
    "java.base/jdk.internal.util.jar=ALL-UNNAMED",
    "--add-opens",
    "jdk.management/com.sun.management.internal=ALL-UNNAMED",
    "--add-opens",
    "java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens",
    "java.base/java.io=ALL-UNNAMED",
    "--add-opens",
    "java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens",
    "java.base/java.lang=ALL-UNNAMED",
    "--add-opens",
    "java.base/java.util=ALL-UNNAMED",
    "--add-opens",
    "java.base/java.nio=ALL-UNNAMED",
]


class StackError(RuntimeError):
    """A component failed to start, stop or pass its health check."""


# ---------------------------------------------------------------- helpers


def _say(msg: str) -> None:
    print(f"[stack] {msg}", flush=True)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _read_pid(name: str) -> int | None:
    pid_file = RUN / f"{name}.pid"
    if not pid_file.exists():
        return None
    try:
        pid = int(pid_file.read_text().strip())
    except ValueError:
        return None
    return pid if _pid_alive(pid) else None


def server_pid(name: str) -> int:
    """The process id of this stack's ``kafka`` or ``cassandra`` server (the chaos suite pauses it)."""
    pid = _read_pid(name)
    if pid is None:
        raise StackError(f"{name} is not running in {STACK}")
    return pid


def log_tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return f"(no log at {path})"
    with open(path, "rb") as f:
        data = f.read()[-20000:].decode("utf-8", "replace").splitlines()
    return "\n".join(data[-lines:])


def check_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise StackError("java not found on PATH: install a Java 17 JDK (apt-get install openjdk-17-jdk-headless)")
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    try:
        major = int(out.split('"')[1].split(".")[0])
    except (IndexError, ValueError):
        raise StackError(f"cannot parse `java -version` output: {out!r}") from None
    if major < 17:
        raise StackError(f"Java 17 or newer is required, found {major}: {out.splitlines()[0]}")
    return java


def check_disk() -> None:
    STACK.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(STACK).free
    if free < MIN_FREE_DISK_BYTES:
        raise StackError(f"only {free / 1024**3:.1f} GiB free under {STACK}; need at least 2 GiB")


def _require_lib(name: str) -> Path:
    lib = LIB / name
    if not lib.is_dir() or not any(lib.glob("*.jar")):
        raise StackError(f"{lib} has no jars: run `make setup` (or `python local/stack.py fetch`) first")
    return lib


def _wait(what: str, check: Callable[[], bool], timeout: float, pid: int | None, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if pid is not None and not _pid_alive(pid):
            raise StackError(f"{what} exited during start-up. Tail of {log}:\n{log_tail(log)}")
        time.sleep(1.0)
    raise StackError(f"{what} not healthy after {timeout:.0f}s. Tail of {log}:\n{log_tail(log)}")


def _spawn(name: str, cmd: list[str], env: dict[str, str] | None = None) -> int:
    LOGS.mkdir(parents=True, exist_ok=True)
    RUN.mkdir(parents=True, exist_ok=True)
    log = open(LOGS / f"{name}.out", "ab")
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT, env=env, start_new_session=True
    )
    (RUN / f"{name}.pid").write_text(str(proc.pid))
    return proc.pid


def _kill(name: str, timeout: float = 30.0) -> None:
    pid = _read_pid(name)
    if pid is None:
        (RUN / f"{name}.pid").unlink(missing_ok=True)
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    if _pid_alive(pid):
        _say(f"{name} did not stop after {timeout:.0f}s: SIGKILL")
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    (RUN / f"{name}.pid").unlink(missing_ok=True)


def _ensure_port_free(name: str, port: int) -> None:
    if port_open(port):
        raise StackError(
            f"port {port} needed by {name} is in use by another process "
            f"(not started by this stack): stop it or free the port"
        )


# ---------------------------------------------------------------- components


@dataclass(frozen=True)
class Component:
    name: str
    start: Callable[[], None]
    stop: Callable[[], None]
    healthy: Callable[[], bool]
    address: str


def _kafka_healthy() -> bool:
    if not port_open(KAFKA_PORT):
        return False
    try:
        from confluent_kafka.admin import AdminClient
    except ImportError:  # stack used outside the venv: a port check is all we can do
        return True
    try:
        conf = {"bootstrap.servers": f"127.0.0.1:{KAFKA_PORT}"}
        if AUTH:
            conf.update(
                {
                    "security.protocol": KAFKA_CLIENT_PROTOCOL,
                    "sasl.mechanism": KAFKA_SASL_MECHANISM,
                    "sasl.username": KAFKA_USER,
                    "sasl.password": KAFKA_PASSWORD,
                    "ssl.ca.location": str(TLS_CA),
                    "ssl.endpoint.identification.algorithm": "https",
                }
            )
        md = AdminClient(conf).list_topics(timeout=3)
        return len(md.brokers) > 0
    except Exception:
        return False


@dataclass(frozen=True)
class _JvmServer:
    java: str
    lib: Path
    data: Path
    conf: Path


def _prepare_jvm_server(name: str, ports: dict[str, int]) -> _JvmServer | None:
    """Checks before starting a JVM server; ``None`` if ours is already running."""
    if _read_pid(name) is not None:
        _say(f"{name} already running")
        return None
    for what, port in ports.items():
        _ensure_port_free(what, port)
    srv = _JvmServer(check_java(), _require_lib(name), DATA / name, CONF / name)
    srv.conf.mkdir(parents=True, exist_ok=True)
    return srv


def kafka_cluster_id() -> str:
    """A random KRaft cluster id (22 characters of URL-safe base64, as Kafka's own
    ``random-uuid``), never starting with ``-``: the storage tool would read such an id as an
    option and fail the format (one start in 64 did).

    >>> all(not kafka_cluster_id().startswith("-") and len(kafka_cluster_id()) == 22 for _ in range(500))
    True
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _kafka_start() -> None:
    srv = _prepare_jvm_server("kafka", {"kafka": KAFKA_PORT, "kafka controller": KAFKA_CONTROLLER_PORT})
    if srv is None:
        return
    java, lib, data, conf = srv.java, srv.lib, srv.data, srv.conf
    props = conf / "server.properties"
    # the auth variant: clients and the broker itself (transaction markers go over the
    # inter-broker listener, which is the client listener, as without auth) authenticate with
    # SCRAM over TLS; the broker's certificate and key are a PKCS12 keystore, and as a client of
    # itself it trusts the local CA (PEM) and checks the host name; the controller listener
    # stays PLAINTEXT on 127.0.0.1 (only this process talks to it)
    client = KAFKA_CLIENT_PROTOCOL
    scram_module = "org.apache.kafka.common.security.scram.ScramLoginModule"
    auth_lines = []
    if AUTH:
        tls = _tls_files()
        auth_lines = [
            f"sasl.enabled.mechanisms={KAFKA_SASL_MECHANISM}",
            f"sasl.mechanism.inter.broker.protocol={KAFKA_SASL_MECHANISM}",
            f"listener.name.{client.lower()}.{KAFKA_SASL_MECHANISM.lower()}.sasl.jaas.config={scram_module} required "
            f'username="{KAFKA_ADMIN_USER}" password="{KAFKA_ADMIN_PASSWORD}";',
            "ssl.keystore.type=PKCS12",
            f"ssl.keystore.location={tls.keystore}",
            f"ssl.keystore.password={tls.keystore_password}",
            f"ssl.key.password={tls.keystore_password}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={tls.ca}",
            "ssl.endpoint.identification.algorithm=https",
            "ssl.client.auth=none",
        ]
    props.write_text(
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{KAFKA_CONTROLLER_PORT}",
                f"listeners={client}://127.0.0.1:{KAFKA_PORT},CONTROLLER://127.0.0.1:{KAFKA_CONTROLLER_PORT}",
                f"advertised.listeners={client}://127.0.0.1:{KAFKA_PORT}",
                "controller.listener.names=CONTROLLER",
                f"inter.broker.listener.name={client}",
                f"listener.security.protocol.map=CONTROLLER:PLAINTEXT,{client}:{client}",
                *auth_lines,
                f"log.dirs={data}",
                "num.partitions=2",
                "auto.create.topics.enable=false",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=4",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "transaction.state.log.num.partitions=4",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                # the Flink sink's transaction.timeout.ms must stay below this (guarded in code)
                "transaction.max.timeout.ms=900000",
                "log.retention.hours=168",
                # retention counts from when a record was written, not from the timestamp its
                # producer gave it: the jobs' sinks stamp records with their event time, and a
                # demo's or a backfill's event times are weeks to years old, so with CreateTime
                # the retention check deleted committed outputs minutes after they were written
                # (a demo once read 1,332 of 3,316 scores; k8s/topics.py sets it per topic)
                "log.message.timestamp.type=LogAppendTime",
                "",
            ]
        )
    )
    (conf / "log4j2.properties").write_text(
        "\n".join(
            [
                "rootLogger.level=INFO",
                "rootLogger.appenderRef.file.ref=file",
                "appender.file.type=File",
                "appender.file.name=file",
                f"appender.file.fileName={LOGS / 'kafka.log'}",
                "appender.file.layout.type=PatternLayout",
                "appender.file.layout.pattern=[%d] %p %m (%c)%n",
                "logger.kafka.name=kafka",
                "logger.kafka.level=WARN",
                "logger.org.name=org.apache.kafka",
                "logger.org.level=WARN",
                "",
            ]
        )
    )
    cp = f"{lib}/*"
    jvm = [
        java,
        "-Xms512m",
        "-Xmx1G",
        f"-Dlog4j2.configurationFile={conf / 'log4j2.properties'}",
        "-Dkafka.logs.dir=" + str(LOGS),
        "-cp",
        cp,
    ]
    marker = data / "journey-auth"  # how the storage was formatted: with SCRAM users or without
    if not (data / "meta.properties").exists():
        data.mkdir(parents=True, exist_ok=True)
        cluster_id = kafka_cluster_id()
        scram = [
            arg
            for user, password in ((KAFKA_ADMIN_USER, KAFKA_ADMIN_PASSWORD), (KAFKA_USER, KAFKA_PASSWORD))
            for arg in ("--add-scram", f"{KAFKA_SASL_MECHANISM}=[name={user},password={password}]")
        ]
        fmt = subprocess.run(
            jvm + ["kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props), *(scram if AUTH else [])],
            capture_output=True,
            text=True,
        )
        if fmt.returncode != 0:
            raise StackError(f"kafka storage format failed:\n{fmt.stdout}\n{fmt.stderr}")
        marker.write_text("1" if AUTH else "0")
    formatted_auth = marker.read_text().strip() == "1" if marker.exists() else False
    if formatted_auth != AUTH:
        raise StackError(
            f"the Kafka storage in {data} was formatted {'with' if formatted_auth else 'without'} SCRAM users "
            f"but JOURNEY_STACK_AUTH={int(AUTH)}: use a JOURNEY_STACK_DIR of its own for the auth variant "
            f"(or `reset` this one)"
        )
    _say(f"starting kafka (KRaft) on 127.0.0.1:{KAFKA_PORT}")
    pid = _spawn("kafka", jvm + ["kafka.Kafka", str(props)])
    _wait("kafka", _kafka_healthy, 90, pid, LOGS / "kafka.out")


def _kafka_stop() -> None:
    _kill("kafka", timeout=60)


def _cassandra_healthy() -> bool:
    if not port_open(CASSANDRA_PORT):
        return False
    try:
        from cassandra.cluster import Cluster
    except ImportError:
        return True
    try:
        cluster = Cluster(
            ["127.0.0.1"], port=CASSANDRA_PORT, connect_timeout=3, **_cassandra_auth_kwargs(), **_cassandra_ssl_kwargs()
        )
        try:
            cluster.connect().execute("SELECT release_version FROM system.local", timeout=5)
        finally:
            cluster.shutdown()
        return True
    except Exception:
        return False


def _cassandra_auth_kwargs(user: str = CASSANDRA_USER, password: str = CASSANDRA_PASSWORD) -> dict:
    if not AUTH:
        return {}
    from cassandra.auth import PlainTextAuthProvider

    return {"auth_provider": PlainTextAuthProvider(username=user, password=password)}


def _cassandra_create_role() -> bool:
    """The auth variant: as the default superuser, create the ``journey`` login role with every
    permission on every keyspace (it creates the schema); True once it exists."""
    from cassandra.cluster import Cluster

    try:
        cluster = Cluster(
            ["127.0.0.1"],
            port=CASSANDRA_PORT,
            connect_timeout=3,
            **_cassandra_auth_kwargs(CASSANDRA_SUPERUSER, CASSANDRA_SUPERUSER_PASSWORD),
            **_cassandra_ssl_kwargs(),
        )
        try:
            session = cluster.connect()
            session.execute(
                f"CREATE ROLE IF NOT EXISTS {CASSANDRA_USER} WITH PASSWORD = '{CASSANDRA_PASSWORD}' AND LOGIN = true",
                timeout=10,
            )
            session.execute(f"GRANT ALL PERMISSIONS ON ALL KEYSPACES TO {CASSANDRA_USER}", timeout=10)
        finally:
            cluster.shutdown()
        return True
    except Exception:
        return False


def _cassandra_start() -> None:
    srv = _prepare_jvm_server("cassandra", {"cassandra": CASSANDRA_PORT, "cassandra storage": CASSANDRA_STORAGE_PORT})
    if srv is None:
        return
    java, lib, data, conf = srv.java, srv.lib, srv.data, srv.conf
    for sub in ("data", "commitlog", "saved_caches", "hints", "cdc_raw"):
        (data / sub).mkdir(parents=True, exist_ok=True)
    # the auth variant: the native transport takes TLS only (no client certificates), with the
    # local CA's server certificate as a PKCS12 keystore
    encryption = ""
    if AUTH:
        tls = _tls_files()
        encryption = f"""\
client_encryption_options:
  enabled: true
  optional: false
  keystore: {tls.keystore}
  keystore_password: {tls.keystore_password}
  store_type: PKCS12
"""
    (conf / "cassandra.yaml").write_text(f"""\
cluster_name: journey-local
num_tokens: 1
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
data_file_directories: [{data / "data"}]
commitlog_directory: {data / "commitlog"}
saved_caches_directory: {data / "saved_caches"}
hints_directory: {data / "hints"}
cdc_raw_directory: {data / "cdc_raw"}
commitlog_sync: periodic
commitlog_sync_period: 10000ms
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "127.0.0.1:{CASSANDRA_STORAGE_PORT}"
listen_address: 127.0.0.1
rpc_address: 127.0.0.1
storage_port: {CASSANDRA_STORAGE_PORT}
native_transport_port: {CASSANDRA_PORT}
start_native_transport: true
endpoint_snitch: SimpleSnitch
authenticator: {"PasswordAuthenticator" if AUTH else "AllowAllAuthenticator"}
authorizer: {"CassandraAuthorizer" if AUTH else "AllowAllAuthorizer"}
role_manager: CassandraRoleManager
disk_failure_policy: stop
commit_failure_policy: stop
concurrent_reads: 8
concurrent_writes: 8
memtable_allocation_type: heap_buffers
{encryption}""")
    (conf / "logback.xml").write_text(f"""\
<configuration>
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>{LOGS / "cassandra.log"}</file>
    <encoder><pattern>%-5level [%thread] %date{{ISO8601}} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="FILE"/></root>
</configuration>
""")
    jamm = next(lib.glob("jamm-*.jar"))
    cmd = [
        java,
        *CASSANDRA_JVM_OPTS,
        f"-javaagent:{jamm}",
        f"-Dcassandra.config=file://{conf / 'cassandra.yaml'}",
        f"-Dcassandra.storagedir={data}",
        f"-Dcassandra.logdir={LOGS}",
        f"-Dlogback.configurationFile={conf / 'logback.xml'}",
        "-cp",
        f"{lib}/*",
        "org.apache.cassandra.service.CassandraDaemon",
    ]
    _say(f"starting cassandra on 127.0.0.1:{CASSANDRA_PORT} (takes ~30-60 s)")
    if AUTH:  # the default superuser now, not 10 s after start-up
        cmd.insert(1, "-Dcassandra.superuser_setup_delay_ms=0")
    pid = _spawn("cassandra", cmd)
    if AUTH:
        _wait("cassandra (journey role)", _cassandra_create_role, 180, pid, LOGS / "cassandra.log")
    _wait("cassandra", _cassandra_healthy, 180, pid, LOGS / "cassandra.log")


def _cassandra_stop() -> None:
    _kill("cassandra", timeout=60)


def _flink_home() -> Path:
    try:
        import pyflink
    except ImportError:
        raise StackError("pyflink not importable: run `make setup` and use .venv/bin/python") from None
    return Path(pyflink.__file__).parent


def _deep_merge(base: dict, over: dict) -> dict:
    for k, v in over.items():
        base[k] = _deep_merge(base.get(k) or {}, v) if isinstance(v, dict) else v
    return base


def _flink_config_yaml(python: str) -> str:
    """pyflink's default config.yaml (it carries the JVM --add-opens Java 17 needs) + ours."""
    import yaml

    default = _flink_home() / "conf" / "config.yaml"
    base = yaml.safe_load(default.read_text()) if default.exists() else {}
    ours = {
        "jobmanager": {
            "bind-host": "127.0.0.1",
            "rpc": {"address": "localhost", "port": FLINK_RPC_PORT},
            "memory": {"process": {"size": "1024m"}},
        },
        # one slot per job and TaskManager: every job at parallelism 2 gets a subtask in each
        # TaskManager (= each core); Python work of all jobs on a TaskManager shares its GIL
        "taskmanager": {
            "bind-host": "127.0.0.1",
            "host": "localhost",
            "numberOfTaskSlots": FLINK_SLOTS_PER_TASK_MANAGER,
            "memory": {"process": {"size": "3072m"}, "managed": {"fraction": 0.25}},
            # spread a job's subtasks over both TaskManagers instead of filling one first
            "load-balance": {"mode": "SLOTS"},
        },
        "parallelism": {"default": 2},
        # notice a killed TaskManager within seconds (defaults: 10 s interval, 50 s timeout)
        "heartbeat": {"interval": 2000, "timeout": 10000},
        "rest": {"address": "127.0.0.1", "bind-address": "127.0.0.1", "port": FLINK_REST_PORT},
        "python": {"executable": python, "client": {"executable": python}},
        "execution": {
            "checkpointing": {
                "dir": f"file://{DATA / 'flink' / 'checkpoints'}",
                "savepoint-dir": f"file://{DATA / 'flink' / 'savepoints'}",
            }
        },
        "state": {"backend": {"type": "rocksdb"}},
        # Flink's Prometheus reporter on 127.0.0.1 (local/prometheus_reporter/); k8s/ uses the
        # stock factory, which binds every interface of the pod
        "metrics": {
            # the REST API's and web UI's metric values are at most 1 s old (default 10 s, long
            # enough for two polls of a counter to see one stale value and call it steady)
            "fetcher": {"update-interval": 1000},
            "reporter": {
                "prom": {
                    "factory": {"class": "journey.metrics.LoopbackPrometheusReporterFactory"},
                    "host": "127.0.0.1",
                    "port": f"{PROMETHEUS_PORTS.start}-{PROMETHEUS_PORTS.stop - 1}",
                }
            },
        },
    }
    return yaml.safe_dump(_deep_merge(base, ours), sort_keys=False)


def _write_atomically(path: Path, text: str) -> None:
    """Write ``path`` through a file of this process's own renamed over it: a command started
    at the same time (``make ingest`` and ``make profiles`` in two terminals) reads the old
    file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _linked_dir(path: Path, links: dict[str, Path]) -> Path:
    """A folder of symlinks (``links``: relative path -> target), left as it is when it holds
    exactly those, else built beside it and renamed into place, so a command running at the
    same time never sees it empty or half made (two submissions at once used to remove it
    under each other: ``FileExistsError``)."""

    def current() -> dict[str, Path] | None:
        try:
            return {str(f.relative_to(path)): Path(os.readlink(f)) for f in path.rglob("*") if f.is_symlink()}
        except FileNotFoundError:  # being replaced by another command right now
            return None

    if current() == links:
        return path
    tag = f"{os.getpid()}.{uuid.uuid4().hex[:8]}"
    tmp, old = path.with_name(f".{path.name}.new.{tag}"), path.with_name(f".{path.name}.old.{tag}")
    for name, target in links.items():
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).symlink_to(target)
    if current() == links:  # another command made it meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
        return path
    try:
        path.rename(old)
    except FileNotFoundError:
        pass
    try:
        tmp.rename(path)
    except OSError:  # another command put one in place meanwhile: the same links
        shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    return path


def _flink_lib_dir() -> Path:
    """pyflink's lib/ plus opt/flink-python (a cluster running Python jobs needs it in lib/).

    Links in .stack/flink-lib, so the installed package is left untouched.
    """
    home = _flink_home()
    jars = [*(home / "lib").glob("*.jar"), *(home / "opt").glob("flink-python*.jar")]
    return _linked_dir(STACK / "flink-lib", {jar.name: jar for jar in jars})


def _flink_plugins_dir() -> Path:
    """Flink's plugin folder for this stack: the Prometheus reporter jar from Maven Central and
    the loopback factory built by :func:`fetch`, linked in .stack/flink-plugins."""
    jars = (LIB / "prometheus").glob("*.jar")
    return _linked_dir(STACK / "flink-plugins", {f"metrics-prometheus/{jar.name}": jar for jar in jars})


def flink_env() -> dict[str, str]:
    """Environment for pyflink's bin/ scripts: our config, log and pid folders."""
    conf = CONF / "flink"
    conf.mkdir(parents=True, exist_ok=True)
    (LOGS / "flink").mkdir(parents=True, exist_ok=True)
    RUN.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    _write_atomically(conf / "config.yaml", _flink_config_yaml(py))

    for name in ("log4j.properties", "log4j-console.properties", "log4j-cli.properties"):
        _write_atomically(
            conf / name,
            "\n".join(
                [
                    "rootLogger.level=INFO",
                    "rootLogger.appenderRef.file.ref=MainAppender",
                    "appender.main.name=MainAppender",
                    "appender.main.type=File",
                    "appender.main.append=true",
                    "appender.main.fileName=${sys:log.file}",
                    "appender.main.layout.type=PatternLayout",
                    "appender.main.layout.pattern=%d{yyyy-MM-dd HH:mm:ss,SSS} %-5p %-60c %x - %m%n",
                    "logger.kafka.name=org.apache.kafka",
                    "logger.kafka.level=WARN",
                    "logger.kafkashaded.name=org.apache.flink.kafka.shaded.org.apache.kafka",
                    "logger.kafkashaded.level=WARN",
                    "",
                ]
            ),
        )
    env = dict(os.environ)
    # Python workers (thread mode embeds CPython in the TaskManager) import the project and
    # the venv's packages from here
    site = [p for p in sys.path if p.startswith(sys.prefix) and p.endswith("site-packages")]
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *site])
    env.update(
        {
            "FLINK_CONF_DIR": str(conf),
            "FLINK_LOG_DIR": str(LOGS / "flink"),
            "FLINK_LIB_DIR": str(_flink_lib_dir()),
            "FLINK_PLUGINS_DIR": str(_flink_plugins_dir()),
            "FLINK_PID_DIR": str(RUN),
            "FLINK_HOME": str(_flink_home()),
        }
    )
    return env


def _flink_overview() -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{FLINK_REST_PORT}/overview", timeout=2) as r:
            return json.loads(r.read())
    except Exception:
        return None


def _flink_healthy() -> bool:
    ov = _flink_overview()
    return ov is not None and ov.get("taskmanagers", 0) >= FLINK_TASK_MANAGERS


def _flink_running() -> bool:
    return any(RUN.glob("flink-*standalonesession*.pid")) and _flink_overview() is not None


def flink_daemon(script: str, action: str, env: dict[str, str] | None = None, check: bool = True) -> None:
    """Run pyflink's ``bin/<script> <action>`` (jobmanager.sh / taskmanager.sh, start / stop)."""
    env = env or flink_env()
    r = subprocess.run(
        ["bash", str(Path(env["FLINK_HOME"]) / "bin" / script), action],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if check and r.returncode != 0:
        raise StackError(f"{script} {action} failed:\n{r.stdout}\n{r.stderr}")


def flink_pids(role: str) -> list[int]:
    """Live pids of ``taskexecutor`` or ``standalonesession`` processes started by the stack."""
    pids = []
    for f in RUN.glob(f"flink-*{role}*.pid"):
        for line in f.read_text().split():
            if line.isdigit() and _pid_alive(int(line)):
                pids.append(int(line))
    return pids


def _registered_taskmanagers() -> int:
    ov = _flink_overview()
    return 0 if ov is None else int(ov.get("taskmanagers", 0))


def ensure_taskmanagers(timeout_s: float = 90) -> int:
    """Start TaskManagers until ``FLINK_TASK_MANAGERS`` of them run and are registered with the
    JobManager; returns how many were started.

    A TaskManager lost since the cluster started (a fault test's kill, a crash) is replaced, and
    the tail of the TaskManager logs is printed, so that a job never quietly runs on half the
    cluster.
    """
    missing = FLINK_TASK_MANAGERS - len(flink_pids("taskexecutor"))
    if missing > 0:
        outs = sorted((LOGS / "flink").glob("*taskexecutor*.out"), key=lambda f: f.stat().st_mtime)
        _say(f"{missing} of {FLINK_TASK_MANAGERS} TaskManagers not running: starting them")
        for out in (f for f in outs[-2:] if f.stat().st_size):
            _say(f"tail of {out}:\n{log_tail(out, 10)}")
        env = flink_env()
        for _ in range(missing):
            flink_daemon("taskmanager.sh", "start", env)
    logs = sorted((LOGS / "flink").glob("*standalonesession*.log"))
    _wait(
        f"{FLINK_TASK_MANAGERS} TaskManagers registered",
        lambda: _registered_taskmanagers() >= FLINK_TASK_MANAGERS,
        timeout_s,
        None,
        logs[-1] if logs else LOGS / "flink",
    )
    return max(missing, 0)


def _flink_start() -> None:
    if _flink_running():
        _say("flink already running")
        ensure_taskmanagers()
        return
    _ensure_port_free("flink rest", FLINK_REST_PORT)
    check_java()
    env = flink_env()
    home = Path(env["FLINK_HOME"])
    for script in ("jobmanager.sh", "taskmanager.sh", "flink-daemon.sh", "config.sh", "flink"):
        p = home / "bin" / script
        if p.exists():
            p.chmod(p.stat().st_mode | 0o111)
    _say(f"starting flink standalone cluster, web UI http://127.0.0.1:{FLINK_REST_PORT}")
    # Two TaskManagers rather than one with all slots: thread mode embeds one CPython per
    # TaskManager process, so two processes are two GILs and use both cores.
    for script in ("jobmanager.sh", *["taskmanager.sh"] * FLINK_TASK_MANAGERS):
        flink_daemon(script, "start", env)
    logs = sorted((LOGS / "flink").glob("*standalonesession*.log"))
    _wait("flink", _flink_healthy, 90, None, logs[-1] if logs else LOGS / "flink")


def _flink_stop() -> None:
    if not any(RUN.glob("flink-*.pid")):
        return
    env = flink_env()
    flink_daemon("taskmanager.sh", "stop-all", env, check=False)  # best effort: pids are cleaned below
    flink_daemon("jobmanager.sh", "stop", env, check=False)
    for pid_file in RUN.glob("flink-*.pid"):
        pid_file.unlink(missing_ok=True)


COMPONENTS: dict[str, Component] = {
    "kafka": Component("kafka", _kafka_start, _kafka_stop, _kafka_healthy, f"127.0.0.1:{KAFKA_PORT}"),
    "cassandra": Component(
        "cassandra", _cassandra_start, _cassandra_stop, _cassandra_healthy, f"127.0.0.1:{CASSANDRA_PORT}"
    ),
    "flink": Component("flink", _flink_start, _flink_stop, _flink_healthy, f"http://127.0.0.1:{FLINK_REST_PORT}"),
}


def fetch() -> None:
    """Copy the Maven artifacts described in local/maven/*/pom.xml into .stack/lib/."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("mvn not found: install Maven (apt-get install maven)")
    for pom in sorted((ROOT / "local" / "maven").glob("*/pom.xml")):
        name = pom.parent.name
        out = LIB / name
        if out.is_dir() and any(out.glob("*.jar")):
            _say(f"jars for {name} present in {out}")
            continue
        _say(f"fetching {name} jars from Maven Central")
        tmp = LIB / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        r = subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={tmp}",
                "-DincludeScope=runtime",
            ],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            raise StackError(f"maven fetch of {name} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        tmp.rename(out)
    _build_prometheus_reporter()


REPORTER_SOURCES = ROOT / "local" / "prometheus_reporter"
REPORTER_JAR = LIB / "prometheus" / "journey-loopback-prometheus-reporter.jar"


def _build_prometheus_reporter() -> None:
    """Compile local/prometheus_reporter/ against the fetched reporter and pyflink's lib/ into
    :data:`REPORTER_JAR` (again whenever a source is newer than the jar)."""
    sources = sorted((REPORTER_SOURCES / "src").rglob("*.java"))
    newest = max(p.stat().st_mtime for p in [*sources, *(REPORTER_SOURCES / "META-INF").rglob("*")])
    if REPORTER_JAR.exists() and REPORTER_JAR.stat().st_mtime >= newest:
        _say(f"loopback Prometheus reporter present in {REPORTER_JAR}")
        return
    javac, jar = shutil.which("javac"), shutil.which("jar")
    if javac is None or jar is None:
        raise StackError("javac/jar not found: install a JDK 17 (apt-get install openjdk-17-jdk-headless)")
    _say("building the loopback Prometheus reporter (local/prometheus_reporter/)")
    reporter = [p for p in (LIB / "prometheus").glob("flink-metrics-prometheus-*.jar")]
    classpath = os.pathsep.join(str(p) for p in [*reporter, *(_flink_home() / "lib").glob("*.jar")])
    with tempfile.TemporaryDirectory() as tmp:
        classes = Path(tmp)
        for cmd in (
            [javac, "--release", "17", "-d", str(classes), "-cp", classpath, *map(str, sources)],
            [
                jar,
                "--create",
                "--file",
                str(REPORTER_JAR) + ".tmp",
                "-C",
                str(classes),
                ".",
                "-C",
                str(REPORTER_SOURCES),
                "META-INF",
            ],
        ):
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise StackError(f"building the Prometheus reporter failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    os.replace(str(REPORTER_JAR) + ".tmp", REPORTER_JAR)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["up", "down", "status", "reset", "fetch", "env"])
    ap.add_argument("components", nargs="*", help=f"any of {', '.join(COMPONENTS)} (default: all)")
    args = ap.parse_args(argv)
    unknown = [n for n in args.components if n not in COMPONENTS]
    if unknown:
        ap.error(f"unknown component(s) {unknown}; choose from {list(COMPONENTS)}")
    names = args.components or list(COMPONENTS)
    try:
        if args.action == "fetch":
            fetch()
        elif args.action == "env":  # the clients' settings of this stack, to eval in a shell
            for key, value in {
                "JOURNEY_BOOTSTRAP_SERVERS": f"127.0.0.1:{KAFKA_PORT}",
                "JOURNEY_CASSANDRA_HOST": "127.0.0.1",
                "JOURNEY_CASSANDRA_PORT": str(CASSANDRA_PORT),
                **auth_env(),
            }.items():
                print(f"export {key}={shlex.quote(value)}")
        elif args.action == "up":
            check_disk()
            for n in names:
                COMPONENTS[n].start()
                _say(f"{n} healthy at {COMPONENTS[n].address}")
            if AUTH:
                _say(f"auth variant (TLS, credentials): the clients' settings, CA {TLS_CA} included:")
                _say(
                    f'  eval "$(JOURNEY_STACK_DIR={STACK} JOURNEY_STACK_PORT_OFFSET={PORT_OFFSET} '
                    f'JOURNEY_STACK_AUTH=1 python -m local.stack env)"'
                )
        elif args.action == "down":
            for n in reversed(names):
                COMPONENTS[n].stop()
                _say(f"{n} stopped")
        elif args.action == "status":
            bad = 0
            for n in names:
                ok = COMPONENTS[n].healthy()
                bad += not ok
                print(f"{n:10s} {'UP  ' if ok else 'DOWN'} {COMPONENTS[n].address}")
            return 1 if bad else 0
        elif args.action == "reset":
            for n in reversed(names):
                COMPONENTS[n].stop()
            for d in (DATA, LOGS, CONF, STACK / "jobs"):  # jobs: the records of local/jobs.py
                shutil.rmtree(d, ignore_errors=True)
            _say("stack stopped, data and logs removed")
    except StackError as e:
        print(f"[stack] ERROR: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
