"""Identity + profile stage against an offline oracle: resolve() over all events, then a
fold of each profile's events, whatever the arrival order."""

from __future__ import annotations

import random

import pytest

from models.identity import IdentityRules
from models.profile_stage import ProfileStage
from tests.profile_oracle import assert_same, cassandra_view, events, oracle

RULES = IdentityRules()


def final_rows(stage_outputs) -> dict:
    return cassandra_view([(r.profile_id, r.version, r.aggregate) for o in stage_outputs for r in o.rows]
                          + [(pid, v, None) for o in stage_outputs for pid, v in o.deleted])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_profiles_equal_the_offline_oracle_for_any_arrival_order(seed: int) -> None:
    evs = list(events())
    random.Random(seed).shuffle(evs)
    stage = ProfileStage(RULES)
    outs = [stage.process(e) for e in evs]
    assert_same(final_rows(outs), oracle(evs))


def test_a_shared_device_is_split_off_and_its_events_stay_counted_once() -> None:
    evs = list(events())
    stage = ProfileStage(RULES)
    outs = [stage.process(e) for e in evs]
    rows = final_rows(outs)
    assert sum(agg.events for _, agg in rows.values()) == len(evs)
    owners = [pid for pid, (_, agg) in rows.items() if "tablet-1" in agg.identifiers.get("device_id", ())]
    assert len(owners) == 1
    assert "customer_id" not in rows[owners[0]][1].identifiers
    assert any(c.kind == "refused" for o in outs for c in o.changes)


def test_an_event_whose_identifiers_are_all_blocked_is_reported_not_folded() -> None:
    e = dict(events()[0])
    e["identifiers"] = {k: None for k in e["identifiers"]} | {"cookie_id": "anonymous"}
    out = ProfileStage(RULES).process(e)
    assert out.resolved is False and out.rows == ()
