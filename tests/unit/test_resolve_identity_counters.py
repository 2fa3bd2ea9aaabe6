"""The resolve-identity operator's ``home_state_bytes`` counter: the bytes of the home state
records it wrote (what a supernode makes grow per event), driven without Flink through fakes
of its runtime context."""

from __future__ import annotations

import json
from typing import Any

from models.identity import IdentityRules
from models.identity_partitioned import Locator
from operators.identity_partitioned import ResolveIdentity, identity_fields
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
