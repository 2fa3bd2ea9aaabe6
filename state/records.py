"""Flink state values as versioned, schema'd records: Avro, never pickled classes.

Every value the jobs keep in Flink state is one record of ``schemas/state/state.avsc``,
stored as bytes in the Avro single-object encoding (``C3 01`` + the CRC-64-AVRO fingerprint
of the writer schema + the body), like every Kafka value of the project. A state value thus
names the schema that wrote it, and a reader resolves it to the current schema with Avro's
schema resolution: a savepoint written by an older release restores into newer code.

Evolution rules (``docs/operations.md``, "Upgrading"):

* add a field only with a default (old values read with the default);
* rename a field or a record only with ``aliases`` naming the old name;
* never remove a field that has no default, never change a field's type other than by
  Avro's promotions (int -> long -> float -> double, string <-> bytes);
* every released version of every record stays in ``schemas/state/history/`` (the writer
  schema of every value in every savepoint must stay known): after changing a record, run
  ``python -m state.records --freeze`` to add its new version. ``tests/unit/test_state_records.py``
  refuses a current record that is not frozen, and checks that every historical version
  resolves to the current one.

Values written before this format existed (pickled model objects in the same Flink type,
``PICKLED_BYTE_ARRAY``) restore too: Flink hands them over unpickled (or as pickle bytes,
:func:`legacy_pickle`), :meth:`StateCodec.decode` passes them on, and every value is
rewritten as a record when next written. That path needs the model classes of that release
to unpickle; a later release can drop it once every deployment has taken a savepoint with
this one.

Examples
--------
>>> codec = state_schemas().codec("FoldState")
>>> data = codec.encode({"members": [{"type": "cookie_id", "value": "ck1"}], "ghosts": [],
...                      "version": 3, "folded": 2, "dirty": True, "writing": None})
>>> data[:2]
b'\\xc3\\x01'
>>> codec.decode(data)["folded"]
2
"""

from __future__ import annotations

import functools
import io
import json
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Generic, Iterable, TypeVar

import fastavro

from models.avro_codec import HEADER_LEN, MAGIC, Codec, DecodeError, crc64_fingerprint
from models.erasure import PendingErasure, Tombstone
from models.identity import Node, RefusedLink
from models.identity_clock import ClockState, PendingRequest
from models.identity_partitioned import HomeState, LocateEntry, component_store
from models.identity_registry import EraseAll, RegistryState
from models.identity_router import RouterStore
from models.journeys import Fact, JourneyState, fact_of_record, fact_record, state_of_record, state_record
from models.profile import ProfileAggregate
from models.samples import Sample
from models.segments import SegmentRule
from models.profile_fold import ErasureWrite, FoldState

STATE_SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas" / "state"
NAMESPACE = "journey.state"
T = TypeVar("T")


def _full(name: str, namespace: str = NAMESPACE) -> str:
    """An Avro name made full with ``namespace`` unless it is already."""
    return name if "." in name else f"{namespace}.{name}"


def standalone(name: str, named: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The record ``name`` of ``named`` as one self-contained schema: every named type it
    refers to is inlined at its first use (as the parsing canonical form does).

    >>> named = {"journey.state.A": {"type": "record", "name": "A", "namespace": "journey.state",
    ...          "fields": [{"name": "x", "type": "long"}]},
    ...          "journey.state.B": {"type": "record", "name": "B", "namespace": "journey.state",
    ...          "fields": [{"name": "a", "type": "journey.state.A"}, {"name": "b", "type": "journey.state.A"}]}}
    >>> [f["type"] if isinstance(f["type"], str) else f["type"]["name"] for f in standalone("B", named)["fields"]]
    ['A', 'journey.state.A']
    """
    seen: set[str] = set()

    def walk(node: Any, namespace: str) -> Any:
        if isinstance(node, str):
            full = _full(node, namespace)
            if full in named:
                if full in seen:
                    return full
                return walk(named[full], namespace)
            return node
        if isinstance(node, list):
            return [walk(n, namespace) for n in node]
        if isinstance(node, dict):
            out = dict(node)
            if node.get("type") in ("record", "enum", "fixed") and "name" in node:
                ns = node.get("namespace", namespace)
                seen.add(_full(node["name"], ns))
                namespace = ns
            if node.get("type") == "record":
                out["fields"] = [{**f, "type": walk(f["type"], namespace)} for f in node["fields"]]
            elif node.get("type") == "array":
                out["items"] = walk(node["items"], namespace)
            elif node.get("type") == "map":
                out["values"] = walk(node["values"], namespace)
            return out
        return node

    return walk(named[_full(name)], NAMESPACE)


def _named_types(schemas: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    named: dict[str, dict[str, Any]] = {}

    def collect(node: Any, namespace: str) -> None:
        if isinstance(node, dict):
            if node.get("type") in ("record", "enum", "fixed") and "name" in node:
                namespace = node.get("namespace", namespace)
                named[_full(node["name"], namespace)] = node
            for f in node.get("fields", ()):
                collect(f["type"], namespace)
            for key in ("items", "values"):
                if key in node:
                    collect(node[key], namespace)
        elif isinstance(node, list):
            for n in node:
                collect(n, namespace)

    for s in schemas:
        collect(s, NAMESPACE)
    return named


@dataclass(frozen=True)
class RecordCodec:
    """Encode with the current schema of one record; decode any known writer version of it."""

    name: str
    schema: dict[str, Any]  # standalone, current
    _codec: Codec  # the current schema (parsed) and its fingerprint
    _writers: dict[bytes, Any]  # fingerprint -> parsed writer schema (current and history)

    @property
    def fingerprint(self) -> bytes:
        return self._codec.fingerprint

    def encode(self, record: dict[str, Any]) -> bytes:
        """The record in the single-object encoding of the current schema (as every topic value)."""
        return self._codec.encode(record)

    def decode(self, data: bytes) -> dict[str, Any]:
        data = bytes(data)
        if len(data) < HEADER_LEN or data[:2] != MAGIC:
            raise DecodeError("not_single_object_encoded", f"state value of {len(data)} bytes is not a {self.name}")
        fp = data[2:HEADER_LEN]
        writer = self._writers.get(fp)
        if writer is None:
            raise DecodeError(
                "unknown_schema",
                f"state value written with schema {fp.hex()}, which is neither the current {self.name} "
                f"schema nor one in {STATE_SCHEMA_DIR / 'history'}: restore with the release that "
                f"wrote it, or add its schema to the history",
            )
        buf = io.BytesIO(data)
        buf.seek(HEADER_LEN)
        reader = None if fp == self.fingerprint else self._codec.schema
        return fastavro.schemaless_reader(buf, writer, reader)  # type: ignore[return-value]


class StateSchemas:
    """The state records of ``schemas/state/state.avsc`` and their released versions."""

    def __init__(self, directory: Path = STATE_SCHEMA_DIR) -> None:
        self.directory = directory
        raw = json.loads((directory / "state.avsc").read_text())
        self.named = _named_types(raw if isinstance(raw, list) else [raw])
        self.history: list[dict[str, Any]] = [
            json.loads(p.read_text()) for p in sorted((directory / "history").glob("*.avsc"))
        ]
        self._codecs: dict[str, RecordCodec] = {}

    def records(self) -> list[str]:
        """Full names of the records stored as state values (every record, nested ones too)."""
        return sorted(n for n, s in self.named.items() if s.get("type") == "record")

    def codec(self, name: str) -> RecordCodec:
        full = _full(name)
        codec = self._codecs.get(full)
        if codec is None:
            if full not in self.named:
                raise KeyError(f"no state record {full!r} in {self.directory / 'state.avsc'}")
            schema = standalone(full, self.named)
            fp = crc64_fingerprint(schema)
            parsed = fastavro.parse_schema(schema, named_schemas={})
            writers = {fp: parsed}
            for old in self.history:
                if _full(old.get("name", "")) == full or old.get("name") == full:
                    writers.setdefault(crc64_fingerprint(old), fastavro.parse_schema(old, named_schemas={}))
            codec = RecordCodec(full, schema, Codec(full, parsed, fp), writers)
            self._codecs[full] = codec
        return codec


def unfrozen(schemas: StateSchemas) -> list[str]:
    """Records whose current version is not in the history (run ``python -m state.records
    --freeze`` after changing them, and commit the new file)."""
    frozen = {crc64_fingerprint(h) for h in schemas.history}
    return [name for name in schemas.records() if schemas.codec(name).fingerprint not in frozen]


@functools.lru_cache(maxsize=None)
def state_schemas(directory: Path = STATE_SCHEMA_DIR) -> StateSchemas:
    """The state schemas of ``directory``, loaded once per process on first use."""
    return StateSchemas(directory)


# ------------------------------------------------------------------ MapState keys
# Keys stay JSON strings exactly as before state records (savepoints of that release restore
# with the same keys).


def node_key(node: Node) -> str:
    """>>> node_key(("cookie_id", "ck1"))
    '["cookie_id", "ck1"]'
    """
    return json.dumps(list(node))


def node_of(key: str) -> Node:
    t, v = json.loads(key)
    return t, v


def link_key(link: RefusedLink) -> str:
    return json.dumps([list(link.a), list(link.b), link.reason])


def link_of(key: str) -> RefusedLink:
    a, b, reason = json.loads(key)
    return RefusedLink((a[0], a[1]), (b[0], b[1]), reason)


#: per RouterStore field: how its keys become MapState string keys (default: a node)
ROUTER_KEYS: dict[str, tuple[Callable[[Any], str], Callable[[str], Any]]] = {
    "members": (str, str),
    "erased": (str, str),
    "pending": (str, str),
    "refused": (link_key, link_of),
}


# ------------------------------------------------------------------ model <-> record


def node_record(node: Node) -> dict[str, str]:
    return {"type": node[0], "value": node[1]}


def node_of_record(rec: dict[str, str]) -> Node:
    return rec["type"], rec["value"]


def aggregate_record(agg: ProfileAggregate) -> dict[str, Any]:
    """A :class:`~models.profile.ProfileAggregate` as a ``journey.state.ProfileAggregate`` record."""
    d = agg.to_dict()
    d["consent"] = {
        p: {"granted": g, "stamp": {"at_ms": at, "event_id": eid}} for p, (g, at, eid) in d["consent"].items()
    }
    d["crm_attributes"] = {
        k: {"value": v, "stamp": {"at_ms": at, "event_id": eid}} for k, (v, at, eid) in d["crm_attributes"].items()
    }
    return d


def aggregate_of_record(rec: dict[str, Any]) -> ProfileAggregate:
    d = dict(rec)
    d["consent"] = {p: [c["granted"], c["stamp"]["at_ms"], c["stamp"]["event_id"]] for p, c in rec["consent"].items()}
    d["crm_attributes"] = {
        k: [c["value"], c["stamp"]["at_ms"], c["stamp"]["event_id"]] for k, c in rec["crm_attributes"].items()
    }
    return ProfileAggregate.from_dict(d)


def fold_state_record(st: FoldState) -> dict[str, Any]:
    return {
        "members": [node_record(n) for n in st.members],
        "ghosts": list(st.ghosts),
        "component_events": 0,
        "version": st.version,
        "folded": st.folded,
        "dirty": st.dirty,
        "writing": st.writing,
        "timers": list(st.timers),
        "erasure": None
        if st.erasure is None
        else {
            "request_id": st.erasure.request_id,
            "at": st.erasure.at,
            "part": st.erasure.part,
            "nodes": [node_record(n) for n in st.erasure.nodes],
        },
        "atoms": None
        if st.atoms is None
        else [{"node": node_record(n), "aggregate": aggregate_record(a)} for n, a in st.atoms.items()],
        "next_write_at": st.next_write_at,
    }


def fold_state_of_record(rec: dict[str, Any]) -> FoldState:
    return FoldState(
        members=tuple(node_of_record(n) for n in rec["members"]),
        ghosts=tuple(rec["ghosts"]),
        version=rec.get("version", 0),
        folded=rec["folded"],
        dirty=rec["dirty"],
        writing=rec["writing"],
        timers=tuple(rec["timers"]),
        erasure=None
        if rec.get("erasure") is None
        else ErasureWrite(
            rec["erasure"]["request_id"],
            rec["erasure"]["at"],
            rec["erasure"]["part"],
            tuple(node_of_record(n) for n in rec["erasure"]["nodes"]),
        ),
        atoms=None
        if rec.get("atoms") is None
        else {node_of_record(a["node"]): aggregate_of_record(a["aggregate"]) for a in rec["atoms"]},
        next_write_at=rec.get("next_write_at", 0),
    )


class StateCodec(Generic[T]):
    """Bytes in Flink state <-> a model value, through one state record.

    Parameters
    ----------
    record : str
        The record of ``schemas/state/state.avsc`` (e.g. ``"FoldState"``).
    to_record, from_record : callable
        The model value as that record, and back.
    """

    def __init__(
        self,
        record: str,
        to_record: Callable[[T], dict[str, Any]],
        from_record: Callable[[dict[str, Any]], T],
        directory: Path = STATE_SCHEMA_DIR,
    ) -> None:
        self.record, self.directory = record, directory
        self.to_record, self.from_record = to_record, from_record
        self._codec: RecordCodec | None = None

    @property
    def codec(self) -> RecordCodec:
        """The record's codec, built on first use (schemas are read then, not at import)."""
        if self._codec is None:
            self._codec = state_schemas(self.directory).codec(self.record)
        return self._codec

    def with_schemas(self, directory: Path) -> StateCodec[T]:
        """The same conversion over the state schemas of another directory (evolution tests)."""
        return StateCodec(self.record, self.to_record, self.from_record, directory)

    def encode(self, value: T) -> bytes:
        return self.codec.encode(self.to_record(value))

    def decode(self, data: Any) -> T:
        """The model value of a state value: a state record's bytes, or a value of the release
        before state records (a model object Flink already unpickled, or pickle bytes)."""
        if not isinstance(data, (bytes, bytearray)):
            return data
        data = bytes(data)
        if data[:1] == b"\x80":
            return legacy_pickle(data)
        return self.from_record(self.codec.decode(data))


def legacy_pickle(data: bytes) -> Any:
    """A state value pickled by the release before state records (``PICKLED_BYTE_ARRAY``).

    Only the project's own model classes and builtins are unpickled (a savepoint is data,
    not code); a ``FoldState`` pickled inside ``bytes`` (the old fold stored it twice) is
    unwrapped.
    """
    value = _SafeUnpickler(io.BytesIO(data)).load()
    if isinstance(value, (bytes, bytearray)) and value[:1] == b"\x80":
        value = _SafeUnpickler(io.BytesIO(bytes(value))).load()
    return value


class _SafeUnpickler(pickle.Unpickler):
    _ALLOWED = {
        ("models.profile", "ProfileAggregate"),
        ("models.profile_fold", "FoldState"),
        ("builtins", "frozenset"),
        ("builtins", "set"),
        ("builtins", "tuple"),
        ("builtins", "dict"),
        ("builtins", "list"),
        ("models.identity", "RefusedLink"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"state value refers to {module}.{name}, not a state type of this project")
        return super().find_class(module, name)


def _sorted_nodes(nodes: Iterable[Node]) -> list[dict[str, str]]:
    return [node_record(n) for n in sorted(nodes)]


#: the identity router's MapState values by RouterStore field
ROUTER_CODECS: dict[str, StateCodec[Any]] = {
    "parent": StateCodec("RouterParent", lambda n: {"parent": node_record(n)}, lambda r: node_of_record(r["parent"])),
    "size": StateCodec("ComponentSize", lambda n: {"size": n}, lambda r: r["size"]),
    "signatures": StateCodec(
        "ComponentSignatures",
        lambda sigs: {
            "signatures": sorted(
                ([node_record(n) for n in sig] for sig in sigs), key=lambda s: [(n["type"], n["value"]) for n in s]
            )
        },
        lambda r: frozenset(tuple(node_of_record(n) for n in sig) for sig in r["signatures"]),
    ),
    "events": StateCodec("ComponentEvents", lambda n: {"events": n}, lambda r: r["events"]),
    "profile_of": StateCodec("ProfileOf", lambda pid: {"profile_id": pid}, lambda r: r["profile_id"]),
    "members": StateCodec(
        "ProfileMembers",
        lambda ms: {"members": _sorted_nodes(ms)},
        lambda r: frozenset(node_of_record(n) for n in r["members"]),
    ),
    "refused": StateCodec("RefusedFlag", lambda b: {"refused": bool(b)}, lambda r: r["refused"]),
    "live": StateCodec("LiveProfiles", lambda pids: {"profile_ids": list(pids)}, lambda r: tuple(r["profile_ids"])),
    "inflight": StateCodec("InFlightParts", lambda n: {"parts": n}, lambda r: r["parts"]),
    "erased": StateCodec(
        "Tombstone", lambda t: {"request_id": t.request_id, "at": t.at}, lambda r: Tombstone(r["request_id"], r["at"])
    ),
    "pending": StateCodec(
        "PendingErasure",
        lambda p: {
            "request_id": p.request_id,
            "event_id": p.event_id,
            "at": p.at,
            "nodes": [node_record(n) for n in p.nodes],
        },
        lambda r: PendingErasure(r["request_id"], r["event_id"], r["at"], tuple(node_of_record(n) for n in r["nodes"])),
    ),
}


def component_record(store: RouterStore) -> dict[str, Any]:
    """One raw component's router state (:class:`models.identity_router.RouterStore` holding
    that component only) as a ``journey.state.IdentityComponent`` record."""
    (root,) = store.signatures
    sigs = sorted(store.signatures[root], key=lambda sig: [(n[0], n[1]) for n in sig])
    return {
        "signatures": [[node_record(n) for n in sig] for sig in sigs],
        "events": store.events[root],
        "signature_events": [store.signature_events.get(sig, 1) for sig in sigs],
        "profiles": [{"profile_id": pid, "members": _sorted_nodes(ms)} for pid, ms in sorted(store.members.items())],
        "refused": [
            {"a": node_record(link.a), "b": node_record(link.b), "reason": link.reason}
            for link in sorted(store.refused, key=link_key)
        ],
        "inflight": [{"node": node_record(n), "parts": k} for n, k in sorted(store.inflight.items())],
        "pending": [ROUTER_CODECS["pending"].to_record(p) for _, p in sorted(store.pending.items())],
        "due": sorted(store.due),
        "shared": [{"node": node_record(n), "co_type": co} for n, co in sorted(store.shared.items())],
    }


def component_of_record(rec: dict[str, Any]) -> RouterStore:
    """The :class:`~models.identity_router.RouterStore` of a ``journey.state.IdentityComponent``
    record; its union-find has every identifier under the first one."""
    sigs = [tuple(node_of_record(n) for n in sig) for sig in rec["signatures"]]
    counts = rec.get("signature_events") or []
    store = component_store(
        frozenset(sigs),
        rec["events"],
        {prof["profile_id"]: frozenset(node_of_record(n) for n in prof["members"]) for prof in rec["profiles"]},
        dict(zip(sigs, counts)) if len(counts) == len(sigs) else None,
        {node_of_record(e["node"]): e["co_type"] for e in rec.get("shared", ())},
    )
    for link in rec["refused"]:
        store.refused[RefusedLink(node_of_record(link["a"]), node_of_record(link["b"]), link["reason"])] = True
    for entry in rec["inflight"]:
        store.inflight[node_of_record(entry["node"])] = entry["parts"]
    for p in rec["pending"]:
        pending = ROUTER_CODECS["pending"].from_record(p)
        store.pending[pending.request_id] = pending
    for rid in rec.get("due", ()):
        store.due[rid] = True
    return store


def _tombstone_record(t: Tombstone | None) -> dict[str, Any] | None:
    return None if t is None else {"request_id": t.request_id, "at": t.at}


def _tombstone_of(rec: dict[str, Any] | None) -> Tombstone | None:
    return None if rec is None else Tombstone(rec["request_id"], rec["at"])


def home_record(st: HomeState) -> dict[str, Any]:
    return {
        "component": None if st.store is None else component_record(st.store),
        "forward": None if st.forward is None else node_record(st.forward),
        "erased": _tombstone_record(st.erased),
    }


def home_of_record(rec: dict[str, Any]) -> HomeState:
    return HomeState(
        store=None if rec["component"] is None else component_of_record(rec["component"]),
        forward=None if rec["forward"] is None else node_of_record(rec["forward"]),
        erased=_tombstone_of(rec["erased"]),
    )


def clock_record(st: ClockState) -> dict[str, Any]:
    return {
        "max_event_time": st.max_event_time,
        "last_tick": st.last_tick,
        "pending": [
            {"request_id": rid, "at": p.at, "home": node_record(p.home), "sent": p.sent}
            for rid, p in sorted(st.pending.items())
        ],
    }


def clock_of_record(rec: dict[str, Any]) -> ClockState:
    return ClockState(
        rec["max_event_time"],
        rec["last_tick"],
        {p["request_id"]: PendingRequest(p["at"], node_of_record(p["home"]), p["sent"]) for p in rec["pending"]},
    )


#: resolve-identity ValueState identity-home: a home's component, forward pointer or erasure
IDENTITY_HOME_CODEC: StateCodec[HomeState] = StateCodec("IdentityHome", home_record, home_of_record)
#: the component a move carries on the feedback topic (the same record as in the home's state)
IDENTITY_COMPONENT_CODEC: StateCodec[RouterStore] = StateCodec(
    "IdentityComponent", component_record, component_of_record
)


def locate_entry_record(e: LocateEntry) -> dict[str, Any]:
    return {
        "home": None if e.home is None else node_record(e.home),
        "erased": _tombstone_record(e.erased),
        "shared": e.shared,
        "seen": [node_record(n) for n in e.seen],
    }


def locate_entry_of_record(r: dict[str, Any]) -> LocateEntry:
    return LocateEntry(
        None if r["home"] is None else node_of_record(r["home"]),
        _tombstone_of(r["erased"]),
        r.get("shared"),
        tuple(node_of_record(n) for n in r.get("seen", ())),
    )


#: locate-identity ValueState identity-locate: an identifier's home or tombstone (and, with
#: homes per linked component, whether it is shared)
LOCATE_ENTRY_CODEC: StateCodec[LocateEntry] = StateCodec("LocateEntry", locate_entry_record, locate_entry_of_record)


def registry_record(st: RegistryState) -> dict[str, Any]:
    e = st.erased
    return {
        "forward": None if st.forward is None else node_record(st.forward),
        "erased": None if e is None else {"request_id": e.request_id, "event_id": e.event_id, "at": e.at},
    }


def registry_of_record(r: dict[str, Any]) -> RegistryState:
    """The key's forward pointer and erasure (its sets are the caller's: MapStates in the job)."""
    e = r["erased"]
    return RegistryState(
        forward=None if r["forward"] is None else node_of_record(r["forward"]),
        erased=None if e is None else EraseAll(e["request_id"], e["event_id"], e["at"]),
    )


#: locate-identity ValueState identity-registry: a registry key's forward pointer and erasure
IDENTITY_REGISTRY_CODEC: StateCodec[RegistryState] = StateCodec("IdentityRegistry", registry_record, registry_of_record)
#: identity-clock ValueState identity-clock
IDENTITY_CLOCK_CODEC: StateCodec[ClockState] = StateCodec("IdentityClockState", clock_record, clock_of_record)
#: route-identity ValueState router-clock (releases with the single router; drained after an upgrade)
ROUTER_CLOCK_CODEC: StateCodec[dict[str, Any]] = StateCodec("RouterClock", dict, dict)
AGGREGATE_CODEC: StateCodec[ProfileAggregate] = StateCodec("ProfileAggregate", aggregate_record, aggregate_of_record)
FOLD_STATE_CODEC: StateCodec[FoldState] = StateCodec("FoldState", fold_state_record, fold_state_of_record)
JOURNEY_STATE_CODEC: StateCodec[JourneyState] = StateCodec("JourneyState", state_record, state_of_record)
#: journeys MapState journey-buffer: events waiting for the watermark, by models.journeys.buffer_key
JOURNEY_FACT_CODEC: StateCodec[Fact] = StateCodec("JourneyFact", fact_record, fact_of_record)
#: learn-models: the buffered samples (MapState) and the learner (ValueState)
LEARNING_SAMPLE_CODEC: StateCodec[Sample] = StateCodec("LearningSample", Sample.record, Sample.of)
LEARNER_CODEC: StateCodec[dict[str, Any]] = StateCodec("LearnerState", dict, dict)
#: journeys broadcast state segment-rules: the accepted rule definitions, by name
SEGMENT_RULE_CODEC: StateCodec[SegmentRule] = StateCodec("SegmentRule", SegmentRule.record, SegmentRule.of)


def main(argv: list[str] | None = None) -> int:
    """``python -m state.records --freeze``: copy every current state record's standalone
    schema into ``schemas/state/history/`` (before changing one: see the module docs)."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--freeze", action="store_true", required=True)
    ap.add_argument("--dir", type=Path, default=STATE_SCHEMA_DIR, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    hist = args.dir / "history"
    hist.mkdir(exist_ok=True)
    schemas = StateSchemas(args.dir)
    for name in schemas.records():
        codec = schemas.codec(name)
        path = hist / f"{name.rsplit('.', 1)[1]}-{codec.fingerprint.hex()}.avsc"
        if not path.exists():
            path.write_text(json.dumps(codec.schema, indent=1) + "\n")
            print(f"froze {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
