"""Where the profile operator writes profiles: injected, so the same operator runs against
Cassandra in production and against a recording store in tests.

The operator takes a *factory* (picklable: Flink ships it to the TaskManagers) and calls it
in ``open()``; the store it returns has ``write(ProfileWrite) -> ticket`` and
``write_all(writes) -> ticket`` (several profiles in one request; a ticket has ``done`` and
``error``, set when the store answered), ``writes_issued`` (requests), ``mutations_issued``
and ``close()``. :class:`WriteGroups` gathers the operator's writes into such requests.

* :class:`CassandraSink`: :class:`state.profile_store.ProfileStore` on a cluster.
* :class:`RecordingSink`: every write appended as one JSON line to a file, answered at once
  (or failing once on purpose, to force a restore in a test); :func:`read_recorded` gives
  each profile's row as Cassandra's ``USING TIMESTAMP`` rules would leave it.

Examples
--------
>>> import tempfile, pathlib
>>> from models.profile import ProfileAggregate
>>> from models.profile_fold import ProfileWrite
>>> path = pathlib.Path(tempfile.mkdtemp()) / "writes.jsonl"
>>> store = RecordingSink(str(path))()
>>> t = store.write(ProfileWrite("p-1", 5, ProfileAggregate(profile_id="p-1", events=2), ("p-0",), 3))
>>> t.done, t.error
(True, None)
>>> rows = read_recorded(path)
>>> rows["p-1"][1].events, rows["p-0"]
(2, (3, None))
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

from models.config import CassandraAuth
from models.erasure import ERASED_TIMESTAMP
from models.profile import ProfileAggregate
from models.profile_fold import ProfileWrite


class Ticket(Protocol):
    @property
    def done(self) -> bool: ...

    @property
    def error(self) -> str | None: ...


class ProfileSink(Protocol):
    writes_issued: int  # requests
    mutations_issued: int

    def write(self, w: ProfileWrite) -> Ticket: ...

    def write_all(self, writes: Sequence[ProfileWrite]) -> Ticket: ...

    def close(self) -> None: ...


class _Grouped:
    """The ticket of a write waiting in a :class:`WriteGroups` group: unanswered until the
    group is sent, then its request's ticket."""

    def __init__(self) -> None:
        self.request: Ticket | None = None

    @property
    def done(self) -> bool:
        return self.request is not None and self.request.done

    @property
    def error(self) -> str | None:
        return None if self.request is None else self.request.error


class WriteGroups:
    """Several profiles' writes in one request: a write waits in the open group until the
    group holds ``max_writes`` writes or its first write is ``window_ms`` old (checked by
    :meth:`add` and :meth:`poll`), then the group goes out as one request
    (:meth:`ProfileSink.write_all`). A waiting write's ticket is unanswered until its group's
    request is answered, so the operator treats it exactly like a write in flight.

    >>> import tempfile, pathlib
    >>> from models.profile import ProfileAggregate
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "writes.jsonl"
    >>> groups = WriteGroups(RecordingSink(str(path))(), max_writes=2, window_ms=10)
    >>> a = groups.add(ProfileWrite("p-1", 5, ProfileAggregate(profile_id="p-1", events=2), (), 3), now=0)
    >>> a.done, groups.store.writes_issued
    (False, 0)
    >>> groups.poll(now=9), groups.poll(now=10), a.done, groups.store.writes_issued
    (False, True, True, 1)
    >>> b = groups.add(ProfileWrite("p-2", 5, None, (), 3), now=20)
    >>> c = groups.add(ProfileWrite("p-3", 5, None, (), 3), now=21)  # full: sent at once
    >>> b.done, c.done, groups.store.writes_issued
    (True, True, 2)
    """

    def __init__(self, store: ProfileSink, max_writes: int, window_ms: int) -> None:
        if max_writes < 1 or window_ms < 0:
            raise ValueError(f"max_writes must be >= 1 and window_ms >= 0, got {max_writes}, {window_ms}")
        self.store, self.max_writes, self.window_ms = store, max_writes, window_ms
        self._writes: list[ProfileWrite] = []
        self._tickets: list[_Grouped] = []
        self._since = 0

    def add(self, w: ProfileWrite, now: int) -> Ticket:
        """Put ``w`` in the open group (sent now if that fills it or the group is due)."""
        if not self._writes:
            self._since = now
        ticket = _Grouped()
        self._writes.append(w)
        self._tickets.append(ticket)
        if len(self._writes) >= self.max_writes:
            self.send()
        else:
            self.poll(now)
        return ticket

    def poll(self, now: int) -> bool:
        """Send the open group if its first write is ``window_ms`` old; True if it was sent."""
        if self._writes and now - self._since >= self.window_ms:
            self.send()
            return True
        return False

    def send(self) -> None:
        """Send the open group now (if it holds any write)."""
        if not self._writes:
            return
        request = self.store.write_all(self._writes)
        for t in self._tickets:
            t.request = request
        self._writes, self._tickets = [], []


@dataclass(frozen=True)
class CassandraSink:
    """Factory of the production sink: :class:`~state.profile_store.ProfileStore` on a cluster."""

    host: str
    port: int
    keyspace: str
    auth: CassandraAuth | None = None  # None: JOURNEY_CASSANDRA_* of the process
    wait_s: float = 0.0  # how long open() waits for an unreachable Cassandra (JOURNEY_CASSANDRA_WAIT_MS)

    def __call__(self) -> ProfileSink:
        from state.profile_store import ProfileStore

        return ProfileStore.connect(self.host, self.port, keyspace=self.keyspace, auth=self.auth, wait_s=self.wait_s)


@dataclass
class _Answered:
    done: bool = True
    error: str | None = None


@dataclass(frozen=True)
class RecordingSink:
    """Factory of a store that appends each write to ``path`` (JSON lines) and answers at once.

    ``fail_write`` > 0: the write with that number (counted over the file) is answered with
    an error, once (a marker file beside ``path`` remembers it), so the operator fails and
    the job restores from its last checkpoint.
    """

    path: str
    fail_write: int = 0

    def __call__(self) -> ProfileSink:
        return _Recording(Path(self.path), self.fail_write)


class _Recording:
    def __init__(self, path: Path, fail_write: int) -> None:
        self.path, self.fail_write = path, fail_write
        self.writes_issued = self.mutations_issued = 0
        self.instance = uuid.uuid4().hex[:12]  # this store (one per operator instance)

    def write(self, w: ProfileWrite) -> Ticket:
        return self.write_all((w,))

    def write_all(self, writes: Sequence[ProfileWrite]) -> Ticket:
        """All of ``writes`` appended at once, one answer for them (one request)."""
        self.writes_issued += 1
        self.mutations_issued += sum(1 + len(w.ghosts) for w in writes)
        lines = [
            json.dumps(
                {
                    "profile_id": w.profile_id,
                    "version": w.version,
                    "ghosts": list(w.ghosts),
                    "ghost_version": w.ghost_version,
                    "profile": None if w.profile is None else w.profile.to_dict(),
                    "erased": None if w.erasure is None else w.erasure.request_id,
                    "request": [self.instance, self.writes_issued],  # the writes of one request share it
                }
            )
            for w in writes
        ]
        with open(self.path, "a") as f:
            f.write("".join(line + "\n" for line in lines))
            f.flush()
            os.fsync(f.fileno())
        if self.fail_write:
            marker = self.path.with_suffix(".failed")
            with open(self.path) as f:
                written = sum(1 for _ in f)
            if written >= self.fail_write and not marker.exists():
                marker.write_text(str(written))
                return _Answered(True, "injected failure (RecordingSink.fail_write)")
        return _Answered()

    def close(self) -> None:
        pass


def read_recorded(path: Path) -> dict[str, tuple[int, ProfileAggregate | None]]:
    """Each profile's ``(version, row)`` after all recorded writes, by Cassandra's rules: a row
    written at ``2v + 1``, deleted at ``2v`` (ghosts at ``2 * ghost_version``); the highest
    timestamp wins (row None: deleted)."""
    best: dict[str, tuple[int, Any]] = {}

    def put(pid: str, ts: int, value: Any) -> None:
        if pid not in best or ts >= best[pid][0]:
            best[pid] = (ts, value)

    for line in Path(path).read_text().splitlines():
        w = json.loads(line)
        if w.get("erased") is not None:  # an erasure: deleted above every write (models.erasure)
            for pid in [w["profile_id"], *w["ghosts"]]:
                put(pid, ERASED_TIMESTAMP, None)
            continue
        for ghost in w["ghosts"]:
            put(ghost, 2 * w["ghost_version"], None)
        if w["profile"] is None:
            put(w["profile_id"], 2 * w["version"], None)
        else:
            put(w["profile_id"], 2 * w["version"] + 1, ProfileAggregate.from_dict(w["profile"]))
    return {pid: (ts // 2, value) for pid, (ts, value) in best.items()}
