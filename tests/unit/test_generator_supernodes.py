"""Planted supernodes (issue 16): store kiosks, family tablets, a call-centre agent login, and
the benchmark's one big kiosk (:func:`generator.kiosk.kiosk_population`).

Every record goes through the real ingestion (:class:`models.ingest.Ingestor`, salted hashes)
and the reference resolver (:func:`models.identity.resolve`); what it must find is written
here from the generator's ground truth (persons and supernodes) and from counting the decoded
events, never from the resolver's own helpers.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from pathlib import Path
from typing import Any

import pytest

from generator.__main__ import main
from generator.synth import Dataset, GroundTruth, Supernodes, generate, kiosk_population
from models.avro_codec import SchemaCatalog
from models.identity import IdentityRules, Node, Resolution, observation_of, resolve
from models.ingest import Accepted, Ingestor, IngestSettings, SourceRecord

SALT = "supernodes-test-salt-0123"
CATALOG = SchemaCatalog.load()

#: sha256 over every record and truth.json of generate(seed, persons) before supernodes existed
#: (commit 5379412): the option off must keep every byte
DIGESTS_BEFORE = {
    (11, 30): "5f02976c77aa134f3998c13256c900d319d59c943cd9c1a3dc40d32a607c6671",
    (3, 50): "837e61b983a6f0441aac694ce4cb90532f647c6456d84d2ffaac8be692f3b023",
    (7, 25): "5f1b9f9bb05a7b7118ba2e6eff6ebafdd88f472fa30ce847e613bcf45ff1d891",
}


def digest(ds: Dataset) -> str:
    h = hashlib.sha256()
    for r in ds.records:
        h.update(
            repr(
                (
                    r.topic,
                    r.key,
                    r.value,
                    r.kind,
                    r.event_id,
                    r.expected_error,
                    r.person_id,
                    r.event_type,
                    r.occurred_at,
                )
            ).encode()
        )
    h.update(json.dumps(ds.truth.to_json(), sort_keys=True).encode())
    return h.hexdigest()


def _hash(kind: str, value: str) -> str:
    """The salted hash ingestion gives an email or phone (docs/privacy.md), written out here."""
    return hmac.new(SALT.encode(), f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()


def normalized_events(ds: Dataset) -> list[dict[str, Any]]:
    """Every valid and duplicate record through ingestion (all accepted), decoded."""
    ing = Ingestor(IngestSettings(SALT))
    out = []
    for i, rec in enumerate(ds.records):
        res = ing.process(SourceRecord(rec.value, rec.topic, 0, i, 1_800_000_000_000))
        assert isinstance(res, Accepted) == (rec.kind != "bad"), rec
        if isinstance(res, Accepted):
            out.append(CATALOG.decode(res.value)[1])
    return out


def resolved(events: list[dict[str, Any]]) -> Resolution:
    obs = [observation_of(e) for e in events]
    random.Random(5).shuffle(obs)
    return resolve(obs, IdentityRules())


def own_identifiers(truth: GroundTruth) -> list[frozenset[Node]]:
    """Each person's own identifiers as resolution names them (supernodes are never among them)."""
    out = []
    for p in truth.persons:
        ids = {("customer_id", p.customer_id), ("email_hash", _hash("email", p.email))}
        ids |= {("device_id", d) for d in p.device_ids} | {("cookie_id", c) for c in p.cookie_ids}
        if p.phone:
            ids.add(("phone_hash", _hash("phone", p.phone)))
        if p.loyalty_id:
            ids.add(("loyalty_id", p.loyalty_id))
        out.append(frozenset(ids))
    return out


def co_values(events: list[dict[str, Any]], node: Node, co_type: str) -> set[str]:
    """Distinct values of ``co_type`` on the events carrying ``node`` (counted from the events)."""
    return {
        e["identifiers"][co_type]
        for e in events
        if e["identifiers"].get(node[0]) == node[1] and e["identifiers"].get(co_type) is not None
    }


# ----------------------------------------------------------------------------- off by default


@pytest.mark.parametrize(("seed", "persons"), sorted(DIGESTS_BEFORE))
def test_without_supernodes_every_byte_is_what_it_was_before(seed: int, persons: int) -> None:
    ds = generate(seed, persons)
    assert digest(ds) == DIGESTS_BEFORE[(seed, persons)]
    assert digest(generate(seed, persons, supernodes=None)) == DIGESTS_BEFORE[(seed, persons)]
    doc = ds.truth.to_json()
    assert "supernodes" not in doc and "supernodes" not in doc["params"] and "shared_identifiers" not in doc["summary"]
    assert ds.truth.supernodes == [] and ds.truth.shared_identifiers == {} and ds.truth.family_devices == []


# ----------------------------------------------------------------------------- generate(supernodes=...)

CONFIGS = [
    (77, 30, Supernodes()),
    (5, 60, Supernodes(kiosks=3, kiosk_users=12, families=2, family_size=4, agent_calls=15)),
    (9, 25, Supernodes(kiosks=1, kiosk_users=6, families=3, family_size=2, agent_calls=0)),
]


@pytest.fixture(scope="module", params=CONFIGS, ids=lambda c: f"seed{c[0]}-{c[1]}persons")
def planted(request: pytest.FixtureRequest) -> tuple[Dataset, list[dict[str, Any]], Resolution, Supernodes]:
    seed, persons, spec = request.param
    ds = generate(seed, persons, supernodes=spec)
    events = normalized_events(ds)
    return ds, events, resolved(events), spec


def test_the_truth_lists_what_was_asked_for(planted) -> None:
    ds, _, _, spec = planted
    kinds = [s.kind for s in ds.truth.supernodes]
    assert kinds.count("kiosk") == spec.kiosks
    assert kinds.count("family_tablet") == spec.families
    assert kinds.count("call_centre_agent") == (1 if spec.agent_calls else 0)
    want_shared = {}
    for s in ds.truth.supernodes:
        users = {"kiosk": spec.kiosk_users, "family_tablet": spec.family_size, "call_centre_agent": spec.agent_calls}
        assert len(set(s.person_ids)) == s.co_values == users[s.kind]
        if s.kind == "kiosk":
            assert (s.type, s.co_type, s.shared_by) == ("device_id", "customer_id", "customer_id")
            want_shared[s.node] = "customer_id"
        elif s.kind == "family_tablet":
            assert (s.type, s.co_type, s.shared_by) == ("device_id", "customer_id", None)
        else:
            assert (s.type, s.co_type, s.shared_by) == ("customer_id", "phone_hash", "phone_hash")
            want_shared[s.node] = "phone_hash"
    assert ds.truth.shared_identifiers == want_shared
    members = [i for s in ds.truth.family_devices for i in s.person_ids]
    assert len(members) == len(set(members)) == spec.families * spec.family_size  # one family each
    erased = {p.person_id for p in ds.truth.persons if p.erased}
    assert not erased & {i for s in ds.truth.supernodes for i in s.person_ids}


def test_the_events_carry_each_supernode_with_its_users(planted) -> None:
    """Counted from the normalized events: each supernode is seen with exactly its users' values."""
    ds, events, _, _ = planted
    person = {p.person_id: p for p in ds.truth.persons}
    for s in ds.truth.supernodes:
        if s.co_type == "customer_id":
            want = {person[i].customer_id for i in s.person_ids}
        else:
            want = {_hash("phone", person[i].phone or "") for i in s.person_ids}
        assert co_values(events, s.node, s.co_type) == want


def test_resolution_shares_exactly_the_planted_shared_identifiers(planted) -> None:
    ds, _, r, _ = planted
    assert r.shared == ds.truth.shared_identifiers
    assert r.shared  # something is shared in every config


def test_every_person_is_one_profile_of_their_own_and_each_supernode_its_own(planted) -> None:
    ds, _, r, _ = planted
    want = set(own_identifiers(ds.truth)) | {frozenset({s.node}) for s in ds.truth.supernodes}
    assert r.components() == want
    profiles = [r.profile_of[("customer_id", p.customer_id)] for p in ds.truth.persons]
    assert len(set(profiles)) == len(ds.truth.persons)


def test_family_tablets_are_not_shared_and_every_link_to_a_member_is_refused(planted) -> None:
    ds, _, r, _ = planted
    person = {p.person_id: p for p in ds.truth.persons}
    want = {
        (("customer_id", person[i].customer_id), s.node, "unique:customer_id")
        for s in ds.truth.family_devices
        for i in s.person_ids
    }
    assert {(x.a, x.b, x.reason) for x in r.refused} == want
    for s in ds.truth.family_devices:
        assert s.node not in r.shared
        assert r.members[r.profile_of[s.node]] == {s.node}


def test_journeys_still_play_by_the_rules_around_supernode_visits(planted) -> None:
    """Supernode visits are sessions of the journey: sessions stay bursts hours apart."""
    ds, events, _, _ = planted
    by_id = {e["event_id"]: e for e in events}
    for p in ds.truth.persons:
        times = [by_id[e]["occurred_at"] for e in p.event_ids]
        assert times == sorted(times)
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert all(g < 10 * 60_000 or g >= 2 * 3_600_000 for g in gaps)
        assert 1 + sum(g >= 2 * 3_600_000 for g in gaps) == p.sessions
    assert ds.truth.journeys == {}  # the journeys oracle does not model shared identifiers


def test_supernodes_are_deterministic_and_their_truth_round_trips(tmp_path: Path) -> None:
    a, b = generate(4, 30, supernodes=Supernodes()), generate(4, 30, supernodes=Supernodes())
    assert digest(a) == digest(b)
    assert [r.value for r in a.records] != [r.value for r in generate(4, 30).records]
    assert GroundTruth.from_json(a.truth.to_json()) == a.truth
    assert GroundTruth.load(a.truth.write(tmp_path / "truth.json")) == a.truth
    assert a.truth.params["supernodes"] == {
        "kiosks": 2,
        "kiosk_users": 8,
        "families": 1,
        "family_size": 3,
        "agent_calls": 12,
    }
    s = a.summary()
    assert (s["shared_identifiers"], s["family_devices"]) == (3, 1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kiosk_users": 5},
        {"kiosk_users": True},
        {"family_size": 1},
        {"family_size": 6},
        {"agent_calls": 10},
        {"agent_calls": -1},
        {"kiosks": -1},
    ],
)
def test_supernodes_refuse_counts_the_rules_would_not_make_what_they_claim(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Supernodes(**kwargs)


def test_supernodes_off_by_part_and_too_few_persons() -> None:
    assert Supernodes(kiosks=0, kiosk_users=1, families=0, family_size=0, agent_calls=0).persons_needed == 0
    with pytest.raises(ValueError, match="supernodes need 12 persons"):
        generate(1, 10, supernodes=Supernodes())
    with pytest.raises(ValueError, match="callers with a phone"):
        generate(3, 12, supernodes=Supernodes(kiosks=0, families=0, agent_calls=12))  # 10 have a phone
    with pytest.raises(ValueError, match="supernodes must be"):
        generate(1, 10, supernodes=True)  # type: ignore[arg-type]


def test_cli_plants_supernodes_and_refuses_their_options_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "gen"
    argv = ["--persons", "30", "--seed", "3", "--out", str(out), "--no-produce", "--no-progress"]
    assert main([*argv, "--supernodes", "--kiosks", "1", "--kiosk-users", "9"]) == 0
    assert "2 shared identifiers and 1 family devices" in capsys.readouterr().out
    truth = GroundTruth.load(out / "truth.json")
    assert [(s.kind, s.co_values) for s in truth.supernodes] == [
        ("kiosk", 9),
        ("family_tablet", 3),
        ("call_centre_agent", 12),
    ]
    for bad in (["--kiosks", "2"], ["--supernodes", "--family-size", "7"]):
        with pytest.raises(SystemExit) as e:
            main([*argv, *bad])
        assert e.value.code == 2


# ----------------------------------------------------------------------------- kiosk_population


@pytest.mark.parametrize("persons", [6, 40])
def test_kiosk_population_is_one_shared_device_and_one_profile_per_person(persons: int) -> None:
    ds = kiosk_population(persons, 5, seed=3)
    assert len(ds.records) == persons * 5 and {r.kind for r in ds.records} == {"valid"}
    (kiosk,) = ds.truth.supernodes
    events = normalized_events(ds)
    assert co_values(events, kiosk.node, "customer_id") == {p.customer_id for p in ds.truth.persons}
    r = resolved(events)
    assert r.shared == {kiosk.node: "customer_id"} == ds.truth.shared_identifiers
    assert r.components() == set(own_identifiers(ds.truth)) | {frozenset({kiosk.node})}
    assert len(r.members) == persons + 1 and r.refused == []


def test_kiosk_population_without_the_shared_kiosk_is_the_same_events_on_own_devices() -> None:
    shared, own = kiosk_population(8, 4, seed=11), kiosk_population(8, 4, seed=11, shared=False)
    assert own.truth.supernodes == [] and all(len(p.device_ids) == 1 for p in own.truth.persons)
    a, b = normalized_events(shared), normalized_events(own)
    assert [(e["event_id"], e["event_type"], e["occurred_at"]) for e in a] == [
        (e["event_id"], e["event_type"], e["occurred_at"]) for e in b
    ]
    kiosk = shared.truth.supernodes[0].value
    for x, y in zip(a, b, strict=True):
        if x["identifiers"]["device_id"] == kiosk:  # the kiosk login: the only difference
            assert y["identifiers"]["device_id"] != kiosk
            x = {**x, "identifiers": {**x["identifiers"], "device_id": None}}
            y = {**y, "identifiers": {**y["identifiers"], "device_id": None}}
        assert x == y
    r = resolved(b)
    assert r.shared == {} and r.refused == []
    assert r.components() == set(own_identifiers(own.truth))


def test_a_small_kiosk_population_is_ambiguous_and_a_single_user_kiosk_is_their_device() -> None:
    ds = kiosk_population(3, 3, seed=2)
    (kiosk,) = ds.truth.supernodes
    assert kiosk.shared_by is None and ds.truth.family_devices == [kiosk]
    r = resolved(normalized_events(ds))
    assert r.shared == {}
    assert {x.b for x in r.refused} == {kiosk.node} and len(r.refused) == 3
    assert r.components() == set(own_identifiers(ds.truth)) | {frozenset({kiosk.node})}
    one = kiosk_population(1, 3, seed=2)
    assert one.truth.supernodes == []
    assert resolved(normalized_events(one)).components() == set(own_identifiers(one.truth))


def test_kiosk_population_refuses_bad_arguments() -> None:
    for args in ((0, 3, 1), (5, 1, 1), (5, 3, "x")):
        with pytest.raises(ValueError):
            kiosk_population(*args)  # type: ignore[arg-type]
