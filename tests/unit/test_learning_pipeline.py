"""The learning samples as the job emits them, without Flink: the identity router, one journey
per profile (moved parts delayed), events in random order decided at the idle tick; the
samples at every session close equal those built from the journeys oracle's sessions
(tests/profiles_harness.oracle_samples), and so do the models learned from them."""

from __future__ import annotations

import random

import pytest

from models.journeys import SampleOut
from tests.journeys_harness import JourneyPipeline, generated_events
from generator.erasure_truth import erasure_time_by_profile
from tests.profiles_harness import oracle_samples, oracle_scores


@pytest.mark.parametrize(("seed", "persons"), [(31, 25), (7, 60)])
def test_samples_at_every_close_equal_the_oracles_and_so_do_the_scores(seed: int, persons: int) -> None:
    events = generated_events(seed, persons)
    rnd = random.Random(seed)
    arrival = list(events)
    rnd.shuffle(arrival)
    pipe = JourneyPipeline(rnd, None, samples=True)
    pipe.run(arrival)
    emitted = sorted((o.sample for _, o in pipe.outs if isinstance(o, SampleOut)), key=lambda s: s.order())
    got = [s for s in emitted if not s.is_erasure]
    want = oracle_samples(events)
    assert got == want
    # the erased persons (docs/privacy.md): samples up to their erasure, then one erasure sample
    # per profile, naming every id of theirs, and nothing after it
    erased_at = erasure_time_by_profile(events)
    erasures = [s for s in emitted if s.is_erasure]
    assert erasures and all(s.at == erased_at[s.profile_id] and set(s.erase or ()) <= set(erased_at) for s in erasures)
    assert not [s for s in got if s.profile_id in erased_at and s.at > erased_at[s.profile_id]]
    sessions = [s for s in want if s.kind == 0]
    assert sum(1 for s in sessions if s.cluster is not None) > len(sessions) // 2
    labels = [s for s in want if s.is_churn_label]
    assert 0 < sum(s.churned for s in labels) < len(labels)  # both labels, decided by the timers
    carts = [s for s in want if s.is_abandonment]
    assert carts  # one per cart_abandoned trigger, for the learner's recommended action
    scores = oracle_scores(got)
    published = [s for s in want if not s.is_churn_label and s.publish]
    assert len(scores) == len(published) and any(s["cluster"] is not None for s in scores)
    # consent (docs/privacy.md): some sessions are not learned (analytics), some not published
    # (personalization), some cart actions not published (marketing, as their triggers)
    assert any(not s.learn for s in want) and any(not s.publish for s in want if s.kind == 0)
    assert any(not s.publish for s in carts) and any(s.publish for s in carts)
    sessions_scored = [s for s in scores if s["kind"] == "session"]
    assert all(s["churn_risk"] is not None for s in sessions_scored)
    actions = [s for s in scores if s["kind"] == "cart_abandoned"]
    assert len(actions) == sum(s.publish for s in carts) and {s["recommended_action"] for s in actions} <= {
        "reminder",
        "offer",
    }
