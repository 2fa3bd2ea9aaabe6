"""The raw-component registry (models.identity_registry) under any delivery order, against a
plain union-find oracle.

Random registrations, counts and joins are sent at once; the simulation then delivers the
messages in flight (the originals and whatever the keys send each other) one at a time in a
random order (any delay or reordering of the feedback topic), and may crash: every key's
state and the messages in flight go back to a snapshot and the run goes on from there with
other choices (a restore from a checkpoint, which takes the feedback topic's offsets with it).
"""

from __future__ import annotations

import copy
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.identity import IdentityRules, Node, UnionFind
from models.identity_registry import Absorb, Counted, Join, Register, RegistryKey, RegistryState, Told, learnt

RULES = IdentityRules()


def key(i: int) -> Node:
    return ("device_id", f"kiosk-{i:02d}")


def home(i: int) -> Node:
    return ("customer_id", f"c-{i:03d}")


class Simulation:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.states: dict[Node, RegistryState] = {}
        self.in_flight: list[tuple[Node, object]] = []
        self.known: dict[Node, frozenset[Node]] = {}  # per home, the shared identifiers it was told
        self.told: list[Told] = []
        self.snapshot: tuple | None = None

    def send(self, address: Node, msg: object) -> None:
        self.in_flight.append((address, msg))

    def deliver_one(self) -> None:
        address, msg = self.in_flight.pop(self.rng.randrange(len(self.in_flight)))
        out = RegistryKey(RULES, address, self.states.setdefault(address, RegistryState())).on_message(msg)  # type: ignore[arg-type]
        for t in out.told:
            self.told.append(t)
            self.known[t.home] = self.known.get(t.home, frozenset()) | t.shared
        for f in out.forward:
            self.send(f.address, f.message)

    def take_snapshot(self) -> None:
        self.snapshot = copy.deepcopy((self.states, self.in_flight, self.known, self.told))

    def crash(self) -> None:
        if self.snapshot is not None:
            self.states, self.in_flight, self.known, self.told = copy.deepcopy(self.snapshot)

    def busy(self) -> bool:
        return bool(self.in_flight)

    def run(self, crash_probability: float) -> None:
        for _ in range(100_000):
            if not self.busy():
                return
            r = self.rng.random()
            if r < crash_probability:
                self.crash()
            elif r < 3 * crash_probability:
                self.take_snapshot()
            else:
                self.deliver_one()
        raise AssertionError("the registry did not settle")


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("register"), st.integers(0, 11), st.integers(0, 7)),  # home, at key
        st.tuples(st.just("count"), st.integers(0, 7), st.integers(0, 7)),  # identifier, at key
        st.tuples(st.just("join"), st.integers(0, 7), st.integers(0, 7)),
    ),
    max_size=40,
)


def oracle(ops) -> dict[Node, frozenset[Node]]:
    """Each registered home's final set: the identifiers counted in its component (the union
    of the keys joined), by a plain union-find."""
    uf = UnionFind()
    for i in range(8):
        uf.add(key(i))
    for kind, a, b in ops:
        if kind == "join":
            uf.union(key(a), key(b))
    counted: dict[Node, set[Node]] = {}
    for kind, a, b in ops:
        if kind == "count":
            counted.setdefault(uf.find(key(b)), set()).add(key(a))
    return {home(h): frozenset(counted.get(uf.find(key(k)), ())) for kind, h, k in ops if kind == "register"}


def registered_once(ops):
    """A home is in one raw component: each registers at one key only (its first)."""
    seen: set[int] = set()
    out = []
    for op in ops:
        if op[0] == "register":
            if op[1] in seen:
                continue
            seen.add(op[1])
        out.append(op)
    return out


def play(ops, seed: int, crash_probability: float) -> Simulation:
    sim = Simulation(random.Random(seed))
    for kind, a, b in ops:
        if kind == "register":
            sim.send(key(b), Register(home(a)))
        elif kind == "count":
            sim.send(key(b), Counted(key(a)))
        else:
            sim.send(key(a), Join(key(b)))
    sim.take_snapshot()
    sim.run(crash_probability)
    return sim


@settings(max_examples=400, deadline=None)
@given(OPS.map(registered_once), st.integers(0, 2**32), st.sampled_from([0.0, 0.02]))
def test_every_home_ends_told_the_shared_count_of_its_component_in_any_order(ops, seed, crash) -> None:
    sim = play(ops, seed, crash)
    want = oracle(ops)
    assert {h: sim.known.get(h, frozenset()) for h in want} == want
    for t in sim.told:  # never more than the final set: it only grows
        assert t.shared <= want[t.home]
    per_home: dict[Node, list[int]] = {}
    for t in sim.told:
        per_home.setdefault(t.home, []).append(len(t.shared))
    for h, values in per_home.items():  # each tell brings a count the home's root had not told it
        assert len(values) == len(set(values)) and len(values) <= len(want[h]), (h, values)


@settings(max_examples=200, deadline=None)
@given(OPS.map(registered_once), st.integers(0, 2**32))
def test_forward_chains_end_at_one_root_per_component_holding_all_of_it(ops, seed) -> None:
    sim = play(ops, seed, 0.0)
    roots = {}
    for k, state in sim.states.items():
        seen, at = {k}, k
        while sim.states[at].forward is not None:
            nxt = sim.states[at].forward
            assert nxt is not None and RULES.rank(nxt) < RULES.rank(at), "a key moved to a worse-ranked one"
            at = nxt
            assert at not in seen
            seen.add(at)
        roots[k] = at
    want = oracle(ops)
    for kind, h, k in ops:
        if kind == "register":
            root = sim.states[roots[key(k)]]
            assert home(h) in root.homes and set(root.shared) == want[home(h)]


def test_a_race_of_two_homes_counting_one_identifier_counts_it_once() -> None:
    sim = Simulation(random.Random(7))
    for h in range(3):
        sim.send(key(0), Register(home(h)))
    sim.send(key(0), Counted(key(5)))
    sim.send(key(0), Counted(key(5)))
    sim.run(0.0)
    assert sim.known == {home(h): {key(5)} for h in range(3)}
    assert len(sim.told) == 3


def test_a_registry_key_refuses_a_message_it_does_not_know() -> None:
    with pytest.raises(TypeError, match="does not take"):
        RegistryKey(RULES, key(0), RegistryState()).on_message("join")  # type: ignore[arg-type]


def test_joining_a_component_without_shared_identifiers_tells_only_the_homes_that_lacked_some() -> None:
    states = {key(0): RegistryState(), key(1): RegistryState()}
    RegistryKey(RULES, key(0), states[key(0)]).on_message(Register(home(0)))
    RegistryKey(RULES, key(0), states[key(0)]).on_message(Counted(key(0)))
    RegistryKey(RULES, key(1), states[key(1)]).on_message(Register(home(1)))
    out = RegistryKey(RULES, key(0), states[key(0)]).on_message(Absorb(frozenset(), frozenset({home(1)})))
    assert out.told == (Told(home(1), frozenset({key(0)})),)  # home 0 already knows it


# The homes' side (models.identity_registry.learnt): homes of raw components spread over many
# keys learn shared identifiers (found themselves, or a claim answered "shared") in any order.

HOLDS = st.lists(st.tuples(st.integers(0, 11), st.integers(0, 7)), max_size=30)


def components(holds) -> dict[Node, frozenset[Node]]:
    """Each home's raw component's shared identifiers, by a plain union-find over homes and
    the shared identifiers they hold (a raw component spread over homes is connected through
    them)."""
    uf = UnionFind()
    for h, y in holds:
        uf.add(home(h))
        uf.add(key(y))
        uf.union(home(h), key(y))
    shared: dict[Node, set[Node]] = {}
    for _, y in holds:
        shared.setdefault(uf.find(key(y)), set()).add(key(y))
    return {home(h): frozenset(shared[uf.find(home(h))]) for h, _ in holds}


class Homes(Simulation):
    """The registry's simulation with homes that learn: each (home, identifier) pair is an
    input processed at a random point of the run (the first home to hold an identifier found
    it shared; the others were answered so); a crash takes the inputs not yet processed back
    with it, as a restore takes the source's offsets."""

    def __init__(self, rng: random.Random, holds) -> None:
        super().__init__(rng)
        self.finder = {y: h for h, y in reversed(holds)}
        self.inputs = list(holds)
        self.homes: dict[Node, frozenset[Node]] = {}
        self.watch: dict[Node, frozenset[Node]] = components(holds)

    def deliver_one(self) -> None:
        if self.inputs and (not self.in_flight or self.rng.random() < 0.3):
            h, y = self.inputs.pop(self.rng.randrange(len(self.inputs)))
            known = self.homes.get(home(h), frozenset())
            found = {key(y)} if self.finder[y] == h else set()
            for f in learnt(home(h), known, {key(y)}, found):
                self.send(f.address, f.message)
            self.homes[home(h)] = known | {key(y)}
        else:
            super().deliver_one()
            for h, told in self.known.items():
                self.homes[h] = self.homes.get(h, frozenset()) | told
        for h, known in self.homes.items():  # never an identifier the component does not have
            assert known <= self.watch[h], (h, known)

    def take_snapshot(self) -> None:
        super().take_snapshot()
        self.home_snapshot = copy.deepcopy((self.homes, self.inputs))

    def crash(self) -> None:
        super().crash()
        self.homes, self.inputs = copy.deepcopy(self.home_snapshot)

    def busy(self) -> bool:
        return bool(self.in_flight or self.inputs)


@settings(max_examples=300, deadline=None)
@given(HOLDS, st.integers(0, 2**32), st.sampled_from([0.0, 0.02]))
def test_every_home_ends_knowing_its_raw_components_shared_set_and_never_more(holds, seed, crash) -> None:
    sim = Homes(random.Random(seed), holds)
    sim.take_snapshot()
    sim.run(crash)
    assert {h: sim.homes.get(h, frozenset()) for h in sim.watch} == sim.watch
    counted = {n for state in sim.states.values() for n in state.shared}
    assert counted == {key(y) for _, y in holds}, "an identifier counted that no home found, or one not counted"
