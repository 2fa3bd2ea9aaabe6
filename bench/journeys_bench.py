"""``make bench`` (part 3): the journeys stage through Flink vs the same logic in a plain loop,
with and without the rule segments (the shipped CEL rules), and the delay from a trigger's
due time, and from an event, to a read_committed consumer seeing the trigger / the segment
change.

* **plain loop** -- :class:`models.journeys.Journey` over the router's commands for generated
  journeys (decode, fact, buffer, event-time processing, moves handed over at once, one tick
  at the end), as the job does it but in one Python loop: the CPython ceiling of the stage;
* **stage in Flink** -- the ``journeys`` operator alone on a local mini-cluster (thread mode,
  parallelism 2, heap state, the job's JVM watermark assigner), fed the same commands from a
  collection, writing to a recording store; bounded, so the end of input fires every timer.
  Two sizes; the marginal rate (extra commands / extra seconds) is the steady state;
* **trigger latency** -- a profiles job on the local stack with live settings (bound 2 s, idle
  advance 1 s, cart timeout 5 s, checkpoints every 1 s): probe carts are added "now" while
  filler events keep event time moving; for each ``cart_abandoned`` the time it became
  visible to a read_committed consumer minus its due time (wall clock = event time here); and
  probe purchases of new customers: the ``new_customer`` entry on ``journey.segments``, visible
  minus the purchase's time.

Prints a table and writes ``bench/results/journeys.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import threading
import time
import uuid
from pathlib import Path
from statistics import quantiles

from confluent_kafka import Consumer, Producer

from k8s.topics import ensure_topics
from local import stack
from local.flink_cluster import cancel, submit, wait_state
from models.avro_codec import SchemaCatalog
from models.identity import canonical_profile_id
from models.identity_router import CommandKind
from models.journeys import Journey, JourneySettings, JourneyState, fact_of
from models.profile_commands import decode_command
from models.segments import RuleSet, load_rules
from state.cassandra_schema import apply_schema, connect
from state.records import JOURNEY_STATE_CODEC
from tests.journeys_harness import RULES, generated_events, journeys_on_mini_cluster, recorded_commands

RESULTS = Path(__file__).resolve().parent / "results"
BOOTSTRAP = f"127.0.0.1:{stack.KAFKA_PORT}"


def plain_loop(commands: list[tuple], segments: bool = False) -> dict:
    """The journeys logic over the encoded commands in one loop, states as Python objects
    (replay: one tick at the end): decoding, facts, moves, event-time processing; with
    ``segments``, the shipped rules too."""
    catalog = SchemaCatalog.load()
    rules = RuleSet.of(load_rules()) if segments else None
    settings = JourneySettings()
    states: dict[str, JourneyState] = {}
    t0 = time.perf_counter()
    outs = 0
    max_at = 0
    for t in commands:
        cmd = decode_command(t)
        if cmd.kind in (CommandKind.STATE, CommandKind.TICK) or (
            cmd.kind is CommandKind.TOUCH and not (cmd.evict or cmd.incoming)
        ):
            continue
        j = Journey(cmd.profile_id, states.setdefault(cmd.profile_id, JourneyState()), settings, rules)
        fact = moved = None
        if cmd.kind is CommandKind.EVENT:
            event = catalog.decode(cmd.payload, expect="NormalizedEvent")[1]
            max_at = max(max_at, event["occurred_at"])
            fact = fact_of(event, cmd.atom, RULES)
        elif cmd.kind is CommandKind.JOURNEY:
            moved = (cmd.atom, JOURNEY_STATE_CODEC.decode(cmd.payload))
        parts, out = j.apply_command(-(2**63), cmd.incoming, cmd.evict, cmd.members == (), fact, moved)
        outs += len(out) + len([JOURNEY_STATE_CODEC.encode(part) for _, part in parts])  # sent encoded
    for pid, st in states.items():  # the tick: event time complete up to the newest event
        outs += len(Journey(pid, st, settings, rules).advance(max_at))
    dt = time.perf_counter() - t0
    return {"commands": len(commands), "seconds": dt, "commands_per_s": len(commands) / dt, "outputs": outs}


def flink_run(commands: list[tuple], segments: bool = False) -> dict:
    """The journeys operator alone on a mini-cluster over ``commands`` (with ``segments``: the
    shipped rules); wall seconds of the job."""
    from pyflink.common import Types

    from operators.journeys import CONTROL_RESULTS_TAG, LATE_TAG, SEGMENTS_TAG, SESSIONS_TAG, TRIGGERS_TAG

    store = Path(tempfile.mkdtemp()) / "journeys.jsonl"
    _, journeys = journeys_on_mini_cluster(commands, store, segment_rules=load_rules() if segments else ())
    outputs = journeys.union(
        journeys.get_side_output(SESSIONS_TAG),
        journeys.get_side_output(TRIGGERS_TAG),
        journeys.get_side_output(LATE_TAG),
        journeys.get_side_output(SEGMENTS_TAG),
        journeys.get_side_output(CONTROL_RESULTS_TAG),
    ).map(lambda _: 1, output_type=Types.LONG())
    t0 = time.perf_counter()
    with outputs.execute_and_collect("bench-journeys") as results:
        n = sum(1 for _ in results)
    return {"commands": len(commands), "seconds": time.perf_counter() - t0, "outputs_emitted": n}


def learning_runs(events: list[dict]) -> dict:
    """The online models over the samples of ``events``: River in a plain loop vs the
    ``learn-models`` operator on a mini-cluster (samples from a collection; one subtask)."""
    from base64 import b64decode, b64encode

    from pyflink.common import Duration, Types, WatermarkStrategy
    from pyflink.datastream import DataStream
    from pyflink.java_gateway import get_gateway

    from flink_jobs.profiles import learn_models
    from models.learning import Learner
    from state.learning_store import RecordingScores
    from state.records import LEARNING_SAMPLE_CODEC
    from tests.operator.mini_cluster import thread_mode_env
    from tests.profiles_harness import oracle_samples

    from dataclasses import replace

    one = oracle_samples(events)
    span = one[-1].at - one[0].at + 1
    # four calendars in a row (other profile ids): enough work for the start-up to matter less
    samples = [replace(s, at=s.at + k * span, profile_id=f"{s.profile_id}-{k}") for k in range(4) for s in one]
    t0 = time.perf_counter()
    learner = Learner()
    propensity: dict[str, float] = {}
    for s in samples:
        if s.is_abandonment:  # answered from the person's latest propensity, as learn-models does
            learner.recommend(propensity.get(s.profile_id))
            continue
        out = learner.learn(s)
        if out is not None:
            propensity[s.profile_id] = out.propensity
    loop_s = time.perf_counter() - t0

    def job(subset: list) -> float:
        rows = [(b64encode(LEARNING_SAMPLE_CODEC.encode(s)).decode(), s.at) for s in subset]
        env = thread_mode_env(parallelism=2, settings={"execution.checkpointing.interval": "1 s"})
        timed = env.from_collection(rows, type_info=Types.TUPLE([Types.STRING(), Types.LONG()])).set_parallelism(1)
        strategy = WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_millis(0))
        j = timed._j_data_stream.assignTimestampsAndWatermarks(
            strategy._j_watermark_strategy.withTimestampAssigner(
                get_gateway().jvm.org.apache.flink.streaming.api.functions.python.eventtime.CustomTimestampAssigner()
            )
        )
        j.setParallelism(1)
        values = DataStream(j).map(lambda r: b64decode(r[0]), output_type=Types.PRIMITIVE_ARRAY(Types.BYTE()))
        store = Path(tempfile.mkdtemp()) / "scores.jsonl"
        out = (
            learn_models(values.set_parallelism(1), RecordingScores(str(store)))
            .map(lambda _: 1, output_type=Types.LONG())
            .set_parallelism(1)
            .start_new_chain()
        )
        t = time.perf_counter()
        with out.execute_and_collect("bench-learning") as results:
            # one record per published score or cart action: none for churn labels, erasures, or
            # samples whose consent withholds publishing (operators/learning.py)
            want = sum(1 for s in subset if s.publish and not s.is_churn_label and not s.is_erasure)
            got = sum(1 for _ in results)
            assert got == want, f"learn-models published {got} records, the samples say {want}"
        return time.perf_counter() - t

    small = job(samples[: len(samples) // 4])
    big = job(samples)
    extra = big - small
    marginal = (len(samples) - len(samples) // 4) / extra if extra > 0 else float("nan")
    return {
        "samples": len(samples),
        "loop_seconds": loop_s,
        "loop_us_per_sample": loop_s / len(samples) * 1e6,
        "flink_seconds": big,
        "flink_marginal_samples_per_s": marginal,
        "flink_us_per_sample_marginal": 1e6 / marginal if marginal == marginal else float("nan"),
        "flink_us_per_sample_overall": big / len(samples) * 1e6,
    }


def latency_run(probes: int, rate: float) -> dict:
    """cart_abandoned due time -> visible to a read_committed consumer, live settings."""
    from tests.profiles_harness import normalized_records

    catalog = SchemaCatalog.load()
    codec = catalog.codec("NormalizedEvent")
    prefix = f"benchj{uuid.uuid4().hex[:8]}"
    names = ("normalized", "profile-moves", "sessions", "triggers", "late", "segments", "scores", "control-results")
    topics = {n: f"{prefix}.{n}" for n in names}
    ensure_topics(BOOTSTRAP, partitions=2, topics=tuple(topics.values()))
    ensure_topics(BOOTSTRAP, partitions=1, topics=(f"{prefix}.identity", f"{prefix}.control"))
    keyspace = f"bench_{uuid.uuid4().hex[:10]}"
    session = connect("127.0.0.1", stack.CASSANDRA_PORT)
    apply_schema(session, keyspace=keyspace)
    cart_timeout = 5000
    env = {
        "JOURNEY_INPUT_TOPIC_PATTERN": topics["normalized"].replace(".", r"\."),
        "JOURNEY_IDENTITY_TOPIC": f"{prefix}.identity",
        "JOURNEY_FEEDBACK_TOPIC": topics["profile-moves"],
        "JOURNEY_SESSIONS_TOPIC": topics["sessions"],
        "JOURNEY_TRIGGERS_TOPIC": topics["triggers"],
        "JOURNEY_LATE_TOPIC": topics["late"],
        "JOURNEY_SEGMENTS_TOPIC": topics["segments"],
        "JOURNEY_SCORES_TOPIC": topics["scores"],
        "JOURNEY_CONTROL_TOPIC": f"{prefix}.control",
        "JOURNEY_CONTROL_RESULTS_TOPIC": topics["control-results"],
        "JOURNEY_GROUP_ID": prefix,
        "JOURNEY_TRANSACTIONAL_ID_PREFIX": prefix,
        "JOURNEY_JOB_NAME": f"bench-journeys-{prefix}",
        "JOURNEY_KEYSPACE": keyspace,
        "JOURNEY_CHECKPOINT_INTERVAL_MS": "1000",
        "JOURNEY_OUT_OF_ORDERNESS_MS": "2000",
        "JOURNEY_IDLE_ADVANCE_MS": "1000",
        "JOURNEY_CART_TIMEOUT_MS": str(cart_timeout),
        "JOURNEY_MARKETING_CONSENT_DEFAULT": "true",
    }
    template = catalog.decode(normalized_records(1, 7)[0])[1]
    purchase_payload = (
        "journey.v1.Purchase",
        {"order_id": "o-1", "cart_id": None, "total": 25.0, "currency": "EUR", "items": []},
    )
    cart_payload = (
        "journey.v1.CartChange",
        {"cart_id": "", "product_id": "sku-1", "category": "x", "quantity": 1, "unit_price": 9.5},
    )

    def event(kind: str, cookie: str, payload) -> bytes:
        ids = {k: None for k in template["identifiers"]} | {"cookie_id": cookie}
        ev = {
            **template,
            "event_id": uuid.uuid4().hex,
            "event_type": kind,
            "identifiers": ids,
            "payload": payload,
            "occurred_at": int(time.time() * 1000),
        }
        return codec.encode(ev)

    producer = Producer({"bootstrap.servers": BOOTSTRAP, "linger.ms": 0})
    job = submit("flink_jobs.profiles", env, detached=True)
    seen: dict[str, float] = {}
    seen_segments: dict[str, float] = {}
    bought: dict[str, float] = {}  # profile id -> the purchase's time
    stop = threading.Event()

    def consume() -> None:
        c = Consumer(
            {
                "bootstrap.servers": BOOTSTRAP,
                "group.id": f"{prefix}-lat",
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
            }
        )
        c.subscribe([topics["triggers"], topics["segments"]])
        while not stop.is_set():
            m = c.poll(0.05)
            if m is not None and not m.error():
                t = catalog.decode(m.value())[1]
                if m.topic() == topics["segments"]:
                    if t["segment"] == "new_customer" and t["change"] == "entered":
                        seen_segments.setdefault(t["profile_id"], time.time())
                else:
                    seen.setdefault(t["cart_id"] or "", time.time())
        c.close()

    reader = threading.Thread(target=consume, daemon=True)
    due: dict[str, float] = {}
    try:
        wait_state(job.job_id, {"RUNNING"}, timeout_s=120)
        reader.start()
        time.sleep(8)  # operators open their Cassandra sessions
        filler = f"filler-{uuid.uuid4().hex[:8]}"
        page = ("journey.v1.PageView", {"url": "/", "referrer": None, "title": None})
        t_end = time.time() + probes / rate + cart_timeout / 1000 + 15
        next_probe, k = time.time(), 0
        while time.time() < t_end:
            producer.produce(topics["normalized"], value=event("page_view", filler, page))
            if k < probes and time.time() >= next_probe:
                cart = f"cart-{prefix}-{k}"
                payload = (cart_payload[0], dict(cart_payload[1], cart_id=cart))
                v = event("add_to_cart", f"probe-{prefix}-{k}", payload)
                producer.produce(topics["normalized"], value=v)
                due[cart] = catalog.decode(v)[1]["occurred_at"] / 1000 + cart_timeout / 1000
                buyer = f"buyer-{prefix}-{k}"
                p = event("purchase", buyer, purchase_payload)
                producer.produce(topics["normalized"], value=p)
                bought[canonical_profile_id([("cookie_id", buyer)], RULES)] = catalog.decode(p)[1]["occurred_at"] / 1000
                k, next_probe = k + 1, next_probe + 1 / rate
            producer.poll(0)
            time.sleep(0.05)
        producer.flush(10)
        deadline = time.time() + 30
        while len(seen.keys() & due.keys()) + len(seen_segments.keys() & bought.keys()) < len(due) + len(bought) and (
            time.time() < deadline
        ):
            time.sleep(0.2)
    finally:
        stop.set()
        cancel(job.job_id)
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=60)
        session.cluster.shutdown()
    delays = [seen[c] - due[c] for c in due if c in seen]
    assert len(delays) == len(due), f"{len(due) - len(delays)} of {len(due)} probe carts never triggered"
    entries = [seen_segments[p] - bought[p] for p in bought if p in seen_segments]
    assert len(entries) == len(bought), f"{len(bought) - len(entries)} of {len(bought)} new customers never entered"
    q, qs = quantiles(delays, n=100, method="inclusive"), quantiles(entries, n=100, method="inclusive")
    return {
        "probes": len(delays),
        "p50_ms": q[49] * 1000,
        "p99_ms": q[98] * 1000,
        "max_ms": max(delays) * 1000,
        "segment_entered": {
            "probes": len(entries),
            "p50_ms": qs[49] * 1000,
            "p99_ms": qs[98] * 1000,
            "max_ms": max(entries) * 1000,
        },
        "settings": {k: v for k, v in env.items() if k.endswith("_MS")},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--persons", type=int, default=300)
    ap.add_argument("--probes", type=int, default=40)
    ap.add_argument("--probe-rate", type=float, default=4.0)
    args = ap.parse_args(argv)
    big_events = generated_events(626262, args.persons)
    small_events_list = generated_events(626263, max(1, args.persons // 4))
    big, events = recorded_commands(big_events, 626262), len(big_events)
    small, small_events = recorded_commands(small_events_list, 626263), len(small_events_list)
    print(f"{len(big)} commands for {events} events ({len(small)} for {small_events} in the quarter-size run)")
    loop = plain_loop(big)
    print(f"plain Python loop : {loop['commands_per_s']:>9,.0f} commands/s ({loop['seconds']:.2f}s)")
    loop_seg = plain_loop(big, segments=True)
    seg_us = (loop_seg["seconds"] - loop["seconds"]) / events * 1e6
    print(
        f"  with segments   : {loop_seg['commands_per_s']:>9,.0f} commands/s ({loop_seg['seconds']:.2f}s): "
        f"{seg_us:.1f} us per event for the rules"
    )
    print("stage in Flink, run 1/2 (quarter size) ...", flush=True)
    f_small = flink_run(small)
    print("stage in Flink, run 2/2 ...", flush=True)
    f_big = flink_run(big)
    extra = f_big["seconds"] - f_small["seconds"]
    marginal = (len(big) - len(small)) / extra if extra > 0 else float("nan")
    print(f"stage in Flink    : {len(big) / f_big['seconds']:>9,.0f} commands/s overall ({f_big['seconds']:.1f}s)")
    print(f"stage marginal    : {marginal:>9,.0f} commands/s (steady state)")
    print(f"ratio Flink / plain loop: {marginal / loop['commands_per_s']:.2f} steady state")
    print("online models: River in a plain loop vs learn-models on a mini-cluster ...", flush=True)
    learning = learning_runs(big_events)
    print(
        f"  learn+predict   : {learning['loop_us_per_sample']:.0f} us per sample in a loop; in the job "
        f"{learning['flink_us_per_sample_overall']:.0f} us overall (start-up included), "
        f"{learning['flink_us_per_sample_marginal']:.0f} us marginal (quarter-size run subtracted; NaN: noise "
        f"beat the difference); {learning['samples']} samples"
    )
    print("stage in Flink with segments ...", flush=True)
    f_seg = flink_run(big, segments=True)
    seg_flink_us = (f_seg["seconds"] - f_big["seconds"]) / events * 1e6
    print(
        f"  with segments   : {len(big) / f_seg['seconds']:>9,.0f} commands/s overall ({f_seg['seconds']:.1f}s): "
        f"{seg_flink_us:.0f} us per event for the rules in the job vs {seg_us:.1f} us in the loop "
        f"(one run each: noisy)"
    )
    for name in ("kafka", "cassandra", "flink"):
        stack.COMPONENTS[name].start()
    print(f"trigger latency ({args.probes} probe carts at {args.probe_rate}/s, live settings) ...", flush=True)
    lat = latency_run(args.probes, args.probe_rate)
    print(
        f"due -> visible (read_committed): p50 {lat['p50_ms']:,.0f} ms, p99 {lat['p99_ms']:,.0f} ms, max {lat['max_ms']:,.0f} ms"
    )
    se = lat["segment_entered"]
    print(
        f"event -> segment_entered visible (new_customer, read_committed): p50 {se['p50_ms']:,.0f} ms, "
        f"p99 {se['p99_ms']:,.0f} ms, max {se['max_ms']:,.0f} ms"
    )
    report = {
        "benchmark": "journeys",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "settings": vars(args),
        "plain_loop": loop,
        "flink_small": f_small,
        "flink": f_big,
        "flink_marginal_commands_per_s": marginal,
        "ratio_marginal_to_loop": marginal / loop["commands_per_s"],
        "plain_loop_segments": loop_seg,
        "segments_us_per_event_loop": seg_us,
        "flink_segments": f_seg,
        "segments_us_per_event_flink": seg_flink_us,
        "learning": learning,
        "trigger_latency": lat,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "journeys.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {RESULTS / 'journeys.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
