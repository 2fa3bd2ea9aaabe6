"""The hand-written baseline of issue 14: what a team would write instead of the Flink jobs.

One core, :class:`HandwrittenPipeline`, runs the project's own ``models/`` code on raw Kafka
record values (the bytes producers write to ``journey.events.<channel>``), per record:
``Ingestor.process`` (decode, validate, normalize; a rejected record is counted as
dead-lettered), dedupe by ``event_id`` in a set, identity resolution
(:class:`models.identity_router.IdentityRouter`; moved profile state and journey parts handed
back at once, in process), the profile fold (:class:`models.profile_fold.ProfileFold`) and
the journeys stage with the shipped rule segments (:class:`models.journeys.Journey`: event
time as the job keeps it, a watermark ``newest event - bound - 1``, a heap for the event-time
timers, erasure requests carried out when event time reaches them). Two drivers share it:

* :func:`plain_loop` -- the core over records in memory, no I/O; one row per changed profile
  computed at the end: the ceiling for this logic in Python on one core;
* :func:`consume` -- a single-process ``confluent_kafka.Consumer`` polling batches of 500,
  the core, and after each batch one write per profile the batch changed, through
  :class:`state.profile_store.ProfileStore` (the tables, row format and ``USING TIMESTAMP``
  versions the Flink job writes; one UNLOGGED batch request per profile).

**No guarantees** means: offsets are auto-committed on a timer, whatever was written; all
state (dedupe set, identity graph, profiles, journeys) lives in this process's memory, so a
crash or restart resumes from the committed offsets with empty state and rewrites profiles
from a part of their events; a failed Cassandra write is only seen at the end; no
transactions, no checkpoints, no dead-letter or output topics (dead letters, sessions,
triggers and segment changes are counted, not published or stored); one core, no scale-out.
Left out compared with the Flink profiles job: the online models (``learn-models``), the
journeys' Cassandra tables and Kafka topics, ``journey.identity``, the erasure ledger read
by ingestion, hot rule reload, and dedupe state expiry (the set grows without bound).

Examples
--------
``python -m bench.handwritten loop --generate 300`` (no servers), or on topics a producer
filled: ``python -m bench.handwritten consume --prefix journey --keyspace journey``.
"""

from __future__ import annotations

import argparse
import heapq
import json
import sys
import time
import uuid
from collections import Counter
from typing import Any, Callable, Iterable, Protocol, Sequence, TextIO

from local import stack
from local.jobs import REPLAY_OUT_OF_ORDERNESS_MS
from models.avro_codec import SchemaCatalog
from models.events import CHANNELS
from models.identity import IdentityRules, Node
from models.identity_router import CommandKind, IdentityRouter, ProfileCommand
from models.ingest import Accepted, IngestSettings, Ingestor, SourceRecord
from models.journeys import Journey, JourneySettings, JourneyState, Out, PendingErase, fact_of
from models.profile import ProfileAggregate
from models.profile_fold import FoldState, ProfileFold, ProfileWrite
from models.segments import RuleSet, load_rules
from state.records import JOURNEY_STATE_CODEC

SALT = "handwritten-salt-0123456789"
DEFAULT_TOPIC = "journey.events.web"
NEVER = -(2**63)
#: the commands the profile fold applies (the journeys stage takes EVENT, TOUCH, JOURNEY, ERASE)
FOLD_KINDS = frozenset({CommandKind.EVENT, CommandKind.STATE, CommandKind.TOUCH, CommandKind.ERASE})
COUNTS = ("records", "normalized", "dead_lettered", "duplicates", "events_folded", "erased", "unresolved")


class RawRecord(Protocol):
    """A raw record with its topic (``generator`` records, ``local.kafka_read.Record``)."""

    @property
    def topic(self) -> str: ...

    @property
    def value(self) -> bytes: ...


class HandwrittenPipeline:
    """Ingest, dedupe, identity, profile fold and journeys over dicts, one record at a time.

    Parameters
    ----------
    salt : str
        The ingestion's PII salt.
    journeys, segments : bool
        Run the journeys stage; with the shipped rule segments (``rules/segments.yaml``).
    out_of_orderness_ms : int
        The journeys' event-time bound (default: the local stack's replay bound, as the Flink
        job runs on generated history: every decision waits for :meth:`finish`).

    Attributes
    ----------
    counts : Counter
        ``records``, ``normalized``, ``dead_lettered``, ``duplicates`` (records = the sum of
        these three), ``events_folded``, ``erased`` (dropped: an erased person's), ``unresolved``.
    outputs : Counter
        Journey outputs by type (``SessionOut``, ``TriggerOut``, ...), computed and dropped.
    kept : list or None
        With ``keep_outputs``: every journey output as ``(profile id, output)``.
    """

    def __init__(
        self,
        salt: str = SALT,
        *,
        journeys: bool = True,
        segments: bool = True,
        out_of_orderness_ms: int = REPLAY_OUT_OF_ORDERNESS_MS,
        keep_outputs: bool = False,
    ) -> None:
        self.catalog = SchemaCatalog.load()
        self.ingestor = Ingestor(IngestSettings(salt), self.catalog)
        self.identity_rules = IdentityRules()
        self.router = IdentityRouter(self.identity_rules)
        self.seen: set[str] = set()
        self.folds: dict[str, tuple[dict[Node, ProfileAggregate], FoldState]] = {}
        self.changed: set[str] = set()  # profiles folded into since the last flush()
        self.journeys = journeys
        self.ruleset = RuleSet.of(load_rules()) if journeys and segments else None
        self.segment_names = list(self.ruleset.rules) if self.ruleset else []
        self.settings = JourneySettings()
        self.states: dict[str, JourneyState] = {}
        self.timers: list[tuple[int, str]] = []  # (due, profile id), a heap; one live entry per profile
        self.scheduled: dict[str, int] = {}
        self.bound = out_of_orderness_ms
        self.watermark = NEVER
        self.newest: int | None = None
        self.counts: Counter[str] = Counter(dict.fromkeys(COUNTS, 0))
        self.outputs: Counter[str] = Counter()
        self.kept: list[tuple[str, Out]] | None = [] if keep_outputs else None
        stages = ["ingest", "dedupe", "identity", "profile_fold"]
        self.stages = stages + ["journeys"] * journeys + ["segments"] * (self.ruleset is not None)

    # ---- per record ----------------------------------------------------------------------

    def process(self, rec: SourceRecord) -> None:
        """One raw record, through every stage."""
        c = self.counts
        c["records"] += 1
        res = self.ingestor.process(rec)
        if not isinstance(res, Accepted):
            c["dead_lettered"] += 1
            return
        if res.event_id in self.seen:
            c["duplicates"] += 1
            return
        self.seen.add(res.event_id)
        c["normalized"] += 1
        event = self.catalog.decode(res.value, expect="NormalizedEvent")[1]
        at = int(event["occurred_at"])
        self.newest = at if self.newest is None else max(self.newest, at)
        self._tick(max(self.watermark, self.newest - self.bound - 1))
        routed = self.router.route_event(event, payload=event)
        c["erased"] += routed.erased
        c["unresolved"] += not routed.resolved
        self._apply_all(routed.commands, event)
        if routed.requested:  # an erasure request due already
            self._tick(self.watermark)

    def finish(self) -> None:
        """End of input: event time up to the newest event (the job's idle tick), so every
        erasure and journey decision due by then is taken."""
        if self.newest is not None:
            self._tick(max(self.watermark, self.newest))

    def flush(self) -> list[ProfileWrite]:
        """One coalesced write per profile changed since the last call (a profile merged away
        or erased: its deletion, then it is forgotten)."""
        out = []
        for pid in self.changed:
            atoms, state = self.folds[pid]
            if state.dirty:
                w = ProfileFold(pid, atoms, state).flush()
                out.append(w)
                if w.profile is None and not atoms:
                    del self.folds[pid]
        self.changed.clear()
        return out

    # ---- stages --------------------------------------------------------------------------

    def _apply_all(self, commands: Iterable[ProfileCommand], event: dict[str, Any] | None) -> None:
        """Apply the router's commands, then hand moved state back through the router until none moves."""
        while True:
            moved: list[tuple[Node, ProfileAggregate]] = []
            parts: list[tuple[Node, JourneyState]] = []
            for cmd in commands:
                moved += self._fold(cmd)
                parts += self._journey(cmd, event)
            if not (moved or parts):
                return
            back = [self.router.route_state(atom, agg) for atom, agg in moved]
            back += [self.router.route_journey(node, JOURNEY_STATE_CODEC.encode(p)) for node, p in parts]
            commands, event = [c for c in back if c is not None], None

    def _fold(self, cmd: ProfileCommand) -> list[tuple[Node, ProfileAggregate]]:
        if cmd.kind not in FOLD_KINDS:
            return []
        self.counts["events_folded"] += cmd.kind is CommandKind.EVENT
        atoms, state = self.folds.setdefault(cmd.profile_id, ({}, FoldState()))
        self.changed.add(cmd.profile_id)
        return ProfileFold(cmd.profile_id, atoms, state).apply(cmd)

    def _journey(self, cmd: ProfileCommand, event: dict[str, Any] | None) -> list[tuple[Node, JourneyState]]:
        """The journeys operator's handling of one command (``operators/journeys.py``)."""
        kind, pid = cmd.kind, cmd.profile_id
        if (
            not self.journeys
            or kind is CommandKind.STATE
            or (kind is CommandKind.TOUCH and not (cmd.evict or cmd.incoming))
        ):
            return []
        j = Journey(pid, self.states.setdefault(pid, JourneyState()), self.settings, self.ruleset)
        parts: list[tuple[Node, JourneyState]] = []
        if kind is CommandKind.ERASE:  # carried out when event time reaches it
            j.state.erasure = PendingErase(cmd.request or "", cmd.at, cmd.version, list(cmd.ghosts or (pid,)))
        else:
            fact = moved = None
            if kind is CommandKind.EVENT:
                assert cmd.atom is not None and event is not None
                fact = fact_of(event, cmd.atom, self.identity_rules)
            elif kind is CommandKind.JOURNEY:
                assert cmd.atom is not None
                moved = (cmd.atom, JOURNEY_STATE_CODEC.decode(cmd.payload))
            parts, outs = j.apply_command(self.watermark, cmd.incoming, cmd.evict, cmd.members == (), fact, moved)
            self._emit(pid, outs)
        self._settle(j)
        return parts

    def _settle(self, j: Journey) -> None:
        """Event time up to the watermark for one profile; its next timer armed."""
        pid = j.profile_id
        self._emit(pid, j.settle(self.watermark, self.segment_names))
        if j.state.is_empty():
            self.states.pop(pid, None)
            return
        self.states[pid] = j.state  # (an erasure leaves a new state)
        due = j.next_due()  # (at or before the watermark: held for moved parts, which re-settle it)
        if due is not None and due > self.watermark and self.scheduled.get(pid) != due:
            self.scheduled[pid] = due
            heapq.heappush(self.timers, (due, pid))

    def _tick(self, watermark: int) -> None:
        """Event time advanced: erasure requests due, then the journeys' timers due."""
        self.watermark = watermark
        due = self.router.next_erasure()
        if due is not None and due <= watermark:
            self._apply_all(self.router.due_erasures(watermark).commands, None)
        while self.timers and self.timers[0][0] <= watermark:
            at, pid = heapq.heappop(self.timers)
            if self.scheduled.get(pid) == at:  # else superseded by a later push
                del self.scheduled[pid]
                self._settle(Journey(pid, self.states.get(pid) or JourneyState(), self.settings, self.ruleset))

    def _emit(self, pid: str, outs: list[Out]) -> None:
        for o in outs:
            self.outputs[type(o).__name__] += 1
        if self.kept is not None:
            self.kept += [(pid, o) for o in outs]


def _source(r: bytes | RawRecord, i: int, now_ms: int) -> SourceRecord:
    if isinstance(r, bytes):
        return SourceRecord(r, DEFAULT_TOPIC, 0, i, now_ms)
    return SourceRecord(r.value, r.topic, 0, i, now_ms)


def plain_loop(
    raw_values: Sequence[bytes | RawRecord],
    *,
    pipeline: HandwrittenPipeline | None = None,
    sink: Callable[[ProfileWrite], Any] | None = None,
) -> dict[str, Any]:
    """The core over records in memory (bytes: read from ``journey.events.web``), then one row
    per changed profile computed (handed to ``sink`` after the clock stopped, if given).

    Returns ``records``, ``seconds``, ``records_per_s``, ``profiles`` (live rows), ``stages``,
    the core's counts and ``journey_outputs``.
    """
    p = pipeline or HandwrittenPipeline()
    now_ms = int(time.time() * 1000)
    t0 = time.perf_counter()
    for i, r in enumerate(raw_values):
        p.process(_source(r, i, now_ms))
    p.finish()
    rows = p.flush()
    dt = time.perf_counter() - t0
    if sink is not None:
        for w in rows:
            sink(w)
    n = len(raw_values)
    return {
        "records": n,
        "seconds": dt,
        "records_per_s": n / dt if dt > 0 else 0.0,
        "profiles": sum(1 for w in rows if w.profile is not None),
        "stages": p.stages,
        **p.counts,
        "journey_outputs": dict(p.outputs),
    }


def consume(
    bootstrap: str,
    topics: Sequence[str],
    cassandra_host: str,
    cassandra_port: int,
    keyspace: str,
    salt: str = SALT,
    *,
    expected_records: int | None = None,
    idle_timeout_s: float = 10.0,
    group_id: str | None = None,
    batch: int = 500,
    poll_timeout_s: float = 0.5,
    progress_s: float = 5.0,
    pipeline: HandwrittenPipeline | None = None,
    log: TextIO = sys.stderr,
) -> dict[str, Any]:
    """Consume ``topics`` in one process and write the profiles to Cassandra ``keyspace``
    (``salt``: the ingestion's, unless a ``pipeline`` is given).

    Stops after ``expected_records`` records, or when none arrived for ``idle_timeout_s``;
    then event time goes to the newest event (:meth:`HandwrittenPipeline.finish`), the last
    changes are written and every write is awaited.

    Returns ``records``, ``seconds`` (first record to the last write acknowledged),
    ``records_per_s``, ``cassandra_requests`` (one batch per profile write),
    ``cassandra_mutations`` (statements in them), ``cassandra_requests_per_event`` (per event
    folded, as the Flink benchmark counts), ``profiles_written`` (distinct profiles),
    ``profiles`` (live at the end), ``batches``, ``stages``, the core's counts and ``journey_outputs``.
    """
    from confluent_kafka import Consumer, KafkaException

    from state.cassandra_schema import connect
    from state.profile_store import ProfileStore

    p = pipeline or HandwrittenPipeline(salt)
    session = connect(cassandra_host, cassandra_port)
    store = ProfileStore(session, keyspace)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group_id or f"handwritten-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": True,
            "auto.offset.reset": "earliest",
        }
    )
    live: dict[str, bool] = {}
    batches = 0

    def write(rows: list[ProfileWrite]) -> None:
        for w in rows:
            store.write(w)
            live[w.profile_id] = w.profile is not None

    first: float | None = None
    last = report = time.monotonic()
    try:
        consumer.subscribe(list(topics))
        while expected_records is None or p.counts["records"] < expected_records:
            msgs = consumer.consume(num_messages=batch, timeout=poll_timeout_s)
            now = time.monotonic()
            if not msgs:
                if now - last >= idle_timeout_s:
                    break
                continue
            first, last = first or now, now
            for m in msgs:
                if m.error():
                    raise KafkaException(m.error())
                rec = (m.value() or b"", m.topic() or "", m.partition() or 0, m.offset() or 0, m.timestamp()[1])
                p.process(SourceRecord(*rec))
            write(p.flush())
            batches += 1
            if now - report >= progress_s:
                report = now
                n = p.counts["records"]
                print(
                    f"handwritten: {n} records, {n / (now - first):,.0f}/s, {store.writes_issued} Cassandra requests",
                    file=log,
                    flush=True,
                )
        p.finish()
        write(p.flush())
        store.flush()
        end = time.monotonic()
    finally:
        consumer.close()
        session.cluster.shutdown()
    n, seconds = p.counts["records"], end - first if first is not None else 0.0
    return {
        "records": n,
        "seconds": seconds,
        "records_per_s": n / seconds if seconds > 0 else 0.0,
        "cassandra_requests": store.writes_issued,
        "cassandra_mutations": store.mutations_issued,
        "cassandra_requests_per_event": store.writes_issued / max(1, p.counts["events_folded"]),
        "profiles_written": len(live),
        "profiles": sum(live.values()),
        "batches": batches,
        "stages": p.stages,
        **p.counts,
        "journey_outputs": dict(p.outputs),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("loop", "consume"), help="loop: read the topics into memory first, no I/O timed")
    ap.add_argument("--prefix", default="journey", help="read <prefix>.events.<channel> (default: journey)")
    ap.add_argument("--generate", type=int, metavar="PERSONS", help="loop: a generated data set instead of topics")
    ap.add_argument("--bootstrap", default=f"127.0.0.1:{stack.KAFKA_PORT}")
    ap.add_argument("--cassandra", default=f"127.0.0.1:{stack.CASSANDRA_PORT}", help="host:port")
    ap.add_argument("--keyspace", default="journey")
    ap.add_argument("--salt", default=SALT, help="the ingestion's PII salt")
    ap.add_argument("--expected-records", type=int, help="consume: stop after this many records")
    ap.add_argument("--idle-timeout-s", type=float, default=10.0, help="consume: stop when idle this long")
    ap.add_argument("--no-journeys", action="store_true")
    ap.add_argument("--no-segments", action="store_true")
    args = ap.parse_args(argv)
    core = HandwrittenPipeline(args.salt, journeys=not args.no_journeys, segments=not args.no_segments)
    topics = [f"{args.prefix}.events.{c}" for c in CHANNELS]
    if args.mode == "loop":
        if args.generate:
            from generator.synth import generate

            records: list[Any] = list(generate(seed=424242, persons=args.generate).records)
        else:
            from local.kafka_read import read_committed

            records = [r for t in topics for r in read_committed(args.bootstrap, t)]
        result = plain_loop(records, pipeline=core)
    else:
        host, port = args.cassandra.rsplit(":", 1)
        result = consume(
            args.bootstrap,
            topics,
            host,
            int(port),
            args.keyspace,
            expected_records=args.expected_records,
            idle_timeout_s=args.idle_timeout_s,
            pipeline=core,
        )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
