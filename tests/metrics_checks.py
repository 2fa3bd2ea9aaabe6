"""The running jobs' metrics against the metric reference of docs/operations.md, over REST and
in the Prometheus scrape (used by the ingestion and journeys end-to-end tests)."""

from __future__ import annotations

from dataclasses import dataclass

from local.metrics import documented, find, prometheus_metrics, prometheus_name, rest_metrics, scrape, undocumented
from local.polling import WaitTimeout, wait_until
from models.ingest import DEAD_LETTER_REASONS
from models.journeys import TRIGGER_KINDS
from models.segments import PURPOSES

#: what the reference's placeholders stand for: the code's own lists
PLACEHOLDERS = {"reason": DEAD_LETTER_REASONS, "kind": TRIGGER_KINDS, "purpose": PURPOSES}


@dataclass
class MetricViews:
    rest: dict[tuple[str, str], float]
    prometheus: dict[tuple[str, str], float]


def read_views(job_id: str, idle: bool, timeout_s: float = 60) -> MetricViews:
    """REST first, then the Prometheus scrape. ``idle``: the job has nothing left to do, so
    wait until both agree on every value (REST lags behind by Flink's metric fetcher)."""

    def read() -> MetricViews:
        r = rest_metrics(job_id)
        return MetricViews(r, prometheus_metrics(job_id, scrape()))

    if not idle:
        return read()
    try:
        return wait_until(read, timeout_s, 2, f"job {job_id}: REST and Prometheus agree", until=_agree)
    except WaitTimeout as e:
        return e.last


def _agree(v: MetricViews) -> bool:
    return bool(v.rest) and all(find(v.prometheus, prometheus_name(op), p) == x for (op, p), x in v.rest.items())


def problems(views: MetricViews, job: str, idle: bool) -> list[str]:
    """What differs between the reference's rows of ``job`` and the job's metrics: a row not
    served over REST or Prometheus, a value that differs (while the job runs Prometheus, read
    later, may only be ahead on counters), a metric of the job's own operators not in the
    reference."""
    rows = [r for r in documented(PLACEHOLDERS) if r.job == job]
    out = []
    for r in rows:
        got = find(views.rest, r.operator, r.path)
        prom = find(views.prometheus, prometheus_name(r.operator), r.path)
        if got is None:
            out.append(f"{r.operator} {r.path}: not over REST")
        if prom is None:
            out.append(f"{r.operator} {r.path}: not in the Prometheus scrape")
        if got is None or prom is None:
            continue
        if idle and prom != got:
            out.append(f"{r.operator} {r.path}: REST {got} != Prometheus {prom}")
        elif not idle and r.kind != "level" and prom < got:  # a level may go either way
            out.append(f"{r.operator} {r.path}: Prometheus {prom} < REST {got} read before it")
    out += [f"{op} {p}: not in docs/operations.md" for op, p in sorted(undocumented(views.rest, rows))]
    return out
