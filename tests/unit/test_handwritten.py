"""The hand-written baseline (``bench/handwritten.py``, issue 14) computes what the Flink jobs
compute: on generated raw records (bad ones, duplicates, merges, splits, erasures), its
profile rows equal the independent oracle (``tests/profile_oracle.py``: versions, aggregates,
identity links) and its sessions and triggers equal ``generator/journey_truth.py``."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from bench.handwritten import HandwrittenPipeline, plain_loop
from generator.erasure_truth import erased_nodes, erased_stream, surviving, without_erased
from generator.journey_truth import journey_truth
from generator.synth import generate
from models.journeys import SessionOut, TriggerOut
from tests.profile_oracle import CassandraModel, assert_same, oracle
from tests.profiles_harness import (
    SESSION_FIELDS,
    CassandraContents,
    comparable_trigger,
    differences,
    generated_by_person,
)

SEED, PERSONS = 515, 30  # erasure requests need 20 persons
SALT = "handwritten-test-salt-0123"


@lru_cache(maxsize=1)
def run() -> tuple[dict[str, Any], CassandraModel, HandwrittenPipeline]:
    """plain_loop over the raw records, its rows applied to a model of Cassandra."""
    db = CassandraModel()
    core = HandwrittenPipeline(SALT, keep_outputs=True)
    result = plain_loop(generate(seed=SEED, persons=PERSONS).records, pipeline=core, sink=db.apply)
    return result, db, core


def events() -> list[dict[str, Any]]:
    """The valid events, normalized by the ingestion logic alone (the oracles' input)."""
    return [e for evs in generated_by_person(SEED, PERSONS, 14, SALT).values() for e in evs]


def test_every_record_is_normalized_dead_lettered_or_a_duplicate_as_the_generator_planted() -> None:
    result, _, _ = run()
    truth = generate(seed=SEED, persons=PERSONS).truth.summary()
    assert (
        result["records"] == truth["records"] == result["normalized"] + result["dead_lettered"] + result["duplicates"]
    )
    assert (result["normalized"], result["dead_lettered"], result["duplicates"]) == (
        truth["valid"],
        truth["bad"],
        truth["duplicate"],
    )
    assert result["stages"] == ["ingest", "dedupe", "identity", "profile_fold", "journeys", "segments"]


def test_profile_rows_equal_the_oracle_versions_and_aggregates_included() -> None:
    result, db, _ = run()
    evs = events()
    assert erased_nodes(evs), "the data set has an erasure request"
    want = oracle(surviving(evs))
    assert_same(db.view(), want)
    assert result["profiles"] == len(want)
    assert differences(CassandraContents(db.view(), db.identity_links()), evs) == []


def test_sessions_and_triggers_equal_the_journey_oracle() -> None:
    _, _, core = run()
    evs = events()
    want = without_erased(journey_truth(evs), evs)
    gone = erased_nodes(evs)
    assert core.kept is not None
    sessions = {
        o.session["session_id"]: {k: o.session[k] for k in SESSION_FIELDS}
        for _, o in core.kept
        if isinstance(o, SessionOut) and not erased_stream(o.session, gone)
    }
    triggers = [o.trigger for _, o in core.kept if isinstance(o, TriggerOut) and not erased_stream(o.trigger, gone)]
    assert sessions == {s["session_id"]: {k: s[k] for k in SESSION_FIELDS} for s in want.sessions if s["closed"]}
    assert sorted(map(comparable_trigger, triggers), key=str) == sorted(map(comparable_trigger, want.triggers), key=str)
