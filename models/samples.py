"""What the journeys stage hands the online models: one sample per closed session
(``docs/learning.md``). No River import here: every Python operator imports this module (the
journeys state holds the history), and River (scipy, pandas) is imported by the learner alone.

In the order a sample is built:

* :class:`History` — what a profile's journey keeps about its closed sessions, and the two
  feature vectors built from it: :meth:`History.cluster_features` (six behaviour ratios) and
  :func:`propensity_features` (the history before a session plus the session's own
  non-purchase counts: no label leaks in);
* :class:`Sample` — one closed session as the learner receives it;
* the learner itself is :class:`models.learning.Learner`.

Examples
--------
>>> h = History()
>>> s = {"page_views": 2, "product_views": 4, "dwell_ms": 80_000, "searches": 1, "cart_adds": 1,
...      "checkouts": 0, "purchases": 0, "revenue": 0.0, "channels": ["web"], "engagement": 20,
...      "first_referrer": None, "first_campaign": None}
>>> x = propensity_features(h, s)
>>> x["s_cart_adds"], x["h_sessions"], "s_purchases" in x
(1.0, 0.0, False)
>>> h.add(s, 1_000)
>>> h.cluster_features()["dwell_s_per_view"]
20.0
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

DAY_MS = 86_400_000
#: a profile joins the clusters from its third closed session (its first looks like everyone's)
MIN_SESSIONS_TO_CLUSTER = 3
CLUSTER_FEATURES = (
    "buy_session_rate",
    "checkout_no_buy_per_session",
    "dwell_s_per_view",
    "searches_per_view",
    "share_app",
    "share_store",
)


@dataclass
class History:
    """A profile's closed sessions, summed (updated at each close)."""

    sessions: int = 0
    buy_sessions: int = 0
    purchases: int = 0
    revenue_cents: int = 0
    engagement: int = 0
    product_views: int = 0
    dwell_ms: int = 0
    searches: int = 0
    checkout_no_buy: int = 0
    store_sessions: int = 0
    app_sessions: int = 0
    last_close: int | None = None

    def add(self, s: Mapping[str, Any], close: int) -> None:
        """A session closed at ``close`` (its summary, ``docs/journeys.md``)."""
        channels = set(s["channels"])
        self.sessions += 1
        self.buy_sessions += s["purchases"] > 0
        self.purchases += s["purchases"]
        self.revenue_cents += round(float(s["revenue"]) * 100)
        self.engagement += s["engagement"]
        self.product_views += s["product_views"]
        self.dwell_ms += s["dwell_ms"]
        self.searches += s["searches"]
        online_buys = s["purchases"] if channels & {"web", "app"} else 0
        self.checkout_no_buy += max(s["checkouts"] - online_buys, 0)
        self.store_sessions += "pos" in channels
        self.app_sessions += "app" in channels
        self.last_close = close if self.last_close is None else max(self.last_close, close)

    def merge(self, other: History) -> None:
        """Add the history of a profile merged into this one."""
        for f in dataclasses.fields(self):
            if f.name != "last_close":  # every other field is a sum
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        if other.last_close is not None:
            self.last_close = other.last_close if self.last_close is None else max(self.last_close, other.last_close)

    def cluster_features(self) -> dict[str, float]:
        """The six behaviour ratios the clusters are learned on."""
        n, views = max(self.sessions, 1), max(self.product_views, 1)
        return {
            "buy_session_rate": self.buy_sessions / n,
            "checkout_no_buy_per_session": self.checkout_no_buy / n,
            "dwell_s_per_view": self.dwell_ms / views / 1000,
            "searches_per_view": self.searches / views,
            "share_app": self.app_sessions / n,
            "share_store": self.store_sessions / n,
        }


def propensity_features(before: History, s: Mapping[str, Any], started_at: int | None = None) -> dict[str, float]:
    """The purchase model's input for session ``s``: the profile's history before it and the
    session's own counts, never its purchases, revenue, engagement or checkouts (a checkout is
    most of a purchase)."""
    n = max(before.sessions, 1)
    channels = set(s["channels"])
    referrer = (s.get("first_referrer") or "").lower()
    gap_days = 0.0
    if before.last_close is not None and started_at is not None:
        gap_days = max(started_at - before.last_close, 0) / DAY_MS
    return {
        "h_first_session": float(before.sessions == 0),
        "h_sessions": math.log1p(before.sessions),
        "h_purchases": math.log1p(before.purchases),
        "h_revenue": math.log1p(before.revenue_cents / 100),
        "h_buy_session_rate": before.buy_sessions / n,
        "h_engagement": before.engagement / n,
        "h_checkout_no_buy": before.checkout_no_buy / n,
        "h_share_store": before.store_sessions / n,
        "h_share_app": before.app_sessions / n,
        "h_days_since": gap_days,
        "s_page_views": float(s["page_views"]),
        "s_product_views": float(s["product_views"]),
        "s_dwell_s": s["dwell_ms"] / 1000,
        "s_searches": float(s["searches"]),
        "s_cart_adds": float(s["cart_adds"]),
        "s_web": float("web" in channels),
        "s_app": float("app" in channels),
        "s_store": float("pos" in channels),
        "s_from_message": float("mail" in referrer or bool(s.get("first_campaign"))),
    }


@dataclass(frozen=True)
class Sample:
    """One closed session as the learner receives it (``at``: the close, in event time)."""

    profile_id: str
    at: int
    session_id: str
    cluster: dict[str, float] | None  # None: too few sessions for a stable behaviour vector
    propensity: dict[str, float]
    purchased: bool

    def order(self) -> tuple[int, str, str]:
        return self.at, self.profile_id, self.session_id

    def record(self) -> dict[str, Any]:
        """The ``journey.state.LearningSample`` record."""
        return {
            "profile_id": self.profile_id,
            "at": self.at,
            "session_id": self.session_id,
            "cluster": None if self.cluster is None else dict(self.cluster),
            "propensity": dict(self.propensity),
            "purchased": self.purchased,
        }

    @staticmethod
    def of(r: Mapping[str, Any]) -> Sample:
        return Sample(r["profile_id"], r["at"], r["session_id"], r["cluster"], dict(r["propensity"]), r["purchased"])

    def key(self) -> str:
        """Its key in the learner's buffer: sorts as :meth:`order` (time as 20 digits)."""
        return f"{self.at:020d}|{self.profile_id}|{self.session_id}"


@dataclass(frozen=True)
class LearnerSettings:
    n_clusters: int = 5
    halflife: float = 0.1
    seed: int = 42
    min_sessions: int = MIN_SESSIONS_TO_CLUSTER
    auc_window: int = 1000
    drift_threshold: float = 50.0
    recent_window: int = 500  # cluster vectors kept for a re-cluster after drift


@dataclass(frozen=True)
class Scored:
    """What the learner says about one sample."""

    profile_id: str
    at: int
    session_id: str
    cluster: int | None
    propensity: float  # predicted before learning the sample's label
    model_version: int
    drift: bool


def samples_of_sessions(
    closes: Iterable[tuple[int, str, Mapping[str, Any]]], min_sessions: int = MIN_SESSIONS_TO_CLUSTER
) -> list[Sample]:
    """Samples from ``(close time, profile id, session summary)`` triples, as the journeys stage
    builds them (each profile's history before and after each close), in the learner's order."""
    histories: dict[str, History] = {}
    out = []
    for close, pid, s in sorted(closes, key=lambda c: (c[0], c[1], c[2]["session_id"])):
        h = histories.setdefault(pid, History())
        x = propensity_features(h, s, s["started_at"])
        h.add(s, close)
        vec = h.cluster_features() if h.sessions >= min_sessions else None
        out.append(Sample(pid, close, s["session_id"], vec, x, s["purchases"] > 0))
    return out
