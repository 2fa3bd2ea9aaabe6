"""The erasure ledger in Cassandra (``erased_identifiers``, docs/privacy.md): read by a job that
starts (the ingestion job always, the identity stage when it starts with no state), so that a
replay of history never brings an erased person back. Written by the profiles stage
(``state.profile_store.ProfileStore``, with each erased profile's last write)."""

from __future__ import annotations

from dataclasses import dataclass

from models.config import CassandraAuth


class LedgerUnavailable(RuntimeError):
    """The ledger could not be read: the job must not start without it."""


@dataclass(frozen=True)
class CassandraLedger:
    """Factory of the ledger's tombstone keys (picklable: Flink ships it to the TaskManagers)."""

    host: str
    port: int
    keyspace: str
    auth: CassandraAuth | None = None  # None: JOURNEY_CASSANDRA_* of the process
    #: how long the operator that reads it waits for an unreachable Cassandra (JOURNEY_CASSANDRA_WAIT_MS)
    wait_s: float = 0.0

    def __call__(self) -> list[str]:
        """Every tombstone key of the ledger."""
        return self._tombstones("", self.wait_s)

    def check(self) -> None:
        """Raise :class:`LedgerUnavailable` unless the ledger can be read (one row at most: a
        job's start-up check, before the job itself reads all of it; it never waits)."""
        self._tombstones(" LIMIT 1", 0.0)

    def _tombstones(self, limit: str, wait_s: float) -> list[str]:
        from state.cassandra_schema import connect

        try:
            session = connect(self.host, self.port, auth=self.auth, wait_s=wait_s)
        except Exception as e:
            raise LedgerUnavailable(
                f"cannot read the erasure ledger: Cassandra at {self.host}:{self.port} is unreachable ({e}); "
                "set JOURNEY_ERASURE_LEDGER=off only where no profiles stage runs"
            ) from e
        try:
            rows = session.execute(f"SELECT tombstone FROM {self.keyspace}.erased_identifiers{limit}")
            return [r.tombstone for r in rows]
        except Exception as e:
            raise LedgerUnavailable(
                f"cannot read the erasure ledger {self.keyspace}.erased_identifiers ({e}); "
                "apply the schema first (python -m state.cassandra_schema)"
            ) from e
        finally:
            session.cluster.shutdown()
