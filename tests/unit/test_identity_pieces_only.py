"""Re-resolving only the piece a new signature lands in (issue 16): the fast path of
:meth:`models.identity.IncrementalResolver.add` must leave exactly the state, changes and
commands that re-resolving the whole raw component leaves (``fast_reresolve = False``, the
path the crash/replay property tests proved), in any order, and agree with :func:`resolve`.
With a kiosk shared by N persons, a person's new identifier then costs no resolution of the
N persons' component."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from models.identity import (
    IdentityRules,
    IncrementalResolver,
    Observation,
    SignatureIndex,
    observation_of,
    resolve,
)
from models.identity_router import IdentityRouter, RouterStore

#: small limits, so that sharing happens at different points of each order
SMALL = IdentityRules(shared_limits=(("*", "customer_id", 1), ("device_id", "cookie_id", 2), ("*", "email_hash", 2)))
TYPES = ("customer_id", "email_hash", "device_id", "cookie_id")

node = st.tuples(st.sampled_from(TYPES), st.sampled_from(["a", "b", "c", "d", "e"]))
observations = st.lists(
    st.builds(
        lambda i, ids: Observation(f"e{i}", tuple(ids)), st.integers(0, 10**6), st.lists(node, min_size=1, max_size=3)
    ),
    max_size=30,
)
rules = st.sampled_from([SMALL, IdentityRules()])


def _state(inc: IncrementalResolver) -> dict:
    """Everything the resolver keeps, as plain dicts (the union-find by the partition it holds)."""
    out = {f.name: dict(getattr(inc.store, f.name)) for f in dataclasses.fields(inc.store) if f.compare}
    out["parent"] = {n: inc.root_of(n) for n in inc.store.parent}
    out["size"] = {}
    out["signatures"] = {inc.root_of(r): sigs for r, sigs in out["signatures"].items()}
    out["events"] = {inc.root_of(r): k for r, k in out["events"].items()}
    out["component_shared"] = {inc.root_of(r): k for r, k in out["component_shared"].items()}
    return out


def _index_consistent(store: RouterStore) -> None:
    """Every index the fast path keeps is its component's (none left behind by a merge) and the
    one a rebuild from the store would give."""
    for root, idx in store.index.items():
        assert idx.signatures is store.signatures.get(root)
        rebuilt = SignatureIndex.of_component(RouterStore(signatures={root: frozenset(idx.signatures)}), root)
        assert {n: sorted(s) for n, s in idx.by_node.items()} == {n: sorted(s) for n, s in rebuilt.by_node.items()}


def _routers(r: IdentityRules) -> tuple[IdentityRouter, IdentityRouter]:
    fast, full = IdentityRouter(r), IdentityRouter(r)
    full.resolver.fast_reresolve = False
    return fast, full


@settings(max_examples=400, deadline=None)
@given(observations, rules, st.randoms(use_true_random=False))
def test_the_piece_alone_leaves_what_the_whole_component_leaves(obs, r, rnd) -> None:
    order = list(obs)
    rnd.shuffle(order)
    fast, full = _routers(r)
    seen = []
    for i, ob in enumerate(order):
        # an event holds one value per type (the last one drawn here)
        event = {
            "event_id": ob.event_id,
            "occurred_at": i,
            "identifiers": {t: None for t in TYPES} | dict(ob.identifiers),
        }
        seen.append(observation_of(event))
        got, want = fast.route_event(event, b"p"), full.route_event(event, b"p")
        assert got == want  # the changes, commands (versions, members, ghosts) and announcements
        assert fast.resolver.step.touched == full.resolver.step.touched
        assert fast.store.live == full.store.live
        assert _state(fast.resolver) == _state(full.resolver)
        _index_consistent(fast.store)
        ref = resolve(seen, r)
        assert (fast.store.profile_of, fast.store.members) == (ref.profile_of, ref.members)


def _kiosk(persons: int) -> list[Observation]:
    out = [Observation(f"k{p}", (("customer_id", f"c{p}"), ("device_id", "kiosk"))) for p in range(persons)]
    out += [Observation(f"w{p}", (("customer_id", f"c{p}"), ("cookie_id", f"ck{p}"))) for p in range(persons)]
    return out


def counting(real: Callable[..., Any], sizes: list[int]) -> Callable[..., Any]:
    """``real`` (:func:`resolve`), recording how many observations each call resolves."""

    def wrapped(observations, rules, shared=None, known=None):
        observations = list(observations)
        sizes.append(len(observations))
        return real(observations, rules, shared, known)

    return wrapped


def test_after_the_kiosk_is_shared_a_persons_new_identifier_resolves_their_piece_alone(monkeypatch) -> None:
    import models.identity as identity

    inc = IncrementalResolver(IdentityRules())
    sizes: list[int] = []
    monkeypatch.setattr(identity, "resolve", counting(identity.resolve, sizes))
    for ob in _kiosk(60):
        inc.add(ob)
    assert inc.store.shared  # the kiosk is shared
    # from the kiosk's sharing on, every resolution is of one person's piece (their kiosk login
    # and their cookie: at most 2 signatures), however many persons the component holds
    assert len(sizes) == 120
    assert max(sizes[60:]) <= 2, sizes[60:]
    assert resolve(_kiosk(60), IdentityRules()).profile_of == dict(inc.profile_of)


def test_two_components_with_shared_identifiers_joined_version_every_piece_of_both() -> None:
    """Each of two raw components has a shared kiosk; a new link between a person of each joins
    them without making anything shared: their shared count (1 + 1) changes the version of every
    piece of both, so the persons who did not take part must hear of it too."""
    fast, full = _routers(SMALL)
    c, k, e, p = "customer_id", "device_id", "email_hash", "phone_hash"
    sigs = [
        ((c, "cust1"), (k, "kiosk1")),
        ((c, "cust2"), (k, "kiosk1")),  # kiosk1 shared (seen with 2 customer ids > 1)
        ((c, "cust1"), (e, "x")),
        ((c, "cust3"), (k, "kiosk2")),
        ((c, "cust4"), (k, "kiosk2")),  # kiosk2 shared
        ((c, "cust3"), (p, "y")),
        ((e, "x"), (p, "y")),  # joins the two components through persons 1 and 3
    ]
    for i, sig in enumerate(sigs):
        event = {"event_id": f"e{i}", "occurred_at": i, "identifiers": dict(sig)}
        got, want = fast.route_event(event, b"p"), full.route_event(event, b"p")
        assert got == want
        assert fast.resolver.step.touched == full.resolver.step.touched
    assert len(fast.store.shared) == 2 and len(fast.store.signatures) == 1
    # persons 2 and 4 (not in the new link) got a command with the new version
    versions = {cmd.profile_id: cmd.version for cmd in got.commands}
    for person in ("cust2", "cust4"):
        assert fast.store.profile_of[(c, person)] in versions
