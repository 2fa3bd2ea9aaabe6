"""The locate and resolve functions on Flink's mini-cluster (thread mode, state in Flink
ValueStates as records): what they emit equals what the pure stages (models.identity_partitioned)
emit for the same order, feedback records included."""

from __future__ import annotations

import pickle
import random
from collections import Counter, deque
from base64 import b64decode, b64encode

import pytest
from pyflink.common import Types

from models.avro_codec import SchemaCatalog
from models.identity import IdentityRules
from models.identity_partitioned import ComponentHome, EraseDue, EventIn, Feedback, HomeState, Locator, Moved
from models.identity_router import CommandKind
from models.profile import ProfileAggregate
from models.profile_commands import decode_command, decode_message, encode_message, message_header
from operators.identity_partitioned import (
    FEEDBACK_TAG,
    PREPARED_TYPE,
    IdentityKeys,
    LocateIdentity,
    ResolveIdentity,
    home_records,
    identity_fields,
)
from operators.identity_router import ROUTED_TYPE, SOURCE_TYPE
from state.records import AGGREGATE_CODEC
from tests.operator.mini_cluster import thread_mode_env
from tests.profile_oracle import events, kiosk_erasure_events

pytestmark = pytest.mark.operator

FEEDBACK = "moves"
RULES = IdentityRules()


def pure_stages(inputs: list[tuple[str, bytes]], rules: IdentityRules, loop: bool = False):
    """What the pure stages emit for ``inputs`` in order: the routed commands and the feedback
    records of locate and resolve. ``loop``: each feedback record (and, for each erasure request
    a home holds, its ``EraseDue``, as if event time had passed it) joins the end of the input,
    so the run ends with the protocol settled; returns the inputs as read."""
    catalog = SchemaCatalog.load()
    identity_codec = catalog.codec("IdentityEvent")
    entries: dict = {}
    registry: dict = {}
    homes: dict = {}
    queue, seen = deque(inputs), []
    want_routed, want_located_fb, want_resolved_fb = [], [], []
    while queue:
        topic, value = queue.popleft()
        seen.append((topic, value))
        loc = Locator(rules, entries, registry=registry)
        if topic == FEEDBACK:
            located = loc.route_feedback(decode_message(value))
        else:
            event = catalog.decode(value)[1]
            atom = loc.atom_of(event)
            if atom is None:
                continue
            located = loc.route_event(atom, identity_fields(event), value)
        fb = [encode_message(f) for f in located.feedback]
        want_located_fb += fb
        for t in located.to_home:
            home = ComponentHome(rules, t.home, homes.setdefault(t.home, HomeState()))
            msg = t.message
            out = home.on_event(dict(msg.event), msg.payload) if isinstance(msg, EventIn) else home.on_message(msg)
            routed, home_fb = home_records(out, t.home, identity_codec)
            want_routed += [decode_command(r[0]) for r in routed]
            want_resolved_fb += home_fb
            fb += home_fb
            fb += [encode_message(Feedback(t.home, EraseDue(p.request_id))) for p in out.pending]
        if loop:
            queue.extend((FEEDBACK, v) for v in fb)
    return seen, want_routed, want_located_fb, want_resolved_fb


def operators(inputs: list[tuple[str, bytes]], rules: IdentityRules) -> dict[str, list]:
    """What the locate and resolve functions emit for ``inputs`` on Flink (parallelism 1: one
    channel per output, so order is kept)."""
    env = thread_mode_env(parallelism=1)
    located = (
        env.from_collection(
            [(t, b64encode(v).decode()) for t, v in inputs], type_info=Types.TUPLE([Types.STRING(), Types.STRING()])
        )
        .map(lambda r: (r[0], b64decode(r[1])), output_type=SOURCE_TYPE)  # bytes can't be a collection
        .map(IdentityKeys(rules, FEEDBACK), output_type=PREPARED_TYPE)
        .key_by(lambda r: r[0], key_type=Types.STRING())
        .process(LocateIdentity(rules), output_type=PREPARED_TYPE)
    )
    resolved = located.key_by(lambda r: r[0], key_type=Types.STRING()).process(
        ResolveIdentity(rules), output_type=ROUTED_TYPE
    )
    as_text = Types.TUPLE([Types.STRING(), Types.STRING()])
    everything = resolved.map(
        lambda c: ("routed", b64encode(pickle.dumps(tuple(c[0]))).decode()), output_type=as_text
    ).union(
        located.get_side_output(FEEDBACK_TAG).map(
            lambda b: ("located", b64encode(bytes(b)).decode()), output_type=as_text
        ),
        resolved.get_side_output(FEEDBACK_TAG).map(
            lambda b: ("resolved", b64encode(bytes(b)).decode()), output_type=as_text
        ),
    )
    got: dict[str, list] = {"routed": [], "located": [], "resolved": []}
    with everything.execute_and_collect("operator-test-identity") as results:
        for kind, text in results:
            raw = b64decode(text)
            got[kind].append(decode_command(pickle.loads(raw)) if kind == "routed" else raw)
    return got


def test_locate_and_resolve_operators_emit_what_the_pure_stages_emit_for_the_same_order() -> None:
    evs = list(events())
    random.Random(3).shuffle(evs)
    codec = SchemaCatalog.load().codec("NormalizedEvent")
    inputs = [("normalized", codec.encode(e)) for e in evs]
    # an evicted atom coming back to its home, and one for an identifier nobody has
    moved = AGGREGATE_CODEC.encode(ProfileAggregate(profile_id="p-x", events=1, orders=1, revenue_cents=250))
    shared = ("customer_id", "cus_shared_a")
    inputs.append((FEEDBACK, encode_message(Feedback(shared, Moved(CommandKind.STATE, shared, moved)))))
    never = ("cookie_id", "never-seen")
    inputs.append((FEEDBACK, encode_message(Feedback(never, Moved(CommandKind.STATE, never, moved)))))
    _, want_routed, want_located_fb, want_resolved_fb = pure_stages(inputs, RULES)
    assert want_resolved_fb, "claims and merges go to the feedback topic"

    got = operators(inputs, RULES)
    assert got["routed"] == want_routed
    assert got["located"] == want_located_fb
    assert got["resolved"] == want_resolved_fb
    states = [c for c in got["routed"] if c.kind is CommandKind.STATE]
    assert len(states) == 1 and states[0].payload.revenue_cents == 250  # the aggregate's record arrives intact
    assert any(c.kind is CommandKind.ERASURE_PENDING for c in got["routed"]), "the data has an erasure request"


def test_homes_per_linked_component_in_the_operators_emit_what_the_pure_stages_emit() -> None:
    """Kiosks with homes per linked component, and an erasure of a kiosk customer, the
    feedback looped back until the protocol settles: the registry's keys in locate-identity's
    MapStates and records, shared identifiers' entries, findings, tells and the erasure's
    fan-out as the pure stages emit them."""
    rules = IdentityRules(shared_homes=True)
    evs = kiosk_erasure_events()
    random.Random(4).shuffle(evs)
    codec = SchemaCatalog.load().codec("NormalizedEvent")
    inputs, want_routed, want_located_fb, want_resolved_fb = pure_stages(
        [("normalized", codec.encode(e)) for e in evs], rules, loop=True
    )
    kinds = Counter(message_header(v)[1] for t, v in inputs if t == FEEDBACK)
    for kind in ("shared_is", "mark_shared", "counted", "register", "join", "told", "erase_all", "erase_home"):
        assert kinds[kind] > 0, f"the run has no {kind} message: {kinds}"

    got = operators(inputs, rules)
    assert got["routed"] == want_routed
    assert got["located"] == want_located_fb
    assert got["resolved"] == want_resolved_fb
    erased = [c for c in got["routed"] if c.kind is CommandKind.ERASE]
    assert len(erased) > 24, "every kiosk customer's profile is erased"
