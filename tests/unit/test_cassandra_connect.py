"""Connecting to Cassandra: a clear error at once, or retries for a bounded time (the
operators' open() during an outage, JOURNEY_CASSANDRA_WAIT_MS). No server needed: a free
port that nobody listens on is an unreachable Cassandra."""

from __future__ import annotations

import socket
import time

import pytest

from models.config import ConfigError, IngestConfig, ProfilesConfig
from state.cassandra_schema import CassandraUnavailableError, connect


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_without_a_wait_an_unreachable_cassandra_is_refused_at_once_and_named(capsys) -> None:
    port = _closed_port()
    with pytest.raises(CassandraUnavailableError, match=f"127.0.0.1:{port}"):
        connect("127.0.0.1", port, connect_timeout=0.5)
    assert "trying again" not in capsys.readouterr().err


def test_with_a_wait_it_tries_again_until_the_wait_is_over_then_fails_the_same_way(capsys) -> None:
    port = _closed_port()
    t0 = time.monotonic()
    with pytest.raises(CassandraUnavailableError, match=f"127.0.0.1:{port}"):
        connect("127.0.0.1", port, connect_timeout=0.5, wait_s=2.5)
    assert time.monotonic() - t0 >= 2.5  # it waited (no upper bound asserted: shared machines)
    err = capsys.readouterr().err
    assert err.count("trying again") >= 2, err


def test_the_wait_is_a_setting_of_both_jobs_and_never_negative() -> None:
    salt = "x" * 16
    assert IngestConfig(pii_salt=salt).cassandra_wait_ms == ProfilesConfig().cassandra_wait_ms == 300_000
    with pytest.raises(ConfigError, match="JOURNEY_CASSANDRA_WAIT_MS"):
        ProfilesConfig(cassandra_wait_ms=-1)
    with pytest.raises(ConfigError, match="JOURNEY_CASSANDRA_WAIT_MS"):
        IngestConfig(pii_salt=salt, cassandra_wait_ms=-1)
