"""Offline oracle for the identity + profile stage: resolve() over all events, then a fold
of each profile's events; and what Cassandra would hold after a stream of versioned writes."""

from __future__ import annotations

import math
from collections import deque
from functools import lru_cache

from generator.synth import generate
from models.avro_codec import SchemaCatalog
from models.identity import IdentityRules, observation_of, resolve
from models.ingest import Accepted, IngestSettings, Ingestor, SourceRecord
from models.profile import fold

RULES = IdentityRules()


@lru_cache(maxsize=1)
def events() -> tuple[dict, ...]:
    ds = generate(seed=31, persons=25)
    ing = Ingestor(IngestSettings("stage-test-salt-0123456"))
    catalog = SchemaCatalog.load()
    out = []
    for i, rec in enumerate(ds.records):
        res = ing.process(SourceRecord(rec.value, rec.topic, 0, i, 1_800_000_000_000))
        if isinstance(res, Accepted):
            out.append(catalog.decode(res.value)[1])
    # two customers sharing a tablet: the later event splits the tablet off the first customer
    template = next(e for e in out if e["event_type"] == "page_view")
    for n, cust in enumerate(["cus_shared_a", "cus_shared_b"]):
        ids = {k: None for k in template["identifiers"]} | {"customer_id": cust, "device_id": "tablet-1"}
        out.append({**template, "event_id": f"shared-{n}", "identifiers": ids})
    return tuple(out)


def cassandra_view(writes) -> dict[str, tuple[int, object]]:
    """What Cassandra would hold after ``(profile_id, version, aggregate or None=delete)``
    writes in any order: per id the highest version; on a tie a delete wins."""
    table: dict[str, tuple[int, object]] = {}
    for pid, version, agg in writes:
        cur = table.get(pid)
        if cur is None or version > cur[0] or (version == cur[0] and agg is None):
            table[pid] = (version, agg)
    return {pid: v for pid, v in table.items() if v[1] is not None}


def oracle(evs) -> dict[str, tuple[int, object]]:
    obs = [observation_of(e) for e in evs]
    res = resolve(obs, RULES)
    by_profile: dict[str, list[dict]] = {}
    for e, ob in zip(evs, obs):
        kept = sorted({n for n in ob.identifiers if not RULES.is_blocked(n[1])}, key=RULES.rank)
        if kept:
            by_profile.setdefault(res.profile_of[kept[0]], []).append(e)
    # versions: events per raw component (plain BFS over all links)
    adj: dict = {}
    for ob in obs:
        ids = [n for n in ob.identifiers if not RULES.is_blocked(n[1])]
        for a in ids:
            adj.setdefault(a, set()).update(x for x in ids if x != a)
    comp_of: dict = {}
    for start in adj:
        if start in comp_of:
            continue
        queue, comp_of[start] = deque([start]), start
        while queue:
            for y in adj[queue.popleft()]:
                if y not in comp_of:
                    comp_of[y] = start
                    queue.append(y)
    events_in: dict = {}
    for ob in obs:
        ids = [n for n in ob.identifiers if not RULES.is_blocked(n[1])]
        if ids:
            events_in[comp_of[ids[0]]] = events_in.get(comp_of[ids[0]], 0) + 1
    out = {}
    for pid, members in res.members.items():
        agg = fold(list(reversed(by_profile.get(pid, []))), pid)
        ids: dict = {}
        for t, v in members:
            ids.setdefault(t, []).append(v)
        agg = agg.__class__(**{**agg.__dict__, "identifiers": {t: tuple(sorted(v)) for t, v in sorted(ids.items())}})
        out[pid] = (events_in[comp_of[next(iter(members))]], agg)
    return out


def assert_same(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for pid, (version, agg) in want.items():
        gv, g = got[pid]
        assert gv == version, pid
        for f in ("identifiers", "first_seen_ms", "last_seen_ms", "events", "orders", "revenue_cents",
                  "first_order_ms", "last_order_ms", "channel_counts", "consent", "crm_attributes"):
            assert getattr(g, f) == getattr(agg, f), (pid, f, getattr(g, f), getattr(agg, f))
        assert set(g.category_affinity) == set(agg.category_affinity)
        for k, v in agg.category_affinity.items():
            assert math.isclose(g.category_affinity[k], v, rel_tol=1e-9), (pid, k)


