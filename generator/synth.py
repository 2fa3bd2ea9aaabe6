"""Seeded synthetic customer journeys, with injected faults and the ground truth to check them.

:func:`generate` plants persons with several identifiers each (customer id, messy email and
phone, one or two devices and cookies, sometimes a loyalty card) and a behavioural type, plays
their journeys across the five channels (anonymous web browsing, logins, carts, purchases,
app and push, email campaigns, CRM updates, store visits, consent and erasure), and encodes
every event as a single-object-encoded ``journey.v1.Event``. It then injects the faults an
ingestion pipeline must survive:

* **duplicates** -- exact byte copies of valid events, produced again seconds to two hours
  after the original (same ``event_id``);
* **out-of-order** -- two adjacent events of one person's session swapped in production order;
* **late** -- events produced after events (of any person) that occurred 2 to 8 hours later;
* **bad records** -- one kind per dead-letter error type (``models.ingest.DEAD_LETTER_REASONS``),
  each with the error the ingestion stage must report.

A dataset targets one lower bound of ``occurred_at`` (``min_valid_timestamp_ms``, by default
ingestion's live bound 2000-01-01): its valid events occur after it and its ``invalid_timestamp``
records are impossible under it. History datasets (a ``base_time_ms`` in 2010 or the 1990s) pass
the bound of the backfill topics they are meant for (``JOURNEY_BACKFILL_MIN_VALID_TIMESTAMP_MS``,
docs/operations.md).

Everything is drawn from one ``random.Random(seed)``: the same arguments give the same bytes on
every run and every machine. Nothing is checked against the ingestion code here; the unit tests
run every record through :class:`models.ingest.Ingestor` independently.

The generator's modules, one concept each (this module re-exports their public names, so
``from generator.synth import generate, Dataset, ...`` keeps working):

* :mod:`generator.dataset` -- :func:`generate` (the entry point) and :class:`Dataset`;
* :mod:`generator.truth` -- :class:`GroundTruth` and the truth of persons, carts, bad
  records, duplicates and late events (summary, ``truth.json``);
* :mod:`generator.records` -- :class:`GeneratedRecord` and the topic of each channel;
* :mod:`generator.persons` -- planted persons and the raw spellings of their identifiers;
* :mod:`generator.journeys`, :mod:`generator.sessions`, :mod:`generator.carts`,
  :mod:`generator.actions` -- journeys, the sessions they are made of, carts, and the
  events of a session;
* :mod:`generator.supernodes` -- planted identifiers several persons use (store kiosks,
  family tablets, a call-centre agent; ``generate(..., supernodes=Supernodes())``), and
  :mod:`generator.kiosk` -- :func:`kiosk_population`, one big shared kiosk for benchmarks;
* :mod:`generator.faults` and :mod:`generator.bad_records` -- production order with
  reordering, lateness and duplicates, and the bad records of each error type;
* :mod:`generator.encoding` -- events as ``journey.v1.Event`` records;
* :mod:`generator.context` (one run's state and random source), :mod:`generator.catalog`
  (products and vocabularies), :mod:`generator.timing` (time units and bounds).

Examples
--------
>>> ds = generate(seed=3, persons=5)
>>> ds.records == generate(seed=3, persons=5).records
True
>>> s = ds.summary()
>>> s["records"] == s["valid"] + s["duplicate"] + s["bad"] == len(ds.records)
True
>>> sorted({r.kind for r in ds.records})
['bad', 'duplicate', 'valid']
"""

from __future__ import annotations

from generator.bad_records import invalid_timestamps
from generator.catalog import CURRENCY
from generator.dataset import Dataset, generate
from generator.encoding import NAMESPACE
from generator.faults import MAX_DUP_DELAY_MS, MAX_LATENESS_MS, MAX_REORDER_GAP_MS, MIN_DUP_DELAY_MS, MIN_LATENESS_MS
from generator.kiosk import kiosk_population
from generator.records import RECORD_KINDS, GeneratedRecord, RecordKind, topic_of
from generator.supernodes import Supernodes
from generator.timing import (
    DAY_MS,
    DEFAULT_BASE_TIME_MS,
    HOUR_MS,
    MAX_PRODUCE_JITTER_MS,
    MIN_STEP_MS,
    MIN_VALID_TIMESTAMP_MS,
    MINUTE_MS,
    SECOND_MS,
    SESSION_GAP_MS,
    YEAR_2100_MS,
)
from generator.truth import (
    BEHAVIOURS,
    TRUTH_FORMAT_VERSION,
    BadRecordTruth,
    CartTruth,
    DuplicateTruth,
    GroundTruth,
    LateEventTruth,
    PersonTruth,
    SupernodeTruth,
)

__all__ = [
    "generate",
    "Dataset",
    "Supernodes",
    "SupernodeTruth",
    "kiosk_population",
    "GeneratedRecord",
    "RecordKind",
    "RECORD_KINDS",
    "topic_of",
    "invalid_timestamps",
    "GroundTruth",
    "PersonTruth",
    "CartTruth",
    "BadRecordTruth",
    "DuplicateTruth",
    "LateEventTruth",
    "BEHAVIOURS",
    "TRUTH_FORMAT_VERSION",
    "NAMESPACE",
    "CURRENCY",
    "SECOND_MS",
    "MINUTE_MS",
    "HOUR_MS",
    "DAY_MS",
    "DEFAULT_BASE_TIME_MS",
    "MIN_VALID_TIMESTAMP_MS",
    "YEAR_2100_MS",
    "MIN_STEP_MS",
    "MAX_PRODUCE_JITTER_MS",
    "SESSION_GAP_MS",
    "MIN_LATENESS_MS",
    "MAX_LATENESS_MS",
    "MAX_REORDER_GAP_MS",
    "MIN_DUP_DELAY_MS",
    "MAX_DUP_DELAY_MS",
]
