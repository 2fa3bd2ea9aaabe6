"""The resolve-identity operator's counters, driven without Flink through fakes of its runtime
context: ``home_state_bytes`` (the bytes of the home state records it wrote: what a supernode
makes grow per event), ``retried_messages`` and ``orphan_messages``."""

from __future__ import annotations

import json
from typing import Any

from models.identity import IdentityRules
from models.identity_partitioned import Feedback, Locator, Moved
from models.identity_router import CommandKind
from models.profile_commands import decode_message, encode_message
from operators.identity_partitioned import FEEDBACK_TAG, ResolveIdentity, identity_fields
from state.records import IDENTITY_HOME_CODEC, node_key
from tests.unit.test_buffered_counters import FakeGroup, FakeTimers


class FakeValueState:
    def __init__(self) -> None:
        self.stored: bytes | None = None
        self.written: list[bytes] = []

    def value(self) -> bytes | None:
        return self.stored

    def update(self, value: bytes) -> None:
        self.stored = value
        self.written.append(value)

    def clear(self) -> None:
        self.stored = None


class FakeRuntime:
    def __init__(self) -> None:
        self.state, self.group = FakeValueState(), FakeGroup()

    def get_state(self, descriptor: Any) -> FakeValueState:
        return self.state

    def get_metrics_group(self) -> FakeGroup:
        return self.group


class FakeContext:
    def __init__(self) -> None:
        self.timers = FakeTimers()

    def timer_service(self) -> FakeTimers:
        return self.timers


def login(i: int, kiosk: str) -> dict[str, Any]:
    return {
        "event_id": f"e{i}",
        "occurred_at": 1_800_000_000_000 + i,
        "event_type": "identify",
        "identifiers": {"customer_id": f"c{i}", "device_id": kiosk},
    }


def test_home_state_bytes_counts_every_record_written_and_grows_with_the_component() -> None:
    rules, rt, ctx = IdentityRules(), FakeRuntime(), FakeContext()
    op = ResolveIdentity(rules)
    op.open(rt)
    ev0 = login(0, "kiosk-1")
    home = node_key(Locator(rules, {}).atom_of(ev0))
    for i in range(12):  # one home, as the locate stage sends them once the kiosk's home is known
        ev = login(i, "kiosk-1")
        list(op.process_element((home, "event", json.dumps(identity_fields(ev)), b"raw"), ctx))
    op.counters.flush()
    written = rt.state.written
    assert len(written) == 12
    assert rt.group.counters["home_state_bytes"].n == sum(len(w) for w in written)
    assert len(written[-1]) > 5 * len(written[0])  # the record holds the whole component
    assert IDENTITY_HOME_CODEC.decode(written[-1]).store is not None


def test_moved_state_ahead_of_its_component_is_sent_again_and_counted_and_one_for_no_component_is_an_orphan() -> None:
    rules, rt, ctx = IdentityRules(), FakeRuntime(), FakeContext()
    op = ResolveIdentity(rules)
    op.open(rt)
    ev = login(0, "kiosk-1")
    home = node_key(Locator(rules, {}).atom_of(ev))
    list(op.process_element((home, "event", json.dumps(identity_fields(ev)), b"raw"), ctx))
    cookie = ("cookie_id", "on-its-way")  # its component has not reached this home yet
    moved = encode_message(Feedback(cookie, Moved(CommandKind.STATE, cookie, b"agg")))
    out = list(op.process_element((home, "message", "", moved), ctx))
    assert [decode_message(r) for tag, r in out if tag is FEEDBACK_TAG] == [decode_message(moved)]
    never = ("cookie_id", "never-seen")  # at its own key, with nothing there: no component has it
    alone = ResolveIdentity(rules)
    alone_rt = FakeRuntime()
    alone.open(alone_rt)
    orphan = encode_message(Feedback(never, Moved(CommandKind.STATE, never, b"agg")))
    assert list(alone.process_element((node_key(never), "message", "", orphan), ctx)) == []
    op.counters.flush()
    alone.counters.flush()
    assert rt.group.counters["retried_messages"].n == 1 and rt.group.counters["orphan_messages"].n == 0
    assert alone_rt.group.counters["orphan_messages"].n == 1 and alone_rt.group.counters["retried_messages"].n == 0
    # moved state counts once, where it lands (atoms_evicted = moved_states), not where it is passed on
    assert rt.group.counters["moved_states"].n == 0 and alone_rt.group.counters["moved_states"].n == 1
