"""The local stack's error messages: what a newcomer sees when something is in the way."""

from __future__ import annotations

import socket
import sys

import pytest

from local import stack


def test_a_port_used_by_another_process_is_named_in_the_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(stack.StackError, match=f"port {port} needed by kafka is in use"):
            stack._ensure_port_free("kafka", port)


def test_missing_java_says_how_to_install_it(monkeypatch) -> None:
    monkeypatch.setattr(stack.shutil, "which", lambda name: None)
    with pytest.raises(stack.StackError, match="java not found.*openjdk-17"):
        stack.check_java()


def test_a_full_disk_is_refused_before_starting(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(stack, "STACK", tmp_path)
    monkeypatch.setattr(stack, "MIN_FREE_DISK_BYTES", 1 << 62)
    with pytest.raises(stack.StackError, match="GiB free"):
        stack.check_disk()


def test_a_server_that_dies_during_start_up_shows_the_tail_of_its_log(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(stack, "LOGS", tmp_path / "logs")
    monkeypatch.setattr(stack, "RUN", tmp_path / "run")
    pid = stack._spawn("dummy", [sys.executable, "-c", "print('bind failed: address in use'); raise SystemExit(1)"])
    with pytest.raises(stack.StackError, match="(?s)dummy exited during start-up.*bind failed: address in use"):
        stack._wait("dummy", lambda: False, 20, pid, tmp_path / "logs" / "dummy.out")


def test_missing_jars_point_at_make_setup(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(stack, "LIB", tmp_path)
    with pytest.raises(stack.StackError, match="make setup"):
        stack._require_lib("kafka")


def test_unknown_components_are_refused_with_the_valid_names(capsys) -> None:
    with pytest.raises(SystemExit):
        stack.main(["up", "zookeeper"])
    assert "choose from ['kafka', 'cassandra', 'flink']" in capsys.readouterr().err


def test_a_kafka_cluster_id_never_starts_with_a_dash_the_storage_tool_would_read_as_an_option(monkeypatch) -> None:
    import uuid

    dash_first = uuid.UUID(bytes=b"\xf8" + bytes(15))  # base64 of 0xf8... starts with "-"
    ids = iter([dash_first, uuid.UUID(int=1)])
    monkeypatch.setattr(stack.uuid, "uuid4", lambda: next(ids))
    cluster_id = stack.kafka_cluster_id()
    assert not cluster_id.startswith("-") and len(cluster_id) == 22


def test_the_flink_lib_and_plugin_folders_survive_commands_started_at_once(tmp_path) -> None:
    """``make ingest`` and ``make profiles`` at once (and the command-sequence test) each build
    the folders of links Flink's scripts read; one used to remove the folder under the other."""
    import threading

    from local.stack import _linked_dir

    targets = {f"sub/{i}.jar" if i % 2 else f"{i}.jar": tmp_path / f"target-{i}.jar" for i in range(20)}
    errors: list[BaseException] = []

    def build() -> None:
        try:
            for _ in range(20):
                assert _linked_dir(tmp_path / "lib", targets) == tmp_path / "lib"
        except BaseException as e:  # noqa: BLE001  (reported below)
            errors.append(e)

    threads = [threading.Thread(target=build) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    got = {str(f.relative_to(tmp_path / "lib")): f.readlink() for f in (tmp_path / "lib").rglob("*") if f.is_symlink()}
    assert got == targets
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lib"]  # nothing left beside it
    assert _linked_dir(tmp_path / "lib", {"a.jar": tmp_path / "a"}) and [
        f.name for f in (tmp_path / "lib").iterdir()
    ] == ["a.jar"]
