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
from typing import Any, Callable, Iterable, Mapping, Sequence

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


def churn_features(
    after: History, sessions: Iterable[tuple[int, int]], close: int, gap_days: float
) -> dict[str, float]:
    """The churn model's input at a session's close: the profile's history including it, how
    many sessions (``(started_at, engagement)``, the ones the journey still holds: three weeks)
    started in each of the last three weeks, the engagement of the last week, and the gap
    before the session (days). Churners thin out before they stop (docs/learning.md).

    >>> h = History()
    >>> h.add({"page_views": 1, "product_views": 1, "dwell_ms": 0, "searches": 0, "cart_adds": 0, "checkouts": 0,
    ...        "purchases": 0, "revenue": 0.0, "channels": ["web"], "engagement": 5}, 10 * DAY_MS)
    >>> x = churn_features(h, [(10 * DAY_MS - 60_000, 5), (2 * DAY_MS, 9)], 10 * DAY_MS, 8.0)
    >>> x["c_week_1"], x["c_week_2"], x["c_week_trend"], x["c_gap_days"]
    (1.0, 1.0, 0.0, 8.0)
    """
    weeks = [0, 0, 0]
    engagement = 0
    starts = []
    for started, eng in sessions:
        age = close - started
        if 0 <= age < 21 * DAY_MS:
            weeks[age // (7 * DAY_MS)] += 1
            starts.append(started)
            if age < 7 * DAY_MS:
                engagement += eng
    starts.sort()
    gaps = [(b - a) / DAY_MS for a, b in zip(starts, starts[1:])]
    earlier = gaps[:-1]
    mean_gap = sum(earlier) / len(earlier) if earlier else gap_days
    n = max(after.sessions, 1)
    return {
        "c_sessions": math.log1p(after.sessions),
        "c_week_1": float(weeks[0]),
        "c_week_2": float(weeks[1]),
        "c_week_3": float(weeks[2]),
        "c_week_trend": float(weeks[0] - weeks[1]),
        "c_engagement_week": math.log1p(engagement),
        "c_gap_days": gap_days,
        "c_gap_ratio": math.log((gap_days + 0.1) / (mean_gap + 0.1)),
        "c_gap_growth": (gaps[-1] - gaps[-2]) if len(gaps) >= 2 else 0.0,
        "c_buy_session_rate": after.buy_sessions / n,
        "c_share_store": after.store_sessions / n,
        "c_share_app": after.app_sessions / n,
    }


@dataclass
class ChurnCheck:
    """A closed session waiting for its churn label (in ``JourneyState.churn``): ``active``
    once the profile has an event in ``(close, close + window]``; decided at
    ``close + window + allowed lateness``, when no event of the window can still arrive."""

    session_id: str
    close: int
    features: dict[str, float]
    active: bool = False


@dataclass(frozen=True)
class Sample:
    """What the learner receives, one of three kinds (:meth:`order`: in this order at one time):

    * a closed session (``at``: its close, in event time);
    * with ``churned`` set, the churn label of one (``at``: when it was decided; ``churn``: the
      features at the close, nothing else);
    * with ``cart_id`` set, a cart abandonment to recommend an action for (``at``: the
      abandonment; ``session_id``: the ``cart_abandoned`` trigger's id).
    """

    profile_id: str
    at: int
    session_id: str
    cluster: dict[str, float] | None  # None: too few sessions for a stable behaviour vector
    propensity: dict[str, float]
    purchased: bool
    churn: dict[str, float] | None = None  # the churn model's input at the close
    churned: bool | None = None  # set: a churn label, not a session
    cart_id: str | None = None  # set: a cart abandonment, not a session
    # consent at ``at`` (docs/privacy.md): learn it (analytics), publish what it gives
    # (a session's score: personalization; a cart action: marketing)
    learn: bool = True
    publish: bool = True
    #: set: the profile was erased (docs/privacy.md): forget these profile ids (``session_id``:
    #: the erasure request); nothing learned, nothing published
    erase: tuple[str, ...] | None = None

    @property
    def is_erasure(self) -> bool:
        return self.erase is not None

    @property
    def is_churn_label(self) -> bool:
        return self.churned is not None

    @property
    def is_abandonment(self) -> bool:
        return self.cart_id is not None

    @property
    def kind(self) -> int:
        """0 a closed session, 1 a churn label, 2 a cart abandonment, 3 an erasure (last at its time)."""
        if self.erase is not None:
            return 3
        return 2 if self.cart_id is not None else int(self.churned is not None)

    def order(self) -> tuple[int, str, str, int]:
        # an erasure after every other sample of its profile and time, whatever their ids
        return self.at, self.profile_id, f"~{self.session_id}" if self.erase is not None else self.session_id, self.kind

    def record(self) -> dict[str, Any]:
        """The ``journey.state.LearningSample`` record."""
        return {
            "profile_id": self.profile_id,
            "at": self.at,
            "session_id": self.session_id,
            "cluster": None if self.cluster is None else dict(self.cluster),
            "propensity": dict(self.propensity),
            "purchased": self.purchased,
            "churn": None if self.churn is None else dict(self.churn),
            "churned": self.churned,
            "cart_id": self.cart_id,
            "learn": self.learn,
            "publish": self.publish,
            "erase": None if self.erase is None else list(self.erase),
        }

    @staticmethod
    def of(r: Mapping[str, Any]) -> Sample:
        churn = r.get("churn")
        return Sample(
            r["profile_id"],
            r["at"],
            r["session_id"],
            r["cluster"],
            dict(r["propensity"]),
            r["purchased"],
            None if churn is None else dict(churn),
            r.get("churned"),
            r.get("cart_id"),
            r.get("learn", True),
            r.get("publish", True),
            None if r.get("erase") is None else tuple(r["erase"]),
        )

    @staticmethod
    def churn_label(profile_id: str, at: int, check: ChurnCheck, learn: bool = True) -> Sample:
        """The label of ``check``, decided at ``at``: churned unless the profile was active."""
        return Sample(
            profile_id, at, check.session_id, None, {}, False, dict(check.features), not check.active, learn=learn
        )

    @staticmethod
    def abandonment(profile_id: str, at: int, trigger_id: str, cart_id: str, publish: bool = True) -> Sample:
        """The cart ``cart_id`` of the profile was abandoned at ``at`` (trigger ``trigger_id``)."""
        return Sample(profile_id, at, trigger_id, None, {}, False, cart_id=cart_id, publish=publish)

    @staticmethod
    def erasure(profile_id: str, at: int, request_id: str, ids: tuple[str, ...], part: int = 0) -> Sample:
        """The profile was erased at ``at``: the learner forgets ``ids`` (docs/privacy.md);
        ``propensity`` holds only ``part``, the profile's place in the erased component (audit)."""
        return Sample(
            profile_id, at, request_id, None, {"part": float(part)}, False, learn=False, publish=False, erase=ids
        )

    def key(self) -> str:
        """Its key in the learner's buffer: sorts as :meth:`order` (time as 20 digits)."""
        at, pid, sid, kind = self.order()
        return f"{at:020d}|{pid}|{sid}|{kind}"


@dataclass(frozen=True)
class LearnerSettings:
    n_clusters: int = 5
    halflife: float = 0.1
    seed: int = 42
    min_sessions: int = MIN_SESSIONS_TO_CLUSTER
    auc_window: int = 1000
    drift_threshold: float = 50.0
    recent_window: int = 500  # cluster vectors kept for a re-cluster after drift
    #: an abandoned cart of a person whose purchase propensity is at least this gets a reminder, not an offer
    reminder_propensity: float = 0.5


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
    churn_risk: float | None = None  # the churn model's prediction at the close (None: no churn input)


def samples_of_sessions(
    closes: Iterable[tuple[int, str, Mapping[str, Any]]],
    min_sessions: int = MIN_SESSIONS_TO_CLUSTER,
    activity: Mapping[str, Sequence[int]] | None = None,
    sessions: Mapping[str, Sequence[tuple[int, int]]] | None = None,
    end: int | None = None,
    churn_window_ms: int = 7 * DAY_MS,
    lateness_ms: int = 0,
    abandonments: Iterable[tuple[int, str, str, str, bool]] = (),
    consent: Callable[[str, str, int], bool] | None = None,
) -> list[Sample]:
    """Samples from ``(close time, profile id, session summary)`` triples, as the journeys stage
    builds them (each profile's history before and after each close), in the learner's order.

    With ``activity`` (each profile's event times), ``sessions`` (each profile's ``(started_at,
    engagement)``) and ``end`` (how far event time got), also the churn features at each close
    and the churn labels decided by ``end``: churned when no event falls in ``(close, close +
    window]``, decided at ``close + window + lateness``. ``abandonments``: ``(at, profile id,
    trigger id, cart id, published)`` of each ``cart_abandoned``. ``consent(profile, purpose,
    at)``: the profile's consent (none: everything consented)."""

    def ok(pid: str, purpose: str, at: int) -> bool:
        return True if consent is None else consent(pid, purpose, at)

    histories: dict[str, History] = {}
    out = []
    for close, pid, s in sorted(closes, key=lambda c: (c[0], c[1], c[2]["session_id"])):
        h = histories.setdefault(pid, History())
        x = propensity_features(h, s, s["started_at"])
        h.add(s, close)
        vec = h.cluster_features() if h.sessions >= min_sessions else None
        churn = None
        if activity is not None and sessions is not None and end is not None:
            churn = churn_features(h, [t for t in sessions.get(pid, ()) if t[0] <= close], close, x["h_days_since"])
            decided = close + churn_window_ms + lateness_ms
            if decided <= end:
                active = any(close < t <= close + churn_window_ms for t in activity.get(pid, ()))
                learn = ok(pid, "analytics", decided)
                out.append(Sample(pid, decided, s["session_id"], None, {}, False, churn, not active, learn=learn))
        out.append(
            Sample(
                pid,
                close,
                s["session_id"],
                vec,
                x,
                s["purchases"] > 0,
                churn,
                learn=ok(pid, "analytics", close),
                publish=ok(pid, "personalization", close),
            )
        )
    out += [Sample.abandonment(pid, at, tid, cart, published) for at, pid, tid, cart, published in abandonments]
    return sorted(out, key=Sample.order)
