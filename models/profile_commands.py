"""The protocol between the identity router and the profile fold, and the feedback topic's records.

The router sends :class:`~models.identity_router.ProfileCommand` s to the profile operator,
keyed by profile id, as :func:`encode_command` tuples (``COMMAND_TYPE`` in the operators):
``(profile id, kind, version, JSON body, payload bytes, event time)``. The JSON body carries
the atom, the new members, the evicted identifiers, the ghost ids and the incoming identifiers;
the payload is the event's ``NormalizedEvent`` bytes (``event``), the moved atom's aggregate as
a ``journey.state.ProfileAggregate`` state record (``state``) or a moved journey part as a
``journey.state.JourneyState`` record (``journey``). These tuples only travel
between two operators of one job (never into a savepoint: savepoints are aligned).

Atoms that leave a profile go to the feedback topic (``journey.profile-moves``) as
``journey.v1.MovedState`` records (``schemas/moved_state.avsc``), single-object encoded like
every topic of the project, and come back through the router (:func:`decode_moved_state`).
Records that the release before MovedState wrote (JSON) and an upgrade left unread on the
topic are still read.

Examples
--------
>>> from models.identity_router import CommandKind, ProfileCommand
>>> from models.profile import ProfileAggregate
>>> cmd = ProfileCommand(profile_id="p-1", kind=CommandKind.STATE, version=3, atom=("cookie_id", "ck1"),
...                      payload=ProfileAggregate(profile_id="p-1", events=2))
>>> decode_command(encode_command(cmd)) == cmd
True
>>> moved = encode_moved_state(("cookie_id", "ck1"), ProfileAggregate(profile_id="p-1", events=2), "p-1")
>>> atom, aggregate, from_profile = decode_moved_state(moved)
>>> legacy = b'{"atom":["cookie_id","ck1"],"aggregate":{"profile_id":"p-1","events":2},"from":"p-1"}'
>>> decode_moved_state(legacy)[1] == decode_moved_state(moved)[1]
True
>>> (atom, decode_command(encode_command(ProfileCommand(profile_id="p-2", kind=CommandKind.STATE, version=4, atom=atom,
...                                                     payload=aggregate))).payload.events)
(('cookie_id', 'ck1'), 2)
"""

from __future__ import annotations

import functools
import json
from typing import Any

from models.avro_codec import Codec, SchemaCatalog
from models.identity import Node
from models.identity_partitioned import (
    Claim,
    EraseClosure,
    EraseDue,
    EraseHome,
    Feedback,
    MarkShared,
    MergeInto,
    Move,
    Moved,
    SharedIs,
    Tombstoned,
)
from models.identity_registry import Absorb, Counted, EraseAll, Join, Register, Told
from models.identity_router import CommandKind, ProfileCommand
from models.profile import ProfileAggregate


def _aggregate_codec():
    from state.records import AGGREGATE_CODEC  # the state record of an aggregate (state/ imports models/)

    return AGGREGATE_CODEC


def encode_command(cmd: ProfileCommand) -> tuple[str, str, int, str, bytes, int]:
    """The command as a Flink tuple (see the module docs)."""
    body: dict[str, Any] = {}
    if cmd.incoming:
        body["incoming"] = [[n[0], n[1], k] for n, k in cmd.incoming]
    if cmd.atom is not None:
        body["atom"] = cmd.atom
    if cmd.members is not None:
        body["members"] = cmd.members
    if cmd.evict:
        body["evict"] = cmd.evict
    if cmd.ghosts is not None:
        body["ghosts"] = cmd.ghosts
    if cmd.request is not None:
        body["request"] = cmd.request
    if cmd.erased:
        body["erased"] = cmd.erased
    if cmd.home is not None:
        body["home"] = cmd.home
    kind = CommandKind(cmd.kind)
    if kind in (CommandKind.EVENT, CommandKind.JOURNEY, CommandKind.IDENTITY, CommandKind.FEEDBACK):
        payload = bytes(cmd.payload)
    elif kind is CommandKind.STATE:
        payload = (
            _aggregate_codec().encode(cmd.payload) if isinstance(cmd.payload, ProfileAggregate) else bytes(cmd.payload)
        )
    else:
        payload = b""
    return cmd.profile_id, kind.value, cmd.version, json.dumps(body, separators=(",", ":")), payload, cmd.at


def decode_command(t: tuple) -> ProfileCommand:
    """A command from :func:`encode_command`; a ``state`` payload becomes a ProfileAggregate."""
    pid, kind_name, version, body_json, payload, at = t
    kind = CommandKind(kind_name)
    body = json.loads(body_json)

    def nodes(key: str) -> tuple[Node, ...] | None:
        return None if key not in body else tuple((n[0], n[1]) for n in body[key])

    if kind in (CommandKind.EVENT, CommandKind.JOURNEY, CommandKind.IDENTITY, CommandKind.FEEDBACK):
        value: Any = bytes(payload)
    elif kind is CommandKind.STATE:
        value = _aggregate_codec().decode(bytes(payload))
    else:
        value = None
    return ProfileCommand(
        profile_id=pid,
        kind=kind,
        version=version,
        atom=(body["atom"][0], body["atom"][1]) if "atom" in body else None,
        payload=value,
        members=nodes("members"),
        evict=nodes("evict") or (),
        ghosts=tuple(body["ghosts"]) if "ghosts" in body else None,
        incoming=tuple(((n[0], n[1]), n[2]) for n in body.get("incoming", ())),
        at=at,
        request=body.get("request"),
        erased=nodes("erased") or (),
        home=(body["home"][0], body["home"][1]) if "home" in body else None,
    )


@functools.lru_cache(maxsize=1)
def _catalog() -> SchemaCatalog:
    return SchemaCatalog.load()


def _moved_codec() -> Codec:
    return _catalog().codec("MovedState")


def encode_moved_state(atom: Node, aggregate: ProfileAggregate, from_profile: str) -> bytes:
    """A feedback-topic value as releases before the partitioned identity stages wrote it: an
    atom's aggregate leaving ``from_profile`` (kept to test that such records are still read)."""
    return _moved_codec().encode(
        {
            "atom_type": atom[0],
            "atom_value": atom[1],
            "from_profile_id": from_profile,
            "aggregate": _aggregate_codec().encode(aggregate),
        }
    )


def decode_moved_state(value: bytes) -> tuple[Node, bytes, str]:
    """(atom, the aggregate's state record bytes, the profile it left) of a feedback-topic value.

    The aggregate stays encoded: the router only reads the atom and passes the bytes on in a
    ``state`` command.
    """
    value = bytes(value)
    if value[:1] == b"{":  # JSON of the release before MovedState, left on the topic by an upgrade
        d = json.loads(value)
        aggregate = _aggregate_codec().encode(ProfileAggregate.from_dict(d["aggregate"]))
        return (d["atom"][0], d["atom"][1]), aggregate, d["from"]
    return _moved_state_of(_catalog().decode(value, expect="MovedState")[1])


def _moved_state_of(rec: dict[str, Any]) -> tuple[Node, bytes, str]:
    return (rec["atom_type"], rec["atom_value"]), bytes(rec["aggregate"]), rec["from_profile_id"]


def encode_journey_move(node: Node, part: bytes, from_profile: str) -> bytes:
    """A feedback-topic value as earlier releases wrote it: a journey part
    (``journey.state.JourneyState`` record bytes) leaving ``from_profile`` with ``node`` (kept
    to test that such records are still read)."""
    return (
        _catalog()
        .codec("JourneyMove")
        .encode({"node_type": node[0], "node_value": node[1], "from_profile_id": from_profile, "part": part})
    )


def decode_feedback(value: bytes) -> tuple[CommandKind, Node, bytes]:
    """``(kind, identifier, payload)`` of any feedback-topic value: a moved aggregate
    (``state``: :func:`decode_moved_state`) or a moved journey part (``journey``).

    >>> decode_feedback(encode_journey_move(("cookie_id", "ck1"), b"part", "p-1"))
    (<CommandKind.JOURNEY: 'journey'>, ('cookie_id', 'ck1'), b'part')
    >>> decode_feedback(encode_moved_state(("cookie_id", "ck1"), ProfileAggregate(profile_id="p-1"), "p-1"))[0]
    <CommandKind.STATE: 'state'>
    """
    value = bytes(value)
    if value[:1] != b"{":
        name, rec = _catalog().decode(value)
        if name == "JourneyMove":
            return CommandKind.JOURNEY, (rec["node_type"], rec["node_value"]), bytes(rec["part"])
        atom, aggregate, _ = _moved_state_of(rec) if name == "MovedState" else decode_moved_state(value)
    else:
        atom, aggregate, _ = decode_moved_state(value)  # JSON of an older release
    return CommandKind.STATE, atom, aggregate


# ---- partitioned identity (models.identity_partitioned) -------------------------------------


def _component_codec():
    from state.records import IDENTITY_COMPONENT_CODEC

    return IDENTITY_COMPONENT_CODEC


def _pair(rec: dict[str, Any], prefix: str) -> Node | None:
    t, v = rec.get(f"{prefix}_type"), rec.get(f"{prefix}_value")
    return None if t is None or v is None else (t, v)


def _refs(nodes: Any) -> list[dict[str, str]]:
    return [{"type": n[0], "value": n[1]} for n in sorted(nodes)]


def _nodes(refs: list[dict[str, str]]) -> tuple[Node, ...]:
    return tuple((r["type"], r["value"]) for r in refs)


def encode_message(fb: Feedback) -> bytes:
    """A feedback-topic value: a ``journey.v1.IdentityMessage`` (``schemas/identity_message.avsc``).

    >>> fb = Feedback(("customer_id", "c1"), Claim(("cookie_id", "ck1"), ("customer_id", "c1"), "e1", 5))
    >>> decode_message(encode_message(fb)) == fb
    True
    >>> moved = Feedback(("customer_id", "c1"), Moved(CommandKind.STATE, ("cookie_id", "ck1"), b"agg"))
    >>> decode_message(encode_message(moved)) == moved
    True
    >>> kiosk, c1 = ("device_id", "kiosk-1"), ("customer_id", "c1")
    >>> told = Feedback(c1, Told(c1, frozenset({kiosk})))
    >>> decode_message(encode_message(told)) == told
    True
    """
    m = fb.message
    rec: dict[str, Any] = {"address_type": fb.address[0], "address_value": fb.address[1], "payload": b""}
    node = home = None
    if isinstance(m, Claim):
        rec.update(kind="claim", event_id=m.event_id, at=m.at, nodes=_refs(m.seen))
        node, home = m.node, m.home
    elif isinstance(m, MergeInto):
        rec.update(kind="merge_into", event_id=m.event_id, at=m.at)
        home = m.home
    elif isinstance(m, Move):
        rec.update(kind="move", event_id=m.event_id, at=m.at, payload=_component_codec().encode(m.store))
    elif isinstance(m, Moved):
        rec.update(kind=CommandKind(m.kind).value, payload=bytes(m.payload))
        node = m.node
    elif isinstance(m, EraseDue):
        rec.update(kind="erase_due", request_id=m.request_id)
    elif isinstance(m, EraseHome):
        rec.update(kind="erase_home", request_id=m.request_id, event_id=m.event_id, at=m.at)
    elif isinstance(m, EraseClosure):
        rec.update(kind="erase_closure", request_id=m.request_id, event_id=m.event_id, at=m.at)
        node = m.node
    elif isinstance(m, Tombstoned):
        rec.update(kind="tombstoned", request_id=m.request_id, at=m.at, event_id=m.event_id)
        node = m.node
    elif isinstance(m, MarkShared):
        rec.update(kind="mark_shared", co=m.co)
        node, home = m.node, m.home
    elif isinstance(m, SharedIs):
        rec.update(kind="shared_is", co=m.co, event_id=m.event_id, at=m.at, found=m.found)
        node = m.node
    elif isinstance(m, Counted):
        rec.update(kind="counted")
        node = m.node
    elif isinstance(m, Register):
        rec.update(kind="register")
        home = m.home
    elif isinstance(m, Join):
        rec.update(kind="join")
        home = m.other
    elif isinstance(m, Absorb):
        rec.update(kind="absorb", nodes=_refs(m.shared), homes=_refs(m.homes))
        if m.erased is not None:
            rec.update(request_id=m.erased.request_id, event_id=m.erased.event_id, at=m.erased.at)
    elif isinstance(m, EraseAll):
        rec.update(kind="erase_all", request_id=m.request_id, event_id=m.event_id, at=m.at)
    elif isinstance(m, Told):
        rec.update(kind="told", nodes=_refs(m.shared))
        home = m.home
    else:
        raise TypeError(f"not a feedback message: {type(m).__name__}")
    if node is not None:
        rec.update(node_type=node[0], node_value=node[1])
    if home is not None:
        rec.update(home_type=home[0], home_value=home[1])
    return _catalog().codec("IdentityMessage").encode(rec)


#: message kinds of the registry (:mod:`models.identity_registry`), whose keys live at the locate stage
REGISTRY_KINDS = frozenset({"counted", "register", "join", "absorb", "erase_all"})
#: message kinds the locate stage acts on itself (the registry's included: its keys live there);
#: it passes every other one on by its address
LOCATE_KINDS = frozenset({"claim", "erase_closure", "tombstoned", "mark_shared"}) | REGISTRY_KINDS


def message_header(value: bytes) -> tuple[Node, str]:
    """``(address, kind)`` of a feedback-topic value, without decoding its payload (a move's
    component is decoded once, where it is settled).

    >>> message_header(encode_message(Feedback(("customer_id", "c1"), EraseDue("r1"))))
    (('customer_id', 'c1'), 'erase_due')
    """
    value = bytes(value)
    rec = _identity_message(value)
    if rec is None:
        kind, node, _ = decode_feedback(value)
        return node, kind.value
    return (rec["address_type"], rec["address_value"]), rec["kind"]


def _identity_message(value: bytes) -> dict[str, Any] | None:
    """The ``IdentityMessage`` record of a feedback-topic value, decoded once; None for a
    record an earlier release wrote (``MovedState``, ``JourneyMove``, JSON)."""
    if value[:1] == b"{":
        return None
    name, rec = _catalog().decode(value)
    return rec if name == "IdentityMessage" else None


def decode_message(value: bytes) -> Feedback:
    """The :class:`Feedback` of any feedback-topic value: an ``IdentityMessage``, or a
    ``MovedState`` / ``JourneyMove`` (or JSON) an earlier release wrote, addressed to its
    identifier."""
    value = bytes(value)
    rec = _identity_message(value)
    if rec is None:
        legacy_kind, legacy_node, legacy_payload = decode_feedback(value)
        return Feedback(legacy_node, Moved(legacy_kind, legacy_node, legacy_payload))
    address: Node = (rec["address_type"], rec["address_value"])
    kind, node, home = rec["kind"], _pair(rec, "node"), _pair(rec, "home")
    eid, at, rid, payload = rec.get("event_id") or "", rec["at"], rec.get("request_id") or "", bytes(rec["payload"])
    msg: Any
    if kind == "claim":
        assert node is not None and home is not None
        msg = Claim(node, home, eid, at, _nodes(rec["nodes"]))
    elif kind == "merge_into":
        assert home is not None
        msg = MergeInto(home, eid, at)
    elif kind == "move":
        msg = Move(_component_codec().decode(payload), eid, at)
    elif kind in ("state", "journey"):
        assert node is not None
        msg = Moved(CommandKind(kind), node, payload)
    elif kind == "erase_due":
        msg = EraseDue(rid)
    elif kind == "erase_home":
        msg = EraseHome(rid, eid, at)
    elif kind == "erase_closure":
        assert node is not None
        msg = EraseClosure(node, rid, eid, at)
    elif kind == "tombstoned":
        assert node is not None
        msg = Tombstoned(node, rid, at, eid)
    else:
        msg = _sharing_message(rec, kind, node, home)
    return Feedback(address, msg)


def _sharing_message(rec: dict[str, Any], kind: str, node: Node | None, home: Node | None) -> Any:
    """The message of a record of homes per linked component (a finding or the registry's)."""
    if kind in ("register", "join", "told"):
        assert home is not None
        if kind == "register":
            return Register(home)
        return Join(home) if kind == "join" else Told(home, frozenset(_nodes(rec["nodes"])))
    rid, eid, at = rec.get("request_id"), rec.get("event_id") or "", rec["at"]
    if kind == "absorb":
        erased = None if rid is None else EraseAll(rid, eid, at)
        return Absorb(frozenset(_nodes(rec["nodes"])), frozenset(_nodes(rec["homes"])), erased)
    if kind == "erase_all":
        assert rid is not None
        return EraseAll(rid, eid, at)
    assert node is not None
    if kind == "counted":
        return Counted(node)
    if kind == "mark_shared":
        assert home is not None
        return MarkShared(node, rec["co"], home)
    if kind == "shared_is":
        return SharedIs(node, rec["co"], eid, at, rec["found"])
    raise ValueError(f"IdentityMessage of unknown kind {kind!r}")


def encode_moved(kind: CommandKind, node: Node, payload: bytes, home: Node | None) -> bytes:
    """A feedback-topic value for what a profile evicted: an atom's aggregate (``state``, a
    ``journey.state.ProfileAggregate`` record) or a journey part (``journey``), addressed to
    the home that evicted it (the identifier itself for a command without a home)."""
    return encode_message(Feedback(home if home is not None else node, Moved(kind, node, payload)))
