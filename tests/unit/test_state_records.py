"""Flink state values are versioned Avro records (state/records.py): round trips, every released
version kept and resolvable, evolution by a field with a default, values of the release that
pickled its state still readable."""

from __future__ import annotations

import io
import json
import pickle
import shutil
from pathlib import Path

import fastavro
import pytest
from fastavro.utils import generate_many

from models.avro_codec import DecodeError, crc64_fingerprint
from models.identity import IdentityRules
from models.identity_router import IdentityRouter
from models.profile import fold
from models.profile_fold import FoldState
from state import records
from state.records import (
    AGGREGATE_CODEC,
    FOLD_STATE_CODEC,
    ROUTER_CODECS,
    STATE_SCHEMA_DIR,
    StateSchemas,
    legacy_pickle,
    unfrozen,
)
from tests.profile_oracle import events


@pytest.fixture(scope="module")
def router_store():
    router = IdentityRouter(IdentityRules())
    for e in events():
        router.route_event(e, payload=b"")
    # the generated erasure requests carried out (tombstones), and one more still pending
    assert router.store.pending, "the generated data has no erasure request"
    router.due_erasures(max(e["occurred_at"] for e in events()))
    request = next(e for e in events() if e["event_type"] == "erasure_request")
    ids = {k: None for k in request["identifiers"]} | {"customer_id": "cus_shared_b"}
    router.route_event({**request, "event_id": "er-pending", "identifiers": ids}, payload=b"")
    return router.store


def test_every_value_of_the_identity_router_round_trips_through_its_state_record(router_store) -> None:
    checked = 0
    for name, codec in ROUTER_CODECS.items():
        mapping = getattr(router_store, name)
        assert mapping, f"the generated data leaves {name} empty: the test would check nothing"
        for value in mapping.values():
            data = codec.encode(value)
            assert data[:2] == b"\xc3\x01"
            assert codec.decode(data) == value
            checked += 1
    assert checked > 100


def test_profile_aggregates_and_fold_states_round_trip_through_their_state_records() -> None:
    evs = events()
    for i in range(0, len(evs), 40):
        agg = fold(evs[i : i + 40], "p-test")
        assert AGGREGATE_CODEC.decode(AGGREGATE_CODEC.encode(agg)) == agg
    assert any(fold(evs[i : i + 40], "p").consent for i in range(0, len(evs), 40))  # nested records exercised
    st = FoldState(
        members=(("cookie_id", "ck1"), ("customer_id", "c1")),
        ghosts=("p-a",),
        version=7,
        folded=5,
        dirty=True,
        writing=12345,
        atoms={("cookie_id", "ck1"): fold(evs[:40], "p-test"), ("customer_id", "c1"): fold(evs[40:60], "p-test")},
        next_write_at=1_700_000_000_123,
    )
    assert FOLD_STATE_CODEC.decode(FOLD_STATE_CODEC.encode(st)) == st
    assert FOLD_STATE_CODEC.decode(FOLD_STATE_CODEC.encode(FoldState())) == FoldState()
    assert FOLD_STATE_CODEC.decode(FOLD_STATE_CODEC.encode(FoldState(atoms={}))).atoms == {}


def test_a_fold_state_written_before_its_atoms_field_says_its_atoms_are_elsewhere() -> None:
    # the release before FoldState.atoms kept them in the MapState profile-atoms: null, not {}
    before = next(
        p for p in sorted((STATE_SCHEMA_DIR / "history").glob("FoldState-*.avsc")) if "atoms" not in p.read_text()
    )
    old = json.loads(before.read_text())
    parsed = fastavro.parse_schema(old, named_schemas={})
    buf = io.BytesIO()
    buf.write(b"\xc3\x01" + crc64_fingerprint(old))
    rec = {"members": [{"type": "cookie_id", "value": "ck1"}], "ghosts": [], "component_events": 3, "folded": 2}
    fastavro.schemaless_writer(buf, parsed, {**rec, "dirty": False, "writing": None, "timers": [], "erasure": None})
    st = FOLD_STATE_CODEC.decode(buf.getvalue())
    assert (st.atoms, st.next_write_at, st.folded, st.version) == (None, 0, 2, 0)  # old versions: not carried


def test_every_current_state_record_is_frozen_in_the_history() -> None:
    assert unfrozen(StateSchemas()) == []


def test_a_changed_record_that_was_not_frozen_is_reported(tmp_path: Path) -> None:
    d = _copy_schemas(tmp_path)
    _add_field(d, "FoldState", {"name": "note", "type": "string", "default": ""})
    assert unfrozen(StateSchemas(d)) == ["journey.state.FoldState"]


@pytest.mark.parametrize("path", sorted((STATE_SCHEMA_DIR / "history").glob("*.avsc")), ids=lambda p: p.stem)
def test_every_released_version_resolves_to_the_current_record(path: Path) -> None:
    old = json.loads(path.read_text())
    current = StateSchemas().codec(old["name"])
    parsed = fastavro.parse_schema(old, named_schemas={})
    for rec in generate_many(parsed, 25):
        buf = io.BytesIO()
        buf.write(b"\xc3\x01" + crc64_fingerprint(old))
        fastavro.schemaless_writer(buf, parsed, rec)
        current.decode(buf.getvalue())


def test_a_field_added_with_a_default_reads_values_written_before_it(tmp_path: Path) -> None:
    d = _copy_schemas(tmp_path)
    _add_field(d, "FoldState", {"name": "note", "type": "string", "default": "none yet"})
    evolved = StateSchemas(d)
    assert unfrozen(evolved) == ["journey.state.FoldState"]
    st = FoldState(members=(("cookie_id", "ck1"),), version=3, folded=2, writing=None)
    old_bytes = FOLD_STATE_CODEC.encode(st)
    rec = evolved.codec("FoldState").decode(old_bytes)
    assert rec["note"] == "none yet" and rec["folded"] == 2
    assert FOLD_STATE_CODEC.with_schemas(d).decode(old_bytes) == st


def test_a_value_of_an_unknown_schema_version_names_the_history_folder() -> None:
    data = FOLD_STATE_CODEC.encode(FoldState())
    forged = data[:2] + bytes(8) + data[10:]
    with pytest.raises(DecodeError, match="history"):
        FOLD_STATE_CODEC.decode(forged)


def test_values_of_the_release_that_pickled_its_state_are_still_read(router_store) -> None:
    # the router's MapStates held pickled values, which Flink hands over unpickled
    for name, codec in ROUTER_CODECS.items():
        for value in list(getattr(router_store, name).values())[:5]:
            assert codec.decode(pickle.loads(pickle.dumps(value))) == value
    agg = fold(events()[:30], "p-old")
    assert AGGREGATE_CODEC.decode(pickle.loads(pickle.dumps(agg))) == agg
    # the fold's ValueState held pickle.dumps(FoldState) inside a pickled byte array
    st = FoldState(members=(("cookie_id", "ck1"),), version=4, folded=4, dirty=True)
    assert FOLD_STATE_CODEC.decode(pickle.dumps(st, protocol=pickle.HIGHEST_PROTOCOL)) == st


def test_a_legacy_value_naming_a_foreign_class_is_refused() -> None:
    class Foreign:
        pass

    global _Foreign
    _Foreign = Foreign
    Foreign.__qualname__ = "_Foreign"
    Foreign.__module__ = __name__
    with pytest.raises(pickle.UnpicklingError, match="not a state type"):
        legacy_pickle(pickle.dumps(Foreign()))


def test_state_records_are_read_only_from_the_files_not_at_import() -> None:
    assert records.StateCodec("FoldState", lambda v: v, lambda r: r)._codec is None


def _copy_schemas(tmp_path: Path) -> Path:
    d = tmp_path / "state"
    shutil.copytree(STATE_SCHEMA_DIR, d)
    return d


def _add_field(d: Path, record: str, field: dict) -> None:
    path = d / "state.avsc"
    schemas = json.loads(path.read_text())
    for s in schemas:
        if s["name"] == record:
            s["fields"].append(field)
    path.write_text(json.dumps(schemas, indent=1))


_Foreign = None
