"""The online models (models/learning.py) on the generator's planted behaviour: quality targets
met, a learner restored from its record mid-stream identical to an uninterrupted one, cluster
ids stable across a drift re-cluster, no label in the propensity features."""

from __future__ import annotations

import json
import random

import pytest

from bench.quality import measure, samples_of
from models.learning import CLUSTER_FEATURES, Learner, Sample


@pytest.fixture(scope="module")
def generated():
    return samples_of(seed=1, persons=150, days=14, min_sessions=3)


def test_clusters_match_the_planted_behaviours_and_propensity_ranks_purchases():
    r = measure(seed=1, persons=150, days=14)
    assert r["ari_final_model"] >= 0.8, r
    assert r["purchase_auc"] >= 0.85, r
    assert r["churn_auc"] >= 0.75, r


def test_a_learner_restored_from_its_record_mid_stream_equals_the_uninterrupted_one(generated):
    samples, _ = generated
    whole = Learner()
    outs_whole = [whole.learn(s) for s in samples]
    cut = len(samples) // 3
    first = Learner()
    outs = [first.learn(s) for s in samples[:cut]]
    resumed = Learner.of(json.loads(json.dumps(first.record())))
    outs += [resumed.learn(s) for s in samples[cut:]]
    assert outs == outs_whole
    assert json.dumps(resumed.record(), sort_keys=True) == json.dumps(whole.record(), sort_keys=True)
    labels = sum(s.is_churn_label for s in samples)
    assert 0 < labels and resumed.samples == len(samples) - labels and resumed.churn.samples == labels


def test_propensity_features_never_hold_the_sessions_purchase(generated):
    samples, _ = generated
    for s in samples[:200]:
        assert not any(
            k.startswith("s_") and ("purchase" in k or "revenue" in k or "checkout" in k) for k in s.propensity
        )
        assert "s_engagement" not in s.propensity


def test_after_a_drift_the_clusters_are_learned_again_and_keep_their_ids():
    rnd = random.Random(4)
    centres = [{k: 4.0 if j == i else 0.0 for j, k in enumerate(CLUSTER_FEATURES)} for i in range(5)]

    def vec(i: int, shift: float = 0.0) -> dict[str, float]:
        return {k: v + rnd.gauss(0, 0.2) + shift for k, v in centres[i].items()}

    learner = Learner()
    for n in range(1500):
        learner.learn(Sample(f"p{n}", n, "s", vec(n % 5), {"x": 1.0}, False))
    before = {i: learner.learn(Sample("probe", 10**6, f"b{i}", vec(i), {"x": 1.0}, False)).cluster for i in range(5)}
    assert len(set(before.values())) == 5
    drifted = False
    for n in range(3000):  # one behaviour moves far away
        out = learner.learn(
            Sample(f"q{n}", 2 * 10**6 + n, "s", vec(n % 5, shift=-3.0 if n % 5 == 0 else 0.0), {"x": 1.0}, False)
        )
        drifted = drifted or out.drift
    assert drifted and learner.model_version > 1
    after = {i: learner.learn(Sample("probe", 10**7, f"a{i}", vec(i), {"x": 1.0}, False)).cluster for i in range(1, 5)}
    assert after == {i: before[i] for i in range(1, 5)}


def test_the_cart_action_threshold_comes_from_the_config_and_must_be_a_probability():
    from models.config import ConfigError, ProfilesConfig

    cfg = ProfilesConfig.from_env({"JOURNEY_REMINDER_PROPENSITY": "0.3"})
    learner = Learner(cfg.learner_settings())
    assert (learner.recommend(0.35), learner.recommend(0.25)) == ("reminder", "offer")
    for bad in ("1.5", "-0.1", "high"):
        with pytest.raises(ConfigError, match="JOURNEY_REMINDER_PROPENSITY"):
            ProfilesConfig.from_env({"JOURNEY_REMINDER_PROPENSITY": bad})


def test_without_analytics_consent_a_sample_is_scored_by_the_models_as_they_stand_not_learned(generated):
    from dataclasses import replace

    samples, _ = generated
    sessions = [s for s in samples if s.kind == 0][:300]
    learner = Learner()
    for s in sessions[:-1]:
        learner.learn(s)
    before = json.dumps(learner.record(), sort_keys=True)
    out = learner.learn(replace(sessions[-1], learn=False))
    after = learner.record()
    assert after.pop("scored") == json.loads(before).pop("scored") + 1  # counted as scored only
    assert json.dumps(after | {"scored": json.loads(before)["scored"]}, sort_keys=True) == before
    assert out is not None and 0.0 < out.propensity < 1.0 and out.churn_risk is not None
    label = next(s for s in samples if s.is_churn_label)
    assert learner.learn(replace(label, learn=False)) is None and learner.churn.samples == 0
