"""A home merge that re-resolves only the pieces the moved component reaches (issue 16):
:func:`models.identity_partitioned.absorb` with ``PIECE_ABSORB`` must return exactly what the
whole-union merge returns (``PIECE_ABSORB = False``, the path the crash/replay property tests
of ``test_identity_partitioned.py`` proved) and leave exactly its state, at every merge of the
partitioned simulation, whatever the order, parallelism, feedback delays and crashes. With a
kiosk shared by N persons, one more person's component joining it then costs no resolution
of the N persons."""

from __future__ import annotations

import copy
import dataclasses
import random
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import models.identity as identity
import models.identity_partitioned as partitioned
from models.identity import IdentityRules
from models.identity_router import RouterStore
from tests.profile_oracle import events
from tests.unit.test_identity_partitioned import assert_graph_equals_the_oracle, simulate
from tests.unit.test_identity_pieces_only import _index_consistent, counting
from tests.unit.test_profile_pipeline import assert_cassandra_equals_oracle


def _state(store: RouterStore) -> dict[str, Any]:
    """Everything a home keeps, as plain dicts (the union-find by the partition it holds)."""
    out = {f.name: dict(getattr(store, f.name)) for f in dataclasses.fields(store) if f.compare}
    uf = identity.UnionFind(store.parent, store.size)
    out["parent"] = {n: uf.find(n) for n in store.parent}
    out["size"] = {}
    return out


class Differential:
    """Stands in for :func:`absorb`: every merge is made both ways (on copies for the whole
    union), the results compared, and the piece path's kept; counts which path each took."""

    def __init__(self) -> None:
        self.real = partitioned.absorb
        self.paths = Counter[str]()

    def __call__(self, rules: IdentityRules, store: RouterStore, other: RouterStore, event_id: str, at: int) -> Any:
        ref_store, ref_other = copy.deepcopy(store), copy.deepcopy(other)
        index = identity.SignatureIndex.of_component(copy.deepcopy(store), partitioned._only_root(store))
        reach = partitioned.absorbed_pieces(rules, store, index, other, other.signatures[partitioned._only_root(other)])
        self.paths["pieces" if reach is not None else "union"] += 1
        was = partitioned.PIECE_ABSORB
        try:
            partitioned.PIECE_ABSORB = False
            want = self.real(rules, ref_store, ref_other, event_id, at)
            partitioned.PIECE_ABSORB = True
            got = self.real(rules, store, other, event_id, at)
        finally:
            partitioned.PIECE_ABSORB = was
        assert got == want  # commands (versions, members, evictions, ghosts), records, changes, claims
        assert _state(store) == _state(ref_store)
        _index_consistent(store)
        return got


def _kiosk_events(persons: int) -> list[dict]:
    """``persons`` customers each logging in on one store kiosk and then on a cookie of their
    own (the kiosk is shared from the sixth on, default limits), as profile events."""
    template = next(e for e in events() if e["event_type"] == "page_view")
    out = []
    for k in range(persons):
        for n, ids in enumerate(
            ({"customer_id": f"cus_k{k}", "device_id": "kiosk-9"}, {"customer_id": f"cus_k{k}", "cookie_id": f"ck{k}"})
        ):
            ids = {t: None for t in template["identifiers"]} | ids
            out.append({**template, "event_id": f"kiosk9-{k}-{n}", "identifiers": ids})
    return out


def _run(evs: list[dict], seed: int, subtasks: int, **kw: Any) -> Counter[str]:
    diff = Differential()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(partitioned, "absorb", diff)
        db, sim = simulate(evs, seed, subtasks, **kw)
    assert_graph_equals_the_oracle(sim, evs)
    assert_cassandra_equals_oracle(db, evs)
    assert sim.orphans == 0
    return diff.paths


@pytest.mark.parametrize("subtasks", [1, 2, 4])
def test_each_merge_of_the_pieces_alone_leaves_what_the_whole_union_leaves(subtasks: int) -> None:
    evs = list(events()) + _kiosk_events(30)
    random.Random(subtasks).shuffle(evs)
    paths = _run(evs, subtasks, subtasks)
    # both paths taken: merges that make the kiosk shared resolve the union, the rest the pieces
    assert paths["pieces"] > 20 and paths["union"] > 0, paths


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.randoms(use_true_random=False),
    st.sampled_from([1, 2, 3]),
    st.integers(0, 30),
    st.none() | st.tuples(st.integers(0, 400), st.integers(0, 400)),
)
def test_with_any_interleaving_delays_and_crashes(rnd, subtasks: int, max_delay: int, crash) -> None:
    evs = list(events())[:120] + list(events())[-40:] + _kiosk_events(12)
    rnd.shuffle(evs)
    _run(evs, rnd.randint(0, 10**6), subtasks, max_delay=max_delay, crash=crash)


def test_a_person_joining_a_shared_kiosk_resolves_their_pieces_alone(monkeypatch) -> None:
    """Once the kiosk is shared, a merge of one more person's component resolves at most that
    person's signatures, however many persons the kiosk's component holds."""
    sizes: list[int] = []
    merges = Counter[str]()
    real_absorb = partitioned.absorb

    def absorb(*args: Any) -> Any:
        merges["absorb"] += 1
        return real_absorb(*args)

    monkeypatch.setattr(partitioned, "resolve", counting(partitioned.resolve, sizes))
    monkeypatch.setattr(partitioned, "absorb", absorb)
    simulate(_kiosk_events(40), 5, 1, max_delay=0)  # in order: the kiosk is shared at the sixth person
    assert merges["absorb"] >= 34, merges  # each later person's component joined the kiosk's
    assert len(sizes) == merges["absorb"] and max(sizes[-34:]) <= 2, sizes


@pytest.mark.parametrize("piece_absorb", [True, False])
def test_a_refusal_made_where_the_kiosk_was_not_shared_yet_goes_when_it_joins_where_it_is(
    piece_absorb: bool, monkeypatch
) -> None:
    """Two customers on a kiosk at a home that has not seen it shared: the link is refused
    there (two customer ids in one cluster). Joined to the home that has the kiosk shared
    (six customers), the merged component's refusals are :func:`resolve`'s: none (a shared
    identifier links nothing), whichever way the merge resolves."""
    monkeypatch.setattr(partitioned, "PIECE_ABSORB", piece_absorb)
    rules = IdentityRules()
    evs = _kiosk_events(8)[::2]  # the kiosk logins alone
    homes = [
        partitioned.ComponentHome(rules, ("customer_id", h), partitioned.HomeState()) for h in ("cus_k0", "cus_k6")
    ]
    for i, ev in enumerate(evs):
        homes[i >= 6].on_event(ev, ev["event_id"])
    small = homes[1].state.store
    assert small is not None and small.refused and not small.shared
    out = homes[0].on_message(partitioned.Move(small, "m", 1))
    want = identity.resolve([identity.observation_of(e) for e in evs], rules)
    store = homes[0].state.store
    assert store is not None and set(want.shared) == set(store.shared)
    assert dict(store.refused) == {link: True for link in want.refused} == {}
    assert dict(store.profile_of) == want.profile_of
    assert out.commands


def test_a_component_bringing_a_shared_identifier_the_home_lacks_versions_every_piece_again() -> None:
    """A person's own component ({customer, cookie}) absorbs the kiosk's (where the kiosk is
    shared and the person logged in on it): the merged component has one shared identifier
    more than the home's, so every piece's version changes and the union is resolved."""
    rules = IdentityRules()
    kiosk = _kiosk_events(7)
    homes = [
        partitioned.ComponentHome(rules, ("customer_id", h), partitioned.HomeState()) for h in ("cus_k0", "cus_k1")
    ]
    homes[0].on_event(kiosk[1], "e")  # cus_k0 with their cookie
    for ev in kiosk[0::2]:  # every kiosk login, cus_k0's too, at the kiosk's home
        homes[1].on_event(ev, ev["event_id"])
    mine, theirs = homes[0].state.store, homes[1].state.store
    assert mine is not None and theirs is not None and theirs.shared and not mine.shared
    diff = Differential()
    diff(rules, mine, theirs, "m", 1)
    assert diff.paths == Counter({"union": 1})
    want = identity.resolve([identity.observation_of(e) for e in [kiosk[1], *kiosk[0::2]]], rules)
    assert dict(mine.profile_of) == want.profile_of and set(mine.shared) == set(want.shared)
