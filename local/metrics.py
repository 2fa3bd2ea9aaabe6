"""The jobs' own metrics as ops see them: Flink's REST API (the web UI) and the Prometheus
endpoints, checked against the catalogue in docs/operations.md ("Metric reference").

A metric is named ``(operator, path)``: the operator's ``.name()`` and the metric's path below
it, e.g. ``("dedupe-by-event-id", "received")`` or
``("dedupe-by-event-id", "reason.invalid_field.dead_lettered")`` (a key/value group). Values
are summed over subtasks.

REST gives ``<subtask>.<operator>.<path>`` per vertex; chained Python operators report under a
fused name (``decode-validate-normalize___stream_key_by_map_operator``), so operators are
matched by prefix. Prometheus gives ``flink_taskmanager_job_task_operator_<key>_<name>`` with
the operator (``operator_name``, ``-`` replaced by ``_``), the job (``job_id``) and each
key/value group (``reason="invalid_field"``) as labels.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from local.flink_cluster import vertex_metrics
from local.stack import PROMETHEUS_PORTS, ROOT

DOC = ROOT / "docs" / "operations.md"

#: metrics every Flink operator has (not the jobs' own)
FLINK_OPERATOR_METRICS = frozenset(
    {
        "currentInputWatermark",
        "currentOutputWatermark",
        "numBytesIn",
        "numBytesInPerSecond",
        "numBytesOut",
        "numBytesOutPerSecond",
        "numRecordsIn",
        "numRecordsInPerSecond",
        "numRecordsOut",
        "numRecordsOutPerSecond",
    }
)
#: operators Flink or its connectors add to a job (their metrics are not the jobs' own)
FLINK_OPERATORS = re.compile(r"^(Source|Calc|TableToDataStream|Map|Shuffle|kafka[-_]sink|Sink)")
#: labels Flink's Prometheus reporter puts on every operator metric
PROMETHEUS_SCOPE_LABELS = frozenset(
    {
        "job_id",
        "job_name",
        "task_id",
        "task_name",
        "task_attempt_id",
        "task_attempt_num",
        "host",
        "tm_id",
        "operator_id",
        "operator_name",
        "subtask_index",
    }
)
OPERATOR_PREFIX = "flink_taskmanager_job_task_operator_"


@dataclass(frozen=True)
class Documented:
    """One row of the metric reference; ``path`` with its placeholder expanded."""

    job: str
    operator: str
    path: str
    kind: str  # "counter" or "level" (a counter holding a value, e.g. an AUC × 1000)


def _is_ours(operator: str, path: str) -> bool:
    return not FLINK_OPERATORS.match(operator) and path not in FLINK_OPERATOR_METRICS


def rest_metrics(job_id: str) -> dict[tuple[str, str], float]:
    """Every metric of the job's own operators, summed over subtasks (REST, while it runs)."""
    return vertex_metrics(job_id, _is_ours)


_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)(?:\s+\d+)?$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_exposition(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Samples of the Prometheus text format: ``(name, labels, value)``; comments skipped.

    >>> parse_exposition('# HELP x y\\nx_total{a="1",b="q\\\\"x",} 2.0\\nup 1')
    [('x_total', {'a': '1', 'b': 'q\\\\"x'}, 2.0), ('up', {}, 1.0)]
    """
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m is None:
            raise ValueError(f"not a Prometheus sample line: {line!r}")
        labels = dict(_LABEL.findall(m["labels"] or ""))
        out.append((m["name"], labels, float(m["value"])))
    return out


def scrape(ports: Iterable[int] = PROMETHEUS_PORTS) -> str:
    """The exposition text of every Prometheus endpoint of the local cluster (JobManager and
    TaskManagers: each took the first free port of the range), joined."""
    texts = []
    for port in ports:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                texts.append(r.read().decode())
        except (urllib.error.URLError, ConnectionError):
            continue
    return "\n".join(texts)


def prometheus_metrics(job_id: str, text: str) -> dict[tuple[str, str], float]:
    """The job's own operator metrics in ``text`` (:func:`scrape`), named as REST names them
    except that the operator is Prometheus' (``-`` → ``_``), summed over subtasks."""
    totals: dict[tuple[str, str], float] = {}
    for name, labels, value in parse_exposition(text):
        if not name.startswith(OPERATOR_PREFIX) or labels.get("job_id") != job_id:
            continue
        path = name[len(OPERATOR_PREFIX) :]
        for key in sorted(set(labels) - PROMETHEUS_SCOPE_LABELS):  # key/value groups
            if path.startswith(key + "_"):
                path = f"{key}.{labels[key]}.{path[len(key) + 1 :]}"
        operator = labels["operator_name"]
        if _is_ours(operator, path):
            totals[(operator, path)] = totals.get((operator, path), 0.0) + value
    return totals


def prometheus_name(name: str) -> str:
    """An operator or metric name as Flink's Prometheus reporter writes it.

    >>> prometheus_name("dedupe-by-event-id")
    'dedupe_by_event_id'
    """
    return re.sub(r"[^a-zA-Z0-9:_]", "_", name)


def documented(placeholders: Mapping[str, Iterable[str]], doc: Path = DOC) -> list[Documented]:
    """The rows of the metric reference in ``doc``, each ``<placeholder>`` expanded with its
    values (e.g. ``<reason>`` with every dead-letter reason)."""
    text = doc.read_text()
    start = text.index("### Metric reference")
    rows = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith("#"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not cells[2].startswith("`"):
            continue
        job, operator, path, kind = cells[0], cells[1].strip("`"), cells[2].strip("`"), cells[3]
        holes = re.findall(r"<([a-z_]+)>", path)
        if not holes:
            rows.append(Documented(job, operator, path, kind))
            continue
        (hole,) = holes
        if hole not in placeholders:
            raise ValueError(f"{doc}: {path} names <{hole}>, which has no list of values")
        rows += [Documented(job, operator, path.replace(f"<{hole}>", v), kind) for v in placeholders[hole]]
    if not rows:
        raise ValueError(f"{doc}: no rows under 'Metric reference'")
    return rows


def find(metrics: Mapping[tuple[str, str], float], operator: str, path: str) -> float | None:
    """The value of ``operator``'s ``path`` in ``metrics`` of :func:`rest_metrics` or
    :func:`prometheus_metrics` (operator matched by prefix: chained operators report under a
    fused name), or None when absent."""
    values = [v for (op, p), v in metrics.items() if p == path and op.startswith(operator)]
    return sum(values) if values else None


def undocumented(metrics: Mapping[tuple[str, str], float], rows: Iterable[Documented]) -> set[tuple[str, str]]:
    """Metrics of :func:`rest_metrics` no row of the reference names."""
    rows = list(rows)
    return {(op, p) for op, p in metrics if not any(p == r.path and op.startswith(r.operator) for r in rows)}
