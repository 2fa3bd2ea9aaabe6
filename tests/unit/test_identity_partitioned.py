"""Identity partitioned by raw component (models.identity_partitioned), run the way a Flink job
with N subtasks per stage would run it, against the offline oracles.

The simulation has N locate subtasks and N resolve subtasks, each with its own input queue
(keyed exchanges: a record goes to the subtask of its key's hash), a feedback "topic" that
delivers each record after a random delay and in random order, and the partitioned profile
folds of models.profile_fold with their versioned writes to a model of Cassandra. Each step
processes one record of a randomly chosen subtask, so the subtasks interleave as concurrent
subtasks do. Commands reach the folds when they are emitted: the Flink job must keep commands
sent before a component moved ahead of those sent after (docs/identity.md).
"""

from __future__ import annotations

import copy
import random
import zlib
from collections import Counter, deque

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.identity import IdentityRules, Node, observation_of, resolve
from generator.erasure_truth import erased_nodes, erasures, surviving
from models.identity_clock import ClockState, IdentityClock
from models.identity_partitioned import (
    ComponentHome,
    EraseDue,
    EventIn,
    Feedback,
    HomeState,
    LocateEntry,
    Located,
    Locator,
    Moved,
    ToHome,
)
from models.identity_registry import RegistryState
from models.identity_router import CommandKind
from models.profile_fold import FoldState, ProfileFold
from models.profile_commands import decode_message, encode_message
from state.records import IDENTITY_HOME_CODEC, LOCATE_ENTRY_CODEC
from tests.profile_oracle import CassandraModel, events, flush_folds, fold_of, kiosk_events
from tests.profiles_harness import identity_differences
from tests.unit.test_profile_pipeline import assert_cassandra_equals_oracle

RULES = IdentityRules()


def partition(node: Node, n: int) -> int:
    return zlib.crc32(f"{node[0]}:{node[1]}".encode()) % n


class PartitionedSimulation:
    def __init__(
        self,
        rng: random.Random,
        subtasks: int,
        max_delay: int,
        flush_probability: float,
        erasing: bool = False,
        encoded: bool = False,
    ) -> None:
        self.rng, self.n, self.max_delay, self.flush_probability = rng, subtasks, max_delay, flush_probability
        self.entries: list[dict[Node, LocateEntry]] = [{} for _ in range(subtasks)]  # each subtask's keyed state
        self.registries: list[dict[Node, RegistryState]] = [{} for _ in range(subtasks)]
        self.homes: dict[Node, HomeState] = {}
        self.locate_in: list[deque] = [deque() for _ in range(subtasks)]
        self.resolve_in: list[deque] = [deque() for _ in range(subtasks)]
        self.feedback: list[tuple[int, Feedback]] = []
        self.folds: dict[str, tuple[dict, FoldState]] = {}
        self.now = 0
        self.orphans = 0
        self.unresolvable = 0
        self.records = Counter[str]()
        self.clock = IdentityClock(0, ClockState())  # the one clock subtask
        self.erasing = erasing
        self.encoded = encoded  # state and moved components through their records, as in the job
        self.identity_log: list[dict] = []

    def locator(self, key: Node) -> Locator:
        return Locator(RULES, self.entries[partition(key, self.n)], registry=self.registries[partition(key, self.n)])

    def feed(self, evs) -> None:
        for e in evs:
            atom = Locator(RULES, {}).atom_of(e)
            if atom is None:
                self.unresolvable += 1
            else:
                self.locate_in[partition(atom, self.n)].append((atom, e))

    def _send(self, fb: Feedback) -> None:
        if self.encoded and not isinstance(fb.message, Moved):  # as the feedback topic's record
            # (a moved aggregate stays an object here: the fold of this simulation takes one)
            fb = decode_message(encode_message(fb))
        self.feedback.append((self.now + self.rng.randint(0, self.max_delay), fb))

    def _located(self, out: Located) -> None:
        self.records["erased"] += out.erased
        for t in out.to_home:
            self.resolve_in[partition(t.home, self.n)].append(t)
        for fb in out.feedback:
            self._send(fb)

    def _due(self, due: list) -> None:
        if self.erasing:  # else requests stay pending, as in a job whose event time never passes them
            for rid, home in due:
                self._send(Feedback(home, EraseDue(rid)))

    def _fold(self, pid: str) -> ProfileFold:
        return fold_of(self.folds, pid)

    def _process_locate(self, item) -> None:
        if isinstance(item, Feedback):
            self.records["feedback"] += 1
            self._located(self.locator(item.address).route_feedback(item))
        else:
            atom, e = item
            self._located(self.locator(atom).route_event(atom, e, e))
        key = item.address if isinstance(item, Feedback) else item[0]
        entries = self.entries[partition(key, self.n)]
        if self.encoded and key in entries:  # the key's entry as its state record, as locate-identity keeps it
            entries[key] = LOCATE_ENTRY_CODEC.decode(LOCATE_ENTRY_CODEC.encode(entries[key]))

    def _process_resolve(self, item: ToHome) -> None:
        home = ComponentHome(RULES, item.home, self.homes.setdefault(item.home, HomeState()))
        msg = item.message
        out = home.on_event(msg.event, msg.payload) if isinstance(msg, EventIn) else home.on_message(msg)
        self.orphans += out.orphan
        self.records["retried"] += out.retried
        self.records["moves"] += out.moved
        self.records["erased"] += out.erased_event
        self.records["erasures"] += len(out.erasures)
        self.identity_log += [ie.to_record() for ie in out.identity_events]  # the clock's one order
        for fb in out.feedback:
            self._send(fb)
        for cmd in out.commands:  # through the clock, in the order the home sent them
            assert cmd.home is not None
            if cmd.kind is CommandKind.EVENT:
                self._due(self.clock.observe(cmd.at))
            for atom, agg in self._fold(cmd.profile_id).apply(cmd):
                self._send(Feedback(cmd.home, Moved(CommandKind.STATE, atom, agg)))
        for pending in out.pending:
            self._due(self.clock.pending(pending.request_id, pending.at, item.home))
        for rid in out.done:
            self.clock.done(rid)
        if self.encoded:
            self.homes[item.home] = IDENTITY_HOME_CODEC.decode(IDENTITY_HOME_CODEC.encode(self.homes[item.home]))

    def _deliver(self, everything: bool = False) -> None:
        due = [f for f in self.feedback if everything or f[0] <= self.now]
        self.feedback = [f for f in self.feedback if f not in due]
        self.rng.shuffle(due)
        for _, fb in due:
            self.locate_in[partition(fb.address, self.n)].append(fb)

    def _flush(self, db: CassandraModel, probability: float) -> None:
        flush_folds(self.folds, db, self.rng, probability)

    def step(self, db: CassandraModel) -> bool:
        """Process one record of a random subtask (False: nothing left anywhere)."""
        self.now += 1
        self._deliver()
        queues = [("locate", q) for q in self.locate_in if q] + [("resolve", q) for q in self.resolve_in if q]
        if not queues:
            if not self.feedback:  # idle: the clock ticks
                tick, due = self.clock.tick(idle=True, reassert=False)
                self._due(due)
                return bool(self.feedback)
            self._deliver(everything=True)
            return True
        stage, q = self.rng.choice(queues)
        item = q.popleft()
        (self._process_locate if stage == "locate" else self._process_resolve)(item)
        self._flush(db, self.flush_probability)
        return True


def simulate(
    evs,
    seed: int,
    subtasks: int,
    max_delay: int = 5,
    flush_probability: float = 0.3,
    crash: tuple[int, int] | None = None,
    erasing: bool = False,
    encoded: bool = False,
) -> tuple[CassandraModel, PartitionedSimulation]:
    """Run ``evs`` to the end. With ``crash=(snapshot_at, crash_at)`` (steps), the job
    snapshots everything (state, queued records, the feedback topic) at one step, fails at the
    other (its writes stay in Cassandra), restarts from the snapshot and reads the events not
    yet processed in another order."""
    db = CassandraModel()
    sim = PartitionedSimulation(random.Random(seed), subtasks, max_delay, flush_probability, erasing, encoded)
    sim.feed(evs)
    if crash is not None:
        snapshot_at, crash_at = sorted(crash)
        for _ in range(snapshot_at):
            sim.step(db)
        snapshot = copy.deepcopy(sim)
        for _ in range(crash_at - snapshot_at):
            sim.step(db)
        sim = snapshot
        sim.rng = random.Random(seed + 1)
        for q in sim.locate_in:
            items = list(q)
            sim.rng.shuffle(items)
            q.clear()
            q.extend(items)
    for _ in range(2_000_000):
        if not sim.step(db):
            break
    else:
        raise AssertionError("the simulation did not settle (a message going round for good?)")
    sim._flush(db, 1.0)
    return db, sim


def assert_graph_equals_the_oracle(sim: PartitionedSimulation, evs, all_events=None) -> None:
    """Each identifier lives at exactly one home; together the homes hold resolve() of all
    events: the same profile of every identifier, the same refusals, and each component's
    event count is the number of its events; read in order, the ``journey.identity`` records
    tell every identifier's final profile (``all_events``: with the erased ones)."""
    want = resolve([observation_of(e) for e in evs], RULES)
    profile_of: dict[Node, str] = {}
    refused = set()
    counts: dict[frozenset, int] = {}
    for state in sim.homes.values():
        if state.store is None:
            continue
        store = state.store
        (root,) = store.signatures
        nodes = frozenset(n for sig in store.signatures[root] for n in sig)
        assert not nodes & profile_of.keys(), "an identifier lives at two homes"
        profile_of.update({n: store.profile_of[n] for n in nodes})
        refused |= set(store.refused)
        counts[nodes] = store.events[root]
    assert profile_of == want.profile_of
    assert refused == set(want.refused)
    if all_events is None:  # no erasure carried out
        assert identity_differences(sim.identity_log, evs, erasure_requests=[]) == []
    else:
        assert identity_differences(sim.identity_log, all_events) == []
    for nodes, n in counts.items():
        assert n == sum(1 for e in evs if any(node in nodes for node in observation_of(e).identifiers))


@pytest.mark.parametrize("subtasks", [1, 2, 4])
@pytest.mark.parametrize("seed", range(3))
def test_partitioned_identity_equals_the_oracle_at_every_parallelism(subtasks: int, seed: int) -> None:
    evs = list(events())
    random.Random(seed).shuffle(evs)
    db, sim = simulate(evs, seed, subtasks)
    assert_graph_equals_the_oracle(sim, evs)
    assert_cassandra_equals_oracle(db, evs)
    assert sim.orphans == 0
    assert all(state.members for _, state in sim.folds.values()), "a gone profile kept state"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.randoms(use_true_random=False),
    st.sampled_from([1, 2, 3, 4]),
    st.integers(0, 40),
    st.floats(0.05, 1.0),
    st.none() | st.tuples(st.integers(0, 600), st.integers(0, 600)),
)
def test_any_interleaving_of_subtasks_feedback_delays_and_crashes_gives_the_oracle(
    rnd, subtasks: int, max_delay: int, flush_probability: float, crash: tuple[int, int] | None
) -> None:
    evs = list(events())[:160] + list(events())[-40:]  # the shared-device split is at the end
    rnd.shuffle(evs)
    db, sim = simulate(evs, rnd.randint(0, 10**6), subtasks, max_delay, flush_probability, crash)
    assert_graph_equals_the_oracle(sim, evs)
    assert_cassandra_equals_oracle(db, evs)
    assert sim.orphans == 0


@pytest.mark.parametrize("subtasks", [2, 4])
def test_a_restart_from_a_snapshot_in_another_order_leaves_no_stale_row(subtasks: int) -> None:
    evs = list(events())
    random.Random(7).shuffle(evs)
    db, sim = simulate(evs, 7, subtasks, max_delay=20, crash=(len(evs), 2 * len(evs)))
    assert_graph_equals_the_oracle(sim, evs)
    assert_cassandra_equals_oracle(db, evs)


def test_every_record_moves_between_homes_only_towards_better_ranked_homes() -> None:
    evs = list(events())
    random.Random(3).shuffle(evs)
    _, sim = simulate(evs, 3, 4)
    forwards = {h: s.forward for h, s in sim.homes.items() if s.forward is not None}
    assert forwards, "no component ever moved: the test data must join components"
    assert all(RULES.rank(to) < RULES.rank(h) for h, to in forwards.items())


def erasure_events() -> list[dict]:
    """The oracle's events plus two more requests (by a hashed email and by a cookie) besides
    the data set's own request."""
    evs = list(events())
    template = next(e for e in evs if e["event_type"] == "erasure_request")
    persons = [e for e in evs if e["identifiers"].get("customer_id") and e["identifiers"].get("email_hash")]
    extra = []
    for k, (kind, src) in enumerate(
        [("email_hash", persons[5]), ("cookie_id", next(e for e in evs if e["identifiers"].get("cookie_id")))]
    ):
        ids = {t: None for t in template["identifiers"]} | {kind: src["identifiers"][kind]}
        payload = (template["payload"][0], {**template["payload"][1], "request_id": f"req-extra-{k}"})
        extra.append(
            {
                **template,
                "event_id": f"erase-{k}",
                "occurred_at": src["occurred_at"] + 1,
                "identifiers": ids,
                "payload": payload,
            }
        )
    return evs + extra


def assert_erasure_equals_the_oracle(db: CassandraModel, sim: PartitionedSimulation, evs) -> None:
    """The erased persons are gone for good (tombstones at the locate stage, nothing in
    Cassandra); everything else equals the oracles over the events no erasure removed."""
    kept = surviving(evs)
    assert len(kept) < len(evs)
    assert_graph_equals_the_oracle(sim, kept, all_events=evs)
    assert_cassandra_equals_oracle(db, kept)
    stones = {n for entries in sim.entries for n, e in entries.items() if e.erased is not None}
    assert stones == erased_nodes(evs)
    assert not sim.clock.state.pending, "an erasure request the clock still waits on"


@pytest.mark.parametrize("subtasks", [1, 2, 4])
@pytest.mark.parametrize("seed", range(2))
def test_erasures_carried_out_by_the_homes_equal_the_erasure_oracle(subtasks: int, seed: int) -> None:
    evs = erasure_events()
    random.Random(seed).shuffle(evs)
    db, sim = simulate(evs, seed, subtasks, erasing=True)
    assert_erasure_equals_the_oracle(db, sim, evs)
    assert sim.records["erasures"] >= len(erasures(evs)) >= 2


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(0, 2**32),
    st.sampled_from([1, 2, 4]),
    st.integers(0, 40),
    st.none() | st.tuples(st.integers(0, 3000), st.integers(0, 3000)),
)
def test_erasure_with_any_interleaving_delays_and_crashes_equals_the_oracle(
    seed: int, subtasks: int, max_delay: int, crash: tuple[int, int] | None
) -> None:
    evs = erasure_events()
    random.Random(seed).shuffle(evs)
    db, sim = simulate(evs, seed, subtasks, max_delay, 0.3, crash, erasing=True)
    assert_erasure_equals_the_oracle(db, sim, evs)


@pytest.mark.parametrize("subtasks", [1, 4])
def test_homes_kept_as_state_records_and_components_moved_as_records_give_the_oracle(subtasks: int) -> None:
    """As the operators keep them: each home's state written as its record after every message
    and read back before the next, each moved component sent as its record."""
    evs = erasure_events()
    random.Random(11).shuffle(evs)
    db, sim = simulate(evs, 11, subtasks, erasing=True, encoded=True)
    assert_erasure_equals_the_oracle(db, sim, evs)


@pytest.mark.parametrize("seed", range(3))
def test_moved_state_that_overtakes_its_components_move_is_sent_again_not_lost(seed: int) -> None:
    """A kiosk of 24 customers, each merged into the kiosk's home along chains of moves: the
    pointer of a moved identifier names the new home before the move arrives there, so moved
    state reaches a home that does not hold its identifier yet (lost before, as an orphan)."""
    evs = kiosk_events()
    random.Random(seed).shuffle(evs)
    db, sim = simulate(evs, seed, 1)
    assert_graph_equals_the_oracle(sim, evs)
    assert_cassandra_equals_oracle(db, evs)
    assert sim.orphans == 0
    assert sim.records["retried"] > 0, "no moved state overtook its component: the test shows nothing"
