"""The identity router function on Flink's mini-cluster (thread mode, graph in MapState): the
commands and identity events it emits equal those of the pure router for the same order."""

from __future__ import annotations

import pickle
import random
from base64 import b64decode, b64encode

import pytest
from pyflink.common import Types

from models.avro_codec import SchemaCatalog
from models.identity import IdentityRules
from models.identity_router import CommandKind, IdentityRouter
from models.profile import ProfileAggregate
from models.profile_commands import decode_command, decode_moved_state, encode_command, encode_moved_state
from operators.identity_router import IDENTITY_KEY, IDENTITY_TAG, ROUTED_TYPE, SOURCE_TYPE, RouteIdentity
from tests.operator.mini_cluster import thread_mode_env
from tests.profile_oracle import events

pytestmark = pytest.mark.operator

FEEDBACK = "moves"


def test_router_operator_emits_what_the_pure_router_emits_for_the_same_order() -> None:
    evs = list(events())
    random.Random(3).shuffle(evs)
    catalog = SchemaCatalog.load()
    codec = catalog.codec("NormalizedEvent")
    inputs = [("normalized", codec.encode(e)) for e in evs]
    # an evicted atom coming back on the feedback topic, and one the graph never saw
    moved = ProfileAggregate(profile_id="p-x", events=1, orders=1, revenue_cents=250)
    inputs.append((FEEDBACK, encode_moved_state(("customer_id", "cus_shared_a"), moved, "p-x")))
    inputs.append((FEEDBACK, encode_moved_state(("cookie_id", "never-seen"), moved, "p-y")))

    router = IdentityRouter(IdentityRules())
    want_commands, want_identity = [], []

    def emit(routed) -> None:
        want_commands.extend(decode_command(encode_command(c)) for c in routed.commands)
        want_identity.extend(ie.to_record() for ie in routed.identity_events)

    def due(watermark: int) -> None:  # the erasures due under the watermark (bound 0: newest - 1)
        nxt = router.next_erasure()
        if nxt is not None and nxt <= watermark:
            emit(router.due_erasures(watermark))

    newest = -1
    for topic, value in inputs:
        if topic == FEEDBACK:
            atom, aggregate, _ = decode_moved_state(value)
            cmd = router.route_state(atom, aggregate)
            want_commands += [decode_command(encode_command(cmd))] if cmd else []
        else:
            event = catalog.decode(value)[1]
            if event["occurred_at"] > newest:  # before the event that moves the watermark
                newest = event["occurred_at"]
                due(newest - 1)
            routed = router.route_event(event, payload=value)
            emit(routed)
            if routed.requested:
                due(newest - 1)
    assert any(c.kind is CommandKind.ERASE for c in want_commands), "the data has an erasure carried out"

    env = thread_mode_env(parallelism=1)  # one channel per output: order is kept
    commands = (
        env.from_collection(
            [(t, b64encode(v).decode()) for t, v in inputs], type_info=Types.TUPLE([Types.STRING(), Types.STRING()])
        )
        .map(lambda r: (r[0], b64decode(r[1])), output_type=SOURCE_TYPE)  # bytes can't be a collection
        .key_by(lambda _: IDENTITY_KEY, key_type=Types.STRING())
        .process(RouteIdentity(IdentityRules(), FEEDBACK), output_type=ROUTED_TYPE)
    )
    as_text = Types.TUPLE([Types.STRING(), Types.STRING()])
    both = commands.map(
        lambda c: ("command", b64encode(pickle.dumps(tuple(c[0]))).decode()), output_type=as_text
    ).union(
        commands.get_side_output(IDENTITY_TAG).map(
            lambda b: ("identity", b64encode(bytes(b)).decode()), output_type=as_text
        )
    )
    got_commands, got_identity = [], []
    with both.execute_and_collect("operator-test-router") as results:
        for kind, text in results:
            if kind == "command":
                got_commands.append(decode_command(pickle.loads(b64decode(text))))
            else:
                got_identity.append(catalog.decode(b64decode(text))[1])

    assert got_commands == want_commands
    assert got_identity == want_identity
    assert len(want_commands) > len(evs)  # touches and evictions besides one command per event
    states = [c for c in got_commands if c.kind is CommandKind.STATE]
    assert states and any(c.evict for c in got_commands)
    assert all(c.payload == moved for c in states)  # the aggregate's state record arrives intact
