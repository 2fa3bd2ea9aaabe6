"""The online models in one subtask (``learn-models``; logic in :mod:`models.learning`).

Input: the journeys stage's samples (``LearningSample`` bytes, one per closed session), keyed
by one constant key. Samples wait in a MapState (``learning-buffer``, keys that sort as
``(close time, profile id, session id)``) until the watermark passes them; an event-time timer
then learns every waiting sample up to the watermark, in that order, so the models are the
same whatever the journeys' parallelism, the interleaving of their outputs or a restore. The
learner is one ``LearnerState`` record (ValueState ``learner``), read once per subtask start
and written once per timer that learned something; each profile's last cluster is in a
MapState (``learning-clusters``: one read and one write per sample) for ``previous_cluster``.

Outputs (main): ``Score`` records for ``journey.scores``, one per sample. The scores and the
models' metrics go to the injected store (Cassandra ``scores``, ``model_metrics``),
synchronously, before the state that covers them is checkpointed.

Churn labels (``LearningSample`` with ``churned`` set, decided by the journeys' timers) come
the same way and are learned in the same order by the churn model; they publish nothing.

Consent (``docs/privacy.md``): a sample without analytics consent is scored by the models as
they stand and not learned (``not_learned_analytics``); a session's score without
personalization consent is not published (``scores_suppressed_personalization``), nor a cart
action without marketing consent (``actions_suppressed_marketing``, as its trigger).

Erasure (``docs/privacy.md``): an erasure sample (at the erasure's time, after the profile's
other samples of that time) removes the profile's ids from the two MapStates and their
``scores`` rows; what the models learned from the person stays in their weights (aggregates,
no record of the person).

Counters: ``samples_received``, ``samples_learned``, ``cluster_samples``,
``churn_labels_learned``, ``cart_actions``, ``drifts``, ``learner_erasures``, ``cassandra_requests`` and the three
above; levels (counters that show a value, pushed with the others: no Python gauge, see
:mod:`operators.counters`) ``purchase_auc`` (rolling, progressive), ``purchase_log_loss``,
``churn_auc``, ``churn_log_loss`` (× 1000) and ``model_version``.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from pyflink.common import Types
from pyflink.datastream import KeyedProcessFunction, RuntimeContext, TimeDomain
from pyflink.datastream.state import MapStateDescriptor, ValueStateDescriptor

from models.avro_codec import SchemaCatalog
from models.samples import LearnerSettings, Sample, Scored
from operators.counters import BufferedCounters
from state.learning_store import ScoreWriter
from state.mapstate import STATE_VALUE, MapStateMapping, string_keyed_map_state
from state.records import LEARNER_CODEC, LEARNING_SAMPLE_CODEC

LEARNER_KEY = "learner"
MODEL = "journey-models"


def action_record(
    sample: Sample, cluster: int | None, propensity: float | None, action: str, model_version: int
) -> dict[str, Any]:
    """The ``journey.scores`` record answering one cart abandonment: the person's latest
    cluster and purchase propensity (at their last closed session) and the recommended action."""
    return {
        "profile_id": sample.profile_id,
        "model": MODEL,
        "model_version": model_version,
        "cluster": cluster,
        "propensity": propensity,
        "drift": False,
        "at": sample.at,
        "session_id": None,
        "previous_cluster": None,
        "churn_risk": None,
        "kind": "cart_abandoned",
        "trigger_id": sample.session_id,
        "cart_id": sample.cart_id,
        "recommended_action": action,
    }


def score_record(s: Scored, previous: int | None) -> dict[str, Any]:
    """The ``journey.scores`` record of one learned sample."""
    return {
        "profile_id": s.profile_id,
        "model": MODEL,
        "model_version": s.model_version,
        "cluster": s.cluster,
        "propensity": s.propensity,
        "drift": s.drift,
        "at": s.at,
        "session_id": s.session_id,
        "previous_cluster": previous,
        "churn_risk": s.churn_risk,
        "kind": "session",
        "trigger_id": None,
        "cart_id": None,
        "recommended_action": None,
    }


#: model quality levels (× 1000) and the model version, kept in counters by their metric name
LEVELS = {
    "purchase_auc": "auc",
    "purchase_log_loss": "log_loss",
    "churn_auc": "churn_auc",
    "churn_log_loss": "churn_log_loss",
    "model_version": "version",
}


class LearnModels(KeyedProcessFunction):
    """Parameters
    ----------
    store : callable
        Builds the score store in ``open()`` (picklable: :class:`state.learning_store.CassandraScores`
        in the job, :class:`state.learning_store.RecordingScores` in tests).
    settings : LearnerSettings
    """

    def __init__(self, store: Callable[[], ScoreWriter], settings: LearnerSettings = LearnerSettings()) -> None:
        self.store_factory, self.settings = store, settings

    def open(self, runtime_context: RuntimeContext) -> None:
        self.model_state = runtime_context.get_state(ValueStateDescriptor("learner", STATE_VALUE))
        self.buffer = MapStateMapping(
            runtime_context.get_map_state(string_keyed_map_state("learning-buffer")), LEARNING_SAMPLE_CODEC
        )
        self.clusters = runtime_context.get_map_state(
            MapStateDescriptor("learning-clusters", Types.STRING(), Types.INT())
        )
        self.propensities = runtime_context.get_map_state(
            MapStateDescriptor("learning-propensity", Types.STRING(), Types.DOUBLE())
        )
        self.score_codec = SchemaCatalog.load().codec("Score")
        # River (scipy, pandas) is imported here, by this one subtask only: imported by every
        # operator of a TaskManager at once, thread mode hung at start (seen on the mini-cluster)
        from models.learning import Learner

        self._learner_class = Learner
        self.learner: Any = None  # read from the state on the first timer
        self.store = self.store_factory()
        group = runtime_context.get_metrics_group()
        self.counters = BufferedCounters(
            group,
            (
                "samples_received",
                "samples_learned",
                "cluster_samples",
                "churn_labels_learned",
                "cart_actions",
                "not_learned_analytics",
                "scores_suppressed_personalization",
                "actions_suppressed_marketing",
                "drifts",
                "learner_erasures",
                "cassandra_requests",
                *LEVELS,
            ),
        )

    def close(self) -> None:
        if hasattr(self, "store"):
            self.store.close()

    def process_element(self, value: Any, ctx: KeyedProcessFunction.Context) -> Iterable[Any]:
        self.counters.tick(ctx.timer_service())
        sample = LEARNING_SAMPLE_CODEC.decode(bytes(value))
        self.counters.inc("samples_received")
        self.buffer[sample.key()] = sample
        ctx.timer_service().register_event_time_timer(sample.at)
        return iter(())

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterable[Any]:
        if ctx.time_domain() != TimeDomain.EVENT_TIME:
            self.counters.on_timer(timestamp)
            return
        self.counters.tick(ctx.timer_service())
        watermark = ctx.timer_service().current_watermark()
        due = sorted(k for k in self.buffer if int(k.split("|", 1)[0]) <= watermark)
        if not due:
            return
        learner = self._learner()
        scores = []
        erasures = []
        for key in due:
            sample: Sample = self.buffer.pop(key)
            if sample.is_erasure:  # forget the profile (its part in the models' weights stays)
                assert sample.erase is not None
                for pid in sample.erase:
                    self.clusters.remove(pid)
                    self.propensities.remove(pid)
                erasures.append((sample.erase, sample.session_id, sample.at, int(sample.propensity.get("part", 0))))
                self.counters.inc("learner_erasures")
                continue
            if sample.is_abandonment:
                if not sample.publish:  # no marketing consent (its trigger is suppressed too)
                    self.counters.inc("actions_suppressed_marketing")
                    continue
                p = self.propensities.get(sample.profile_id)
                action = learner.recommend(p)
                rec = action_record(sample, self.clusters.get(sample.profile_id), p, action, learner.model_version)
                self.counters.inc("cart_actions")
                yield self.score_codec.encode(rec)
                continue
            out = learner.learn(sample)
            if not sample.learn:  # no analytics consent: not learned (a session is still scored)
                self.counters.inc("not_learned_analytics")
            if out is None:  # a churn label: learned (with consent), nothing to publish
                if sample.learn:
                    self.counters.inc("churn_labels_learned")
                continue
            previous = self.clusters.get(sample.profile_id)
            self.propensities.put(sample.profile_id, out.propensity)
            if out.cluster is not None:
                self.clusters.put(sample.profile_id, out.cluster)
            if sample.learn:
                self.counters.inc("samples_learned")
                if sample.cluster is not None:
                    self.counters.inc("cluster_samples")
            if out.drift:
                self.counters.inc("drifts")
            if not sample.publish:  # no personalization consent: the score is not published
                self.counters.inc("scores_suppressed_personalization")
                continue
            rec = score_record(out, previous)
            scores.append((rec, learner.scored))
            yield self.score_codec.encode(rec)
        m = learner.metrics()
        for name, key in LEVELS.items():  # levels, not Python gauges (operators/counters.py)
            self.counters.set(name, int(learner.model_version if key == "version" else m[key] * 1000))
        metrics = m | {"model_version": learner.model_version, "at": int(due[-1].split("|", 1)[0])}
        self.counters.inc("cassandra_requests", self.store.write(scores, metrics, erasures))
        self.model_state.update(LEARNER_CODEC.encode(learner.record()))

    def _learner(self) -> Any:
        if self.learner is None:
            raw = self.model_state.value()
            cls = self._learner_class
            self.learner = cls(self.settings) if raw is None else cls.of(LEARNER_CODEC.decode(raw), self.settings)
        return self.learner
