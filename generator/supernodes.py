"""Planted supernodes: identifier values several persons use, with their ground truth.

Real identity graphs have identifiers that many people share (issue 16, ``docs/identity.md``,
"Shared identifiers"). With :class:`Supernodes` given to :func:`generator.dataset.generate`,
the run plants three kinds on top of the usual persons:

* **store kiosks** -- a ``device_id`` each of :attr:`Supernodes.kiosk_users` persons logs in on
  once (:func:`kiosk_session`: the kiosk's start screen, a login with their account, a few
  product views); they use their own cookies and devices otherwise. Seen with more customer
  ids than the limit of :data:`models.identity.DEFAULT_SHARED_LIMITS`, a kiosk is *shared*;
* **family tablets** -- a ``device_id`` the 2 to 5 members of a family each log in on with their
  own account (:func:`family_tablet_session`). Below the limit it is not shared: the ambiguity
  rule refuses its links to the members' customer ids;
* **a call-centre agent** -- the agent's ``customer_id`` on the ``crm_update`` each call they
  log leaves, together with the caller's phone (:func:`call_centre_session`). Seen with more
  phone hashes than the limit, it is shared.

Shared-device and tablet events carry only the account and the device (an email on them would
join the members' emails into the device's ambiguous cluster). Who uses what is drawn by
:func:`plant` from a random source of its own (never the run's), among the persons who are
not erased; the visits are sessions of the persons' journeys (:func:`generator.journeys.plan`).
The ground truth (:class:`generator.truth.SupernodeTruth`) names each planted value, its users,
and whether the default sharing limits make it shared; a person's own identifiers
(:class:`generator.truth.PersonTruth`) never include it.

Examples
--------
>>> Supernodes().persons_needed
12
>>> Supernodes(kiosk_users=5)
Traceback (most recent call last):
...
ValueError: kiosk_users must be an int above the shared limit of device_id with customer_id (5), got 5
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from typing import Callable

from generator.actions import emit, identify, views
from generator.context import Generation
from generator.encoding import identifiers
from generator.persons import Person, raw_phone
from generator.truth import SupernodeTruth, shared_by
from models.identity import IdentityRules

#: Reasons a call-centre agent logs a call (``call_reason`` of the CRM update).
CALL_REASONS: tuple[str, ...] = ("order_status", "return", "delivery", "billing", "address_change", "complaint")
#: The shop app's version on store kiosks and on family tablets.
KIOSK_APP_VERSION = "5.0.0-kiosk"


def _limit(type_: str, co_type: str) -> int:
    """The default sharing limit of ``type_`` for ``co_type`` (:class:`models.identity.IdentityRules`)."""
    return dict(IdentityRules().limits_of(type_))[co_type]


@dataclass(frozen=True)
class Supernodes:
    """What :func:`generator.dataset.generate` plants as supernodes (defaults: a bit of each).

    Attributes
    ----------
    kiosks : int
        Store kiosks (>= 0).
    kiosk_users : int
        Persons who log in on each kiosk: above the ``device_id``/``customer_id`` sharing
        limit (5), so each kiosk is shared.
    families : int
        Family tablets (>= 0); their members are distinct persons.
    family_size : int
        Members per family tablet: 2 to the sharing limit (5), so a tablet is ambiguous and
        not shared.
    agent_calls : int
        Callers (distinct persons with a phone) whose calls the one call-centre agent logs: 0
        for no agent, else above the ``customer_id``/``phone_hash`` limit (10).
    """

    kiosks: int = 2
    kiosk_users: int = 8
    families: int = 1
    family_size: int = 3
    agent_calls: int = 12

    def __post_init__(self) -> None:
        for name in ("kiosks", "families", "agent_calls"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be an int >= 0, got {v!r}")
        kiosk_limit = _limit("device_id", "customer_id")
        if self.kiosks and (
            isinstance(self.kiosk_users, bool)
            or not isinstance(self.kiosk_users, int)
            or self.kiosk_users <= kiosk_limit
        ):
            raise ValueError(
                f"kiosk_users must be an int above the shared limit of device_id with customer_id "
                f"({kiosk_limit}), got {self.kiosk_users!r}"
            )
        if self.families and (
            isinstance(self.family_size, bool)
            or not isinstance(self.family_size, int)
            or not 2 <= self.family_size <= kiosk_limit
        ):
            raise ValueError(
                f"family_size must be an int from 2 to the shared limit of device_id with customer_id "
                f"({kiosk_limit}), got {self.family_size!r}"
            )
        agent_limit = _limit("customer_id", "phone_hash")
        if self.agent_calls and self.agent_calls <= agent_limit:
            raise ValueError(
                f"agent_calls must be 0 or above the shared limit of customer_id with phone_hash "
                f"({agent_limit}), got {self.agent_calls!r}"
            )

    @property
    def persons_needed(self) -> int:
        """The fewest persons (not erased) the planting needs: the biggest kiosk, the families'
        members, and the callers (who must also have a phone)."""
        return max(self.kiosk_users if self.kiosks else 0, self.families * self.family_size, self.agent_calls)


def plant(g: Generation, spec: Supernodes, erased: set[int]) -> None:
    """Decide who uses which supernode, once every person is drawn: fills
    ``g.supernode_truth`` and ``g.supernode_visits`` (person index -> ``(kind, value)`` visits,
    each played as a session of their journey).

    Drawn from ``random.Random("supernodes:<seed>")``: the run's random source is not touched
    here. Erased persons are left out. Raises ``ValueError`` when there are too few persons (or
    persons with a phone, for the agent's callers).
    """
    rnd = random.Random(f"supernodes:{g.seed}")
    eligible = [p.index for p in g.persons if p.index not in erased]
    if len(eligible) < spec.persons_needed:
        raise ValueError(
            f"supernodes need {spec.persons_needed} persons who are not erased, there are {len(eligible)}: "
            f"plant fewer or generate more persons"
        )

    def device() -> str:
        return g.unique(lambda: str(uuid.UUID(int=rnd.getrandbits(128), version=4)).upper())

    def add(kind: str, type_: str, value: str, users: list[int], co_type: str) -> None:
        g.supernode_truth.append(
            SupernodeTruth(
                kind=kind,
                type=type_,
                value=value,
                person_ids=tuple(g.persons[i].truth.person_id for i in users),
                co_type=co_type,
                co_values=len(users),
                shared_by=shared_by(type_, co_type, len(users)),
            )
        )
        for i in users:
            g.supernode_visits.setdefault(i, []).append((kind, value))

    for _ in range(spec.kiosks):
        add("kiosk", "device_id", device(), sorted(rnd.sample(eligible, spec.kiosk_users)), "customer_id")
    members = rnd.sample(eligible, spec.families * spec.family_size)
    for f in range(spec.families):
        family = sorted(members[f * spec.family_size : (f + 1) * spec.family_size])
        add("family_tablet", "device_id", device(), family, "customer_id")
    if spec.agent_calls:
        with_phone = [i for i in eligible if g.persons[i].phone_digits is not None]
        if len(with_phone) < spec.agent_calls:
            raise ValueError(
                f"the call-centre agent needs {spec.agent_calls} callers with a phone, there are "
                f"{len(with_phone)}: lower agent_calls or generate more persons"
            )
        agent = g.unique(lambda: f"cus_{rnd.getrandbits(40):010x}")
        add("call_centre_agent", "customer_id", agent, sorted(rnd.sample(with_phone, spec.agent_calls)), "phone_hash")


def shared_device_session(g: Generation, p: Person, t: int, device: str) -> int:
    """A login on a device the person shares (a store kiosk, a family tablet): the app's start
    screen on the device alone, a login with the person's account, and one to three product
    views. Only the account and the device are carried. Returns the time after the last event."""
    emit(
        g,
        p,
        t,
        "app_open",
        "app",
        identifiers(device_id=device),
        {"app_version": KIOSK_APP_VERSION, "os": "ios"},
        device,
    )
    t = g.step(t)
    ids = identifiers(customer_id=p.truth.customer_id, device_id=device)
    identify(g, p, t, "app", "login", ids, device)
    return views(g, p, t, "app", ids, g.rng.randint(1, 3), device=device)


def kiosk_session(g: Generation, p: Person, t: int, kiosk: str) -> int:
    """A visit to a store kiosk (:func:`shared_device_session`)."""
    return shared_device_session(g, p, t, kiosk)


def family_tablet_session(g: Generation, p: Person, t: int, tablet: str) -> int:
    """A family member on the family tablet (:func:`shared_device_session`)."""
    return shared_device_session(g, p, t, tablet)


def call_centre_session(g: Generation, p: Person, t: int, agent: str) -> int:
    """The person calls the call centre: the agent logs the call as a ``crm_update`` carrying
    the agent's own ``customer_id`` (their login) and the caller's phone. Returns ``t``."""
    attributes = {"contact_channel": "phone", "call_reason": g.rng.choice(CALL_REASONS)}
    emit(
        g, p, t, "crm_update", "crm", identifiers(customer_id=agent, phone=raw_phone(g, p)), {"attributes": attributes}
    )
    return t


#: The session of a supernode visit, by :attr:`generator.truth.SupernodeTruth.kind`.
SESSIONS: dict[str, Callable[[Generation, Person, int, str], int]] = {
    "kiosk": kiosk_session,
    "family_tablet": family_tablet_session,
    "call_centre_agent": call_centre_session,
}
