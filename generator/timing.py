"""Time units, the synthetic calendar's bounds, and how far apart generated events are.

Every time in the generator is epoch milliseconds (UTC), like ``occurred_at``.

Examples
--------
>>> DAY_MS == 24 * HOUR_MS == 86_400_000
True
>>> from models.events import iso_utc
>>> iso_utc(DEFAULT_BASE_TIME_MS), iso_utc(MIN_VALID_TIMESTAMP_MS), iso_utc(YEAR_2100_MS)
('2026-09-21T14:13:20Z', '2000-01-01T00:00:00Z', '2100-01-01T00:00:00Z')
"""

from __future__ import annotations

from models.config import DEFAULT_MIN_VALID_TIMESTAMP_MS

SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

#: 2026-09-21T14:13:20Z, the default start of the synthetic calendar.
DEFAULT_BASE_TIME_MS = 1_790_000_000_000
#: 2000-01-01T00:00:00Z: ingestion's lower bound on live topics (``JOURNEY_MIN_VALID_TIMESTAMP_MS``,
#: :data:`models.config.DEFAULT_MIN_VALID_TIMESTAMP_MS`), the default for the datasets. History
#: datasets pass the backfill bound instead.
MIN_VALID_TIMESTAMP_MS = DEFAULT_MIN_VALID_TIMESTAMP_MS
#: 2100-01-01T00:00:00Z, used for the far-future invalid timestamp.
YEAR_2100_MS = 4_102_444_800_000

#: Two events of one session are at least this far apart, more than the production jitter.
MIN_STEP_MS = 3 * SECOND_MS
#: Production jitter added to ``occurred_at`` (always below :data:`MIN_STEP_MS`).
MAX_PRODUCE_JITTER_MS = 1_500
#: Sessions of one person are separated by at least this much inactivity.
SESSION_GAP_MS = 2 * HOUR_MS
