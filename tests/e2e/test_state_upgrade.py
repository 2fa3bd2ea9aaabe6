"""Upgrades with a savepoint, on the real stack: state written by older code restores into newer code.

Each case runs the profiles job from one checkout of the code, stops it with a savepoint
once it has taken in the first part of a data set, and resumes it from that savepoint with
another checkout, which takes in the rest. The Flink cluster's TaskManagers are restarted
from each checkout in turn (a TaskManager keeps the Python modules it imported, so each
version of the code gets TaskManagers of its own), as a deployment would. Cassandra and the ``journey.identity`` log
must then equal the offline oracle over all the events: a value of the old state that was
lost or misread would show in its profile's counts.

* ``test_a_savepoint_of_the_release_that_pickled_its_state_restores_into_this_one``: the old
  checkout is :data:`PREVIOUS_RELEASE`, the last commit whose Flink state held pickled
  Python objects (``git archive`` into a scratch folder).
* ``test_a_savepoint_with_the_atoms_in_a_map_state_restores_into_the_one_record``: the old
  checkout is :data:`ATOMS_IN_MAP_STATE_RELEASE`; each restored profile's atoms move into its
  fold record on its next command (an atom lost there would show in the profile's counts).
* ``test_a_state_record_with_a_new_field_restores_a_savepoint_written_before_it``: the new
  checkout is this one with a field (with a default) added to two state records and the
  schemas frozen (``python -m state.records --freeze``), i.e. the code change the evolution
  rules allow.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka import Producer

from local import stack
from local.flink_cluster import cancel, stop_with_savepoint, wait_state
from local.kafka_read import group_lag
from local.polling import wait_until
from tests.ingestion_harness import Topics
from tests.profiles_harness import (
    ProfilesRun,
    normalized_records,
    wait_until_cassandra_equals_oracle,
    wait_until_identity_equals_oracle,
)

pytestmark = pytest.mark.e2e

#: the last release whose Flink state held pickled Python objects (issue 9 landed)
PREVIOUS_RELEASE = "217918c1d2e39220648d8f4b53e3cb52432355e4"
#: the last release that kept a profile's atoms in a MapState of their own (profile-atoms)
#: beside its fold record; this one moves them into the record
ATOMS_IN_MAP_STATE_RELEASE = "b5f1865c66a14706d8577f95a75a04fd040be213"
ROOT = stack.ROOT


def checkout(commit: str, into: Path) -> Path:
    """``commit`` of this repository as a plain folder, sharing this checkout's venv and jars."""

    def have() -> bool:
        found = subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=ROOT, capture_output=True)
        return found.returncode == 0

    if not have():  # a shallow clone: fetch the history from where it came from
        subprocess.run(["git", "fetch", "--quiet", "--unshallow"], cwd=ROOT, capture_output=True, timeout=300)
        subprocess.run(["git", "fetch", "--quiet", "origin", commit], cwd=ROOT, capture_output=True, timeout=300)
    assert have(), (
        f"commit {commit} is not in this clone and could not be fetched: the upgrade test needs the history "
        f"(`git fetch --unshallow`)"
    )
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    _share_venv_and_jars(into)
    return into


def copy_of_this_checkout(into: Path) -> Path:
    shutil.copytree(ROOT, into, ignore=shutil.ignore_patterns(".git", ".stack", ".venv", "__pycache__", "bench"))
    _share_venv_and_jars(into)
    return into


def _share_venv_and_jars(into: Path) -> None:
    (into / ".stack").mkdir(exist_ok=True)
    (into / ".stack" / "lib").symlink_to(ROOT / ".stack" / "lib")
    (into / ".venv").symlink_to(ROOT / ".venv")


def _in(code_dir: Path, script: str, *args: str) -> str:
    """Run ``script`` with ``code_dir``'s code (on the tests' stack: the environment carries
    JOURNEY_STACK_DIR and JOURNEY_STACK_PORT_OFFSET); returns its stdout."""
    env = dict(os.environ, PYTHONPATH=str(code_dir))
    r = subprocess.run(
        [sys.executable, "-c", script, *args], cwd=code_dir, env=env, capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, f"in {code_dir}: {script}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r.stdout


#: the checkout whose code the tests' Flink cluster runs (None: unknown, after a failed start)
_running: list[Path | None] = [ROOT]


def flink_from(code_dir: Path) -> None:
    """Give the tests' Flink cluster TaskManagers that run ``code_dir``'s code, unless its
    TaskManagers run that code already (the cases run back to back).

    Only the TaskManagers are replaced: they run the jobs' Python; the JobManager runs none
    (the job graph is built by the submitting client, in ``code_dir``)."""
    if _running[0] == code_dir:
        return
    _running[0] = None
    stack.flink_daemon("taskmanager.sh", "stop-all", check=False)
    registered = stack._registered_taskmanagers
    wait_until(registered, 60, 0.5, "the TaskManagers unregistered", until=lambda n: n == 0)
    _in(
        code_dir,
        "from local import stack\n"
        "env = stack.flink_env()\n"
        "for _ in range(stack.FLINK_TASK_MANAGERS):\n"
        "    stack.flink_daemon('taskmanager.sh', 'start', env)",
    )
    wait_until(registered, 90, 0.5, "the new TaskManagers registered", until=lambda n: n >= stack.FLINK_TASK_MANAGERS)
    _running[0] = code_dir


def apply_schema_from(code_dir: Path, keyspace: str) -> None:
    _in(
        code_dir,
        "import sys\n"
        "from local import stack\n"
        "from state.cassandra_schema import apply_schema\n"
        "apply_schema('127.0.0.1', keyspace=sys.argv[1], port=stack.CASSANDRA_PORT)",
        keyspace,
    )


def submit_from(code_dir: Path, job_env: dict[str, str], savepoint: str | None = None) -> str:
    out = _in(
        code_dir,
        "import json, sys\n"
        "from local.flink_cluster import submit\n"
        "s = submit('flink_jobs.profiles', json.loads(sys.argv[1]), detached=True, "
        "savepoint=sys.argv[2] or None)\n"
        "print('JOB', s.job_id)",
        json.dumps(job_env),
        savepoint or "",
    )
    return next(line.split()[1] for line in out.splitlines() if line.startswith("JOB "))


def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i, v in enumerate(values):
        p.produce(topic, value=v, partition=i % 2)
    assert p.flush(60) == 0


def upgrade(
    old: Path, new: Path, bootstrap: str, session, old_erases: bool = True
) -> tuple[list[str], list[str], float]:
    """First part of the events with ``old``, savepoint, the rest with ``new``; the
    differences of Cassandra and journey.identity from the oracle, and the seconds it took.
    ``old_erases`` False: ``old`` predates erasure (it keeps whoever it was asked to erase)."""
    from models.avro_codec import SchemaCatalog

    topics = Topics.create(bootstrap, "upgrade")
    run = ProfilesRun.over(bootstrap, topics)  # the journeys' topics too (an old release leaves them unused)
    apply_schema_from(old, run.keyspace)  # the keyspace as the old release created it
    env = run.job_env(bootstrap, JOURNEY_COALESCE_MS="300")
    values = normalized_records(persons=30, seed=421)
    split = len(values) * 3 // 5
    catalog = SchemaCatalog.load()
    events = [catalog.decode(v)[1] for v in values]
    group = env["JOURNEY_GROUP_ID"]

    flink_from(old)
    job = submit_from(old, env)
    try:
        wait_state(job, {"RUNNING"}, timeout_s=120)
        produce(bootstrap, topics.normalized, values[:split])
        diff, _ = wait_until_cassandra_equals_oracle(
            session, run.keyspace, events[:split], timeout_s=240, erasure_requests=None if old_erases else []
        )
        assert diff == [], f"the old code did not reach the oracle over its part: {diff}"
        # every input consumed before the stop (the moved atoms are all folded: Cassandra equals the
        # oracle; the feedback topic's lag never reaches 0, its transaction markers count in it)
        wait_until(
            lambda: group_lag(bootstrap, group, topics.normalized),
            120,
            1,
            "the input consumed",
            until=lambda lag: lag == 0,
        )
        savepoint = stop_with_savepoint(job, f"file://{stack.DATA / 'flink' / 'savepoints'}")
    except BaseException:
        cancel(job)
        raise
    apply_schema_from(new, run.keyspace)  # deploying: the new release's schema first, then its jobs
    flink_from(new)
    job = submit_from(new, env, savepoint)
    try:
        wait_state(job, {"RUNNING"}, timeout_s=120)
        produce(bootstrap, topics.normalized, values[split:])
        # the requests the new release saw are carried out (and the old one's, if it erases)
        requests = None if old_erases else events[split:]
        diff, seconds = wait_until_cassandra_equals_oracle(
            session, run.keyspace, events, timeout_s=240, erasure_requests=requests
        )
        identity, _ = wait_until_identity_equals_oracle(bootstrap, run, events, 120, erasure_requests=requests)
    finally:
        cancel(job)
    session.execute(f"DROP KEYSPACE IF EXISTS {run.keyspace}")
    return diff, identity, seconds


@pytest.fixture(scope="module")
def flink_restored(local_stack):
    """Leave the tests' Flink cluster running this checkout's code again after the module."""
    yield local_stack
    flink_from(ROOT)


def test_a_savepoint_of_the_release_that_pickled_its_state_restores_into_this_one(
    flink_restored, session, tmp_path
) -> None:
    old = checkout(PREVIOUS_RELEASE, tmp_path / "previous")
    assert "PICKLED_BYTE_ARRAY" in (old / "state" / "mapstate.py").read_text()  # it is the pickling release
    diff, identity, seconds = upgrade(old, ROOT, flink_restored, session, old_erases=False)
    assert diff == [], f"not equal after {seconds:.0f} s: {diff}"
    assert identity == []


def test_a_state_record_with_a_new_field_restores_a_savepoint_written_before_it(
    flink_restored, session, tmp_path
) -> None:
    evolved = copy_of_this_checkout(tmp_path / "evolved")
    path = evolved / "schemas" / "state" / "state.avsc"
    schemas = json.loads(path.read_text())
    for s in schemas:
        if s["name"] in ("FoldState", "ProfileAggregate"):
            s["fields"].append({"name": "upgrade_note", "type": "string", "default": "added later"})
    path.write_text(json.dumps(schemas, indent=1))
    _in(evolved, "from state.records import main; main(['--freeze'])")
    assert (
        _in(evolved, "from state.records import state_schemas, unfrozen; print(unfrozen(state_schemas()))").strip()
        == "[]"
    )
    diff, identity, seconds = upgrade(ROOT, evolved, flink_restored, session)
    assert diff == [], f"not equal after {seconds:.0f} s: {diff}"
    assert identity == []


def test_a_savepoint_with_the_atoms_in_a_map_state_restores_into_the_one_record(
    flink_restored, session, tmp_path
) -> None:
    old = checkout(ATOMS_IN_MAP_STATE_RELEASE, tmp_path / "atoms-in-map-state")
    assert '"atoms"' not in (old / "schemas" / "state" / "state.avsc").read_text().split('"FoldState"')[1]
    diff, identity, seconds = upgrade(old, ROOT, flink_restored, session)
    assert diff == [], f"not equal after {seconds:.0f} s: {diff}"
    assert identity == []
