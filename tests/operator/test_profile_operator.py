"""The identity + profile function on Flink's mini-cluster (thread mode, state in MapState),
fed shuffled normalized events; the result equals the offline oracle."""

from __future__ import annotations

import json
import random
from base64 import b64decode, b64encode

import pytest
from pyflink.common import Types

from tests.operator.mini_cluster import thread_mode_env
from models.avro_codec import SchemaCatalog
from models.identity import IdentityRules
from models.profile import ProfileAggregate
from operators.profiles import IDENTITY_KEY, PROFILE_ROW_TYPE, ResolveAndAggregate
from tests.profile_oracle import assert_same, cassandra_view, events, oracle

pytestmark = pytest.mark.operator


def test_profiles_from_the_operator_equal_the_offline_oracle() -> None:
    evs = list(events())
    random.Random(7).shuffle(evs)
    codec = SchemaCatalog.load().codec("NormalizedEvent")
    values = [codec.encode(e) for e in evs]
    env = thread_mode_env(parallelism=2)
    rows = (env.from_collection([b64encode(v).decode() for v in values], type_info=Types.STRING())
            .map(b64decode, output_type=Types.PRIMITIVE_ARRAY(Types.BYTE()))  # bytes can't be a collection
            .key_by(lambda _: IDENTITY_KEY, key_type=Types.STRING())
            .process(ResolveAndAggregate(IdentityRules()), output_type=PROFILE_ROW_TYPE)
            .set_parallelism(1))
    with rows.execute_and_collect("operator-test-profiles") as results:
        writes = [(pid, version, None if deleted else ProfileAggregate.from_dict(json.loads(agg)))
                  for pid, agg, version, deleted in results]
    assert_same(cassandra_view(writes), oracle(evs))
