"""Where the online models write: Cassandra ``scores`` (each profile's latest) and
``model_metrics`` (progressive validation over event time), or a recording in tests.

Writes are idempotent: a score ``USING TIMESTAMP`` the learner's count of sessions scored at it,
a metrics row keyed by the event time of the batch's last sample (a replay writes the same).

Reading with plain CQL::

    SELECT model, model_version, cluster, propensity, churn_risk, at FROM journey.scores WHERE profile_id = 'p-…';
    SELECT at, auc, log_loss, samples, churn_auc, churn_samples FROM journey.model_metrics
      WHERE model = 'journey-models' LIMIT 10;
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, Sequence

from models.config import CassandraAuth
from models.erasure import ERASED_TIMESTAMP
from state.journey_store import AUDIT_COLUMNS, audit_row
from state.recording import append_statements

SCORE_COLUMNS = (
    "profile_id",
    "model",
    "model_version",
    "cluster",
    "previous_cluster",
    "propensity",
    "at",
    "session_id",
    "churn_risk",
)
METRIC_COLUMNS = (
    "model",
    "at",
    "model_version",
    "samples",
    "auc",
    "log_loss",
    "churn_samples",
    "churn_auc",
    "churn_log_loss",
)


#: an erased profile for the learner's store: (ids to forget, request id, event time, part)
Erasure = tuple[Sequence[str], str, int, int]


class ScoreWriter(Protocol):
    def write(
        self, scores: Sequence[tuple[dict[str, Any], int]], metrics: dict[str, Any], erasures: Sequence[Erasure] = ()
    ) -> int:
        """Write the scores (each with its version), one metrics row and the erasures (each id's
        ``scores`` rows deleted at ``ERASED_TIMESTAMP``, an audit row); returns the requests."""
        ...

    def close(self) -> None: ...


def _ts(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def statements(
    scores: Sequence[tuple[dict[str, Any], int]], metrics: dict[str, Any], erasures: Sequence[Erasure] = ()
) -> list[tuple[str, tuple, int]]:
    out = [("score", tuple(rec[c] for c in SCORE_COLUMNS), version) for rec, version in scores]
    for ids, request_id, at, part in erasures:  # after the scores: a deletion wins whatever the order
        out += [("erase-score", (pid,), ERASED_TIMESTAMP) for pid in ids]
        audit = audit_row(
            request_id, "models", part, "erasure", at, tables=["scores"], rows=len(ids), profiles=len(ids)
        )
        out.append(("audit", audit, 1))
    row = {"model": scores[0][0]["model"] if scores else "journey-models", **metrics}
    for c in ("samples", "model_version", "churn_samples"):
        row[c] = int(row[c])
    out.append(("metrics", tuple(row[c] for c in METRIC_COLUMNS), int(metrics["samples"])))
    return out


class LearningStore:
    """Writer (synchronous, idempotent) and reader of ``scores`` and ``model_metrics``."""

    def __init__(self, session: Any, keyspace: str = "journey") -> None:
        from cassandra import ConsistencyLevel

        self._session, self._ks, self._owns_cluster = session, keyspace, False

        def prep(table: str, cols: Sequence[str]) -> Any:
            stmt = session.prepare(
                f"INSERT INTO {keyspace}.{table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) USING TIMESTAMP ?"
            )
            stmt.consistency_level = ConsistencyLevel.LOCAL_QUORUM
            stmt.is_idempotent = True
            return stmt

        self._writes = {"score": prep("scores", SCORE_COLUMNS), "metrics": prep("model_metrics", METRIC_COLUMNS)}
        self._writes["audit"] = prep("privacy_audit", AUDIT_COLUMNS)
        erase = session.prepare(f"DELETE FROM {keyspace}.scores USING TIMESTAMP ? WHERE profile_id = ?")
        erase.consistency_level = ConsistencyLevel.LOCAL_QUORUM
        erase.is_idempotent = True
        self._writes["erase-score"] = erase

    @classmethod
    def connect(
        cls,
        host: str = "127.0.0.1",
        port: int = 9042,
        keyspace: str = "journey",
        auth: CassandraAuth | None = None,
        wait_s: float = 0.0,
    ) -> "LearningStore":
        from state.cassandra_schema import connect

        store = cls(connect(host, port, auth=auth, wait_s=wait_s), keyspace)
        store._owns_cluster = True
        return store

    def close(self) -> None:
        if self._owns_cluster:
            self._session.cluster.shutdown()

    def __enter__(self) -> "LearningStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def write(
        self, scores: Sequence[tuple[dict[str, Any], int]], metrics: dict[str, Any], erasures: Sequence[Erasure] = ()
    ) -> int:
        futures = []
        for action, values, ts in statements(scores, metrics, erasures):
            if action == "erase-score":
                futures.append(self._session.execute_async(self._writes[action], (ts, *values)))
                continue
            cols = {"score": SCORE_COLUMNS, "metrics": METRIC_COLUMNS}.get(action, AUDIT_COLUMNS)
            row = tuple(_ts(v) if c == "at" else v for c, v in zip(cols, values))
            futures.append(self._session.execute_async(self._writes[action], (*row, ts)))
        for f in futures:
            f.result()
        return len(futures)

    def scores(self) -> list[dict[str, Any]]:
        """Every profile's latest scores (tests, the demo; small data)."""
        rows = self._session.execute(f"SELECT {', '.join(SCORE_COLUMNS)} FROM {self._ks}.scores")
        return [{c: _ms(getattr(r, c)) if c == "at" else getattr(r, c) for c in SCORE_COLUMNS} for r in rows]


def _ms(v: datetime) -> int:
    if v.tzinfo is None:
        v = v.replace(tzinfo=timezone.utc)
    return int(round(v.timestamp() * 1000))


@dataclass(frozen=True)
class CassandraScores:
    """Factory of the production store (picklable: Flink ships it to the TaskManagers)."""

    host: str
    port: int
    keyspace: str
    auth: CassandraAuth | None = None  # None: JOURNEY_CASSANDRA_* of the process
    wait_s: float = 0.0  # how long open() waits for an unreachable Cassandra (JOURNEY_CASSANDRA_WAIT_MS)

    def __call__(self) -> LearningStore:
        return LearningStore.connect(self.host, self.port, self.keyspace, self.auth, self.wait_s)


@dataclass(frozen=True)
class RecordingScores:
    """Factory of a store that appends each write to ``path`` as a JSON line (tests)."""

    path: str

    def __call__(self) -> "_Recording":
        return _Recording(Path(self.path))


class _Recording:
    def __init__(self, path: Path) -> None:
        self.path = path

    def write(
        self, scores: Sequence[tuple[dict[str, Any], int]], metrics: dict[str, Any], erasures: Sequence[Erasure] = ()
    ) -> int:
        return append_statements(self.path, statements(scores, metrics, erasures))

    def close(self) -> None:
        pass


def read_recorded_scores(path: Path) -> dict[str, dict[str, Any]]:
    """Each profile's score row as Cassandra would hold it (highest timestamp wins)."""
    best: dict[str, tuple[int, dict[str, Any] | None]] = {}
    for line in Path(path).read_text().splitlines():
        action, values, ts = json.loads(line)
        if action == "erase-score":
            have = best.get(values[0])
            if have is None or ts >= have[0]:
                best[values[0]] = (ts, None)
        if action == "score":
            row = dict(zip(SCORE_COLUMNS, values))
            have = best.get(row["profile_id"])
            if have is None or ts >= have[0]:
                best[row["profile_id"]] = (ts, row)
    return {p: r for p, (_, r) in best.items() if r is not None}
