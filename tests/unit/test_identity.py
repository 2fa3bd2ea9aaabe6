"""The reference identity resolver: order independence, blocked values, unique-type limits,
canonical ids, and agreement with independent oracles (plain BFS; the generator's persons)."""

from __future__ import annotations

import hashlib
import hmac
import random
from collections import deque

from hypothesis import given, settings
from hypothesis import strategies as st

from generator.synth import generate
from models.identity import IdentityRules, Observation, ProfileChange, canonical_profile_id, observation_of, resolve
from models.avro_codec import SchemaCatalog
from models.ingest import Accepted, IngestSettings, Ingestor, SourceRecord

RULES = IdentityRules()
TYPES = ("customer_id", "email_hash", "phone_hash", "device_id", "cookie_id", "loyalty_id")

node = st.tuples(st.sampled_from(TYPES), st.sampled_from(["a", "b", "c", "d", "e", "0000", "anonymous"]))
observations = st.lists(
    st.builds(
        lambda i, ids: Observation(f"e{i}", tuple(ids)), st.integers(0, 10**6), st.lists(node, min_size=1, max_size=4)
    ),
    max_size=25,
)


def bfs_components(obs: list[Observation], blocked=RULES.is_blocked) -> set[frozenset]:
    """Independent oracle without rules: plain connected components by BFS."""
    adj: dict = {}
    for o in obs:
        ids = [n for n in o.identifiers if not blocked(n[1])]
        for n in ids:
            adj.setdefault(n, set())
        for a in ids:
            for b in ids:
                if a != b:
                    adj[a].add(b)
    seen, comps = set(), set()
    for start in adj:
        if start in seen:
            continue
        comp, queue = set(), deque([start])
        seen.add(start)
        while queue:
            x = queue.popleft()
            comp.add(x)
            for y in adj[x] - seen:
                seen.add(y)
                queue.append(y)
        comps.add(frozenset(comp))
    return comps


@settings(max_examples=300, deadline=None)
@given(observations, st.randoms(use_true_random=False))
def test_any_permutation_of_the_same_events_gives_the_same_profiles_and_ids(obs, rnd) -> None:
    shuffled = list(obs)
    rnd.shuffle(shuffled)
    a, b = resolve(obs, RULES), resolve(shuffled, RULES)
    assert a.profile_of == b.profile_of
    assert a.members == b.members
    assert a.refused == b.refused


@settings(max_examples=300, deadline=None)
@given(observations)
def test_blocked_values_never_link_and_never_become_profiles(obs) -> None:
    r = resolve(obs, RULES)
    assert all(not RULES.is_blocked(v) for _, v in r.profile_of)


@settings(max_examples=300, deadline=None)
@given(observations)
def test_no_profile_ever_holds_two_customer_ids(obs) -> None:
    r = resolve(obs, RULES)
    for members in r.members.values():
        assert len({v for t, v in members if t == "customer_id"}) <= 1


@settings(max_examples=300, deadline=None)
@given(observations)
def test_several_unique_types_are_all_enforced(obs) -> None:
    rules = IdentityRules(unique_types=("customer_id", "loyalty_id"))
    r = resolve(obs, rules)
    for members in r.members.values():
        for t in ("customer_id", "loyalty_id"):
            assert len({v for typ, v in members if typ == t}) <= 1


@settings(max_examples=300, deadline=None)
@given(observations)
def test_without_conflicts_profiles_are_exactly_the_connected_components(obs) -> None:
    r = resolve(obs, RULES)
    if not r.refused:
        assert r.components() == bfs_components(obs)


@settings(max_examples=200, deadline=None)
@given(observations)
def test_resolution_only_splits_components_never_joins_across_them(obs) -> None:
    comps = bfs_components(obs)
    for members in resolve(obs, RULES).members.values():
        assert any(members <= c for c in comps)


@settings(max_examples=200, deadline=None)
@given(observations)
def test_the_canonical_id_is_a_function_of_the_component(obs) -> None:
    for pid, members in resolve(obs, RULES).members.items():
        assert pid == canonical_profile_id(members, RULES)
        # the same component reached through different events gets the same id
        chain = sorted(members, key=RULES.rank)
        alt = [Observation(f"x{i}", (chain[0], n)) for i, n in enumerate(chain)]
        assert resolve(alt, IdentityRules(unique_types=())).profile_of[chain[0]] == pid


def test_a_shared_device_between_two_customers_links_neither_but_each_keeps_their_email() -> None:
    obs = [
        Observation("1", (("customer_id", "c1"), ("email_hash", "e1"))),
        Observation("2", (("customer_id", "c2"), ("email_hash", "e2"))),
        Observation("3", (("customer_id", "c1"), ("device_id", "tablet"))),
        Observation("4", (("customer_id", "c2"), ("device_id", "tablet"))),
    ]
    r = resolve(obs, RULES)
    assert r.profile_of[("email_hash", "e1")] == r.profile_of[("customer_id", "c1")]
    assert r.profile_of[("email_hash", "e2")] == r.profile_of[("customer_id", "c2")]
    assert r.profile_of[("customer_id", "c1")] != r.profile_of[("customer_id", "c2")]
    assert r.profile_of[("device_id", "tablet")] not in {
        r.profile_of[("customer_id", "c1")],
        r.profile_of[("customer_id", "c2")],
    }
    assert {x.reason for x in r.refused} == {"unique:customer_id"} and len(r.refused) == 2


def test_one_event_with_two_customer_ids_is_refused() -> None:
    r = resolve([Observation("1", (("customer_id", "c1"), ("customer_id", "c2")))], RULES)
    assert len(r.members) == 2 and len(r.refused) == 1


def test_placeholder_and_repeated_digit_values_are_blocked() -> None:
    for v in ("", "null", "Anonymous", "undefined", "0000000", "1111111111", "00000000-0000-0000-0000-000000000000"):
        assert RULES.is_blocked(v), v
    assert not RULES.is_blocked("cus_12")
    assert IdentityRules(blocked_patterns=(r"test-.*",)).is_blocked("test-user")


def _hash(kind: str, value: str, salt: str) -> str:
    return hmac.new(salt.encode(), f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()


def test_generated_journeys_resolve_to_the_planted_persons() -> None:
    salt = "identity-test-salt-0123"
    ds = generate(seed=77, persons=30)
    ing = Ingestor(IngestSettings(salt))
    catalog = SchemaCatalog.load()
    obs = []
    for i, rec in enumerate(ds.records):
        res = ing.process(SourceRecord(rec.value, rec.topic, 0, i, 1_800_000_000_000))
        if isinstance(res, Accepted):
            obs.append(observation_of(catalog.decode(res.value)[1]))
    random.Random(1).shuffle(obs)
    r = resolve(obs, RULES)
    want = set()
    for p in ds.truth.persons:
        ids = {("customer_id", p.customer_id)} if p.customer_id else set()
        ids |= {("device_id", d) for d in p.device_ids} | {("cookie_id", c) for c in p.cookie_ids}
        if p.email:
            ids.add(("email_hash", _hash("email", p.email, salt)))
        if p.phone:
            ids.add(("phone_hash", _hash("phone", p.phone, salt)))
        if p.loyalty_id:
            ids.add(("loyalty_id", p.loyalty_id))
        want.add(frozenset(ids))
    assert r.components() == want
    assert r.refused == []


@settings(max_examples=300, deadline=None)
@given(observations, st.randoms(use_true_random=False))
def test_incremental_resolution_equals_the_reference_after_every_event_in_any_order(obs, rnd) -> None:
    from models.identity import IncrementalResolver

    order = list(obs)
    rnd.shuffle(order)
    inc = IncrementalResolver(RULES)
    for i, ob in enumerate(order):
        inc.add(ob)
        ref = resolve(order[: i + 1], RULES)
        assert inc.profile_of == ref.profile_of
        assert inc.members == ref.members
    assert set(inc.refused) == set(resolve(order, RULES).refused)


@settings(max_examples=300, deadline=None)
@given(observations)
def test_a_consumer_of_the_change_events_alone_knows_every_identifiers_profile(obs) -> None:
    from models.identity import IncrementalResolver

    inc = IncrementalResolver(RULES)
    seen: dict = {}
    for ob in obs:
        for c in inc.add(ob):
            if c.kind in ("created", "grown"):
                for n in c.members:
                    seen[n] = c.into
    assert seen == inc.profile_of


def test_a_device_shared_later_splits_it_off_the_first_customer() -> None:
    from models.identity import IncrementalResolver

    inc = IncrementalResolver(RULES)
    inc.add(Observation("1", (("customer_id", "c1"), ("device_id", "tablet"))))
    c1 = inc.profile_of[("customer_id", "c1")]
    assert inc.profile_of[("device_id", "tablet")] == c1
    changes = inc.add(Observation("2", (("customer_id", "c2"), ("device_id", "tablet"))))
    kinds = [c.kind for c in changes]
    assert "refused" in kinds and "split" in kinds
    assert inc.profile_of[("device_id", "tablet")] not in {c1, inc.profile_of[("customer_id", "c2")]}
    assert ProfileChange("split", c1, (c1,), members=frozenset({("device_id", "tablet")})) in changes


@settings(max_examples=200, deadline=None)
@given(observations)
def test_the_version_of_a_profile_counts_the_events_of_its_raw_component_and_never_shrinks(obs) -> None:
    from models.identity import IncrementalResolver

    inc = IncrementalResolver(RULES)
    last: dict = {}
    for ob in obs:
        inc.add(ob)
        for n in inc.profile_of:
            v = inc.version_of(n)
            assert v >= last.get(n, 0)
            last[n] = v
    comps = bfs_components(obs)
    for comp in comps:
        events = sum(1 for ob in obs if any(n in comp for n in ob.identifiers if not RULES.is_blocked(n[1])))
        assert all(inc.version_of(n) == events for n in comp)
