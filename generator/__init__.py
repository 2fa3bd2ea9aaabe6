"""Seeded synthetic customer-journey data with ground truth, and a Kafka producer for it.

:func:`generator.synth.generate` builds a :class:`generator.synth.Dataset` (records in
production order plus a :class:`generator.synth.GroundTruth`) from a seed, without any I/O;
:func:`generator.produce.produce` sends a dataset to Kafka. ``python -m generator`` does both.

Nothing is imported eagerly here, so ``import generator`` has no side effects and does not
need confluent-kafka.
"""

from __future__ import annotations

__all__ = ["synth", "produce"]
