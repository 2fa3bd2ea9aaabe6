"""The erasure oracle: which identifiers, profiles and events the erasure requests remove,
computed offline from the events alone, written from ``docs/privacy.md`` ("Erasure") and not
from the job's code.

The rule it implements: an erasure request erases the raw identity component of each of its
identifiers, i.e. every identifier connected to them through the identifiers that events
carry together (blocked values never connect anything). Every event carrying an erased
identifier is removed. The erasure takes effect at the earliest request time in the
component: what the journeys stage decides up to that event time stays decided (it was
published before the erasure), nothing after it.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable

from generator.journey_truth import JourneyTruth, identifiers_of
from models.identity import IdentityRules, Node, canonical_profile_id

RULES = IdentityRules()


@dataclass(frozen=True)
class OracleErasure:
    """One erased component: its identifiers, every profile id its rows can be under (the
    canonical id of each identifier alone), the requests and when it took effect."""

    nodes: frozenset[Node]
    ids: frozenset[str]
    request_ids: tuple[str, ...]
    at: int


def _payload(e: dict[str, Any]) -> dict[str, Any]:
    p = e.get("payload")
    return p[1] if isinstance(p, tuple) else (p or {})


def erasures(events: Iterable[dict[str, Any]], requests: Iterable[dict[str, Any]] | None = None) -> list[OracleErasure]:
    """The erased components of ``events`` (decoded NormalizedEvents), by union-find;
    ``requests``: the events whose erasure requests count (default: all of ``events``; a
    release without erasure saw the others and did nothing)."""
    events = list(events)
    requests = events if requests is None else list(requests)
    parent: dict[Node, Node] = {}

    def find(x: Node) -> Node:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for e in events:
        ids = identifiers_of(e)  # (blocked values left out)
        for n in ids:
            parent.setdefault(n, n)
        for n in ids[1:]:
            a, b = find(ids[0]), find(n)
            if a != b:
                parent[b] = a
    asked: dict[Node, list[tuple[int, str]]] = defaultdict(list)
    for e in requests:
        if e["event_type"] != "erasure_request":
            continue
        for n in identifiers_of(e):  # (blocked values left out)
            asked[find(n)].append((e["occurred_at"], str(_payload(e).get("request_id") or e["event_id"])))
    groups: dict[Node, set[Node]] = defaultdict(set)
    for n in parent:
        groups[find(n)].add(n)
    out = []
    for root, reqs in sorted(asked.items()):
        nodes = frozenset(groups[root])
        ids = frozenset(canonical_profile_id([n], RULES) for n in nodes)
        out.append(OracleErasure(nodes, ids, tuple(sorted({r for _, r in reqs})), min(t for t, _ in reqs)))
    return out


def erased_nodes(events: Iterable[dict[str, Any]], requests: Iterable[dict[str, Any]] | None = None) -> frozenset[Node]:
    return frozenset(n for er in erasures(events, requests) for n in er.nodes)


def erased_ids(events: Iterable[dict[str, Any]]) -> frozenset[str]:
    """Every profile id an erased person's rows could be under."""
    return frozenset(i for er in erasures(events) for i in er.ids)


def touches(e: dict[str, Any], nodes: frozenset[Node]) -> bool:
    return any(n in nodes for n in identifiers_of(e))


def surviving(
    events: Iterable[dict[str, Any]], requests: Iterable[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """The events an erasure does not remove (in the same order; ``requests`` as in :func:`erasures`)."""
    events = list(events)
    gone = erased_nodes(events, requests)
    return [e for e in events if not touches(e, gone)]


def erased_event_ids(events: Iterable[dict[str, Any]]) -> frozenset[str]:
    events = list(events)
    gone = erased_nodes(events)
    return frozenset(e["event_id"] for e in events if touches(e, gone))


def erasure_time_by_profile(events: Iterable[dict[str, Any]]) -> dict[str, int]:
    """For every profile id an erased person's rows could be under: when the erasure took effect."""
    return {i: er.at for er in erasures(events) for i in er.ids}


def erased_stream(rec: dict[str, Any], gone: frozenset) -> bool:
    """Whether an output record (session, trigger, cart) is of an erased person's stream."""
    return tuple(rec["stream"].split(":", 1)) in gone


def without_erased(want: JourneyTruth, events: list[dict]) -> JourneyTruth:
    """The journeys oracle's answer without the erased persons: their rows are gone from
    Cassandra, and what they published before their erasure is checked on its own
    (``tests/unit/test_journey_pipeline.py``, ``tests/e2e/test_erasure_e2e.py``)."""
    gone, gone_events = erased_nodes(events), erased_event_ids(events)
    return dataclasses.replace(
        want,
        triggers=[t for t in want.triggers if not erased_stream(t, gone)],
        sessions=[x for x in want.sessions if not erased_stream(x, gone)],
        carts=[c for c in want.carts if not erased_stream(c, gone)],
        late_dropped=[i for i in want.late_dropped if i not in gone_events],
    )
