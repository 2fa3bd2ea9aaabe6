"""Submit PyFlink jobs to the local standalone cluster and read them back over REST.

Used by ``make demo``, the end-to-end tests and the benchmark, so all three run the job the
way ops would: ``flink run`` against the cluster at http://127.0.0.1:8081.
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from local.polling import WaitTimeout, steady, wait_until
from local.stack import CASSANDRA_PORT, FLINK_REST_PORT, KAFKA_PORT, LOGS, ROOT, auth_env, flink_env

REST = f"http://127.0.0.1:{FLINK_REST_PORT}"


class FlinkJobError(RuntimeError):
    """Submission failed or the job ended in a state other than the one awaited."""


def rest(path: str, method: str = "GET", body: dict | None = None, timeout: float = 10) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(REST + path, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        raw = r.read()
    return json.loads(raw) if raw else {}


def stack_job_env(job_env: dict[str, str] | None = None) -> dict[str, str]:
    """``job_env`` with this stack's Kafka and Cassandra addresses unless already given, so a
    job submitted to a stack (the demo's, or the tests' own on other ports) uses its servers."""
    env = dict(job_env or {})
    env.setdefault("JOURNEY_BOOTSTRAP_SERVERS", f"127.0.0.1:{KAFKA_PORT}")
    env.setdefault("JOURNEY_CASSANDRA_HOST", "127.0.0.1")
    env.setdefault("JOURNEY_CASSANDRA_PORT", str(CASSANDRA_PORT))
    for key, value in auth_env().items():  # the auth variant's credentials (JOURNEY_STACK_AUTH=1)
        env.setdefault(key, value)
    return env


@dataclass
class Submission:
    job_id: str
    output: str


def submit(
    module: str,
    job_env: dict[str, str],
    args: list[str] = (),
    detached: bool = False,
    timeout_s: float = 900,
    savepoint: str | None = None,
) -> Submission:
    """``flink run -pym <module>`` on the standalone cluster; blocks until the job ends unless detached.

    ``job_env`` carries the job's JOURNEY_* settings (the client process reads them);
    ``savepoint`` restores from a savepoint or retained checkpoint path.
    """
    env = flink_env()
    env.update(stack_job_env(job_env))
    env["PYTHONPATH"] = str(ROOT)
    py = str(ROOT / ".venv" / "bin" / "python")
    flink = Path(env["FLINK_HOME"]) / "bin" / "flink"
    cmd = ["bash", str(flink), "run", "-m", f"127.0.0.1:{FLINK_REST_PORT}"]
    if detached:
        cmd.append("-d")
    if savepoint:
        cmd += ["-s", savepoint]
    cmd += ["-pym", module, "-pyclientexec", py, *args]
    log = LOGS / "flink-submit.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
    out = proc.stdout + proc.stderr
    with open(log, "a") as f:
        f.write(f"\n$ {' '.join(cmd)}\n{out}")
    m = re.search(r"JobID ([0-9a-f]{32})", out)
    if proc.returncode != 0 or m is None:
        causes = [ln.strip() for ln in out.splitlines() if "Caused by" in ln or "Error:" in ln]
        raise FlinkJobError(
            f"flink run -pym {module} failed (exit {proc.returncode}); "
            f"causes: {causes[-4:] or out[-1500:]}; full output in {log}"
        )
    return Submission(m.group(1), out)


def job_state(job_id: str) -> str:
    return rest(f"/jobs/{job_id}")["state"]


def wait_state(job_id: str, states: set[str], timeout_s: float = 300) -> str:
    """Wait until the job is in one of ``states``; returns the state. FlinkJobError if it fails
    or is cancelled first (unless awaited) or on timeout."""

    def state_of_job() -> str:
        state = job_state(job_id)
        if state in {"FAILED", "CANCELED"} - states:
            raise FlinkJobError(f"job {job_id} is {state}: {root_exception(job_id)}")
        return state

    try:
        return wait_until(state_of_job, timeout_s, 1, f"job {job_id} in {states}", until=states.__contains__)
    except WaitTimeout as e:
        raise FlinkJobError(f"job {job_id} not in {states} after {timeout_s}s (state {e.last})") from None


def root_exception(job_id: str) -> str:
    try:
        ex = rest(f"/jobs/{job_id}/exceptions")
        return (ex.get("exceptionHistory", {}).get("entries") or [{}])[0].get("stacktrace", "")[:2000]
    except Exception as e:  # the job may be gone
        return f"(no exception history: {e})"


def cancel(job_id: str) -> None:
    try:
        rest(f"/jobs/{job_id}", method="PATCH")
    except Exception:
        pass


def vertex_metrics(job_id: str, keep: Callable[[str, str], bool]) -> dict[tuple[str, str], float]:
    """Every operator metric of a running job that ``keep(operator, path)`` selects, as
    ``(operator, path)`` summed over subtasks (REST ids are ``<subtask>.<operator>.<path>``).
    Only works while the job runs (a finished job's metrics are gone from REST)."""
    totals: dict[tuple[str, str], float] = {}
    for v in rest(f"/jobs/{job_id}")["vertices"]:
        base = f"/jobs/{job_id}/vertices/{v['id']}/metrics"
        wanted = []
        for m in rest(base):
            parts = m["id"].split(".", 2)
            if len(parts) == 3 and keep(parts[1], parts[2]):
                wanted.append(m["id"])
        for i in range(0, len(wanted), 20):
            query = ",".join(urllib.request.quote(c, safe="") for c in wanted[i : i + 20])
            for m in rest(f"{base}?get={query}"):
                _, operator, path = m["id"].split(".", 2)
                totals[(operator, path)] = totals.get((operator, path), 0.0) + float(m["value"])
    return totals


def operator_counters(job_id: str, names: list[str]) -> dict[str, int]:
    """User counters summed over subtasks, by ``<operator>.<group path>.<counter>``.

    Chained Python operators report under one fused name, e.g.
    ``dedupe-by-event-id.received`` or
    ``dedupe-by-event-id.reason.unknown_schema.dead_lettered``. Only works while
    the job runs (a finished job's metrics are gone from REST).
    """
    found = vertex_metrics(job_id, lambda _operator, path: path.rsplit(".", 1)[-1] in names)
    return {f"{operator}.{path}": int(value) for (operator, path), value in found.items()}


def counter_total(counters: dict[str, int], name: str) -> int:
    """A user counter of :func:`operator_counters` summed over operators (``<operator>.<name>``)."""
    return sum(v for k, v in counters.items() if k.rsplit(".", 1)[-1] == name)


def wait_for_counters(
    job_id: str, at_least: dict[str, int], also: list[str] = (), timeout_s: float = 60
) -> dict[str, int]:
    """:func:`operator_counters` once each of ``at_least`` reached its value and two reads in a
    row agree (REST metrics lag behind by the fetcher interval); the last read on timeout."""
    names = [*at_least, *also]
    try:
        return wait_until(
            lambda: operator_counters(job_id, names),
            timeout_s,
            2,
            f"job {job_id}: counters {at_least}, two equal reads",
            until=steady(lambda c: all(counter_total(c, n) >= v for n, v in at_least.items())),
        )
    except WaitTimeout as e:
        return e.last


def completed_checkpoints(job_id: str) -> int:
    return int(rest(f"/jobs/{job_id}/checkpoints")["counts"]["completed"])


def wait_checkpoint(job_id: str, after: int, timeout_s: float = 120) -> int:
    """Wait until more than ``after`` checkpoints completed; returns the new count."""
    try:
        return wait_until(
            lambda: completed_checkpoints(job_id),
            timeout_s,
            0.3,
            f"job {job_id}: checkpoint {after + 1}",
            until=lambda n: n > after,
        )
    except WaitTimeout:
        raise FlinkJobError(f"job {job_id}: no checkpoint beyond {after} within {timeout_s}s") from None


def all_tasks_running(job_id: str) -> bool:
    job = rest(f"/jobs/{job_id}")
    return job["state"] == "RUNNING" and all(v["status"] == "RUNNING" for v in job["vertices"])


def stop_with_savepoint(job_id: str, directory: str, timeout_s: float = 120) -> str:
    """Stop the job with a savepoint (no drain); returns the savepoint path."""
    trigger = rest(f"/jobs/{job_id}/stop", method="POST", body={"drain": False, "targetDirectory": directory})[
        "request-id"
    ]
    try:
        st = wait_until(
            lambda: rest(f"/jobs/{job_id}/savepoints/{trigger}"),
            timeout_s,
            0.5,
            f"stop-with-savepoint of {job_id}",
            until=lambda st: st["status"]["id"] == "COMPLETED",
        )
    except WaitTimeout:
        raise FlinkJobError(f"stop-with-savepoint of {job_id} did not complete in {timeout_s}s") from None
    op = st.get("operation", {})
    if "location" in op:
        return op["location"]
    raise FlinkJobError(f"stop-with-savepoint of {job_id} failed: {op.get('failure-cause')}")


def latest_checkpoint(job_id: str) -> Path | None:
    """The newest complete retained checkpoint of a job on the local cluster, if any."""
    from local.stack import DATA

    base = DATA / "flink" / "checkpoints" / job_id
    chks = [p for p in base.glob("chk-*") if (p / "_metadata").exists()]
    return max(chks, key=lambda p: int(p.name.split("-")[1])) if chks else None
