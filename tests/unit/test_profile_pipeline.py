"""The identity router + partitioned profile folds, wired the way the Flink job wires them but
in one process, against the offline oracle (resolve() over all events + a fold per profile).

The simulation delays moved state on the feedback "topic" by a random number of steps and
flushes profiles at random moments (the job's coalescing timers), and can crash: the run is
restored from a snapshot taken earlier and continues in another order, while everything
written to (the model of) Cassandra before the crash stays there. Cassandra must still end
up equal to the oracle: no loss, nothing counted twice, no stale row winning.
"""

from __future__ import annotations

import copy
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.identity import IdentityRules
from models.identity_router import IdentityRouter
from models.profile_fold import FoldState, ProfileFold
from tests.profile_oracle import CassandraModel, flush_folds, fold_of, assert_same, events, oracle

RULES = IdentityRules()


class Simulation:
    """Router + folds + feedback queue; ``step`` processes one event, ``drain`` finishes."""

    def __init__(self, rng: random.Random, max_delay: int, flush_probability: float) -> None:
        self.rng, self.max_delay, self.flush_probability = rng, max_delay, flush_probability
        self.router = IdentityRouter(RULES)
        self.folds: dict[str, tuple[dict, FoldState]] = {}
        self.feedback: list[tuple[int, tuple, dict]] = []  # (due step, atom, aggregate)
        self.now = 0
        self.orphans = 0

    def _fold(self, pid: str) -> ProfileFold:
        return fold_of(self.folds, pid)

    def _apply(self, commands, db: CassandraModel) -> None:
        for cmd in commands:
            for atom, agg in self._fold(cmd.profile_id).apply(cmd):
                self.feedback.append((self.now + self.rng.randint(0, self.max_delay), atom, agg))

    def _deliver(self, db: CassandraModel, everything: bool = False) -> None:
        due = [f for f in self.feedback if everything or f[0] <= self.now]
        self.feedback = [f for f in self.feedback if f not in due]
        self.rng.shuffle(due)
        for _, atom, agg in due:
            cmd = self.router.route_state(atom, agg)
            if cmd is None:
                self.orphans += 1
            else:
                self._apply([cmd], db)

    def _flush(self, db: CassandraModel, probability: float) -> None:
        flush_folds(self.folds, db, self.rng, probability)

    def step(self, event: dict, db: CassandraModel) -> None:
        self.now += 1
        self._deliver(db)
        self._apply(self.router.route_event(event, payload=event).commands, db)
        self._flush(db, self.flush_probability)

    def drain(self, db: CassandraModel) -> None:
        while self.feedback:
            self.now += self.max_delay + 1
            self._deliver(db, everything=True)
            self._flush(db, self.flush_probability)
        self._flush(db, 1.0)


def run(
    evs, seed: int, max_delay: int = 5, flush_probability: float = 0.3, crash: tuple[int, int] | None = None
) -> tuple[CassandraModel, Simulation]:
    """Process ``evs``. With ``crash=(snapshot_at, crash_at)``, the job snapshots its state
    before event ``snapshot_at``, fails after event ``crash_at`` (its writes up to then stay
    in Cassandra), restarts from the snapshot and replays the events after ``snapshot_at`` in
    another order (as a restarted job reading several partitions may)."""
    rng = random.Random(seed)
    db = CassandraModel()
    sim = Simulation(rng, max_delay, flush_probability)
    if crash is not None:
        snapshot_at, crash_at = sorted(crash)
        for e in evs[:snapshot_at]:
            sim.step(e, db)
        snapshot = copy.deepcopy(sim)
        for e in evs[snapshot_at:crash_at]:
            sim.step(e, db)
        sim = snapshot
        sim.rng = random.Random(seed + 1)
        rest = list(evs[snapshot_at:])
        sim.rng.shuffle(rest)
        evs = rest
    for e in evs:
        sim.step(e, db)
    sim.drain(db)
    return db, sim


def assert_cassandra_equals_oracle(db: CassandraModel, evs) -> None:
    want = oracle(evs)
    assert_same(db.view(), want)
    owner = {(t, v): pid for pid, (_, agg) in want.items() for t, vs in agg.identifiers.items() for v in vs}
    assert db.identity_links() == owner


@pytest.mark.parametrize("seed", range(4))
def test_partitioned_profiles_equal_the_oracle_for_any_order_and_feedback_delay(seed: int) -> None:
    evs = list(events())
    random.Random(seed).shuffle(evs)
    db, sim = run(evs, seed)
    assert_cassandra_equals_oracle(db, evs)
    assert sim.orphans == 0


@pytest.mark.parametrize("seed", range(4))
def test_a_replay_in_another_order_after_a_crash_leaves_no_stale_row(seed: int) -> None:
    evs = list(events())
    random.Random(100 + seed).shuffle(evs)
    db, _ = run(evs, seed, crash=(len(evs) // (seed + 2), len(evs) - seed * 7))
    assert_cassandra_equals_oracle(db, evs)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.randoms(use_true_random=False),
    st.integers(0, 8),
    st.floats(0.05, 1.0),
    st.none() | st.tuples(st.integers(0, 200), st.integers(0, 200)),
)
def test_any_interleaving_of_events_moved_state_flushes_and_crashes_gives_the_oracle(
    rnd, max_delay: int, flush_probability: float, crash: tuple[int, int] | None
) -> None:
    evs = list(events())[:160] + list(events())[-40:]  # the shared-device split is at the end
    rnd.shuffle(evs)
    db, sim = run(evs, rnd.randint(0, 10**6), max_delay, flush_probability, crash)
    assert_cassandra_equals_oracle(db, evs)
    assert all(state.members for _, state in sim.folds.values()), "a gone profile kept state"


def test_every_folded_event_is_counted_once_across_profiles() -> None:
    evs = list(events())
    db, _ = run(evs, 0)
    assert sum(agg.events for _, agg in db.view().values()) == len(evs)


def test_a_shared_device_is_split_off_and_reported_as_refused_links() -> None:
    router = IdentityRouter(RULES)
    routed = [router.route_event(e) for e in events()]
    refused = [ie for r in routed for ie in r.identity_events if ie.kind == "link_refused"]
    assert {ie.reason for ie in refused} == {"unique:customer_id"}
    assert any(ie.identifier_hash == "tablet-1" or "shared" in ie.event_id for ie in refused)
    owners = {router.store.profile_of[("device_id", "tablet-1")]}
    assert all(not any(n[0] == "customer_id" for n in router.store.members[p]) for p in owners)


def test_every_merge_is_published_from_the_old_into_the_new_profile() -> None:
    router = IdentityRouter(RULES)
    routed = [router.route_event(e) for e in events()]
    merged = [(c.from_ids[0], c.into) for r in routed for c in r.changes if c.kind == "merged"]
    published = [
        (ie.from_profile_id, ie.profile_id) for r in routed for ie in r.identity_events if ie.kind == "profile_merged"
    ]
    assert merged and published == merged
    final = {
        ie.identifier_type + ":" + ie.identifier_hash: ie.profile_id
        for r in routed
        for ie in r.identity_events
        if ie.kind == "identifier_linked"
    }
    assert final == {f"{t}:{v}": pid for (t, v), pid in router.store.profile_of.items()}


def test_an_event_whose_identifiers_are_all_blocked_is_reported_not_routed() -> None:
    e = dict(events()[0])
    e["identifiers"] = {k: None for k in e["identifiers"]} | {"cookie_id": "anonymous"}
    out = IdentityRouter(RULES).route_event(e)
    assert out.resolved is False and out.commands == ()


def test_moved_state_for_an_unknown_identifier_is_not_routed() -> None:
    assert IdentityRouter(RULES).route_state(("cookie_id", "never-seen"), {"events": 1}) is None
