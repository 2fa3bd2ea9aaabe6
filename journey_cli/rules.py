"""``journey rules``: validate a rules file offline, publish it to ``journey.control``, and show
which rule versions every running ``journeys`` subtask has (``docs/segments.md``, Hot reload).

Validation is the job's own (:func:`models.segments.compile_rule`), so a file that passes here
is accepted by the job unless a running version is already as high. Publishing writes one
``{"rules": [...]}`` record (idempotent producer, ``acks=all``) and then waits for the
subtasks' answers on ``journey.control-results`` (read_committed: they are visible after the
job's next checkpoint).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from models.segments import RuleError, RuleSet, load_rules, rules_json


def validate(path: str | Path) -> list[str]:
    """One line per rule of the file (raises :class:`RuleError` on the first invalid one)."""
    rules = load_rules(path)
    rs = RuleSet.of(rules)
    lines = []
    for r in rules:
        c = rs.rules[r.name]
        state = "" if r.enabled else " (retires the segment)"
        lines.append(f"ok  {r.name} v{r.version} [{r.purpose}] uses {', '.join(c.features) or 'no feature'}{state}")
    return lines


def _consumer(bootstrap: str) -> Any:
    from confluent_kafka import Consumer

    from state.kafka_clients import kafka_client_config

    return Consumer(
        kafka_client_config(
            bootstrap,
            {
                "group.id": f"journey-rules-{time.time_ns()}",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            },
        )
    )


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """The topic's current end (last stable) offset per partition."""
    from confluent_kafka import TopicPartition

    c = _consumer(bootstrap)
    try:
        md = c.list_topics(topic, timeout=10)
        if topic not in md.topics or md.topics[topic].error is not None:
            raise RuleError(f"topic {topic!r} does not exist on {bootstrap} (make topics / python -m k8s.topics)")
        out = {}
        for p in md.topics[topic].partitions:
            _, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            out[p] = high
        return out
    finally:
        c.close()


def read_answers(bootstrap: str, topic: str, since: dict[int, int], timeout_s: float, until: Any = None) -> list[dict]:
    """Answers on ``topic`` after the offsets ``since``, until ``until(answers)`` is true or
    ``timeout_s`` passes (None: read what is there, stop after 2 s without a record)."""
    from confluent_kafka import TopicPartition

    c = _consumer(bootstrap)
    answers: list[dict] = []
    try:
        c.assign([TopicPartition(topic, p, o) for p, o in since.items()])
        deadline, quiet_since = time.monotonic() + timeout_s, time.monotonic()
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                if until is None and time.monotonic() - quiet_since > 2.0:
                    break
                continue
            quiet_since = time.monotonic()
            answers.append(json.loads(m.value()))
            if until is not None and until(answers):
                break
    finally:
        c.close()
    return answers


def publish(bootstrap: str, topic: str, path: str | Path) -> None:
    """Validate ``path`` and write its rules to ``topic`` as one record."""
    from confluent_kafka import Producer

    rules = load_rules(path)
    RuleSet.of(rules)
    from state.kafka_clients import kafka_client_config

    p = Producer(kafka_client_config(bootstrap, {"enable.idempotence": True, "acks": "all"}))
    errors: list[str] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    p.produce(topic, rules_json(rules).encode(), on_delivery=delivered)
    if p.flush(30) or errors:
        raise RuleError(f"publishing to {topic!r} failed: {errors or 'not delivered within 30 s'}")


def latest_by_subtask(answers: list[dict]) -> dict[int, dict]:
    out: dict[int, dict] = {}
    for a in answers:
        out[a["subtask"]] = a
    return out


def main(argv: list[str]) -> int:
    import argparse

    from models.config import ConfigError, ProfilesConfig

    ap = argparse.ArgumentParser(prog="journey rules", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("validate", help="check a rules file offline with the job's validation")
    v.add_argument("file")
    pb = sub.add_parser("publish", help="validate, publish to journey.control, show each subtask's answer")
    pb.add_argument("file")
    pb.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the answers (default 60)")
    st = sub.add_parser("status", help="the rule versions each running journeys subtask reported last")
    st.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "validate":
            print("\n".join(validate(args.file)))
            return 0
        cfg = ProfilesConfig.from_env()
        if args.cmd == "publish":
            print("\n".join(validate(args.file)))
            since = end_offsets(cfg.bootstrap_servers, cfg.control_results_topic)
            names = {r.name for r in load_rules(args.file)}
            t0 = time.monotonic()
            publish(cfg.bootstrap_servers, cfg.control_topic, args.file)
            print(f"published {len(names)} rule(s) to {cfg.control_topic}; waiting for the subtasks' answers ...")

            def every_rule_answered(answers: list[dict]) -> bool:
                # a subtask answers each rule once; stop when the answering subtasks answered all
                by_sub: dict[int, set] = {}
                for a in answers:
                    by_sub.setdefault(a["subtask"], set()).add(a["rule"])
                return bool(by_sub) and all(s >= names for s in by_sub.values()) and len(answers) >= len(names)

            answers = read_answers(
                cfg.bootstrap_servers, cfg.control_results_topic, since, args.wait, every_rule_answered
            )
            if not answers:
                print(f"no answer within {args.wait:.0f} s: is the profiles job running?", file=sys.stderr)
                return 1
            for a in sorted(answers, key=lambda a: (a["subtask"], a["rule"] or "")):
                err = f": {a['error']}" if a["error"] else ""
                print(f"subtask {a['subtask']}: {a['rule']} v{a['version']} {a['status']}{err}")
            print(f"answered within {time.monotonic() - t0:.1f} s")
            return 0 if all(a["status"] == "accepted" for a in answers) else 1
        since = {p: 0 for p in end_offsets(cfg.bootstrap_servers, cfg.control_results_topic)}
        latest = latest_by_subtask(read_answers(cfg.bootstrap_servers, cfg.control_results_topic, since, args.timeout))
        if not latest:
            print("no subtask has answered a rule update yet (the shipped rules run)")
            return 0
        for sub_i, a in sorted(latest.items()):
            running = ", ".join(f"{n} v{v}" if v > 0 else f"{n} retired (v{-v})" for n, v in a["running"].items())
            print(f"subtask {sub_i}: {running}")
        return 0
    except (RuleError, ConfigError) as e:
        print(f"journey rules: {e}", file=sys.stderr)
        return 2
