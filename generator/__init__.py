"""Seeded synthetic customer-journey data with ground truth, and a Kafka producer for it.

:func:`generator.dataset.generate` (re-exported by :mod:`generator.synth`) builds a
:class:`generator.dataset.Dataset` (records in production order plus a
:class:`generator.truth.GroundTruth`) from a seed, without any I/O;
:func:`generator.produce.produce` sends a dataset to Kafka. ``python -m generator`` does both.
:func:`generator.journey_truth.journey_truth` is the journeys stage's independent offline oracle
(``docs/journeys.md``).

Nothing is imported eagerly here, so ``import generator`` has no side effects and does not
need confluent-kafka.
"""

from __future__ import annotations

__all__ = [
    "synth",
    "produce",
    "dataset",
    "truth",
    "journey_truth",
    "records",
    "persons",
    "supernodes",
    "kiosk",
    "journeys",
    "sessions",
    "carts",
    "actions",
    "faults",
    "bad_records",
    "encoding",
    "context",
    "catalog",
    "timing",
]
