"""State descriptors with their TTLs. Created inside operators' ``open()``, never at import."""

from __future__ import annotations

from pyflink.common import Duration, Time, Types
from pyflink.datastream.state import StateTtlConfig, ValueStateDescriptor

DEDUPE_STATE = "seen"


def dedupe_seen(ttl_ms: int) -> ValueStateDescriptor:
    """One boolean per event_id: "already emitted". Expires ``ttl_ms`` after the first sighting.

    TTL runs on processing time and is written once (OnCreateAndWrite), so a duplicate that
    arrives within the TTL is dropped and the key disappears afterwards: no state is left
    behind for event ids that stopped arriving. Expired keys are removed by the RocksDB
    compaction filter (RocksDB), incrementally on access (heap) and from full snapshots.

    The cleanup strategies are all given explicitly, background defaults off, and the
    compaction filter with a placeholder periodic compaction time: PyFlink's default builds a ``Duration`` through the py4j gateway, which does not
    exist inside a TaskManager in thread mode (the job fails in ``open()``). The Java side
    only reads ``query_time_after_num_entries`` and keeps its own periodic default (30 days).
    """
    ttl = (
        StateTtlConfig.new_builder(Time.milliseconds(ttl_ms))
        .set_update_type(StateTtlConfig.UpdateType.OnCreateAndWrite)
        .set_state_visibility(StateTtlConfig.StateVisibility.NeverReturnExpired)
        .disable_cleanup_in_background()  # so no default strategy is built (see above)
        .cleanup_full_snapshot()
        .cleanup_incrementally(10, False)
        .cleanup_in_rocksdb_compact_filter(1000, Duration(None))
        .build()
    )
    desc = ValueStateDescriptor(DEDUPE_STATE, Types.BOOLEAN())
    desc.enable_time_to_live(ttl)
    return desc
