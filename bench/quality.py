"""``make quality``: how good the online models are on the generator's planted behaviour.

Generated persons (each of one planted behaviour type) -> their sessions as the journeys
oracle closes them (``generator/journey_truth.py``, per person) -> one :class:`models.learning.Sample`
per closed session, in close order -> :class:`models.learning.Learner`:

* **clusters**: the adjusted Rand index of each person's cluster (the final model's, and the
  one published at their last session) against their planted behaviour (target >= 0.8);
* **purchase propensity**: the exact ROC AUC of the progressive predictions (made before each
  session's label was learned) (target >= 0.85);
* **churn risk**: the exact ROC AUC of the churn model's progressive predictions (made when
  each label is decided, before it is learned), the label being "no event in the churn window
  after the session"; the generator plants churners whose sessions thin out and stop
  (``generator.journeys.churn_point``). Also the AUC of the risk as published at each close.

Prints the numbers and writes ``bench/results/quality.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from math import comb
from pathlib import Path
from typing import Hashable, Sequence

from generator.journey_truth import journey_truth
from generator.synth import generate
from models.journeys import JourneySettings
from models.learning import Learner
from models.samples import Sample, samples_of_sessions
from tests.profiles_harness import generated_by_person

RESULTS = Path(__file__).resolve().parent / "results"
SESSION_GAP_MS = 30 * 60_000
#: no target in the issue; the planted churners should be found well above chance
CHURN_AUC_TARGET = 0.75
#: a churn risk published at a close counts as "published by a trained model" from this many labels
#: (labels come one churn window after their close: a 14-day calendar has almost none in time)
TRAINED_CHURN_LABELS = 300


def adjusted_rand_index(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """Hubert and Arabie's adjusted Rand index of two labelings of the same items.

    >>> adjusted_rand_index([0, 0, 1, 1], [5, 5, 7, 7]), round(adjusted_rand_index([0, 0, 1, 1], [0, 1, 0, 1]), 9)
    (1.0, -0.5)
    """
    n = len(a)
    pairs = sum(comb(c, 2) for c in Counter(zip(a, b)).values())
    rows = sum(comb(c, 2) for c in Counter(a).values())
    cols = sum(comb(c, 2) for c in Counter(b).values())
    expected = rows * cols / comb(n, 2)
    top = (rows + cols) / 2
    return 1.0 if top == expected else (pairs - expected) / (top - expected)


def roc_auc(labels: Sequence[bool], scores: Sequence[float]) -> float:
    """Exact ROC AUC (ties count half).

    >>> roc_auc([True, False, True, False], [0.9, 0.1, 0.4, 0.4])
    0.875
    """
    ranked = sorted(zip(scores, labels))
    pos = sum(labels)
    neg = len(labels) - pos
    rank_sum, i = 0.0, 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        avg_rank = (i + j + 1) / 2  # ranks are 1-based
        rank_sum += avg_rank * sum(1 for _, y in ranked[i:j] if y)
        i = j
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


def samples_of(seed: int, persons: int, days: int, min_sessions: int) -> tuple[list[Sample], dict[str, str]]:
    """Every closed session of a generated data set as a sample, in close order, and each
    person's planted behaviour."""
    truth = generate(seed=seed, persons=persons, days=days).truth
    behaviour = {p.person_id: p.behaviour for p in truth.persons}
    closes = []
    activity: dict[str, list[int]] = {}
    sessions: dict[str, list[tuple[int, int]]] = {}
    by_person = generated_by_person(seed, persons, days)
    end = max(e["occurred_at"] for events in by_person.values() for e in events)
    for person, events in by_person.items():
        activity[person] = [e["occurred_at"] for e in events]
        for s in journey_truth(events).sessions:
            sessions.setdefault(person, []).append((s["started_at"], s["engagement"]))
            if s["ended_at"] + SESSION_GAP_MS < end:  # closed by the time the whole data set ends
                closes.append((s["ended_at"] + SESSION_GAP_MS, person, s))
    js = JourneySettings()
    samples = samples_of_sessions(
        closes, min_sessions, activity, sessions, end, js.churn_window_ms, js.allowed_lateness_ms
    )
    return samples, behaviour


def measure(seed: int, persons: int, days: int) -> dict:
    learner = Learner()
    samples, behaviour = samples_of(seed, persons, days, learner.s.min_sessions)
    t0 = time.perf_counter()
    last_label: dict[str, int] = {}
    labels, scores = [], []
    churn_labels, churn_scores = [], []
    risk_at_close: dict[tuple[str, str], float] = {}
    published_labels, published_risks = [], []
    final_vectors: dict[str, dict[str, float]] = {}
    for sample in samples:
        if sample.churned is not None:
            assert sample.churn is not None
            churn_labels.append(sample.churned)
            churn_scores.append(learner.churn.learn(sample.churn, sample.churned))
            risk, learned_before = risk_at_close[(sample.profile_id, sample.session_id)]
            if learned_before >= TRAINED_CHURN_LABELS:
                published_labels.append(sample.churned)
                published_risks.append(risk)
            continue
        out = learner.learn(sample)
        assert out is not None and out.churn_risk is not None
        risk_at_close[(sample.profile_id, sample.session_id)] = (out.churn_risk, learner.churn.samples)
        labels.append(sample.purchased)
        scores.append(out.propensity)
        if out.cluster is not None and sample.cluster is not None:
            last_label[sample.profile_id] = out.cluster
            final_vectors[sample.profile_id] = sample.cluster
    seconds = time.perf_counter() - t0
    people = sorted(final_vectors)
    final = [learner.kmeans.predict_one(learner.scaler.transform_one(final_vectors[p])) for p in people]
    planted = [behaviour[p] for p in people]
    return {
        "seed": seed,
        "persons": persons,
        "days": days,
        "samples": len(samples),
        "clustered_persons": len(people),
        "ari_final_model": adjusted_rand_index(planted, final),
        "ari_last_published": adjusted_rand_index(planted, [last_label[p] for p in people]),
        "purchase_auc": roc_auc(labels, scores),
        "purchase_rate": sum(labels) / len(labels),
        "churn_labels": len(churn_labels),
        "churn_rate": sum(churn_labels) / max(len(churn_labels), 1),
        "churn_auc": roc_auc(churn_labels, churn_scores),
        "churn_published_labels": len(published_labels),
        "churn_auc_published": (
            roc_auc(published_labels, published_risks) if 0 < sum(published_labels) < len(published_labels) else None
        ),
        "rolling_auc": learner.auc.get(),
        "log_loss": learner.metrics()["log_loss"],
        "model_version": learner.model_version,
        "us_per_sample": seconds / len(samples) * 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--persons", type=int, default=300)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = ap.parse_args(argv)
    runs = []
    for seed in args.seeds:
        r = measure(seed, args.persons, args.days)
        runs.append(r)
        print(
            f"seed {seed}: {r['samples']} sessions, {r['clustered_persons']} persons clustered: "
            f"ARI {r['ari_final_model']:.3f} (final model), {r['ari_last_published']:.3f} (label at the last session); "
            f"purchase AUC {r['purchase_auc']:.3f} (progressive, {r['purchase_rate']:.0%} positive); "
            f"churn AUC {r['churn_auc']:.3f} (progressive, {r['churn_labels']} labels, {r['churn_rate']:.0%} churned; "
            f"as published at the close by a model with {TRAINED_CHURN_LABELS}+ labels: "
            f"{'n/a' if r['churn_auc_published'] is None else format(r['churn_auc_published'], '.3f')} "
            f"over {r['churn_published_labels']}); "
            f"{r['us_per_sample']:.0f} us per sample"
        )
    worst_ari = min(r["ari_final_model"] for r in runs)
    worst_auc = min(r["purchase_auc"] for r in runs)
    worst_churn = min(r["churn_auc"] for r in runs)
    print(
        f"worst ARI {worst_ari:.3f} (target 0.8), worst purchase AUC {worst_auc:.3f} (target 0.85), "
        f"worst churn AUC {worst_churn:.3f} (target {CHURN_AUC_TARGET})"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "quality.json").write_text(
        json.dumps({"benchmark": "quality", "settings": vars(args), "runs": runs}, indent=2)
    )
    print(f"wrote {RESULTS / 'quality.json'}")
    return 0 if worst_ari >= 0.8 and worst_auc >= 0.85 and worst_churn >= CHURN_AUC_TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
