"""Online learning over closed sessions (design and measurements: ``docs/learning.md``).

:class:`Learner` — standardized ``KMeans`` clusters (centres drawn up front in sorted feature
order: River draws them lazily in hash order, which differs between processes) with a
PageHinkley drift detector on the distance to the centre, and a purchase propensity
``StandardScaler | LogisticRegression`` validated progressively (predict, then learn: rolling
ROC AUC and log loss). Its whole state is one record (:meth:`Learner.record`). The samples
and features it learns from are :mod:`models.samples`.
"""

from __future__ import annotations

import itertools
import math
import random
from typing import Any, Mapping

from river import cluster, drift, linear_model, metrics, optim, preprocessing

from models import river_state as rs
from models.samples import CLUSTER_FEATURES, LearnerSettings, Sample, Scored

__all__ = ["Learner", "LearnerSettings", "Sample", "Scored", "CLUSTER_FEATURES"]


def _distance(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    return math.sqrt(sum((a[k] - b[k]) ** 2 for k in a))


class Learner:
    """The clusters and the purchase propensity, learned one sample at a time, in order.

    >>> rnd = random.Random(1)
    >>> learner = Learner()
    >>> for i in range(30):
    ...     vec = {k: rnd.random() for k in CLUSTER_FEATURES}
    ...     x = {"s_cart_adds": float(i % 2)}
    ...     out = learner.learn(Sample(f"p{i}", i, f"s{i}", vec, x, purchased=i % 2 == 1))
    >>> learner.samples, out.cluster is not None, 0.0 < out.propensity < 1.0
    (30, True, True)
    >>> Learner.of(learner.record()).record() == learner.record()
    True
    """

    def __init__(self, settings: LearnerSettings = LearnerSettings()) -> None:
        self.s = settings
        self.scaler = preprocessing.StandardScaler()
        self.kmeans = cluster.KMeans(n_clusters=settings.n_clusters, halflife=settings.halflife, seed=settings.seed)
        rng = random.Random(settings.seed)
        for i in range(settings.n_clusters):  # up front, in sorted feature order (see the module doc)
            self.kmeans.centers[i].update({k: rng.gauss(0.0, 1.0) for k in sorted(CLUSTER_FEATURES)})
        self.p_scaler = preprocessing.StandardScaler()
        self.p_model = linear_model.LogisticRegression(optimizer=optim.SGD(0.01))
        self.auc = rs.RollingAUC(settings.auc_window)
        self.log_loss = metrics.LogLoss()
        self.detector = drift.PageHinkley(threshold=settings.drift_threshold)
        self.recent: list[dict[str, float]] = []
        self.samples = 0  # learned
        self.scored = 0  # scored, learned or not (the version of a profile's score row)
        self.cluster_samples = 0
        self.model_version = 1
        self.churn = ChurnModel(settings.auc_window)

    def learn(self, sample: Sample) -> Scored | None:
        """Score ``sample`` (cluster after learning its vector; propensity before learning its
        label; churn risk from the churn model as it stands), then learn it. A churn label is
        learned by the churn model alone and scores nothing (``None``)."""
        assert not sample.is_abandonment, "an abandonment is answered by recommend(), not learned"
        if sample.churned is not None:
            assert sample.churn is not None, "a churn label without its features"
            if sample.learn:
                self.churn.learn(sample.churn, sample.churned)
            return None
        self.scored += 1
        if not sample.learn:  # no analytics consent: scored by the models as they stand, not learned
            return self._predict(sample)
        self.samples += 1
        label: int | None = None
        drifted = False
        if sample.cluster is not None:
            self.cluster_samples += 1
            self.scaler.learn_one(sample.cluster)
            z = self.scaler.transform_one(sample.cluster)
            self.kmeans.learn_one(z)
            label = self.kmeans.predict_one(z)
            self.recent.append(z)
            if len(self.recent) > self.s.recent_window:
                del self.recent[0]
            self.detector.update(_distance(z, self.kmeans.centers[label]))
            if self.detector.drift_detected:
                drifted = True
                self._recluster()
                label = self.kmeans.predict_one(z)
        self.p_scaler.learn_one(sample.propensity)
        x = self.p_scaler.transform_one(sample.propensity)
        p = float(self.p_model.predict_proba_one(x).get(True, 0.5))
        self.auc.update(sample.purchased, p)
        self.log_loss.update(sample.purchased, p)
        self.p_model.learn_one(x, sample.purchased)
        risk = None if sample.churn is None else self.churn.predict(sample.churn)
        return Scored(sample.profile_id, sample.at, sample.session_id, label, p, self.model_version, drifted, risk)

    def _predict(self, sample: Sample) -> Scored:
        label = None
        if sample.cluster is not None and self.cluster_samples:
            label = self.kmeans.predict_one(self.scaler.transform_one(sample.cluster))
        p = 0.5
        if self.samples:
            p = float(self.p_model.predict_proba_one(self.p_scaler.transform_one(sample.propensity)).get(True, 0.5))
        risk = None if sample.churn is None else self.churn.predict(sample.churn)
        return Scored(sample.profile_id, sample.at, sample.session_id, label, p, self.model_version, False, risk)

    def _recluster(self) -> None:
        """Drift: clusters learned again from the recent vectors, their ids matched to the old
        centres (least total distance over every assignment), the model version raised."""
        fresh = cluster.KMeans(n_clusters=self.s.n_clusters, halflife=self.s.halflife, seed=self.s.seed)
        for i, c in self.kmeans.centers.items():
            fresh.centers[i].update(c)
        for _ in range(3):
            for z in self.recent:
                fresh.learn_one(z)
        old, new = self.kmeans.centers, fresh.centers
        ids = range(self.s.n_clusters)
        best = min(
            itertools.permutations(ids), key=lambda perm: sum(_distance(new[j], old[i]) for i, j in zip(ids, perm))
        )
        for i, j in zip(ids, best):
            self.kmeans.centers[i].clear()
            self.kmeans.centers[i].update(new[j])
        self.detector = drift.PageHinkley(threshold=self.s.drift_threshold)
        self.model_version += 1

    def recommend(self, propensity: float | None) -> str:
        """The action for an abandoned cart of a person whose latest purchase propensity is
        ``propensity`` (``None``: no closed session yet): a ``reminder`` when they are likely to
        buy anyway, an ``offer`` (a discount) when not; without a score, a reminder (no discount
        without evidence).

        >>> Learner().recommend(0.8), Learner().recommend(0.1), Learner().recommend(None)
        ('reminder', 'offer', 'reminder')
        """
        if propensity is None or propensity >= self.s.reminder_propensity:
            return "reminder"
        return "offer"

    def metrics(self) -> dict[str, float]:
        return {
            "auc": self.auc.get(),
            "log_loss": float(self.log_loss.get()),
            "samples": float(self.samples),
            "churn_auc": self.churn.auc.get(),
            "churn_log_loss": float(self.churn.log_loss.get()),
            "churn_samples": float(self.churn.samples),
        }

    # ---- state as a record ---------------------------------------------------------------

    def record(self) -> dict[str, Any]:
        return {
            "scaler": rs.scaler_record(self.scaler),
            "kmeans": rs.kmeans_record(self.kmeans),
            "p_scaler": rs.scaler_record(self.p_scaler),
            "p_model": rs.logistic_record(self.p_model),
            "auc": self.auc.record(),
            "log_loss": rs.log_loss_record(self.log_loss),
            "detector": rs.page_hinkley_record(self.detector),
            "recent": [dict(z) for z in self.recent],
            "samples": self.samples,
            "scored": self.scored,
            "cluster_samples": self.cluster_samples,
            "model_version": self.model_version,
            "churn": self.churn.record(),
        }

    @staticmethod
    def of(r: Mapping[str, Any], settings: LearnerSettings = LearnerSettings()) -> Learner:
        learner = Learner(settings)
        learner.scaler = rs.scaler_of(r["scaler"])
        learner.kmeans = rs.kmeans_of(r["kmeans"])
        learner.p_scaler = rs.scaler_of(r["p_scaler"])
        learner.p_model = rs.logistic_of(r["p_model"])
        learner.auc = rs.RollingAUC.of(r["auc"])
        learner.log_loss = rs.log_loss_of(r["log_loss"])
        learner.detector = rs.page_hinkley_of(r["detector"])
        learner.recent = [dict(z) for z in r["recent"]]
        learner.samples, learner.cluster_samples = r["samples"], r["cluster_samples"]
        # a learner stored before consent has no count of its own (0): it had learned every one it scored
        learner.scored = max(r.get("scored", 0), r["samples"])
        learner.model_version = r["model_version"]
        if r.get("churn") is not None:  # (none in a learner stored before the churn model)
            learner.churn = ChurnModel.of(r["churn"])
        return learner


#: how much more a churned label weighs in the churn model's loss (the labels' imbalance)
CHURN_WEIGHT_POS = 20.0


def _churn_loss() -> optim.losses.Log:
    return optim.losses.Log(weight_pos=CHURN_WEIGHT_POS)


class ChurnModel:
    """Churn risk: ``StandardScaler | LogisticRegression`` over the churn features at a
    session's close (:func:`models.samples.churn_features`), learned when the label is decided
    (the journeys stage's timer, ``close + window + lateness``) and validated progressively
    there (predict, then learn: rolling ROC AUC, log loss). Churned labels are rare (one per
    churner, at their last session: 2-4 % of labels), so the log loss weighs them
    :data:`CHURN_WEIGHT_POS` times (measured: progressive AUC 0.46-0.61 unweighted, 0.87 at 20,
    ``docs/learning.md``).

    >>> m = ChurnModel()
    >>> for i in range(40):
    ...     _ = m.learn({"c_week_1": float(i % 2), "c_gap_days": 1.0}, churned=i % 2 == 0)
    >>> m.samples, m.predict({"c_week_1": 0.0, "c_gap_days": 1.0}) > m.predict({"c_week_1": 1.0, "c_gap_days": 1.0})
    (40, True)
    >>> ChurnModel.of(m.record()).record() == m.record()
    True
    """

    def __init__(self, auc_window: int = 1000) -> None:
        self.scaler = preprocessing.StandardScaler()
        self.model = linear_model.LogisticRegression(optimizer=optim.SGD(0.01), loss=_churn_loss())
        self.auc = rs.RollingAUC(auc_window)
        self.log_loss = metrics.LogLoss()
        self.samples = 0

    def predict(self, x: Mapping[str, float]) -> float:
        """The churn probability of ``x`` (0.5 before any label: nothing learned)."""
        if self.samples == 0:
            return 0.5
        return float(self.model.predict_proba_one(self.scaler.transform_one(dict(x))).get(True, 0.5))

    def learn(self, x: Mapping[str, float], churned: bool) -> float:
        """Predict ``x``, count the prediction in the metrics, then learn the label; returns it."""
        x = dict(x)
        self.scaler.learn_one(x)
        z = self.scaler.transform_one(x)
        p = float(self.model.predict_proba_one(z).get(True, 0.5))
        self.auc.update(churned, p)
        self.log_loss.update(churned, p)
        self.model.learn_one(z, churned)
        self.samples += 1
        return p

    def record(self) -> dict[str, Any]:
        return {
            "scaler": rs.scaler_record(self.scaler),
            "model": rs.logistic_record(self.model),
            "auc": self.auc.record(),
            "log_loss": rs.log_loss_record(self.log_loss),
            "samples": self.samples,
        }

    @staticmethod
    def of(r: Mapping[str, Any]) -> ChurnModel:
        m = ChurnModel()
        m.scaler, m.model = rs.scaler_of(r["scaler"]), rs.logistic_of(r["model"])
        m.model.loss = _churn_loss()  # a constant of the model, not state
        m.auc, m.log_loss = rs.RollingAUC.of(r["auc"]), rs.log_loss_of(r["log_loss"])
        m.samples = r["samples"]
        return m
