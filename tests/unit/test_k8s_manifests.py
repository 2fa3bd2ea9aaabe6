"""The k8s manifests and the event contract (docs/events.md) agree with the code.

No Kubernetes here: the manifests are only parsed and cross-checked, never applied.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # runnable without a conftest/pyproject pythonpath setting
    sys.path.insert(0, str(ROOT))

from k8s.topics import FIXED_PARTITIONS, INPUT_TOPICS, OUTPUT_TOPICS  # noqa: E402
from models.avro_codec import SchemaCatalog  # noqa: E402
from models.config import ConfigError, IngestConfig, ProfilesConfig, check_transaction_timeout  # noqa: E402
from models.events import EVENT_TYPES, PAYLOAD_OF, validate_event  # noqa: E402
from models.ingest import DEAD_LETTER_REASONS, Accepted, IngestSettings, Ingestor, SourceRecord  # noqa: E402
from state.cassandra_schema import replication_map  # noqa: E402
from tests.interop.avro_reference import as_project_notation, docs_examples  # noqa: E402

K8S = ROOT / "k8s"
DOCS = ROOT / "docs" / "events.md"
SCHEMAS = ROOT / "schemas"
MANIFESTS = sorted(K8S.glob("*.yaml"))
IMAGES = K8S / "images"
BASE_DOCKERFILE = IMAGES / "base" / "Dockerfile"


# --- helpers -------------------------------------------------------------------------------


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _all(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for p in MANIFESTS for d in _docs(p) if d.get("kind") == kind}


def _one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for n, d in _all(kind).items() if name is None or n == name]
    assert len(found) == 1, f"expected exactly one {kind} {name or ''} in k8s/*.yaml, found {len(found)}"
    return found[0]


#: the FlinkDeployments and the Python module each runs
JOBS = {"journey-ingestion": "flink_jobs.ingestion", "journey-profiles": "flink_jobs.profiles"}


def _main_container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["podTemplate"]["spec"]["containers"]
    (c,) = [c for c in containers if c["name"] == "flink-main-container"]
    return c


def job_env(deployment: dict[str, Any]) -> dict[str, str]:
    """The JOURNEY_* variables the job's pods get: the envFrom ConfigMaps in order (a later one
    wins for a key in both, as in Kubernetes), then the container's ``env`` (plain values, and
    ``secretKeyRef`` ones from the example Secrets)."""
    c = _main_container(deployment)
    env: dict[str, str] = {}
    for source in c.get("envFrom", []):
        env.update(_one("ConfigMap", source["configMapRef"]["name"])["data"])
    env.update(_container_env(c))
    return env


def _container_env(container: dict[str, Any]) -> dict[str, str]:
    """A container's ``env``: plain values, ConfigMap and (example) Secret keys resolved."""
    env: dict[str, str] = {}
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = str(e["value"])
        elif "secretKeyRef" in e.get("valueFrom", {}):
            ref = e["valueFrom"]["secretKeyRef"]
            env[e["name"]] = _one("Secret", ref["name"])["stringData"][ref["key"]]
        elif "configMapKeyRef" in e.get("valueFrom", {}):
            ref = e["valueFrom"]["configMapKeyRef"]
            env[e["name"]] = _one("ConfigMap", ref["name"])["data"][ref["key"]]
    return env


_UNITS_MS = {"ms": 1, "s": 1000, "min": 60_000}


def duration_ms(value: object) -> int:
    """Flink duration strings as used in the manifests: '2 s', '500 ms', '1 min' (or bare ms)."""
    m = re.fullmatch(r"\s*(\d+)\s*(ms|s|min)?\s*", str(value))
    assert m, f"unsupported duration {value!r}"
    return int(m.group(1)) * _UNITS_MS[m.group(2) or "ms"]


@pytest.fixture(scope="module", params=sorted(JOBS))
def deployment(request) -> dict[str, Any]:
    return _one("FlinkDeployment", request.param)


@pytest.fixture(scope="module")
def flink_conf(deployment) -> dict[str, str]:
    return {k: str(v) for k, v in deployment["spec"]["flinkConfiguration"].items()}


@pytest.fixture(scope="module")
def config_map() -> dict[str, str]:
    return _one("ConfigMap", "journey-config")["data"]


@pytest.fixture(scope="module")
def env(deployment) -> dict[str, str]:
    return job_env(deployment)


@pytest.fixture(scope="module")
def secret() -> dict[str, Any]:
    return _one("Secret", "journey-pii")


@pytest.fixture(scope="module")
def main_container(deployment) -> dict[str, Any]:
    return _main_container(deployment)


@pytest.fixture(scope="module")
def docs_text() -> str:
    return DOCS.read_text()


@pytest.fixture(scope="module")
def catalog() -> SchemaCatalog:
    return SchemaCatalog.load()


# --- manifests -----------------------------------------------------------------------------


def test_there_are_manifests_to_check():
    names = {p.name for p in MANIFESTS}
    assert {
        "flinkdeployment-ingestion.yaml",
        "configmap.yaml",
        "secret.example.yaml",
        "topics-job.yaml",
        "flinkdeployment-profiles.yaml",
        "configmap-profiles.yaml",
        "cassandra-schema-job.yaml",
    } <= names
    assert set(_all("FlinkDeployment")) == set(JOBS)


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_manifest_parses_as_kubernetes_objects(path):
    docs = _docs(path)
    assert docs, f"{path.name} is empty"
    for d in docs:
        assert {"apiVersion", "kind", "metadata"} <= set(d), f"{path.name}: {sorted(d)}"
        assert d["metadata"].get("name"), f"{path.name}: object without metadata.name"
        assert d["metadata"].get("namespace") == "journey", f"{path.name}: {d['kind']} not in namespace journey"


def test_flink_deployment_runs_its_python_job_in_application_mode(deployment):
    assert deployment["apiVersion"] == "flink.apache.org/v1beta1"
    spec = deployment["spec"]
    assert spec["flinkVersion"] == "v2_2"
    job = spec["job"]
    assert job["jarURI"] == "local:///opt/flink/opt/flink-python-2.2.1.jar"
    assert job["entryClass"] == "org.apache.flink.client.python.PythonDriver"
    args = job["args"]
    assert args[args.index("-pym") + 1] == JOBS[deployment["metadata"]["name"]]
    assert args[args.index("-pyfs") + 1] == "/opt/journey"
    assert job["upgradeMode"] == "savepoint"
    assert job["state"] == "running"
    assert job["parallelism"] == 2


def test_flink_deployment_checkpoints_exactly_once_every_2_s_with_retained_rocksdb_checkpoints(flink_conf):
    assert flink_conf["execution.checkpointing.mode"] == "EXACTLY_ONCE"
    assert duration_ms(flink_conf["execution.checkpointing.interval"]) == 2_000
    assert duration_ms(flink_conf["execution.checkpointing.timeout"]) == 60_000
    assert flink_conf["execution.checkpointing.externalized-checkpoint-retention"] == "RETAIN_ON_CANCELLATION"
    assert flink_conf["state.backend.type"] == "rocksdb"
    assert flink_conf["execution.checkpointing.incremental"] == "true"
    for key in ("execution.checkpointing.dir", "execution.checkpointing.savepoint-dir"):
        assert re.match(r"^(s3|file|gs|abfss|hdfs)://", flink_conf[key]), f"{key}={flink_conf[key]!r}"


def test_flink_deployment_restarts_5_s_apart_failing_only_on_more_than_10_failures_in_5_min(flink_conf):
    assert flink_conf["restart-strategy.type"] == "failure-rate"
    assert int(flink_conf["restart-strategy.failure-rate.max-failures-per-interval"]) == 10
    assert duration_ms(flink_conf["restart-strategy.failure-rate.failure-rate-interval"]) == 300_000
    assert duration_ms(flink_conf["restart-strategy.failure-rate.delay"]) == 5_000


def test_flink_deployment_uses_the_images_python(flink_conf):
    assert flink_conf["python.executable"] == "/opt/venv/bin/python"
    assert flink_conf["python.client.executable"] == "/opt/venv/bin/python"
    assert "/opt/venv" in BASE_DOCKERFILE.read_text()


def test_transaction_timeout_in_configmap_passes_the_jobs_guard_with_the_deployments_timings(env, flink_conf):
    tx = int(env["JOURNEY_TRANSACTION_TIMEOUT_MS"])
    checkpoint_timeout = duration_ms(flink_conf["execution.checkpointing.timeout"])
    restart_delay = duration_ms(flink_conf["restart-strategy.failure-rate.delay"])
    broker_max = int(env["JOURNEY_BROKER_TRANSACTION_MAX_TIMEOUT_MS"])
    check_transaction_timeout(tx, checkpoint_timeout, restart_delay, broker_max)  # raises if unsafe
    # and the guard would bite if someone raised the checkpoint timeout past it
    with pytest.raises(ConfigError):
        check_transaction_timeout(tx, tx, restart_delay, broker_max)


def test_configmap_timings_equal_the_flink_configuration(env, flink_conf):
    # flink_jobs/env.py applies the JOURNEY_* values to the job, overriding the cluster's
    assert int(env["JOURNEY_CHECKPOINT_INTERVAL_MS"]) == duration_ms(flink_conf["execution.checkpointing.interval"])
    assert int(env["JOURNEY_CHECKPOINT_TIMEOUT_MS"]) == duration_ms(flink_conf["execution.checkpointing.timeout"])
    assert int(env["JOURNEY_RESTART_DELAY_MS"]) == duration_ms(flink_conf["restart-strategy.failure-rate.delay"])
    assert int(env["JOURNEY_RESTART_ATTEMPTS"]) == int(
        flink_conf["restart-strategy.failure-rate.max-failures-per-interval"]
    )
    assert int(env["JOURNEY_RESTART_INTERVAL_MS"]) == duration_ms(
        flink_conf["restart-strategy.failure-rate.failure-rate-interval"]
    )
    assert env["JOURNEY_ROCKSDB"].lower() == "true" and flink_conf["state.backend.type"] == "rocksdb"
    assert env["JOURNEY_UNALIGNED_CHECKPOINTS"] == flink_conf["execution.checkpointing.unaligned.enabled"]


def test_job_parallelism_env_equals_the_deployments_parallelism(deployment, main_container):
    env = {e["name"]: e for e in main_container.get("env", [])}
    assert int(env["JOURNEY_PARALLELISM"]["value"]) == deployment["spec"]["job"]["parallelism"]
    for name, cm in _all("ConfigMap").items():
        assert "JOURNEY_PARALLELISM" not in cm["data"], f"{name}: keep parallelism next to spec.job.parallelism only"


def test_pii_salt_comes_from_a_secret_never_from_the_configmap(config_map, secret):
    main_container = _main_container(_one("FlinkDeployment", "journey-ingestion"))
    env = {e["name"]: e for e in main_container.get("env", [])}
    ref = env["JOURNEY_PII_SALT"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] == secret["metadata"]["name"]
    assert ref["key"] in secret["stringData"]
    assert "JOURNEY_PII_SALT" not in config_map
    assert not any("salt" in k.lower() for k in config_map)
    (from_cm,) = [s["configMapRef"]["name"] for s in main_container["envFrom"] if "configMapRef" in s]
    assert from_cm == "journey-config"
    for name, cm in _all("ConfigMap").items():
        assert not any("salt" in k.lower() for k in cm["data"]), name


def test_example_secret_is_marked_as_an_example(secret):
    text = (K8S / "secret.example.yaml").read_text()
    assert "EXAMPLE ONLY" in text and "NOT A REAL SECRET" in text
    for value in secret["stringData"].values():
        assert "EXAMPLE" in value.upper()


def test_configmap_keys_are_settings_the_code_reads():
    known = {f"JOURNEY_{f.name.upper()}" for cls in (IngestConfig, ProfilesConfig) for f in fields(cls)}
    flink_jobs_source = "\n".join(p.read_text() for p in (ROOT / "flink_jobs").glob("*.py"))
    for name, cm in _all("ConfigMap").items():
        for key in cm["data"]:
            assert key.startswith("JOURNEY_"), key
            assert key in known or key in flink_jobs_source, f"{name}: {key} is read by nothing"


CREDENTIALS = {
    "JOURNEY_KAFKA_SASL_USERNAME": "kafka-sasl-username",
    "JOURNEY_KAFKA_SASL_PASSWORD": "kafka-sasl-password",
    "JOURNEY_CASSANDRA_USERNAME": "cassandra-username",
    "JOURNEY_CASSANDRA_PASSWORD": "cassandra-password",
}
KAFKA_CREDENTIALS = [k for k in CREDENTIALS if k.startswith("JOURNEY_KAFKA_")]
CASSANDRA_CREDENTIALS = [k for k in CREDENTIALS if k.startswith("JOURNEY_CASSANDRA_")]


def _job_container(name: str) -> dict[str, Any]:
    (c,) = _one("Job", name)["spec"]["template"]["spec"]["containers"]
    return c


@pytest.mark.parametrize(
    "name, container, needed",
    [
        ("journey-ingestion", lambda: _main_container(_one("FlinkDeployment", "journey-ingestion")), list(CREDENTIALS)),
        ("journey-profiles", lambda: _main_container(_one("FlinkDeployment", "journey-profiles")), list(CREDENTIALS)),
        ("topics Job", lambda: _job_container("journey-topics"), KAFKA_CREDENTIALS),
        ("schema Job", lambda: _job_container("journey-cassandra-schema"), CASSANDRA_CREDENTIALS),
    ],
)
def test_credentials_come_from_the_credentials_secret_never_from_a_configmap(name, container, needed):
    env = {e["name"]: e for e in container().get("env", [])}
    secret = _one("Secret", "journey-credentials")
    for var in needed:
        ref = env[var]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == ("journey-credentials", CREDENTIALS[var]), (name, var)
        assert ref["key"] in secret["stringData"], (name, var)
    for cm_name, cm in _all("ConfigMap").items():
        assert not set(CREDENTIALS) & set(cm["data"]), cm_name
        assert not any("password" in k.lower() for k in cm["data"]), cm_name


def test_every_env_variable_of_every_container_is_a_setting_the_code_reads():
    from models.config import CassandraAuth, KafkaAuth

    known = {f"JOURNEY_{f.name.upper()}" for cls in (IngestConfig, ProfilesConfig) for f in fields(cls)}
    known |= {f"JOURNEY_KAFKA_{f.name.upper()}" for f in fields(KafkaAuth)}
    known |= {f"JOURNEY_CASSANDRA_{f.name.upper()}" for f in fields(CassandraAuth)}
    containers = [_main_container(d) for d in _all("FlinkDeployment").values()]
    containers += [c for j in _all("Job").values() for c in j["spec"]["template"]["spec"]["containers"]]
    for c in containers:
        for e in c.get("env", []):
            if e["name"].startswith("JOURNEY_"):
                assert e["name"] in known, f"{c['name']}: {e['name']} is read by nothing"


def test_example_credentials_secret_is_marked_as_an_example_and_makes_valid_configs():
    secret = _one("Secret", "journey-credentials")
    assert secret["metadata"]["annotations"]["journey.example/placeholder"] == "true"
    assert all("EXAMPLE" in v.upper() for v in secret["stringData"].values())
    ingest = IngestConfig.from_env(job_env(_one("FlinkDeployment", "journey-ingestion")))
    profiles = ProfilesConfig.from_env(job_env(_one("FlinkDeployment", "journey-profiles")))
    for cfg in (ingest, profiles):
        assert cfg.kafka_auth().sasl and cfg.kafka_sasl_username == secret["stringData"]["kafka-sasl-username"]
        assert cfg.cassandra_auth().username == secret["stringData"]["cassandra-username"]
        assert secret["stringData"]["kafka-sasl-password"] not in repr(cfg)
        assert secret["stringData"]["cassandra-password"] not in repr(cfg)


def test_both_jobs_use_one_cassandra_for_the_erasure_ledger():
    shared, profiles = _one("ConfigMap", "journey-config")["data"], _one("ConfigMap", "journey-profiles-config")["data"]
    for key in ("JOURNEY_CASSANDRA_HOST", "JOURNEY_CASSANDRA_PORT", "JOURNEY_KEYSPACE"):
        assert shared[key] == profiles[key], key
    assert shared["JOURNEY_ERASURE_LEDGER"] == "cassandra"


def test_configmap_and_example_secret_make_a_valid_ingest_config(secret):
    (salt,) = secret["stringData"].values()
    cfg = IngestConfig.from_env({**job_env(_one("FlinkDeployment", "journey-ingestion")), "JOURNEY_PII_SALT": salt})
    assert cfg.bounded is False and cfg.rocksdb is True
    assert cfg.output_topic in OUTPUT_TOPICS and cfg.dlq_topic in OUTPUT_TOPICS
    assert all(re.fullmatch(cfg.input_topic_pattern, t) for t in INPUT_TOPICS)
    assert not any(re.fullmatch(cfg.input_topic_pattern, t) for t in OUTPUT_TOPICS)


def test_connector_jar_in_configmap_is_the_one_the_image_downloads(config_map):
    dockerfile = BASE_DOCKERFILE.read_text()
    assert re.search(r"^FROM flink:2\.2\.1-java17\s*$", dockerfile, re.M)
    version = re.search(r"^ARG KAFKA_CONNECTOR_VERSION=(\S+)", dockerfile, re.M).group(1)
    pom = (ROOT / "local" / "maven" / "flink" / "pom.xml").read_text()
    assert f"<version>{version}</version>" in pom, "image and local stack pin different connector versions"
    assert "/org/apache/flink/flink-sql-connector-kafka/${KAFKA_CONNECTOR_VERSION}/" in dockerfile
    assert config_map["JOURNEY_JARS"] == f"file:///opt/flink/usrlib/flink-sql-connector-kafka-{version}.jar"
    assert "COPY" not in dockerfile  # the project's files come with the job images


def test_the_image_installs_every_package_the_jobs_import_at_the_projects_pins():
    dockerfile = BASE_DOCKERFILE.read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    pins = dict(
        re.findall(r'^\s+"([A-Za-z0-9_.-]+)==([^"]+)",$', pyproject.split("[project.optional-dependencies]")[0], re.M)
    )
    # what the jobs need at run time on a TaskManager (tqdm and PyYAML serve the local tools)
    for package in ("apache-flink", "river", "cassandra-driver", "cachetools", "fastavro", "confluent-kafka"):
        assert f"{package}=={pins[package]}" in dockerfile, (
            f"k8s/images/base/Dockerfile does not install {package}=={pins[package]}"
        )


def test_profiles_deployment_gets_a_valid_profiles_config_of_its_own():
    ingestion, profiles = (job_env(_one("FlinkDeployment", n)) for n in ("journey-ingestion", "journey-profiles"))
    cfg = ProfilesConfig.from_env(profiles)
    assert cfg.bounded is False and cfg.rocksdb is True
    assert re.fullmatch(cfg.input_topic_pattern, "journey.normalized")
    assert not any(
        re.fullmatch(cfg.input_topic_pattern, t)
        for t in INPUT_TOPICS + tuple(OUTPUT_TOPICS)
        if t != "journey.normalized"
    )
    assert FIXED_PARTITIONS[cfg.identity_topic] == 1  # the ordered change log the job insists on
    assert cfg.feedback_topic in OUTPUT_TOPICS
    # the job's own Kafka ids: sharing them with ingestion would fence its transactions
    for key in ("JOURNEY_GROUP_ID", "JOURNEY_TRANSACTIONAL_ID_PREFIX", "JOURNEY_JOB_NAME"):
        assert profiles[key] != ingestion[key], key
    # and its own state locations
    confs = [_one("FlinkDeployment", n)["spec"]["flinkConfiguration"] for n in JOBS]
    for key in ("execution.checkpointing.dir", "execution.checkpointing.savepoint-dir", "high-availability.storageDir"):
        assert len({c[key] for c in confs}) == len(confs), key


def test_cassandra_schema_job_creates_the_profiles_keyspace_with_network_topology_replication():
    job = _one("Job", "journey-cassandra-schema")
    (c,) = job["spec"]["template"]["spec"]["containers"]
    argv = c.get("command", []) + c.get("args", [])
    assert argv[argv.index("-m") + 1] == "state.cassandra_schema"
    replication = json.loads(argv[argv.index("--replication") + 1])
    replication_map(replication)  # raises if the CLI would refuse it
    assert replication["class"] == "NetworkTopologyStrategy"
    env = {e["name"]: e["valueFrom"]["configMapKeyRef"] for e in c["env"] if "configMapKeyRef" in e["valueFrom"]}
    profiles_cm = _one("ConfigMap", "journey-profiles-config")
    for flag, var in (("--host", "CASSANDRA_HOST"), ("--port", "CASSANDRA_PORT"), ("--keyspace", "KEYSPACE")):
        assert argv[argv.index(flag) + 1] == f"$({var})"
        assert env[var]["name"] == "journey-profiles-config" and env[var]["key"] in profiles_cm["data"]
    assert c["image"] == _one("FlinkDeployment", "journey-profiles")["spec"]["image"]


def test_topics_job_runs_k8s_topics_with_6_partitions_and_replication_3(config_map):
    job = _one("Job", "journey-topics")
    assert job["apiVersion"] == "batch/v1"
    (c,) = job["spec"]["template"]["spec"]["containers"]
    argv = c.get("command", []) + c.get("args", [])
    assert argv[argv.index("-m") + 1] == "k8s.topics"
    assert argv[argv.index("--partitions") + 1] == "6"
    assert argv[argv.index("--replication") + 1] == "3"
    assert argv[argv.index("--bootstrap") + 1] == "$(BOOTSTRAP)"
    env = {e["name"]: e for e in c["env"]}
    ref = env["BOOTSTRAP"]["valueFrom"]["configMapKeyRef"]
    assert ref["key"] in config_map
    assert c["image"] == _one("FlinkDeployment", "journey-ingestion")["spec"]["image"]


def test_every_topic_the_jobs_write_counts_retention_from_the_write_not_the_event_time() -> None:
    """The jobs' Kafka sinks stamp records with their event time; with CreateTime the broker's
    retention deleted outputs about old events (a replay, a backfill, the demo's data) minutes
    after they were committed. Every output topic, and every input (a producer may stamp
    history), uses the broker's append time; the local stack's broker does for every topic."""
    from k8s.topics import TOPIC_CONFIG

    for topic in (*INPUT_TOPICS, *OUTPUT_TOPICS):
        assert TOPIC_CONFIG.get(topic, {}).get("message.timestamp.type") == "LogAppendTime", topic
    server = (ROOT / "local" / "stack.py").read_text()
    assert '"log.message.timestamp.type=LogAppendTime"' in server


# --- docs/events.md ------------------------------------------------------------------------


def _headings(text: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"^#{2,4} .*?`([^`]+)`", text, re.M)}


def test_every_output_topic_schema_exists_and_every_topic_is_documented(docs_text):
    record_names = {json.loads(p.read_text())["name"] for p in SCHEMAS.glob("*.avsc")}
    for topic, schema in OUTPUT_TOPICS.items():
        if re.fullmatch(r"[A-Z]\w*", schema):
            assert schema in record_names, f"{topic}: no schemas/*.avsc defines {schema}"
            assert f"`{schema}`" in docs_text, schema
        assert topic in _headings(docs_text), f"{topic} has no section in docs/events.md"
    for topic in INPUT_TOPICS:
        assert f"`{topic}`" in docs_text, topic


def test_every_event_type_is_documented(docs_text):
    headings = _headings(docs_text)
    for event_type in EVENT_TYPES:
        assert event_type in headings, f"{event_type} has no section in docs/events.md"
        section = docs_text.split(f"### `{event_type}`", 1)[1].split("\n### ", 1)[0]
        assert f"`{PAYLOAD_OF[event_type]}`" in section, f"{event_type}: payload record not named"


def test_every_dead_letter_error_type_is_documented(docs_text, catalog):
    schema = json.loads((SCHEMAS / "dead_letter.avsc").read_text())
    (error_type,) = [f["type"] for f in schema["fields"] if f["name"] == "error_type"]
    assert tuple(error_type["symbols"]) == DEAD_LETTER_REASONS
    table = docs_text.split("## Dead-letter error types", 1)[1]
    for reason in DEAD_LETTER_REASONS:
        assert re.search(rf"^\| `{reason}` \|", table, re.M), f"{reason} not in the error table"


def test_fingerprint_table_matches_the_schemas(docs_text, catalog):
    for p in SCHEMAS.glob("*.avsc"):
        name = json.loads(p.read_text())["name"]
        fp = catalog.codec(name).fingerprint.hex()
        assert re.search(rf"^\| `{name}` \| `schemas/{p.name}` \| `{fp}` \|", docs_text, re.M), (
            f"docs/events.md fingerprint row for {name} is missing or stale (now {fp})"
        )


def test_every_documented_example_encodes_with_its_schema(docs_text, catalog):
    examples = docs_examples(docs_text)
    kinds = [k for k, _ in examples]
    assert kinds.count("Event") == len(EVENT_TYPES)
    assert {k for k, _ in examples} >= {"NormalizedEvent", "DeadLetter"}
    for kind, record in examples:
        data = catalog.codec(kind).encode(as_project_notation(kind, record))
        assert catalog.decode(data, expect=kind)[0] == kind


def test_every_documented_event_example_is_valid_and_accepted(docs_text, catalog):
    ingestor = Ingestor(IngestSettings("docs-example-salt-0123456789"), catalog)
    seen = set()
    for kind, record in docs_examples(docs_text):
        if kind != "Event":
            continue
        event = as_project_notation(kind, record)
        assert validate_event(event, event["occurred_at"], 946_684_800_000, 86_400_000) is None, record["event_id"]
        value = catalog.codec("Event").encode(event)
        result = ingestor.process(
            SourceRecord(value, f"journey.events.{record['channel']}", 0, 0, record["occurred_at"])
        )
        assert isinstance(result, Accepted), (record["event_id"], result)
        seen.add(record["event_type"])
    assert seen == set(EVENT_TYPES)


def test_documented_normalized_example_is_what_ingestion_makes_of_the_identify_example(docs_text, catalog, secret):
    examples = docs_examples(docs_text)
    (normalized,) = [r for k, r in examples if k == "NormalizedEvent"]
    (source,) = [r for k, r in examples if k == "Event" and r["event_id"] == normalized["event_id"]]
    (salt,) = secret["stringData"].values()
    assert salt in docs_text, "docs must name the salt the example hashes were computed with"
    value = catalog.codec("Event").encode(as_project_notation("Event", source))
    rec = SourceRecord(
        value,
        normalized["source_topic"],
        normalized["source_partition"],
        normalized["source_offset"],
        source["occurred_at"],
    )
    accepted = Ingestor(IngestSettings(salt), catalog).process(rec)
    _, produced = catalog.decode(accepted.value, expect="NormalizedEvent")
    assert produced == as_project_notation("NormalizedEvent", normalized)


def test_documented_dead_letter_example_is_what_ingestion_makes_of_its_raw_bytes(docs_text, catalog, config_map):
    (dl,) = [r for k, r in docs_examples(docs_text) if k == "DeadLetter"]
    settings = IngestSettings("docs-example-salt-0123456789", job_name=config_map["JOURNEY_JOB_NAME"])
    (received,) = re.findall(r"<!-- received: ([0-9a-f]+) -->", docs_text)  # what the producer sent
    rec = SourceRecord(
        bytes.fromhex(received),
        dl["source_topic"],
        dl["source_partition"],
        dl["source_offset"],
        dl["source_timestamp"],
    )
    result = Ingestor(settings, catalog).process(rec)
    _, produced = catalog.decode(result.value, expect="DeadLetter")
    assert produced == as_project_notation("DeadLetter", dl)


def test_flink_deployment_serves_prometheus_metrics_from_the_plugin_the_image_installs(flink_conf, main_container):
    assert flink_conf["metrics.reporter.prom.factory.class"] == (
        "org.apache.flink.metrics.prometheus.PrometheusReporterFactory"
    )
    port = int(flink_conf["metrics.reporter.prom.port"])
    assert {"name": "metrics", "containerPort": port} in main_container["ports"]
    dockerfile = BASE_DOCKERFILE.read_text()
    assert "/opt/flink/plugins/metrics-prometheus" in dockerfile
    pom = (K8S.parent / "local" / "maven" / "prometheus" / "pom.xml").read_text()
    version = re.search(r"<version>(\d+\.\d+\.\d+)</version>", pom)
    assert version and f"ARG FLINK_VERSION={version.group(1)}" in dockerfile


# --- TLS: the CA files (docs/security.md) --------------------------------------------------

TLS_SETTINGS = ("JOURNEY_KAFKA_SSL_CA_LOCATION", "JOURNEY_CASSANDRA_SSL_CA")


def tls_mount_errors(name: str, container: dict[str, Any], pod_spec: dict[str, Any], env: dict[str, str]) -> list[str]:
    """What is wrong with how ``container`` gets the CA files its TLS settings in ``env`` name:
    each must be an item of a read-only Secret volume of journey-credentials mounted at the
    file's directory, its key a PEM certificate of the Secret; the passwords never as files."""
    errors: list[str] = []
    secret = _one("Secret", "journey-credentials")["stringData"]
    mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    for setting in TLS_SETTINGS:
        path = env.get(setting)
        if not path:
            continue
        directory, _, filename = path.rpartition("/")
        mount = mounts.get(directory)
        if mount is None:
            errors.append(f"{name}: {setting}={path} but nothing is mounted at {directory}")
            continue
        if not mount.get("readOnly"):
            errors.append(f"{name}: the mount at {directory} is not readOnly")
        source = volumes.get(mount["name"], {}).get("secret")
        if source is None or source.get("secretName") != "journey-credentials":
            errors.append(f"{name}: {directory} is not a volume of the Secret journey-credentials")
            continue
        key = {i["path"]: i["key"] for i in source.get("items", [])}.get(filename)
        if key is None:
            errors.append(f"{name}: {setting}={path} but the volume has no item {filename}")
        elif "BEGIN CERTIFICATE" not in secret.get(key, ""):
            errors.append(f"{name}: {setting}: the Secret's key {key!r} is not a PEM certificate")
    for vol in volumes.values():
        source = vol.get("secret") or {}
        if source.get("secretName") == "journey-credentials":
            keys = [i["key"] for i in source.get("items", [])]
            if not keys or not all(k.endswith(".pem") for k in keys):
                errors.append(f"{name}: volume {vol['name']} mounts more of journey-credentials than CA files")
    return errors


def _tls_targets() -> list[tuple[str, dict[str, Any], dict[str, Any], dict[str, str]]]:
    targets = []
    for name, d in _all("FlinkDeployment").items():
        targets.append((name, _main_container(d), d["spec"]["podTemplate"]["spec"], job_env(d)))
    for name, job in _all("Job").items():
        (c,) = job["spec"]["template"]["spec"]["containers"]
        targets.append((name, c, job["spec"]["template"]["spec"], _container_env(c)))
    return targets


def test_every_container_gets_the_ca_files_its_tls_settings_name():
    needed = {
        "journey-ingestion": TLS_SETTINGS,
        "journey-profiles": TLS_SETTINGS,
        "journey-topics": ("JOURNEY_KAFKA_SSL_CA_LOCATION",),
        "journey-cassandra-schema": ("JOURNEY_CASSANDRA_SSL_CA",),
    }
    targets = _tls_targets()
    assert sorted(t[0] for t in targets) == sorted(needed)
    for name, container, pod_spec, env in targets:
        for setting in needed[name]:
            assert env.get(setting, "").startswith("/etc/journey/tls/"), (name, setting)
        assert tls_mount_errors(name, container, pod_spec, env) == [], name


def test_a_planted_ca_mount_error_is_caught():
    import copy

    d = _one("FlinkDeployment", "journey-ingestion")
    env = job_env(d)
    for plant, expected in (
        (lambda c, s: c["volumeMounts"][0].update(mountPath="/etc/journey/certs"), "nothing is mounted at"),
        (lambda c, s: s["volumes"][0]["secret"]["items"][0].update(path="kafka.pem"), "no item kafka-ca.pem"),
        (lambda c, s: s["volumes"][0]["secret"]["items"][1].update(key="cassandra-password"), "than CA files"),
        (lambda c, s: s["volumes"][0]["secret"].update(secretName="journey-pii"), "not a volume of the Secret"),
        (lambda c, s: c["volumeMounts"][0].pop("readOnly"), "not readOnly"),
    ):
        bad = copy.deepcopy(d)
        container, pod_spec = _main_container(bad), bad["spec"]["podTemplate"]["spec"]
        plant(container, pod_spec)
        errors = tls_mount_errors("journey-ingestion", container, pod_spec, env)
        assert any(expected in e for e in errors), (expected, errors)


def test_configmap_turns_tls_on_for_kafka_and_cassandra_with_the_mounted_cas():
    for name in JOBS:
        cfg = (IngestConfig if name == "journey-ingestion" else ProfilesConfig).from_env(
            {**job_env(_one("FlinkDeployment", name)), "JOURNEY_PII_SALT": "EXAMPLE-ONLY-0123456789"}
        )
        kafka, cassandra = cfg.kafka_auth(), cfg.cassandra_auth()
        assert kafka.security_protocol == "SASL_SSL" and kafka.tls and kafka.sasl, name
        assert kafka.java_properties()["ssl.truststore.location"] == "/etc/journey/tls/kafka-ca.pem", name
        assert cassandra.tls and cassandra.ssl_ca == "/etc/journey/tls/cassandra-ca.pem", name


# --- the images: one build file per job ----------------------------------------------------

#: files a module reads at run time (not imports): the Avro schemas, the shipped segment rules,
#: the CQL the schema Job applies
DATA_FILES = {
    "flink_jobs.ingestion": ("schemas/",),
    "flink_jobs.profiles": ("schemas/", "rules/"),
    "k8s.topics": (),
    "state.cassandra_schema": ("state/schema.cql",),
}


def dockerfile_instructions(text: str) -> list[tuple[str, list[str]]]:
    """(instruction, arguments) of a Dockerfile: continuation lines joined, comments dropped."""
    out, current = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") and not current:
            continue
        current += line.rstrip("\\").strip() + " " if line.endswith("\\") else line.strip()
        if not line.endswith("\\"):
            if current.strip():
                word, _, rest = current.strip().partition(" ")
                out.append((word.upper(), rest.split()))
            current = ""
    return out


def _dockerignored(path: str) -> bool:
    """Whether ``.dockerignore`` keeps ``path`` out of the build context (Docker's rules for the
    patterns used there: the last matching pattern wins; a pattern matching a parent directory
    matches what is inside; ``**/`` matches at any depth)."""
    from fnmatch import fnmatchcase

    parts = path.rstrip("/").split("/")
    excluded = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if pattern.startswith("**/"):
            hit = any(fnmatchcase(p, pattern[3:]) for p in parts)
        else:
            pp = pattern.split("/")
            hit = len(pp) <= len(parts) and all(fnmatchcase(a, b) for a, b in zip(parts, pp))
        if hit:
            excluded = not negated
    return excluded


def needed_files(module: str) -> set[str]:
    """The project's files ``module`` imports (all of them, also inside functions), and the data
    files it reads (:data:`DATA_FILES`), relative to the repository root."""
    import modulefinder

    finder = modulefinder.ModuleFinder(path=[str(ROOT)])
    finder.import_hook(module)
    files = {
        str(Path(m.__file__).relative_to(ROOT))
        for m in finder.modules.values()
        if m.__file__ and Path(m.__file__).is_relative_to(ROOT)
    }
    return files | set(DATA_FILES[module])


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else f"k8s/images/{path.parent.name}/Dockerfile"


def image_errors(image: str, modules: tuple[str, ...]) -> list[str]:
    """What is wrong with the build file of ``image`` (``.../journey-<job>:<tag>`` is built from
    ``k8s/images/<job>/Dockerfile``) for running ``modules``: a missing build file, a COPY of a
    file that does not exist or that .dockerignore leaves out, a file the modules need that is
    not copied, a base other than k8s/images/base."""
    repo = image.rsplit(":", 1)[0].rsplit("/", 1)[-1]
    if not repo.startswith("journey-"):
        return [f"{image}: not a journey-<job> image"]
    dockerfile = IMAGES / repo.removeprefix("journey-") / "Dockerfile"
    if not dockerfile.exists():
        return [f"{image}: no build file {_shown(dockerfile)}"]
    where = _shown(dockerfile)
    instructions = dockerfile_instructions(dockerfile.read_text())
    errors: list[str] = []
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for w, rest in instructions if w == "ARG" for a in rest if "=" in a}
    froms = [rest for w, rest in instructions if w == "FROM"]
    if froms != [["${BASE_IMAGE}"]] or not re.fullmatch(r".*/journey-flink-base:[\w.-]+", args.get("BASE_IMAGE", "")):
        errors.append(f"{where}: not FROM the base image (ARG BASE_IMAGE=.../journey-flink-base:<tag>)")
    if f'org.opencontainers.image.title="{repo}"' not in dockerfile.read_text():
        errors.append(f"{where}: its title label is not {repo}")
    copied: set[str] = set()
    for word, rest in instructions:
        if word != "COPY":
            continue
        *sources, dest = [a for a in rest if not a.startswith("--")]
        for src in sources:
            if not (ROOT / src).exists():
                errors.append(f"{where}: COPY {src}: no such file in the repository")
            elif _dockerignored(src):
                errors.append(f"{where}: COPY {src}: left out of the build context by .dockerignore")
            expected = "/opt/journey/" + (src if src.endswith("/") else src.rpartition("/")[0] + "/")
            if dest != expected:
                errors.append(f"{where}: COPY {src} goes to {dest}, not {expected}")
            copied.add(src)
    for module in modules:
        for f in sorted(needed_files(module)):
            if not any(f == c or (c.endswith("/") and f.startswith(c)) for c in copied):
                errors.append(f"{where}: {module} needs {f}, which is not copied")
    return errors


def _image_users() -> dict[str, tuple[str, ...]]:
    """Every image of the manifests -> the modules run from it (-pym of a FlinkDeployment,
    -m of a Job)."""
    users: dict[str, tuple[str, ...]] = {}
    for d in _all("FlinkDeployment").values():
        argv = d["spec"]["job"]["args"]
        users[d["spec"]["image"]] = (*users.get(d["spec"]["image"], ()), argv[argv.index("-pym") + 1])
    for job in _all("Job").values():
        (c,) = job["spec"]["template"]["spec"]["containers"]
        argv = c.get("command", []) + c.get("args", [])
        users[c["image"]] = (*users.get(c["image"], ()), argv[argv.index("-m") + 1])
    return users


def test_every_job_has_an_image_of_its_own_built_from_a_file_that_copies_what_it_runs():
    users = _image_users()
    deployments = {n: d["spec"]["image"] for n, d in _all("FlinkDeployment").items()}
    assert len(set(deployments.values())) == len(deployments), "each FlinkDeployment runs an image of its own"
    for image, modules in users.items():
        assert image_errors(image, modules) == [], image
    for name, image in deployments.items():
        (module,) = [m for m in users[image] if m.startswith("flink_jobs.")]
        assert module == JOBS[name]
        text = (IMAGES / name.removeprefix("journey-") / "Dockerfile").read_text()
        assert f'journey.job.module="{module}"' in text and f"ENV JOURNEY_JOB_MODULE={module}" in text


def test_a_planted_image_mismatch_is_caught(tmp_path, monkeypatch):
    assert image_errors("registry.example.com/journey/journey-segments:0.1.0", ("flink_jobs.ingestion",)) == [
        "registry.example.com/journey/journey-segments:0.1.0: no build file k8s/images/segments/Dockerfile"
    ]
    # the profiles image does not carry k8s/topics.py: the topics Job could not run from it
    errors = image_errors("registry.example.com/journey/journey-profiles:0.1.0", ("k8s.topics",))
    assert "k8s/images/profiles/Dockerfile: k8s.topics needs k8s/topics.py, which is not copied" in errors
    # a Dockerfile copying a file that does not exist, and one that forgets an operator
    real = (IMAGES / "ingestion" / "Dockerfile").read_text()
    planted = tmp_path / "images"
    (planted / "ingestion").mkdir(parents=True)
    monkeypatch.setattr(sys.modules[__name__], "IMAGES", planted)
    (planted / "ingestion" / "Dockerfile").write_text(real.replace("operators/dedupe.py", "operators/dedup.py"))
    errors = image_errors("r/journey-ingestion:1", ("flink_jobs.ingestion",))
    assert any("COPY operators/dedup.py: no such file" in e for e in errors), errors
    assert any("needs operators/dedupe.py, which is not copied" in e for e in errors), errors
    (planted / "ingestion" / "Dockerfile").write_text(real.replace("COPY --chown=flink:flink schemas/", "# "))
    assert any(
        "needs schemas/, which is not copied" in e
        for e in image_errors("r/journey-ingestion:1", ("flink_jobs.ingestion",))
    )
    (planted / "ingestion" / "Dockerfile").write_text(real.replace(" /opt/journey/state/", " /opt/state/"))
    assert any("goes to /opt/state/" in e for e in image_errors("r/journey-ingestion:1", ("flink_jobs.ingestion",)))


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_build_context():
    for path in (
        ".stack/lib/kafka/kafka-clients-4.1.1.jar",
        ".venv/bin/python",
        ".stack/h/tls/ca.key",
        "tests/unit/x.py",
    ):
        assert _dockerignored(path), path
    for path in ("models/config.py", "k8s/topics.py", "rules/segments.yaml", "state/schema.cql"):
        assert not _dockerignored(path), path
    assert _dockerignored("k8s/flinkdeployment-ingestion.yaml") and _dockerignored("state/__pycache__/x.pyc")
