"""Topic settings on a real broker (``k8s/topics.py``): a topic created before its timestamp
type was set (Kafka's default ``CreateTime``, with which retention counts from the jobs'
event-time stamps and deletes committed outputs about old events) gets ``LogAppendTime`` when
the topics are ensured, and keeps every other setting it had."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from k8s.topics import TIMESTAMP_KEY, TIMESTAMP_TYPE, TOPIC_CONFIG, align_timestamp_type
from local.polling import wait_until

pytestmark = pytest.mark.e2e


def _config(admin: AdminClient, topic: str) -> dict[str, str]:
    (fut,) = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)]).values()
    return {k: e.value for k, e in fut.result().items()}


def test_a_topic_created_with_create_time_is_set_to_log_append_time_and_keeps_its_other_settings(local_stack) -> None:
    admin = AdminClient({"bootstrap.servers": local_stack})
    old, right = (f"topics-{uuid.uuid4().hex[:8]}.{kind}" for kind in ("old", "right"))
    before = {TIMESTAMP_KEY: "CreateTime", "retention.ms": "12345678"}
    futures = admin.create_topics(
        [NewTopic(old, 1, 1, config=before), NewTopic(right, 1, 1, config={TIMESTAMP_KEY: TIMESTAMP_TYPE})]
    )
    for fut in futures.values():
        fut.result()
    try:
        # a topic just created may not be known to the broker's metadata yet
        for t in (old, right):
            wait_until(lambda: _config(admin, t), 30, 0.2, f"topic {t} described", retry_on=(KafkaException,))
        assert _config(admin, old)[TIMESTAMP_KEY] == "CreateTime"
        # both ask for what the product's topics ask for (journey.sessions: a topic with personal data)
        config = {old: TOPIC_CONFIG["journey.sessions"], right: TOPIC_CONFIG["journey.sessions"]}
        assert align_timestamp_type(admin, [old, right], config=config) == [old]
        after = _config(admin, old)
        assert after[TIMESTAMP_KEY] == TIMESTAMP_TYPE
        assert after["retention.ms"] == "12345678"  # an operator's own setting stays
        assert align_timestamp_type(admin, [old, right], config=config) == []  # nothing left to do
        # a topic the config says nothing about is left alone
        assert align_timestamp_type(admin, [old], config={}) == []
    finally:
        for fut in admin.delete_topics([old, right]).values():
            fut.result()
