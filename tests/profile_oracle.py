"""Offline oracle for the identity + profile stage: resolve() over all events, then a fold
of each profile's events; and a model of what Cassandra holds after versioned writes."""

from __future__ import annotations

import math
from collections import deque
from functools import lru_cache

from generator.supernodes import Supernodes
from generator.synth import generate
from models.avro_codec import SchemaCatalog
from models.identity import PIECE_EVENT_BITS, SHARED_PIECE_EVENTS, IdentityRules, observation_of, piece_version, resolve
from models.ingest import Accepted, IngestSettings, Ingestor, SourceRecord
from models.profile import fold
from models.erasure import ERASED_TIMESTAMP
from models.profile_fold import FOLDED_BITS, ROW_VERSION_EPOCH, row_version

RULES = IdentityRules()


def normalized(ds) -> list[dict]:
    """The normalized events of a generated data set (the ingestion job's logic, offline)."""
    ing = Ingestor(IngestSettings("stage-test-salt-0123456"))
    catalog = SchemaCatalog.load()
    out = []
    for i, rec in enumerate(ds.records):
        res = ing.process(SourceRecord(rec.value, rec.topic, 0, i, 1_800_000_000_000))
        if isinstance(res, Accepted):
            out.append(catalog.decode(res.value)[1])
    return out


@lru_cache(maxsize=1)
def supernode_events() -> tuple[dict, ...]:
    """The profiles e2e test's data set: generated persons with the generator's planted
    supernodes (two kiosks, a family tablet, a call-centre agent) and an erasure request."""
    return tuple(normalized(generate(seed=515, persons=30, supernodes=Supernodes())))


@lru_cache(maxsize=1)
def events() -> tuple[dict, ...]:
    out = normalized(generate(seed=31, persons=25))
    # two customers sharing a tablet: the later event splits the tablet off the first customer
    template = next(e for e in out if e["event_type"] == "page_view")
    # (and anonymous browsing on the tablet: an atom of its own that must move with the split)
    for n, ids in enumerate(
        [
            {"device_id": "tablet-1"},
            {"customer_id": "cus_shared_a", "device_id": "tablet-1"},
            {"device_id": "tablet-1", "cookie_id": "tablet-cookie"},
            {"customer_id": "cus_shared_b", "device_id": "tablet-1"},
        ]
    ):
        ids = {k: None for k in template["identifiers"]} | ids
        out.append({**template, "event_id": f"shared-{n}", "identifiers": ids})
    # a store kiosk seven customers log in on (more than the default limit of 5 customer ids:
    # a shared identifier that links nothing), each browsing on a cookie of their own, and
    # anonymous use of the kiosk
    kiosk = [{"device_id": "kiosk-1"}]
    for k in range(7):
        kiosk += [
            {"customer_id": f"cus_kiosk_{k}", "device_id": "kiosk-1"},
            {"customer_id": f"cus_kiosk_{k}", "cookie_id": f"kiosk-cookie-{k}"},
        ]
    for n, ids in enumerate(kiosk):
        ids = {k: None for k in template["identifiers"]} | ids
        out.append({**template, "event_id": f"kiosk-{n}", "identifiers": ids})
    return tuple(out)


def kiosk_events(persons: int = 24) -> list[dict]:
    """The oracle's events plus two more kiosks: ``persons`` customers log in on kiosk-2 (each
    browsing on a cookie of their own before and after), eight on kiosk-3, two of them on both
    (one raw component with two shared identifiers), and anonymous use of each kiosk."""
    evs = list(events())
    template = next(e for e in evs if e["event_type"] == "page_view")
    ids_list: list[dict] = [{"device_id": "kiosk-2"}, {"device_id": "kiosk-3"}, {"device_id": "kiosk-2"}]
    for p in range(persons):
        ids_list += [
            {"customer_id": f"cus_k2_{p}", "cookie_id": f"k2-cookie-{p}"},
            {"customer_id": f"cus_k2_{p}", "device_id": "kiosk-2"},
            {"cookie_id": f"k2-cookie-{p}"},
        ]
    for p in range(8):
        ids_list.append({"customer_id": f"cus_k3_{p}", "device_id": "kiosk-3"})
    for p in (3, 5):
        ids_list.append({"customer_id": f"cus_k2_{p}", "device_id": "kiosk-3"})
    out = []
    for n, ids in enumerate(ids_list):
        ids = {k: None for k in template["identifiers"]} | ids
        out.append({**template, "event_id": f"k2-{n}", "occurred_at": template["occurred_at"] + n, "identifiers": ids})
    return evs + out


def kiosk_erasure_events() -> list[dict]:
    """The kiosk events plus a request of one kiosk customer (in the middle of the kiosk's
    use), besides the data set's own request: erasure takes the raw component
    (``docs/privacy.md``), so every kiosk customer goes, whichever home each lives at."""
    evs = kiosk_events()
    template = next(e for e in evs if e["event_type"] == "erasure_request")
    login = next(
        e for e in evs if e["identifiers"].get("customer_id") == "cus_k2_7" and e["identifiers"].get("device_id")
    )
    payload = (template["payload"][0], {**template["payload"][1], "request_id": "req-kiosk"})
    ids = {t: None for t in template["identifiers"]} | {"customer_id": "cus_k2_7"}
    request = {
        **template,
        "event_id": "erase-kiosk",
        "occurred_at": login["occurred_at"] + 1,
        "identifiers": ids,
        "payload": payload,
    }
    return evs + [request]


class CassandraModel:
    """What Cassandra holds after :class:`models.profile_fold.ProfileWrite` s applied in any
    order, with its rules: per cell the highest timestamp wins, a deletion wins a tie. Written independently of ``state.profile_store``."""

    def __init__(self) -> None:
        self.profiles: dict[str, tuple[int, object]] = {}  # pid -> (timestamp, aggregate or None)
        self.links: dict[tuple, tuple[int, str]] = {}  # node -> (timestamp, pid)

    def _put_profile(self, pid: str, ts: int, agg) -> None:
        cur = self.profiles.get(pid)
        if cur is None or ts > cur[0] or (ts == cur[0] and agg is None):
            self.profiles[pid] = (ts, agg)

    def apply(self, w) -> None:
        if w.erasure is not None:  # everything of the person, for good (models.erasure)
            for pid in (w.profile_id, *w.ghosts):
                self._put_profile(pid, ERASED_TIMESTAMP, None)
            for node in w.erasure.nodes:
                self.links[node] = (ERASED_TIMESTAMP, "")
            return
        for ghost in w.ghosts:
            self._put_profile(ghost, 2 * w.ghost_version, None)
        if w.profile is None:
            self._put_profile(w.profile_id, 2 * w.version, None)
            return
        ts = 2 * w.version + 1
        self._put_profile(w.profile_id, ts, w.profile)
        for t, vs in w.profile.identifiers.items():
            for v in vs:
                node = (t, v)
                if node not in self.links or (ts, w.profile_id) > self.links[node]:
                    self.links[node] = (ts, w.profile_id)  # a tie goes to the larger value

    def view(self) -> dict[str, tuple[int, object]]:
        """Live rows: pid -> (version, aggregate)."""
        return {pid: ((ts - 1) // 2, agg) for pid, (ts, agg) in self.profiles.items() if agg is not None}

    def identity_links(self) -> dict[tuple, str]:
        return {node: pid for node, (_, pid) in self.links.items() if pid}


def bfs_components(signatures: list[list], links) -> dict:
    """Each identifier's connected component (named by one of its identifiers) over the links
    of identifiers that ``links`` accepts within each signature; the others stand alone."""
    adj: dict = {}
    for ids in signatures:
        for a in ids:
            adj.setdefault(a, set())
            if links(a):
                adj[a].update(x for x in ids if x != a and links(x))
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
    return comp_of


def oracle(evs) -> dict[str, tuple[int, object]]:
    obs = [observation_of(e) for e in evs]
    res = resolve(obs, RULES)
    by_profile: dict[str, list[dict]] = {}
    for e, ob in zip(evs, obs):
        kept = sorted({n for n in ob.identifiers if not RULES.is_blocked(n[1])}, key=RULES.rank)
        if kept:
            by_profile.setdefault(res.profile_of[kept[0]], []).append(e)
    # versions (models.identity.piece_version): the shared identifiers of the raw component
    # (plain BFS over all links) and the events of the piece (BFS over the links between
    # identifiers that are not shared; an event counts in every piece it has an identifier in)
    shared = set(res.shared)
    kept_of = [[n for n in ob.identifiers if not RULES.is_blocked(n[1])] for ob in obs]
    comp_of = bfs_components(kept_of, lambda n: True)
    piece_of = bfs_components(kept_of, lambda n: n not in shared)
    shared_in: dict = {}
    for n in shared:
        shared_in[comp_of[n]] = shared_in.get(comp_of[n], 0) + 1
    events_in: dict = {}
    for ids in kept_of:
        for p in {piece_of[n] for n in ids}:
            events_in[p] = events_in.get(p, 0) + 1
    out = {}
    for pid, members in res.members.items():
        agg = fold(list(reversed(by_profile.get(pid, []))), pid)
        ids: dict = {}
        for t, v in members:
            ids.setdefault(t, []).append(v)
        agg = agg.__class__(**{**agg.__dict__, "identifiers": {t: tuple(sorted(v)) for t, v in sorted(ids.items())}})
        node = next(iter(members))
        # a shared identifier's own profile: the largest event count, whatever its events
        events = SHARED_PIECE_EVENTS if node in shared else events_in[piece_of[node]]
        version = piece_version(shared_in.get(comp_of[node], 0), events)
        out[pid] = (row_version(version, agg.events), agg)
    return out


def _parts(v: int) -> tuple[int, int, int]:
    """A row version as (shared count, piece events, events folded): what a mismatch is made of."""
    version, folded = (v - ROW_VERSION_EPOCH) >> FOLDED_BITS, (v - ROW_VERSION_EPOCH) & ((1 << FOLDED_BITS) - 1)
    return version >> PIECE_EVENT_BITS, version & ((1 << PIECE_EVENT_BITS) - 1), folded


def assert_same(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for pid, (version, agg) in want.items():
        gv, g = got[pid]
        assert gv == version, (pid, _parts(gv), "want", _parts(version))
        for f in (
            "identifiers",
            "first_seen_ms",
            "last_seen_ms",
            "events",
            "orders",
            "revenue_cents",
            "first_order_ms",
            "last_order_ms",
            "channel_counts",
            "consent",
            "crm_attributes",
            "purchase_day_cents",
        ):
            assert getattr(g, f) == getattr(agg, f), (pid, f, getattr(g, f), getattr(agg, f))
        assert set(g.category_affinity) == set(agg.category_affinity)
        for k, v in agg.category_affinity.items():
            assert math.isclose(g.category_affinity[k], v, rel_tol=1e-9), (pid, k)


def fold_of(folds: dict, pid: str):
    """The :class:`~models.profile_fold.ProfileFold` of ``pid`` in a simulated job's folds
    (``pid -> (atoms, FoldState)``), created empty."""
    from models.profile_fold import FoldState, ProfileFold

    atoms, state = folds.setdefault(pid, ({}, FoldState()))
    return ProfileFold(pid, atoms, state)


def flush_folds(folds: dict, db: CassandraModel, rng, probability: float) -> None:
    """Write each dirty profile with ``probability`` (the coalescing timers of a simulated job);
    a profile merged away leaves nothing behind."""
    for pid, (atoms, state) in list(folds.items()):
        if state.dirty and rng.random() < probability:
            write = fold_of(folds, pid).flush()
            db.apply(write)
            if write.profile is None and not atoms:
                del folds[pid]
