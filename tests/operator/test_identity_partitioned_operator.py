"""The locate and resolve functions on Flink's mini-cluster (thread mode, state in Flink
ValueStates as records): what they emit equals what the pure stages (models.identity_partitioned)
emit for the same order, feedback records included."""

from __future__ import annotations

import pickle
import random
from base64 import b64decode, b64encode

import pytest
from pyflink.common import Types

from models.avro_codec import SchemaCatalog
from models.identity import IdentityRules
from models.identity_partitioned import ComponentHome, EventIn, Feedback, HomeState, Locator, Moved
from models.identity_router import CommandKind
from models.profile import ProfileAggregate
from models.profile_commands import decode_command, decode_message, encode_message
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
from tests.profile_oracle import events

pytestmark = pytest.mark.operator

FEEDBACK = "moves"
RULES = IdentityRules()


def test_locate_and_resolve_operators_emit_what_the_pure_stages_emit_for_the_same_order() -> None:
    evs = list(events())
    random.Random(3).shuffle(evs)
    catalog = SchemaCatalog.load()
    codec = catalog.codec("NormalizedEvent")
    inputs = [("normalized", codec.encode(e)) for e in evs]
    # an evicted atom coming back to its home, and one for an identifier nobody has
    moved = AGGREGATE_CODEC.encode(ProfileAggregate(profile_id="p-x", events=1, orders=1, revenue_cents=250))
    shared = ("customer_id", "cus_shared_a")
    inputs.append((FEEDBACK, encode_message(Feedback(shared, Moved(CommandKind.STATE, shared, moved)))))
    never = ("cookie_id", "never-seen")
    inputs.append((FEEDBACK, encode_message(Feedback(never, Moved(CommandKind.STATE, never, moved)))))

    entries: dict = {}
    homes: dict = {}
    identity_codec = catalog.codec("IdentityEvent")
    want_routed, want_located_fb, want_resolved_fb = [], [], []
    for topic, value in inputs:
        loc = Locator(RULES, entries)
        if topic == FEEDBACK:
            located = loc.route_feedback(decode_message(value))
        else:
            event = catalog.decode(value)[1]
            atom = loc.atom_of(event)
            if atom is None:
                continue
            located = loc.route_event(atom, identity_fields(event), value)
        want_located_fb += [encode_message(fb) for fb in located.feedback]
        for t in located.to_home:
            home = ComponentHome(RULES, t.home, homes.setdefault(t.home, HomeState()))
            msg = t.message
            out = home.on_event(dict(msg.event), msg.payload) if isinstance(msg, EventIn) else home.on_message(msg)
            routed, fb = home_records(out, t.home, identity_codec)
            want_routed += [decode_command(r[0]) for r in routed]
            want_resolved_fb += fb
    assert want_resolved_fb, "claims and merges go to the feedback topic"

    env = thread_mode_env(parallelism=1)  # one channel per output: order is kept
    located = (
        env.from_collection(
            [(t, b64encode(v).decode()) for t, v in inputs], type_info=Types.TUPLE([Types.STRING(), Types.STRING()])
        )
        .map(lambda r: (r[0], b64decode(r[1])), output_type=SOURCE_TYPE)  # bytes can't be a collection
        .map(IdentityKeys(RULES, FEEDBACK), output_type=PREPARED_TYPE)
        .key_by(lambda r: r[0], key_type=Types.STRING())
        .process(LocateIdentity(RULES), output_type=PREPARED_TYPE)
    )
    resolved = located.key_by(lambda r: r[0], key_type=Types.STRING()).process(
        ResolveIdentity(RULES), output_type=ROUTED_TYPE
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

    assert got["routed"] == want_routed
    assert got["located"] == want_located_fb
    assert got["resolved"] == want_resolved_fb
    states = [c for c in got["routed"] if c.kind is CommandKind.STATE]
    assert len(states) == 1 and states[0].payload.revenue_cents == 250  # the aggregate's record arrives intact
    assert any(c.kind is CommandKind.ERASURE_PENDING for c in got["routed"]), "the data has an erasure request"
