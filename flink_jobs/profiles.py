"""Identity + profiles job: Kafka journey.normalized -> identity partitioned by raw component
-> profiles keyed by canonical profile id -> Cassandra (coalesced, idempotent, versioned writes);
identity changes -> Kafka journey.identity; messages between the identity stages and moved
profile state -> Kafka feedback topic -> back into the identity stages.

Wiring only (logic in models/, adapters in operators/)::

    journey.normalized ─┐
                        ├─> identity-keys ─> locate-identity ─> resolve-identity ─> identity-clock ─┐
    journey.profile-moves┘   (the one decode)  (by identifier)     (by home)           (1 subtask)     │
            ^                      │ closures         │ claims, merges, moves, erasure steps          │
            └──────────────────────┴──────────────────┴──── + moved atoms, journey parts ─────────────┤
                                                                                                       v
        event-time (1 subtask, JVM) ─> fold-profiles (keyed by profile id) ─> Cassandra
                                   └─> journeys (keyed by profile id) <── broadcast ── journey.control
        -> journey.sessions, journey.triggers, journey.late, journey.segments, journey.identity,
           Cassandra, journey.control-results (each subtask's answer to each rule update)

Flink 2.x has no DataStream iterations, so records move between keys through the feedback
topic, read back by the same source (read_committed) and written by exactly-once sinks: a
checkpoint covers every message either in an operator's state or in the topic. The job is
unbounded by nature (the feedback source never ends); stop it with a savepoint.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from dataclasses import dataclass
from typing import Callable, Iterable

from pyflink.common import Duration, Types, WatermarkStrategy
from pyflink.datastream import BroadcastStream, DataStream, StreamExecutionEnvironment
from pyflink.java_gateway import get_gateway

from models.config import ConfigError, ProfilesConfig
from models.identity import IdentityRules
from models.samples import LearnerSettings
from operators.identity_partitioned import (
    FEEDBACK_TAG,
    PREPARED_TYPE,
    IdentityClockStage,
    IdentityKeys,
    LocateIdentity,
    ResolveIdentity,
)
from operators.identity_router import (
    BYTES,
    COMMAND_TYPE,
    IDENTITY_KEY,
    LEGACY_ROUTER_UID,
    ROUTED_TYPE,
    SOURCE_TYPE,
)
from operators.journeys import (
    CONTROL_RESULTS_TAG,
    CONTROL_TYPE,
    LATE_TAG,
    OUT_TYPE,
    ROUTER_IDENTITY_TAG,
    RULES_STATE,
    SAMPLES_TAG,
    SEGMENTS_TAG,
    SESSIONS_TAG,
    TRIGGERS_TAG,
    Journeys,
    SplitOutputs,
)
from operators.learning import LEARNER_KEY, LearnModels
from operators.profile_fold import MOVED_TAG, FoldProfiles
from state.journey_store import CassandraJourneys, JourneyWriter
from state.learning_store import CassandraScores, ScoreWriter
from state.erasure_store import CassandraLedger
from state.sinks import CassandraSink, ProfileSink


@dataclass(frozen=True)
class ProfileStreams:
    identity_events: DataStream  # IdentityEvent bytes -> journey.identity
    moved_atoms: DataStream  # feedback records -> cfg.feedback_topic (profile atoms and journey parts)
    sessions: DataStream  # Session bytes -> cfg.sessions_topic
    triggers: DataStream  # Trigger bytes -> cfg.triggers_topic
    late_events: DataStream  # LateEvent bytes -> cfg.late_topic
    segments: DataStream  # SegmentChange bytes -> cfg.segments_topic
    scores: DataStream  # Score bytes -> cfg.scores_topic
    control_results: DataStream  # JSON answers to rule updates -> cfg.control_results_topic


#: a control record's timestamp: far beyond any event, so the rules' input never holds back the
#: journeys' event time (its watermark is this, or it is idle)
CONTROL_TIMESTAMP = 2**63 - 2


def with_event_time(routed: DataStream, out_of_orderness_ms: int) -> DataStream:
    """The clock's ``(command, event time)`` pairs as commands with timestamps and bounded
    out-of-orderness watermarks, all in the JVM and in the clock's one subtask: one watermark
    generator sees every event of the job (docs/journeys.md, Time).

    PyFlink's ``assign_timestamps_and_watermarks`` with a Python assigner would add a Python
    operator at the job's parallelism, and a tick reaching one generator of several would not
    move their minimum; Flink's own assigner for Python streams reads the pair's second field.
    """
    jvm = get_gateway().jvm
    eventtime = jvm.org.apache.flink.streaming.api.functions.python.eventtime
    strategy = WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_millis(out_of_orderness_ms))
    j_timed = routed._j_data_stream.assignTimestampsAndWatermarks(
        strategy._j_watermark_strategy.withTimestampAssigner(eventtime.CustomTimestampAssigner())
    )
    j_timed.name("event-time").uid("event-time").setParallelism(1)
    j_commands = j_timed.map(eventtime.RemoveTimestampMapFunction(), COMMAND_TYPE.get_java_type_info())
    j_commands.name("commands").uid("commands").setParallelism(1)
    return DataStream(j_commands)


def control_broadcast(control: DataStream) -> BroadcastStream:
    """``(journey.control value, CONTROL_TIMESTAMP)`` pairs as the broadcast input of the
    journeys stage.

    The journeys operator's event time is the minimum of its two inputs' watermarks, so the
    rules' input must not hold it back: its timestamps and watermark are at the end of time
    and it is marked idle when no update arrives (Flink ignores an idle input), all in the JVM.
    """
    jvm = get_gateway().jvm
    strategy = WatermarkStrategy.for_monotonous_timestamps().with_idleness(Duration.of_seconds(1))
    j_timed = control._j_data_stream.assignTimestampsAndWatermarks(
        strategy._j_watermark_strategy.withTimestampAssigner(
            jvm.org.apache.flink.streaming.api.functions.python.eventtime.CustomTimestampAssigner()
        )
    )
    j_timed.name("control-time").uid("control-time").setParallelism(1)
    return DataStream(j_timed).broadcast(RULES_STATE)


def no_rule_updates(like: DataStream) -> DataStream:
    """A control input that changes nothing (one empty update), in ``like``'s environment."""
    env = StreamExecutionEnvironment(like._j_data_stream.getExecutionEnvironment())
    return env.from_collection([(b'{"rules": []}', CONTROL_TIMESTAMP)], type_info=CONTROL_TYPE).set_parallelism(1)


def learn_models(
    samples: DataStream, store: Callable[[], ScoreWriter], settings: LearnerSettings = LearnerSettings()
) -> DataStream:
    """The online models in one subtask, fed every journeys subtask's samples (docs/learning.md)."""
    return (
        samples.key_by(lambda _: LEARNER_KEY, key_type=Types.STRING())
        .process(LearnModels(store, settings), output_type=BYTES)
        .name("learn-models")
        .uid("learn-models")
        .set_parallelism(1)
    )


def build_profiles(
    source: DataStream,
    cfg: ProfilesConfig,
    sink: Callable[[], ProfileSink] | None = None,
    rules: IdentityRules | None = None,
    journey_store: Callable[[], JourneyWriter] | None = None,
    report: bool = False,
    control: DataStream | None = None,
    score_store: Callable[[], ScoreWriter] | None = None,
    ledger: Callable[[], Iterable[str]] | None = None,
) -> ProfileStreams:
    """Wire the stage onto ``(topic, value)`` tuples of journey.normalized and the feedback topic.

    ``sink`` builds the profile store on each subtask (default: Cassandra as ``cfg`` says;
    tests pass :class:`state.sinks.RecordingSink`), ``journey_store`` the journeys' store
    (default Cassandra; tests: :class:`state.journey_store.RecordingJourneys`); ``control``
    the rule updates as ``(value, CONTROL_TIMESTAMP)`` (default: none; the rules of
    ``cfg.segment_rules`` run); ``score_store`` the online models' store (default Cassandra;
    tests: :class:`state.learning_store.RecordingScores`); ``ledger`` the erasure ledger a
    router that starts with no state takes its tombstones from (default none; the job passes
    Cassandra's, docs/privacy.md).
    """
    at = cfg.cassandra_target()
    score_store = score_store or CassandraScores(*at)
    sink = sink or CassandraSink(*at)
    journey_store = journey_store or CassandraJourneys(*at)
    rules = rules or IdentityRules(shared_homes=cfg.identity_shared_homes)
    located = (
        source.map(IdentityKeys(rules, cfg.feedback_topic), output_type=PREPARED_TYPE)
        .name("identity-keys")
        .key_by(lambda r: r[0], key_type=Types.STRING())
        .process(LocateIdentity(rules, ledger), output_type=PREPARED_TYPE)
        .name("locate-identity")
        .uid("locate-identity")
    )
    resolved = (
        located.key_by(lambda r: r[0], key_type=Types.STRING())
        .process(ResolveIdentity(rules), output_type=ROUTED_TYPE)
        .name("resolve-identity")
        .uid("resolve-identity")
    )
    routed = (
        resolved.key_by(lambda _: IDENTITY_KEY, key_type=Types.STRING())
        .process(IdentityClockStage(cfg.out_of_orderness_ms, cfg.idle_advance_ms, rules), output_type=ROUTED_TYPE)
        .name("identity-clock")
        # the uid of the single router of earlier releases: its state restores here and drains
        # into the partitioned stages (operators/identity_router.py)
        .uid(LEGACY_ROUTER_UID)
        .set_parallelism(1)
    )
    commands = with_event_time(routed, cfg.out_of_orderness_ms)
    segment_rules = cfg.load_segment_rules()
    journeys = (
        commands.key_by(lambda c: c[0], key_type=Types.STRING())
        .connect(control_broadcast(control if control is not None else no_rule_updates(source)))
        .process(
            Journeys(cfg.journey_settings(), journey_store, rules, report, segment_rules=segment_rules, samples=True),
            output_type=OUT_TYPE,
        )
        .name("journeys")
        .uid("journeys")
        .process(SplitOutputs(), output_type=BYTES)
        .name("journey-outputs")
        .uid("journey-outputs")
    )
    folded = (
        commands.key_by(lambda c: c[0], key_type=Types.STRING())
        .process(
            FoldProfiles(
                sink,
                cfg.coalesce_ms,
                cfg.half_life_ms,
                cfg.confirm_ms,
                group_size=cfg.write_group_size,
                group_ms=cfg.write_group_ms,
            ),
            output_type=Types.STRING(),
        )
        .name("fold-profiles")
        .uid("fold-profiles")
    )
    # journey.identity: the resolve stage's records pass the clock (one order) and leave through
    # the journeys stage's subtask of key "" (as the clock's ticks do)
    identity_events = journeys.get_side_output(ROUTER_IDENTITY_TAG).name("identity-events")
    moved = (
        folded.get_side_output(MOVED_TAG)
        .name("moved-atoms")
        .union(
            journeys,
            located.get_side_output(FEEDBACK_TAG).name("locate-feedback"),
            resolved.get_side_output(FEEDBACK_TAG).name("resolve-feedback"),
        )
    )
    return ProfileStreams(
        identity_events,
        moved,
        journeys.get_side_output(SESSIONS_TAG).name("sessions"),
        journeys.get_side_output(TRIGGERS_TAG).name("triggers"),
        journeys.get_side_output(LATE_TAG).name("late-events"),
        journeys.get_side_output(SEGMENTS_TAG).name("segments"),
        learn_models(
            journeys.get_side_output(SAMPLES_TAG).name("learning-samples"), score_store, cfg.learner_settings()
        ),
        journeys.get_side_output(CONTROL_RESULTS_TAG).name("control-results"),
    )


def main(argv: list[str] | None = None) -> int:
    import argparse

    from flink_jobs.env import make_env
    from flink_jobs.kafka_io import check_against_broker, raw_kafka_source, sink_bytes

    ap = argparse.ArgumentParser(
        description="Journey identity + profiles job (config from JOURNEY_* env vars). "
        "Unbounded: stop it with a savepoint or cancel it."
    )
    ap.parse_args(argv)
    try:
        cfg = ProfilesConfig.from_env()
        cfg.load_segment_rules()
        check_against_broker(cfg, ordered_topics=(cfg.identity_topic, cfg.control_topic))
    except ConfigError as e:
        print(f"profiles: configuration error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # broker unreachable: say so before Flink hides it in a stack trace
        print(f"profiles: cannot check the Kafka brokers at the configured bootstrap servers: {e}", file=sys.stderr)
        return 2
    # aligned checkpoints: a component's move is read back only after the checkpoint that wrote it,
    # and only aligned barriers guarantee that every command sent before it was processed by
    # then (docs/identity.md, "What the job must guarantee")
    env, t_env = make_env(dataclasses.replace(cfg, unaligned_checkpoints=False))
    source = (
        raw_kafka_source(t_env, cfg, topic_pattern=cfg.source_topic_pattern())
        .map(lambda r: (r[1], bytes(r[0])), output_type=SOURCE_TYPE)
        .name("topic-and-value")
    )
    control = (
        raw_kafka_source(t_env, cfg, topic_pattern=re.escape(cfg.control_topic), table="kafka_control")
        .map(lambda r: (bytes(r[0]), CONTROL_TIMESTAMP), output_type=CONTROL_TYPE)
        .name("control-value")
        .set_parallelism(1)
    )
    ledger = CassandraLedger(*cfg.cassandra_target())
    streams = build_profiles(source, cfg, control=control, ledger=ledger)
    # one subtask, like identity-clock: journey.identity stays in one order (1 partition)
    sink_bytes(streams.identity_events, cfg, cfg.identity_topic, parallelism=1)
    sink_bytes(streams.moved_atoms, cfg, cfg.feedback_topic)
    sink_bytes(streams.sessions, cfg, cfg.sessions_topic)
    sink_bytes(streams.triggers, cfg, cfg.triggers_topic)
    sink_bytes(streams.late_events, cfg, cfg.late_topic)
    sink_bytes(streams.segments, cfg, cfg.segments_topic)
    sink_bytes(streams.scores, cfg, cfg.scores_topic, parallelism=1)
    sink_bytes(streams.control_results, cfg, cfg.control_results_topic)
    env.execute(cfg.job_name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
