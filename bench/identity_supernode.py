"""``make bench`` (part 4): identity work per event with a supernode (issue 16), plain loop.

Persons who each log in once on one shared store kiosk (the same ``device_id`` for all) and
then browse on a cookie of their own (:func:`generator.kiosk.kiosk_population`), against the
**same events** with the kiosk login on a device of each person's own (no shared identifier). Both go through the
identity stage's logic in one Python loop: :class:`models.identity_partitioned.ComponentHome`
with its :class:`~models.identity_router.RouterStore` (what one home of the resolve stage runs
per event in the job; every person's events reach the kiosk component's one home), the home
state encoded as its Flink state record after every event (:data:`state.records.IDENTITY_HOME_CODEC`,
one read and one write per event in the job).

Per size: events/s, profile commands per event (each is a keyed record, a state access and
eventually a Cassandra write in the job), home state bytes per event, and the ratio of
events/s with the kiosk to events/s without it (measured in the same run). Prints a table
and writes ``bench/results/identity_supernode.json`` (``--no-state``: the resolution alone,
``identity_supernode_no_state.json``).

``--protocol``: the whole partitioned protocol instead of one settled home, without state
records: the locate stage's pointers, claims, home merges (a kiosk login joins a person's
component to the kiosk's: :func:`models.identity_partitioned.absorb`) and the feedback, each
record handled as soon as it is sent (one subtask per stage); ``--whole-merge`` makes every
merge resolve the union (``PIECE_ABSORB = False``, the reference path) to show what the piece
merge saves. Writes ``identity_supernode_protocol.json`` (``..._protocol_whole_merge.json``).
With ``--protocol``, ``--state`` decodes each home's state record before every record it
handles and encodes it after (the resolve stage's read and write), and ``--shared-homes``
runs homes per linked component (:attr:`models.identity.IdentityRules.shared_homes`); the file
name gets ``_state`` and ``_shared_homes``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generator.kiosk import kiosk_population
from models.avro_codec import SchemaCatalog
from models.identity import IdentityRules
from models.ingest import Accepted, IngestSettings, Ingestor, SourceRecord
import models.identity_partitioned as partitioned
from models.identity_partitioned import ComponentHome, EventIn, HomeState, Locator, ToHome
from state.records import IDENTITY_HOME_CODEC

RESULTS = Path(__file__).resolve().parent / "results" / "identity_supernode.json"


def kiosk_normalized(persons: int, per_person: int, shared: bool) -> list[bytes]:
    """:func:`generator.kiosk.kiosk_population` (with the kiosk shared, or each kiosk login on
    a device of the person's own: the same events otherwise) through ingestion: the
    ``NormalizedEvent`` values the profiles job reads."""
    ds = kiosk_population(persons, per_person, seed=16, shared=shared)
    ing = Ingestor(IngestSettings("bench-supernode-salt-0123"))
    out = []
    for i, rec in enumerate(ds.records):
        res = ing.process(SourceRecord(rec.value, rec.topic, 0, i, 1_800_000_000_000))
        if not isinstance(res, Accepted):
            raise SystemExit(f"bench: generated record {i} not accepted: {res}")
        out.append(res.value)
    return out


def kiosk_events(persons: int, per_person: int, shared: bool) -> list[dict[str, Any]]:
    """:func:`kiosk_normalized`, decoded (the events the identity stage gets)."""
    catalog = SchemaCatalog.load()
    return [catalog.decode(v)[1] for v in kiosk_normalized(persons, per_person, shared)]


@dataclass
class Run:
    events: int
    seconds: float
    commands: int
    state_bytes: int

    def row(self) -> dict[str, float]:
        return {
            "events": self.events,
            "events_per_s": round(self.events / self.seconds, 1),
            "commands_per_event": round(self.commands / self.events, 2),
            "state_bytes_per_event": round(self.state_bytes / self.events, 1),
        }


def run_home(events: list[dict[str, Any]], rules: IdentityRules, encode_state: bool) -> Run:
    """Every event through the home of its component, as the resolve stage does with the
    feedback settled: the first event's atom is the kiosk component's home (the claims that
    would move it there are not part of the per-event cost measured here)."""
    homes: dict[Any, HomeState] = {}
    home_of: dict[Any, Any] = {}
    commands = state_bytes = 0
    start = time.perf_counter()
    for ev in events:
        ids = [(t, v) for t, v in ev["identifiers"].items() if v is not None]
        home = next((home_of[n] for n in ids if n in home_of), ids[0])
        for n in ids:
            home_of.setdefault(n, home)
        st = homes.setdefault(home, HomeState())
        out = ComponentHome(rules, home, st).on_event(ev, ev["event_id"])
        commands += len(out.commands)
        if encode_state:
            state_bytes += len(IDENTITY_HOME_CODEC.encode(st))
    return Run(len(events), time.perf_counter() - start, commands, state_bytes)


def run_protocol(events: list[dict[str, Any]], rules: IdentityRules, state: bool = False) -> Run:
    """Every event through the locate stage and its home, and everything either stage sends
    on the feedback topic handled before the next event (one subtask per stage). ``state``:
    each home's state decoded from its record before every record it handles and encoded
    after (what the resolve stage reads and writes); else the partitioned stages' logic alone."""
    locator, homes = Locator(rules, {}), {}
    records: dict[Any, bytes] = {}
    commands = state_bytes = 0
    start = time.perf_counter()
    for ev in events:
        atom = locator.atom_of(ev)
        if atom is None:
            continue
        first = locator.route_event(atom, ev, ev["event_id"])
        to_home, feedback = deque(first.to_home), deque(first.feedback)
        while to_home or feedback:
            if not to_home:
                located = locator.route_feedback(feedback.popleft())
                to_home.extend(located.to_home)
                feedback.extend(located.feedback)
                continue
            t: ToHome = to_home.popleft()
            if state:  # read as the resolve stage reads it
                raw = records.get(t.home)
                homes[t.home] = HomeState() if raw is None else IDENTITY_HOME_CODEC.decode(raw)
            st = homes.setdefault(t.home, HomeState())
            home = ComponentHome(rules, t.home, st)
            msg = t.message
            out = home.on_event(msg.event, msg.payload) if isinstance(msg, EventIn) else home.on_message(msg)
            if state:
                records[t.home] = IDENTITY_HOME_CODEC.encode(st)
                state_bytes += len(records[t.home])
            commands += len(out.commands)
            feedback.extend(out.feedback)
    return Run(len(events), time.perf_counter() - start, commands, state_bytes)


def write_results(path: Path, data: dict[str, Any]) -> None:
    """``data`` with the time of writing, as indented JSON at ``path``; says where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = data | {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100,400,1600", help="persons sharing the kiosk, comma separated")
    ap.add_argument("--per-person", type=int, default=7, help="events per person (kiosk login, login at home, views)")
    ap.add_argument("--no-state", action="store_true", help="skip encoding the home state record per event")
    ap.add_argument("--protocol", action="store_true", help="the whole partitioned protocol (claims, merges), no state")
    ap.add_argument("--whole-merge", action="store_true", help="with --protocol: every merge resolves the union")
    ap.add_argument(
        "--shared-homes",
        action="store_true",
        help="with --protocol: homes per linked component (IdentityRules.shared_homes)",
    )
    ap.add_argument("--state", action="store_true", help="with --protocol: each home's state record read and written")
    args = ap.parse_args(argv)
    for flag in ("whole_merge", "shared_homes", "state"):
        if getattr(args, flag) and not args.protocol:
            ap.error(f"--{flag.replace('_', '-')} needs --protocol")
    partitioned.PIECE_ABSORB = not args.whole_merge
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        ap.error(f"--sizes {args.sizes!r}: comma-separated integers")
    rules = IdentityRules(shared_homes=args.shared_homes)
    rows = []
    what = "partitioned protocol, " + ("whole-union merges" if args.whole_merge else "piece merges")
    what += (", homes per linked component" if args.shared_homes else "") + (", state records" if args.state else "")
    print(
        f"identity supernode (plain loop, {what if args.protocol else 'one home per component'}; ratio = with kiosk / without, same run)"
    )
    print(f"{'persons':>8} {'variant':>8} {'events/s':>10} {'cmds/event':>11} {'state B/event':>14} {'ratio':>6}")
    for n in sizes:
        both = {}
        for shared in (False, True):
            evs = kiosk_events(n, args.per_person, shared)
            run = run_protocol(evs, rules, args.state) if args.protocol else run_home(evs, rules, not args.no_state)
            both[shared] = run.row()
            print(
                f"{n:>8} {'kiosk' if shared else 'own':>8} {both[shared]['events_per_s']:>10,.0f} "
                f"{both[shared]['commands_per_event']:>11} {both[shared]['state_bytes_per_event']:>14,.0f}",
                end="",
            )
            print(f" {both[True]['events_per_s'] / both[False]['events_per_s']:>6.2f}" if shared else "", flush=True)
        rows.append(
            {
                "persons": n,
                "own_device": both[False],
                "kiosk": both[True],
                "ratio": round(both[True]["events_per_s"] / both[False]["events_per_s"], 3),
            }
        )
    suffix = ""
    if args.protocol:
        suffix = "_protocol" + "".join(
            f"_{flag}" for flag in ("whole_merge", "shared_homes", "state") if getattr(args, flag)
        )
    suffix = suffix or ("_no_state" if args.no_state else "")
    out = RESULTS.with_name(RESULTS.stem + suffix + ".json")
    write_results(
        out,
        {
            "bench": "identity_supernode",
            "events_per_person": args.per_person,
            "state_record_encoded": (args.state if args.protocol else not args.no_state),
            "protocol": args.protocol,
            "shared_homes": args.shared_homes,
            "piece_merges": not args.whole_merge,
            "python": platform.python_version(),
            "rows": rows,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
