"""The synthetic data generator: determinism, coverage, and ground truth that holds.

Every record is judged independently by the real ingestion logic (:class:`models.ingest.Ingestor`);
no Kafka needed (the producer is exercised against a fake).
"""

from __future__ import annotations

import base64
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generator.__main__ import main, parse_args
from generator.produce import ProduceError, ProduceReport, check_produce_time, produce
from generator.synth import BEHAVIOURS, DAY_MS, MIN_LATENESS_MS, Dataset, GroundTruth, generate, topic_of
from models.avro_codec import SchemaCatalog
from models.events import CHANNELS, EVENT_TYPES, IDENTIFIER_TYPES
from models.ingest import (
    DEAD_LETTER_REASONS,
    Accepted,
    DeadLettered,
    Ingestor,
    IngestSettings,
    SourceRecord,
)
from models.normalize import normalize_email, normalize_phone

SEED = 42
PERSONS = 60
ALL_TOPICS = {topic_of(c) for c in CHANNELS}
Decoded = dict[str, dict[str, Any]]  # event_id -> decoded raw Event


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return generate(SEED, PERSONS)


@pytest.fixture(scope="module")
def catalog() -> SchemaCatalog:
    return SchemaCatalog.load()


@pytest.fixture(scope="module")
def decoded(dataset: Dataset, catalog: SchemaCatalog) -> Decoded:
    """event_id -> decoded raw Event, for every valid record."""
    return {
        r.event_id: catalog.decode(r.value, expect="Event")[1]
        for r in dataset.records
        if r.kind == "valid" and r.event_id
    }


@pytest.fixture(scope="module")
def ingestor() -> Ingestor:
    return Ingestor(IngestSettings(pii_salt="x" * 16))


def _now_ms() -> int:
    return int(time.time() * 1000)


def _ingest(ingestor: Ingestor, value: bytes, topic: str, ts: int) -> Accepted | DeadLettered:
    return ingestor.process(SourceRecord(value, topic, 0, 0, timestamp_ms=ts))


# ----------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_records_and_truth() -> None:
    a, b = generate(7, 25), generate(7, 25)
    assert [(r.topic, r.key, r.value, r.kind) for r in a.records] == [
        (r.topic, r.key, r.value, r.kind) for r in b.records
    ]
    assert a.truth.to_json() == b.truth.to_json()


def test_different_seeds_give_different_records() -> None:
    a, b = generate(7, 25), generate(8, 25)
    assert [r.value for r in a.records] != [r.value for r in b.records]
    assert [p.email for p in a.truth.persons] != [p.email for p in b.truth.persons]


# ----------------------------------------------------------------------------- coverage


def test_all_event_types_channels_and_behaviours_present_for_50_persons() -> None:
    ds = generate(3, 50)
    valid = [r for r in ds.records if r.kind == "valid"]
    assert {r.event_type for r in valid} == set(EVENT_TYPES)
    assert {r.topic for r in valid} == ALL_TOPICS
    assert {p.behaviour for p in ds.truth.persons} == set(BEHAVIOURS)


def test_every_dead_letter_error_type_is_planted(dataset: Dataset) -> None:
    assert {r.expected_error for r in dataset.records if r.kind == "bad"} == set(DEAD_LETTER_REASONS)


def test_carts_with_and_without_purchase_exist(dataset: Dataset) -> None:
    assert any(c.purchased for c in dataset.truth.carts)
    assert any(not c.purchased and c.checkout_started for c in dataset.truth.carts)
    assert any(not c.checkout_started for c in dataset.truth.carts)


# ----------------------------------------------------------------------------- ingestion verdicts


def test_valid_and_duplicate_records_are_accepted_by_ingestion(dataset: Dataset, ingestor: Ingestor) -> None:
    now = _now_ms()
    rejected = []
    for r in dataset.records:
        if r.kind in ("valid", "duplicate"):
            out = _ingest(ingestor, r.value, r.topic, now)
            if not isinstance(out, Accepted) or out.event_id != r.event_id:
                rejected.append((r.event_id, getattr(out, "error_type", None)))
    assert rejected == []


def test_valid_records_are_accepted_without_normalization_warnings(dataset: Dataset, ingestor: Ingestor) -> None:
    now = _now_ms()
    warned = [
        (r.event_id, out.warnings)
        for r in dataset.records
        if r.kind == "valid"
        for out in [_ingest(ingestor, r.value, r.topic, now)]
        if isinstance(out, Accepted) and out.warnings
    ]
    assert warned == []


def test_bad_records_are_dead_lettered_with_exactly_their_expected_error(dataset: Dataset, ingestor: Ingestor) -> None:
    now = _now_ms()
    wrong = []
    for r in dataset.records:
        if r.kind == "bad":
            out = _ingest(ingestor, r.value, r.topic, now)
            got = out.error_type if isinstance(out, DeadLettered) else "accepted"
            if got != r.expected_error:
                wrong.append((r.expected_error, got, r.value[:40]))
    assert wrong == []


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(min_value=-(2**40), max_value=2**40))
def test_any_seed_yields_records_that_ingestion_judges_as_labelled(seed: int) -> None:
    ing = Ingestor(IngestSettings(pii_salt="y" * 16))
    ds = generate(seed, 3, bad_ratio=0.1)
    now = _now_ms()
    for r in ds.records:
        out = _ingest(ing, r.value, r.topic, now)
        if r.kind == "bad":
            assert isinstance(out, DeadLettered) and out.error_type == r.expected_error, (seed, r.expected_error)
        else:
            assert isinstance(out, Accepted), (seed, r.event_id, getattr(out, "error_type", None))


def test_valid_events_occur_within_the_calendar_and_well_before_now(dataset: Dataset) -> None:
    base = dataset.truth.params["base_time_ms"]
    times = [r.occurred_at for r in dataset.records if r.kind == "valid"]
    assert all(base <= t < base + 30 * DAY_MS for t in times)
    check_produce_time(dataset, _now_ms())  # raises if ingestion would see the future


# ----------------------------------------------------------------------------- faults


def test_duplicates_are_byte_identical_to_an_earlier_valid_record(dataset: Dataset) -> None:
    first_seen: dict[bytes, int] = {}
    for i, r in enumerate(dataset.records):
        if r.kind == "valid":
            first_seen.setdefault(r.value, i)
        elif r.kind == "duplicate":
            assert r.value in first_seen, r.event_id
            orig = dataset.records[first_seen[r.value]]
            assert (orig.event_id, orig.topic, orig.key) == (r.event_id, r.topic, r.key)
    for d in dataset.truth.duplicates:
        assert d.original_index < d.record_index
        assert dataset.records[d.original_index].value == dataset.records[d.record_index].value


def test_valid_event_ids_are_unique(dataset: Dataset) -> None:
    ids = [r.event_id for r in dataset.records if r.kind == "valid"]
    assert len(ids) == len(set(ids)) and None not in ids


def test_late_events_arrive_after_events_that_occurred_hours_later(dataset: Dataset) -> None:
    assert dataset.truth.late_events
    idx = {r.event_id: i for i, r in enumerate(dataset.records) if r.kind == "valid"}
    for late in dataset.truth.late_events:
        i = idx[late.event_id]
        assert i == late.record_index
        before = max(r.occurred_at for r in dataset.records[:i] if r.kind == "valid")  # type: ignore[type-var]
        assert before - late.occurred_at == late.lateness_ms >= MIN_LATENESS_MS


def test_out_of_order_events_arrive_after_the_next_event_of_their_person(dataset: Dataset) -> None:
    assert dataset.truth.out_of_order_event_ids
    idx = {r.event_id: i for i, r in enumerate(dataset.records) if r.kind == "valid"}
    successor = {}
    for p in dataset.truth.persons:
        successor.update(zip(p.event_ids, p.event_ids[1:]))
    for eid in dataset.truth.out_of_order_event_ids:
        nxt = successor[eid]
        assert idx[nxt] < idx[eid]
        assert dataset.records[idx[nxt]].occurred_at > dataset.records[idx[eid]].occurred_at  # type: ignore[operator]


def test_undecodable_bad_records_have_no_key_and_decodable_ones_a_person_key(dataset: Dataset) -> None:
    undecodable = {"not_single_object_encoded", "unknown_schema", "malformed_avro"}
    persons = {p.person_id.encode() for p in dataset.truth.persons}
    for r in dataset.records:
        if r.kind == "bad":
            assert (r.key is None) == (r.expected_error in undecodable)
            assert r.key is None or r.key in persons
            assert r.topic in ALL_TOPICS


# ----------------------------------------------------------------------------- ground truth


def test_truth_counts_match_records(dataset: Dataset) -> None:
    recs, s = dataset.records, dataset.summary()
    kinds = Counter(r.kind for r in recs)
    assert (s["records"], s["valid"], s["duplicate"], s["bad"]) == (
        len(recs),
        kinds["valid"],
        kinds["duplicate"],
        kinds["bad"],
    )
    assert s["topics"] == {topic_of(c): sum(1 for r in recs if r.topic == topic_of(c)) for c in CHANNELS}
    assert s["bad_by_error_type"] == {t: sum(1 for r in recs if r.expected_error == t) for t in DEAD_LETTER_REASONS}
    assert s["event_types"] == {t: sum(1 for r in recs if r.kind == "valid" and r.event_type == t) for t in EVENT_TYPES}
    assert sorted(str(r.event_id) for r in recs if r.kind == "valid") == dataset.truth.valid_event_ids
    assert sorted(e for p in dataset.truth.persons for e in p.event_ids) == dataset.truth.valid_event_ids
    assert [b.record_index for b in dataset.truth.bad_records] == [i for i, r in enumerate(recs) if r.kind == "bad"]
    assert [d.record_index for d in dataset.truth.duplicates] == [
        i for i, r in enumerate(recs) if r.kind == "duplicate"
    ]
    assert all(recs[b.record_index].value == b.raw for b in dataset.truth.bad_records)
    assert s["persons"] == PERSONS and sum(s["behaviours"].values()) == PERSONS


def test_records_of_a_person_share_the_person_key(dataset: Dataset) -> None:
    for r in dataset.records:
        if r.kind != "bad":
            assert r.key == r.person_id.encode()  # type: ignore[union-attr]


def test_raw_email_and_phone_variants_normalize_to_the_person_values(dataset: Dataset, decoded: Decoded) -> None:
    messy = 0
    for p in dataset.truth.persons:
        assert p.email_variants and all(normalize_email(v) == p.email for v in p.email_variants)
        assert all(normalize_phone(v, "1") == p.phone for v in p.phone_variants)
        messy += sum(1 for v in p.email_variants if v != p.email)
        used_emails = {decoded[e]["identifiers"]["email"] for e in p.event_ids} - {None}
        used_phones = {decoded[e]["identifiers"]["phone"] for e in p.event_ids} - {None}
        assert used_emails == set(p.email_variants) and used_phones == set(p.phone_variants)
    assert messy > 0
    assert len({p.email for p in dataset.truth.persons}) == PERSONS


def test_events_link_all_identifiers_of_a_person_and_no_two_persons(dataset: Dataset, decoded: Decoded) -> None:
    """Union-find over identifiers co-occurring on valid events yields exactly the planted persons."""
    parent: dict[tuple[str, str], tuple[str, str]] = {}

    def find(x: tuple[str, str]) -> tuple[str, str]:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def norm(t: str, v: str) -> tuple[str, str]:
        value = normalize_email(v) if t == "email" else normalize_phone(v, "1") if t == "phone" else v
        assert value is not None
        return (t, value)

    for ev in decoded.values():
        ids = [norm(t, v) for t in IDENTIFIER_TYPES if (v := ev["identifiers"][t])]
        for other in ids[1:]:
            parent[find(other)] = find(ids[0])
        find(ids[0])
    roots_of_person = {}
    for p in dataset.truth.persons:
        mine = (
            [("customer_id", p.customer_id), ("email", p.email)]
            + [("device_id", d) for d in p.device_ids]
            + [("cookie_id", c) for c in p.cookie_ids]
            + ([("phone", p.phone)] if p.phone else [])
            + ([("loyalty_id", p.loyalty_id)] if p.loyalty_id else [])
        )
        roots = {find(i) for i in mine}
        assert len(roots) == 1, p.person_id
        roots_of_person[p.person_id] = roots.pop()
    assert len(set(roots_of_person.values())) == PERSONS
    assert len({find(x) for x in list(parent)}) == PERSONS


def test_purchase_totals_equal_the_sum_of_line_items_and_carts_match_events(dataset: Dataset, decoded: Decoded) -> None:
    purchases_by_cart: dict[str, dict[str, Any]] = {}
    checkout_carts = set()
    for ev in decoded.values():
        name, pl = ev["payload"]
        if ev["event_type"] in ("purchase", "store_purchase"):
            assert pl["total"] == pytest.approx(sum(i["quantity"] * i["unit_price"] for i in pl["items"]), abs=0.005)
            assert (pl["cart_id"] is None) == (ev["event_type"] == "store_purchase")
            if pl["cart_id"]:
                purchases_by_cart[pl["cart_id"]] = pl
        if ev["event_type"] == "checkout_started":
            checkout_carts.add(pl["cart_id"])
    for c in dataset.truth.carts:
        assert c.purchased == (c.cart_id in purchases_by_cart)
        assert c.checkout_started == (c.cart_id in checkout_carts)
        if c.purchased:
            assert purchases_by_cart[c.cart_id]["order_id"] == c.order_id
            assert purchases_by_cart[c.cart_id]["total"] == c.value
    assert len(purchases_by_cart) == sum(1 for c in dataset.truth.carts if c.purchased)
    revenue = sum(p.revenue for p in dataset.truth.persons)
    orders = [
        pl
        for ev in decoded.values()
        for name, pl in [ev["payload"]]
        if ev["event_type"] in ("purchase", "store_purchase")
    ]
    assert revenue == pytest.approx(sum(o["total"] for o in orders), abs=0.01 * len(orders) + 0.01)


def test_erasure_request_is_the_last_event_of_an_erased_person(dataset: Dataset, decoded: Decoded) -> None:
    erased = [p for p in dataset.truth.persons if p.erased]
    assert erased
    for p in dataset.truth.persons:
        types = [decoded[e]["event_type"] for e in p.event_ids]
        assert ("erasure_request" in types) == p.erased
        if p.erased:
            assert types[-1] == "erasure_request" and types.count("erasure_request") == 1


def test_truth_json_round_trips_and_carries_bad_bytes_as_base64(dataset: Dataset, tmp_path: Path) -> None:
    path = dataset.truth.write(tmp_path / "sub" / "truth.json")
    loaded = GroundTruth.load(path)
    assert loaded == dataset.truth
    doc = dataset.truth.to_json()
    assert set(doc["bad_records"]) == set(DEAD_LETTER_REASONS)
    for items in doc["bad_records"].values():
        for b in items:
            assert base64.b64decode(b["raw_b64"]) == dataset.records[b["record_index"]].value


def test_generate_rejects_arguments_out_of_range() -> None:
    for kwargs in (
        {"persons": 0},
        {"persons": 5, "bad_ratio": 1.5},
        {"persons": 5, "dup_ratio": -0.1},
        {"persons": 5, "late_ratio": 1.0},
        {"persons": 5, "base_time_ms": 5},
    ):
        with pytest.raises(ValueError):
            generate(1, **kwargs)  # type: ignore[arg-type]


def test_zero_ratios_give_only_valid_records() -> None:
    ds = generate(1, 10, bad_ratio=0, dup_ratio=0, late_ratio=0, reorder_ratio=0)
    assert {r.kind for r in ds.records} == {"valid"}
    assert not ds.truth.late_events and not ds.truth.out_of_order_event_ids
    for person in ds.truth.persons:
        produced = [r.event_id for r in ds.records if r.person_id == person.person_id]
        assert produced == person.event_ids  # event-time order


# ----------------------------------------------------------------------------- producer (fake Kafka)


@dataclass
class _Msg:
    _topic: str

    def topic(self) -> str:
        return self._topic


class _FakeTopic:
    error = None


class _FakeProducer:
    """Records what is produced; delivers on flush, failing topics in ``fail``."""

    def __init__(self, conf: dict[str, Any], topics: set[str], fail: frozenset[str] = frozenset()) -> None:
        self.conf, self.topics, self.fail = conf, topics, fail
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        self._pending: list[tuple[str, Any]] = []

    def list_topics(self, timeout: float) -> Any:
        return type("Md", (), {"topics": {t: _FakeTopic() for t in self.topics}})()

    def produce(self, topic: str, value: bytes, key: bytes | None, on_delivery: Any) -> None:
        self.sent.append((topic, key, value))
        self._pending.append((topic, on_delivery))

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        for topic, cb in self._pending:
            cb("broker said no" if topic in self.fail else None, _Msg(topic))
        self._pending.clear()
        return 0


def test_produce_sends_every_record_in_order_with_idempotent_settings() -> None:
    ds = generate(2, 5)
    made: list[_FakeProducer] = []

    def factory(conf: dict[str, Any]) -> _FakeProducer:
        made.append(_FakeProducer(conf, ALL_TOPICS))
        return made[0]

    report = produce(ds, "fake:9092", progress=False, producer_factory=factory)
    fake = made[0]
    assert fake.sent == [(r.topic, r.key, r.value) for r in ds.records]
    assert fake.conf["acks"] == "all" and fake.conf["enable.idempotence"] is True and fake.conf["linger.ms"] == 5
    assert isinstance(report, ProduceReport)
    assert report.delivered == report.total == len(ds.records)
    assert report.per_topic == {t: n for t, n in ds.summary()["topics"].items() if n}


def test_produce_honours_the_rate() -> None:
    ds = generate(2, 1, bad_ratio=0, dup_ratio=0)
    fake = _FakeProducer({}, ALL_TOPICS)
    report = produce(ds, "fake:9092", rate=200.0, progress=False, producer_factory=lambda conf: fake)
    assert report.elapsed_s >= (len(ds.records) - 1) / 200.0 * 0.9


def test_produce_raises_when_deliveries_fail_or_topics_are_missing() -> None:
    ds = generate(2, 5)
    with pytest.raises(ProduceError, match="failed delivery"):
        produce(
            ds,
            "fake:9092",
            progress=False,
            producer_factory=lambda conf: _FakeProducer(conf, ALL_TOPICS, frozenset({"journey.events.web"})),
        )
    with pytest.raises(ProduceError, match="topics missing"):
        produce(ds, "fake:9092", progress=False, producer_factory=lambda conf: _FakeProducer(conf, set()))


def test_produce_refuses_a_dataset_that_would_look_like_the_future() -> None:
    ds = generate(2, 2, base_time_ms=_now_ms() + 10 * DAY_MS)
    with pytest.raises(ValueError, match="invalid_timestamp"):
        produce(ds, "fake:9092", progress=False, producer_factory=lambda conf: _FakeProducer(conf, set()))


# ----------------------------------------------------------------------------- CLI


def test_cli_rejects_bad_arguments_with_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["--persons", "0", "--seed", "1", "--out", "x"],
        ["--persons", "3", "--seed", "1", "--out", "x", "--rate", "0"],
        ["--persons", "3", "--seed", "1", "--out", "x", "--bad-ratio", "2"],
        ["--persons", "3", "--seed", "1"],
    ):
        with pytest.raises(SystemExit) as exc:
            parse_args(argv)
        assert exc.value.code == 2
    assert "--rate must be a positive" in capsys.readouterr().err


def test_cli_without_produce_writes_truth_and_prints_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--persons", "4", "--seed", "9", "--out", str(tmp_path / "gen"), "--no-produce"]) == 0
    out = capsys.readouterr().out
    truth = GroundTruth.load(tmp_path / "gen" / "truth.json")
    assert truth == generate(9, 4).truth
    assert f"{truth.summary()['records']} records for 4 persons" in out and "journey.events.web=" in out


def test_each_duplicate_copies_a_distinct_event(dataset: Dataset) -> None:
    assert len({d.event_id for d in dataset.truth.duplicates}) == dataset.truth.duplicate_count > 0


def test_sessions_in_truth_are_bursts_separated_by_hours(dataset: Dataset, decoded: Decoded) -> None:
    for p in dataset.truth.persons:
        times = [decoded[e]["occurred_at"] for e in p.event_ids]
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert all(g > 0 for g in gaps)
        assert all(g < 10 * 60_000 or g >= 2 * 3_600_000 for g in gaps)
        assert 1 + sum(1 for g in gaps if g >= 2 * 3_600_000) == p.sessions
