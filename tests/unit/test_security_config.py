"""Credential settings (docs/security.md) and the client settings made of them; no servers."""

from __future__ import annotations

import pickle
import socket

import pytest

from models.config import (
    SHADED_SCRAM_LOGIN_MODULE,
    CassandraAuth,
    ConfigError,
    IngestConfig,
    KafkaAuth,
    ProfilesConfig,
)
from state.erasure_store import CassandraLedger
from state.kafka_clients import KafkaErrors, kafka_client_config, kafka_failure

SALT = "0123456789abcdef-salt"
SASL = {
    "JOURNEY_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
    "JOURNEY_KAFKA_SASL_USERNAME": "journey",
    "JOURNEY_KAFKA_SASL_PASSWORD": "kafka-pw-1234",
    "JOURNEY_CASSANDRA_USERNAME": "journey",
    "JOURNEY_CASSANDRA_PASSWORD": "cass-pw-5678",
}


def test_defaults_are_plaintext_without_credentials():
    cfg = ProfilesConfig.from_env({})
    assert cfg.kafka_auth() == KafkaAuth() and not cfg.kafka_auth().sasl
    assert not cfg.cassandra_auth()
    assert kafka_client_config("b:1", auth=KafkaAuth())["security.protocol"] == "PLAINTEXT"
    assert "sasl.username" not in kafka_client_config("b:1", auth=KafkaAuth())


@pytest.mark.parametrize("cls", [IngestConfig, ProfilesConfig])
def test_every_credential_is_a_journey_variable_and_never_in_the_repr(cls):
    cfg = cls.from_env({**SASL, "JOURNEY_PII_SALT": SALT})
    assert cfg.kafka_auth() == KafkaAuth("SASL_PLAINTEXT", "SCRAM-SHA-512", "journey", "kafka-pw-1234")
    assert cfg.cassandra_auth() == CassandraAuth("journey", "cass-pw-5678")
    for text in (repr(cfg), str(cfg), repr(cfg.kafka_auth()), str(cfg.cassandra_auth())):
        assert "kafka-pw-1234" not in text and "cass-pw-5678" not in text
    assert SALT not in repr(cfg)
    assert "sasl_password='***'" in repr(cfg.kafka_auth())


@pytest.mark.parametrize(
    "env, variable",
    [
        ({"JOURNEY_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}, "JOURNEY_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT needs"),
        ({"JOURNEY_KAFKA_SASL_USERNAME": "u"}, "JOURNEY_KAFKA_SASL_USERNAME is set but JOURNEY_KAFKA_SASL_PASSWORD"),
        ({"JOURNEY_KAFKA_SASL_PASSWORD": "p"}, "JOURNEY_KAFKA_SASL_PASSWORD is set but JOURNEY_KAFKA_SASL_USERNAME"),
        (
            {"JOURNEY_KAFKA_SASL_USERNAME": "u", "JOURNEY_KAFKA_SASL_PASSWORD": "p"},
            "JOURNEY_KAFKA_SASL_USERNAME is set but JOURNEY_KAFKA_SECURITY_PROTOCOL=PLAINTEXT",
        ),
        ({"JOURNEY_KAFKA_SECURITY_PROTOCOL": "TLS"}, "JOURNEY_KAFKA_SECURITY_PROTOCOL='TLS' must be one of"),
        (
            {"JOURNEY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
            "JOURNEY_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs JOURNEY_KAFKA_SASL_USERNAME",
        ),
        (
            {
                "JOURNEY_KAFKA_SECURITY_PROTOCOL": "SSL",
                "JOURNEY_KAFKA_SASL_USERNAME": "u",
                "JOURNEY_KAFKA_SASL_PASSWORD": "p",
            },
            "JOURNEY_KAFKA_SASL_USERNAME is set but JOURNEY_KAFKA_SECURITY_PROTOCOL=SSL: the credentials would not "
            "be used; set JOURNEY_KAFKA_SECURITY_PROTOCOL=SASL_SSL",
        ),
        (
            {"JOURNEY_KAFKA_SSL_CA_LOCATION": "/etc/journey/tls/kafka-ca.pem"},
            "JOURNEY_KAFKA_SSL_CA_LOCATION is set but JOURNEY_KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not use TLS",
        ),
        (
            {**SASL, "JOURNEY_KAFKA_SSL_CA_LOCATION": "/etc/journey/tls/kafka-ca.pem"},
            "JOURNEY_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT does not use TLS: the CA would be ignored; set "
            "JOURNEY_KAFKA_SECURITY_PROTOCOL=SASL_SSL",
        ),
        (
            {"JOURNEY_KAFKA_SECURITY_PROTOCOL": "SSL", "JOURNEY_KAFKA_SSL_CA_LOCATION": " /ca.pem"},
            "JOURNEY_KAFKA_SSL_CA_LOCATION=' /ca.pem' is not a usable file path",
        ),
        ({"JOURNEY_CASSANDRA_SSL_CA": "/ca.pem\n"}, "JOURNEY_CASSANDRA_SSL_CA='/ca.pem\\n' is not a usable file path"),
        ({"JOURNEY_CASSANDRA_SSL": "maybe"}, "JOURNEY_CASSANDRA_SSL='maybe' is not a valid bool"),
        ({**SASL, "JOURNEY_KAFKA_SASL_MECHANISM": "PLAIN"}, "JOURNEY_KAFKA_SASL_MECHANISM='PLAIN' must be one of"),
        ({**SASL, "JOURNEY_KAFKA_SASL_PASSWORD": 'a"b'}, "JOURNEY_KAFKA_SASL_PASSWORD contains a character"),
        ({"JOURNEY_CASSANDRA_USERNAME": "u"}, "JOURNEY_CASSANDRA_USERNAME is set but JOURNEY_CASSANDRA_PASSWORD"),
        ({"JOURNEY_CASSANDRA_PASSWORD": "p"}, "JOURNEY_CASSANDRA_PASSWORD is set but JOURNEY_CASSANDRA_USERNAME"),
    ],
)
@pytest.mark.parametrize("cls", [IngestConfig, ProfilesConfig])
def test_inconsistent_credentials_are_refused_with_one_line_naming_the_variable(cls, env, variable):
    with pytest.raises(ConfigError) as e:
        cls.from_env({**env, "JOURNEY_PII_SALT": SALT})
    assert variable in str(e.value) and "\n" not in str(e.value)
    assert "kafka-pw-1234" not in str(e.value) and "cass-pw-5678" not in str(e.value)


def test_librdkafka_settings_carry_the_credentials_under_their_own_settings():
    auth = KafkaAuth.from_env(SASL)
    conf = kafka_client_config("h:9", {"group.id": "g"}, auth)
    assert {k: conf[k] for k in ("bootstrap.servers", "security.protocol", "sasl.mechanism", "group.id")} == {
        "bootstrap.servers": "h:9",
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-512",
        "group.id": "g",
    }
    assert (conf["sasl.username"], conf["sasl.password"]) == ("journey", "kafka-pw-1234")
    assert isinstance(conf["error_cb"], KafkaErrors)


def test_kafka_client_config_reads_the_environment_when_no_auth_is_given(monkeypatch):
    for k, v in SASL.items():
        monkeypatch.setenv(k, v)
    assert kafka_client_config("h:9")["sasl.username"] == "journey"
    monkeypatch.setenv("JOURNEY_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    with pytest.raises(ConfigError, match="JOURNEY_KAFKA_SASL_USERNAME is set but"):
        kafka_client_config("h:9")


def test_java_properties_use_the_shaded_scram_login_module_of_the_connector_jar():
    props = KafkaAuth.from_env(SASL).java_properties()
    assert props["security.protocol"] == "SASL_PLAINTEXT" and props["sasl.mechanism"] == "SCRAM-SHA-512"
    assert props["sasl.jaas.config"] == (
        f'{SHADED_SCRAM_LOGIN_MODULE} required username="journey" password="kafka-pw-1234";'
    )
    assert SHADED_SCRAM_LOGIN_MODULE.startswith("org.apache.flink.kafka.shaded.org.apache.kafka.")
    assert KafkaAuth().java_properties() == {"security.protocol": "PLAINTEXT"}


class _Err:
    def __init__(self, code: int, text: str) -> None:
        self._code, self._text = code, text

    def code(self) -> int:
        return self._code

    def str(self) -> str:
        return self._text

    def __str__(self) -> str:
        return f"KafkaError{{code={self._code},str={self._text!r}}}"


def test_kafka_failure_names_refused_credentials_or_a_missing_sasl_setting():
    conf = kafka_client_config("h:9", auth=KafkaAuth.from_env(SASL))
    conf["error_cb"](_Err(-195, "transport"))
    conf["error_cb"](_Err(-169, "SASL authentication error: invalid credentials"))
    line = kafka_failure(conf, RuntimeError("timed out"))
    assert line.startswith("Kafka at h:9 refused the credentials of 'journey' (SCRAM-SHA-512): SASL authentication")
    assert "kafka-pw-1234" not in line
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        free = f"127.0.0.1:{s.getsockname()[1]}"
    plain = kafka_client_config(free, auth=KafkaAuth())
    refused = kafka_failure(plain, RuntimeError("KafkaError{code=_TRANSPORT}"))
    assert refused == f"cannot reach Kafka at {free}: KafkaError{{code=_TRANSPORT}}"  # nothing listening: no SASL hint
    with socket.socket() as listener:  # something listening that drops the client: the SASL hint
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        where = f"127.0.0.1:{listener.getsockname()[1]}"
        line = kafka_failure(kafka_client_config(where, auth=KafkaAuth()), RuntimeError("KafkaError{code=_TRANSPORT}"))
    assert line.startswith(f"cannot reach Kafka at {where}: the broker closed the connection")
    assert "JOURNEY_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT" in line


def test_cassandra_factories_ship_their_credentials_to_the_task_managers():
    ledger = CassandraLedger("h", 9042, "journey", CassandraAuth("journey", "cass-pw-5678"))
    assert pickle.loads(pickle.dumps(ledger)).auth == CassandraAuth("journey", "cass-pw-5678")
    assert "cass-pw-5678" not in repr(ledger)


TLS = {
    **SASL,
    "JOURNEY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "JOURNEY_KAFKA_SSL_CA_LOCATION": "/etc/journey/tls/kafka-ca.pem",
    "JOURNEY_CASSANDRA_SSL_CA": "/etc/journey/tls/cassandra-ca.pem",
}


@pytest.mark.parametrize("cls", [IngestConfig, ProfilesConfig])
def test_tls_settings_are_journey_variables_of_both_jobs(cls):
    cfg = cls.from_env({**TLS, "JOURNEY_PII_SALT": SALT})
    kafka, cassandra = cfg.kafka_auth(), cfg.cassandra_auth()
    assert kafka == KafkaAuth("SASL_SSL", "SCRAM-SHA-512", "journey", "kafka-pw-1234", "/etc/journey/tls/kafka-ca.pem")
    assert kafka.tls and kafka.sasl
    assert cassandra == CassandraAuth("journey", "cass-pw-5678", False, "/etc/journey/tls/cassandra-ca.pem")
    assert cassandra.tls  # a CA turns TLS on by itself
    assert "ssl_ca_location='/etc/journey/tls/kafka-ca.pem'" in repr(kafka) and "ssl=True" in repr(cassandra)
    assert "kafka-pw-1234" not in repr(kafka) and "cass-pw-5678" not in repr(cassandra)
    # TLS without a CA of its own: the system's trust store
    assert CassandraAuth.from_env({"JOURNEY_CASSANDRA_SSL": "true"}).tls
    assert not CassandraAuth.from_env({"JOURNEY_CASSANDRA_SSL": "false"}).tls
    assert KafkaAuth.from_env({"JOURNEY_KAFKA_SECURITY_PROTOCOL": "SSL"}).tls


def test_librdkafka_and_java_clients_get_the_ca_and_keep_host_name_verification():
    auth = KafkaAuth.from_env(TLS)
    conf = auth.librdkafka()
    assert conf["security.protocol"] == "SASL_SSL" and conf["sasl.username"] == "journey"
    assert conf["ssl.ca.location"] == "/etc/journey/tls/kafka-ca.pem"
    assert conf["ssl.endpoint.identification.algorithm"] == "https"
    props = auth.java_properties()
    assert props["security.protocol"] == "SASL_SSL" and "ScramLoginModule required" in props["sasl.jaas.config"]
    assert props["ssl.truststore.type"] == "PEM"
    assert props["ssl.truststore.location"] == "/etc/journey/tls/kafka-ca.pem"
    assert props["ssl.endpoint.identification.algorithm"] == "https"
    # SSL alone: TLS, no SASL properties; without a CA: no trust store (the JVM's own)
    plain_tls = KafkaAuth("SSL").java_properties()
    assert plain_tls == {"security.protocol": "SSL", "ssl.endpoint.identification.algorithm": "https"}
    assert "ssl.ca.location" not in KafkaAuth("SSL").librdkafka()
    # no TLS: no TLS settings at all
    assert not any(k.startswith("ssl.") for k in KafkaAuth.from_env(SASL).java_properties())


def test_cassandra_factories_ship_the_ca_path_not_a_context():
    auth = CassandraAuth("journey", "cass-pw-5678", ssl_ca="/etc/journey/tls/cassandra-ca.pem")
    ledger = pickle.loads(pickle.dumps(CassandraLedger("h", 9042, "journey", auth)))
    assert ledger.auth == auth and ledger.auth.ssl_ca == "/etc/journey/tls/cassandra-ca.pem"
