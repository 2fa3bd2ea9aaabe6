"""River models as plain records: the learned numbers of each model the online-learning stage
uses, out of and back into River objects, so that Flink state holds schema'd records (never a
pickled River object, whose class layout changes between River releases).

Covered (river 0.23): ``preprocessing.StandardScaler``, ``linear_model.LogisticRegression``
(SGD with a constant learning rate, the default), ``cluster.KMeans``, ``drift.PageHinkley``,
``metrics.LogLoss``; a rolling ROC AUC is kept as its window of ``(label, score)`` pairs and
rebuilt by replaying it (River's ``RollingROCAUC`` is a C++ object).

A restored model is the same model: the same predictions, and the same ones again after the
same further learning (``tests/unit/test_river_state.py`` checks every wrapper: state
round-trip, seeded determinism, ``learn_one`` leaves its input alone).

Examples
--------
>>> from river import preprocessing
>>> s = preprocessing.StandardScaler()
>>> for x in ({"a": 1.0}, {"a": 3.0}):
...     s.learn_one(x)
>>> t = scaler_of(scaler_record(s))
>>> t.transform_one({"a": 2.0}) == s.transform_one({"a": 2.0})
True
"""

from __future__ import annotations

import collections
import functools
import random
from typing import Any, Iterable, Mapping

from river import cluster, drift, linear_model, metrics, optim, preprocessing


def scaler_record(s: preprocessing.StandardScaler) -> dict[str, Any]:
    return {
        "counts": {k: int(v) for k, v in s.counts.items()},
        "means": dict(s.means),
        "vars": dict(s.vars),
    }


def scaler_of(r: Mapping[str, Any]) -> preprocessing.StandardScaler:
    s = preprocessing.StandardScaler()
    s.counts = collections.Counter(r["counts"])
    s.means = collections.defaultdict(float, r["means"])
    s.vars = collections.defaultdict(float, r["vars"])
    return s


def logistic_record(m: linear_model.LogisticRegression) -> dict[str, Any]:
    lr, ilr = m.optimizer.lr, m.intercept_lr
    if not isinstance(m.optimizer, optim.SGD) or not isinstance(lr, optim.schedulers.Constant):
        raise TypeError("only SGD with a constant learning rate is exported")
    if not isinstance(ilr, optim.schedulers.Constant):
        raise TypeError("only a constant intercept learning rate is exported")
    return {
        "weights": dict(m._weights),
        "intercept": float(m.intercept),
        "learning_rate": float(lr.learning_rate),
        "intercept_learning_rate": float(ilr.learning_rate),
        "l2": float(m.l2),
        "iterations": int(m.optimizer.n_iterations),
    }


def logistic_of(r: Mapping[str, Any]) -> linear_model.LogisticRegression:
    m = linear_model.LogisticRegression(
        optimizer=optim.SGD(r["learning_rate"]), l2=r["l2"], intercept_lr=r["intercept_learning_rate"]
    )
    m._weights.update(r["weights"])  # a VectorDict with a zero initializer
    m.intercept = r["intercept"]
    m.optimizer.n_iterations = r["iterations"]
    return m


def kmeans_record(k: cluster.KMeans) -> dict[str, Any]:
    """The centers (each with every feature it has seen: River draws a feature's initial value
    from the seeded generator the first time it meets it) and the generator's position."""
    version, internal, gauss_next = k._rng.getstate()
    return {
        "n_clusters": k.n_clusters,
        "halflife": float(k.halflife),
        "seed": k.seed,
        "centers": {str(i): dict(c) for i, c in k.centers.items()},
        "rng": list(internal),
        "rng_gauss_next": gauss_next,
    }


def kmeans_of(r: Mapping[str, Any]) -> cluster.KMeans:
    k = cluster.KMeans(n_clusters=r["n_clusters"], halflife=r["halflife"], seed=r["seed"])
    k._rng.setstate((3, tuple(r["rng"]), r["rng_gauss_next"]))
    draw = functools.partial(random.Random.gauss, k._rng, k.mu, k.sigma)
    k.centers = {int(i): collections.defaultdict(draw, c) for i, c in r["centers"].items()}
    return k


def page_hinkley_record(d: drift.PageHinkley) -> dict[str, Any]:
    return {
        "min_instances": d.min_instances,
        "delta": d.delta,
        "threshold": d.threshold,
        "alpha": d.alpha,
        "n": float(d._x_mean.n),
        "mean": float(d._x_mean.get()),
        "sum_increase": d._sum_increase,
        "sum_decrease": d._sum_decrease,
        "min_increase": d._min_increase,
        "max_decrease": d._max_decrease,
        # a detector that has just flagged drift resets itself at its next update: the flag is state
        "drift_detected": bool(d.drift_detected),
    }


def page_hinkley_of(r: Mapping[str, Any]) -> drift.PageHinkley:
    d = drift.PageHinkley(
        min_instances=r["min_instances"], delta=r["delta"], threshold=r["threshold"], alpha=r["alpha"]
    )
    d._x_mean.n = r["n"]
    d._x_mean._mean = r["mean"]
    d._sum_increase, d._sum_decrease = r["sum_increase"], r["sum_decrease"]
    d._min_increase, d._max_decrease = r["min_increase"], r["max_decrease"]
    d._drift_detected = r.get("drift_detected", False)
    return d


def log_loss_record(m: metrics.LogLoss) -> dict[str, Any]:
    return {"n": float(m._mean.n), "mean": float(m._mean._mean)}


def log_loss_of(r: Mapping[str, Any]) -> metrics.LogLoss:
    m = metrics.LogLoss()
    m._mean.n, m._mean._mean = r["n"], r["mean"]
    return m


class RollingAUC:
    """River's exact ``RollingROCAUC`` over the last ``window`` ``(label, score)`` pairs, with
    the pairs kept so that the metric can be stored and rebuilt.

    >>> a = RollingAUC(4)
    >>> for y, p in [(True, 0.9), (False, 0.1), (True, 0.6), (False, 0.7)]:
    ...     a.update(y, p)
    >>> a.get(), RollingAUC.of(a.record()).get()
    (0.75, 0.75)
    """

    def __init__(self, window: int, pairs: Iterable[tuple[bool, float]] = ()) -> None:
        self.window = window
        self.pairs: collections.deque[tuple[bool, float]] = collections.deque(maxlen=window)
        self._metric = metrics.RollingROCAUC(window_size=window)
        for y, p in pairs:
            self.update(y, p)

    def update(self, y: bool, p: float) -> None:
        self.pairs.append((bool(y), float(p)))
        self._metric.update(bool(y), float(p))

    def get(self) -> float:
        return float(self._metric.get())

    def record(self) -> dict[str, Any]:
        return {"window": self.window, "labels": [y for y, _ in self.pairs], "scores": [p for _, p in self.pairs]}

    @staticmethod
    def of(r: Mapping[str, Any]) -> RollingAUC:
        return RollingAUC(r["window"], zip(r["labels"], r["scores"]))
