"""Erasure (docs/privacy.md, models/erasure.py) in the pure stages, against the erasure oracle
(generator/erasure_truth.py): whatever the arrival order and whenever the requests are carried
out, the identity graph ends as the resolution of the events no erasure removed, the erased
identifiers are tombstoned and nothing else of them is left; the later stages remove what
they hold."""

from __future__ import annotations

import random
from dataclasses import fields

import pytest

from models.erasure import ERASED_TIMESTAMP, tombstone_key
from models.identity import IdentityRules, observation_of, resolve
from models.identity_router import CommandKind, IdentityRouter, RouterStore
from models.journeys import ErasedOut, Journey, JourneySettings, JourneyState, PendingErase, SampleOut
from models.profile import ProfileAggregate
from models.profile_fold import FoldState, ProfileFold
from state.journey_store import ERASED_TABLES, statements
from generator.erasure_truth import erased_nodes, erasures, surviving
from tests.journeys_harness import generated_events

RULES = IdentityRules()


def _route_all(events: list[dict], rnd: random.Random) -> tuple[IdentityRouter, int]:
    """Route ``events`` in their order, carrying out the due erasures at random moments (and
    all of them at the end); returns the router and the events it dropped."""
    router = IdentityRouter(RULES)
    dropped = 0
    for e in events:
        out = router.route_event(e, payload=b"")
        dropped += out.erased
        if rnd.random() < 0.2:
            router.due_erasures(max(x["occurred_at"] for x in events))
    router.due_erasures(max(x["occurred_at"] for x in events))
    assert not router.store.pending
    return router, dropped


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_the_graph_ends_as_the_resolution_of_the_surviving_events_in_any_order(seed: int) -> None:
    events = generated_events(31, 25) + generated_events(7, 60)
    rnd = random.Random(seed)
    rnd.shuffle(events)
    router, dropped = _route_all(events, rnd)
    gone = erased_nodes(events)
    assert len(erasures(events)) >= 2 and gone
    want = resolve([observation_of(e) for e in surviving(events)], RULES)
    st = router.store
    assert dict(st.profile_of) == want.profile_of
    assert dict(st.members) == want.members
    assert set(st.refused) == set(want.refused)
    # the tombstones are exactly the erased identifiers', by hash; nothing else of them is left
    assert set(st.erased) == {tombstone_key(n) for n in gone}
    for name in (f.name for f in fields(RouterStore)):
        if name in ("erased", "pending"):
            continue
        mapping = getattr(st, name)
        keys = set(mapping)
        assert not keys & gone, name
        if name == "signatures":
            assert not {n for sigs in mapping.values() for sig in sigs for n in sig} & gone
    assert dropped <= len(events) - len(surviving(events))


def test_an_event_after_the_erasure_is_dropped_and_erases_what_it_links() -> None:
    router = IdentityRouter(RULES)

    def ev(i: str, t: int, typ: str = "page_view", **ids: str) -> dict:
        return {"event_id": i, "occurred_at": t, "event_type": typ, "identifiers": ids, "payload": ("X", {})}

    router.route_event(ev("e1", 1, customer_id="c1", cookie_id="ck1"))
    router.route_event(ev("e2", 2, device_id="d9"))  # someone else, for now
    req = router.route_event(ev("e3", 3, "erasure_request", customer_id="c1"))
    assert req.requested and router.next_erasure() == 3
    assert not router.due_erasures(2).commands  # not before event time reaches it
    done = router.due_erasures(3)
    assert [c.kind for c in done.commands] == [CommandKind.ERASE]
    assert {e.kind for e in done.identity_events} == {"profile_erased"}
    assert set(done.commands[0].erased) == {("customer_id", "c1"), ("cookie_id", "ck1")}
    # the cookie shows up with the device: the event is dropped, the device's profile erased too
    late = router.route_event(ev("e4", 4, cookie_id="ck1", device_id="d9"))
    assert late.erased and [c.kind for c in late.commands] == [CommandKind.ERASE]
    assert late.identity_events[0].reason == "erased_identifier"
    assert not router.store.profile_of and tombstone_key(("device_id", "d9")) in router.store.erased
    assert router.route_event(ev("e5", 5, device_id="d9")).erased


def test_the_fold_drops_the_atoms_and_writes_the_erasure_once() -> None:
    atoms: dict = {("cookie_id", "ck1"): ProfileAggregate(profile_id="p-1", events=2)}
    st = FoldState(members=(("cookie_id", "ck1"),), version=2, folded=2)
    fold = ProfileFold("p-1", atoms, st)
    from models.identity_router import ProfileCommand

    cmd = ProfileCommand(
        profile_id="p-1",
        kind=CommandKind.ERASE,
        version=0,
        ghosts=("p-0", "p-1"),
        erased=(("cookie_id", "ck1"),),
        request="r1",
        at=9,
    )
    assert fold.apply(cmd) == [] and not atoms
    w = fold.flush()
    assert w.profile is None and w.erasure is not None and w.erasure.nodes == (("cookie_id", "ck1"),)
    assert set(w.ghosts) == {"p-0", "p-1"} and not st.members


def test_a_journey_decides_up_to_the_erasure_then_forgets_everything() -> None:
    st = JourneyState(erasure=PendingErase("r1", 1_000, 0, ["p-1", "p-0"]))
    j = Journey("p-1", st, JourneySettings(), samples=True)
    assert j.until(5_000) == 1_000 and j.next_due() == 1_000
    assert j.settle(500) == [] and j.state.erasure is not None  # not yet
    outs = j.settle(5_000, ["engaged"])
    erased = [o for o in outs if isinstance(o, ErasedOut)]
    assert len(erased) == 1 and erased[0].ids == ("p-0", "p-1") and j.state.is_empty()
    sample = next(o.sample for o in outs if isinstance(o, SampleOut))
    assert sample.is_erasure and sample.at == 1_000 and sample.kind == 3
    stmts = statements(erased)
    deleted = {(a, v) for a, v, ts in stmts if ts == ERASED_TIMESTAMP}
    for pid in ("p-0", "p-1"):
        assert {(f"erase-{t}", (pid,)) for t in ERASED_TABLES} <= deleted
        assert ("erase-segment_members", ("engaged", pid)) in deleted
    assert [a for a, _, _ in stmts].count("audit") == 1
