"""Rule segments as the job decides them, without Flink: the identity router, one journey per
profile with the shipped rules, moved parts delayed through a feedback queue, events in random
order and decided at the idle tick (the local stack's replay bound); every profile's sequence
of ``entered`` / ``exited`` equals the independent oracle (``generator/segment_truth.py``)
evaluated over the final persons, time-only changes included."""

from __future__ import annotations

import random
from collections import defaultdict

import pytest

from generator.segment_truth import load_rules as oracle_rules
from generator.segment_truth import segment_truth
from models.identity import IdentityRules, observation_of, resolve
from models.journeys import node_key
from generator.erasure_truth import erasures
from models.segments import DEFAULT_RULES_PATH, RuleSet, SegmentOut, load_rules
from tests.journeys_harness import JourneyPipeline, generated_events


def decided(pipe: JourneyPipeline) -> dict[str, list[tuple]]:
    got: dict[str, list[tuple]] = defaultdict(list)
    for pid, o in pipe.outs:
        if isinstance(o, SegmentOut):
            r = o.record
            assert r["profile_id"] == pid
            got[pid].append((r["segment"], r["change"], r["rule_version"], r["at"], r["purpose"]))
    return dict(got)


def expected(events, pipe: JourneyPipeline) -> dict[str, list[tuple]]:
    """The oracle's changes by the profile the router holds each final person under; an erased
    person's (``generator/erasure_truth.py``) up to the erasure, under their final profile."""
    profile_of = {node_key(n): pid for n, pid in pipe.router.store.profile_of.items()}
    final = resolve([observation_of(e) for e in events], IdentityRules())
    erased_at = {node_key(n): er.at for er in erasures(events) for n in er.nodes}
    assert erased_at, "the generated data has an erasure request"
    want: dict[str, list[tuple]] = defaultdict(list)
    for c in segment_truth(events, oracle_rules(DEFAULT_RULES_PATH)):
        if c["person"] in erased_at:
            if c["at"] <= erased_at[c["person"]]:
                pid = final.profile_of[tuple(c["person"].split(":", 1))]  # type: ignore[index]
                want[pid].append((c["segment"], c["change"], c["rule_version"], c["at"], c["purpose"]))
            continue
        want[profile_of[c["person"]]].append((c["segment"], c["change"], c["rule_version"], c["at"], c["purpose"]))
    return dict(want)


@pytest.mark.parametrize(("seed", "persons"), [(31, 25), (42, 40), (7, 60)])
def test_segment_changes_equal_the_oracle_per_profile_including_time_only_exits(seed: int, persons: int) -> None:
    events = generated_events(seed, persons)
    rnd = random.Random(seed)
    arrival = list(events)
    rnd.shuffle(arrival)
    pipe = JourneyPipeline(rnd, None, segments=RuleSet.of(load_rules()))
    pipe.run(arrival)
    got, want = decided(pipe), expected(events, pipe)
    assert got == want
    kinds = {c[0] for changes in got.values() for c in changes}
    assert {"engaged", "high_value", "cart_abandoner", "new_customer"} <= kinds, kinds
    # time alone ends memberships: some exits come at no event's time
    event_times = {e["occurred_at"] for e in events}
    assert any(c[1] == "exited" and c[3] not in event_times for changes in got.values() for c in changes)
