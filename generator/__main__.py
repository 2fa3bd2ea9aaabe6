"""Command line: generate a dataset, write its ground truth, and produce it to Kafka.

Usage::

    python -m generator --persons 200 --seed 7 --out .stack/gen \\
        [--bootstrap 127.0.0.1:9092] [--rate 5000] [--no-produce] [--no-progress]

A history dataset for a backfill (docs/operations.md, "History backfill"): a calendar from
2010-12-01 over a year, for backfill topics bounded at 1990-01-01, all sent to one topic::

    python -m generator --persons 200 --seed 7 --out .stack/backfill \\
        --base-time-ms 1291161600000 --days 365 --min-valid-timestamp-ms 631152000000 \\
        --topic journey.events.backfill

With planted supernodes (``docs/identity.md``, "Shared identifiers"): two store kiosks of 8
users, a family tablet of 3 and a call-centre agent logging 12 callers' phones by default, each
count configurable; the truth lists them under ``supernodes``::

    python -m generator --persons 200 --seed 7 --out .stack/gen --supernodes --kiosks 4 --kiosk-users 20

Writes ``<out>/truth.json`` (see :meth:`generator.truth.GroundTruth.to_json`) before producing,
so the truth exists even if producing fails. Exit status 0 on success, 1 if producing failed,
2 for bad arguments.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any, Sequence

from generator.dataset import DEFAULT_BAD_RATIO, DEFAULT_DAYS, DEFAULT_DUP_RATIO, DEFAULT_LATE_RATIO, generate
from generator.supernodes import Supernodes
from generator.timing import DEFAULT_BASE_TIME_MS, MIN_VALID_TIMESTAMP_MS
from models.config import DEFAULT_BOOTSTRAP_SERVERS
from models.events import iso_utc


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m generator``."""
    p = argparse.ArgumentParser(
        prog="python -m generator",
        description="Generate seeded synthetic journey events with ground truth "
        "and produce them to journey.events.<channel>.",
    )
    p.add_argument("--persons", type=int, required=True, help="number of planted persons (>= 1)")
    p.add_argument("--seed", type=int, required=True, help="random seed (same seed, same bytes)")
    p.add_argument("--out", type=Path, required=True, help="directory for truth.json (created if missing)")
    p.add_argument(
        "--bootstrap", default=DEFAULT_BOOTSTRAP_SERVERS, help="Kafka bootstrap servers (default %(default)s)"
    )
    p.add_argument("--rate", type=float, default=None, help="records per second (default: flat out)")
    p.add_argument("--no-produce", action="store_true", help="only generate and write truth.json")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--base-time-ms",
        type=int,
        default=DEFAULT_BASE_TIME_MS,
        help="start of the synthetic calendar, epoch ms (default %(default)s = 2026-09-21); "
        "not before --min-valid-timestamp-ms",
    )
    p.add_argument(
        "--days", type=int, default=DEFAULT_DAYS, help="length of the calendar in days (default %(default)s)"
    )
    p.add_argument(
        "--min-valid-timestamp-ms",
        type=int,
        default=MIN_VALID_TIMESTAMP_MS,
        help="lower bound of occurred_at of the ingestion the dataset is for, epoch ms (default "
        "%(default)s = 2000-01-01, the live topics' JOURNEY_MIN_VALID_TIMESTAMP_MS); for history "
        "before it, the JOURNEY_BACKFILL_MIN_VALID_TIMESTAMP_MS of the backfill topics",
    )
    p.add_argument(
        "--topic",
        default=None,
        help="produce every record to this one topic (e.g. the backfill topic journey.events.backfill) "
        "instead of journey.events.<channel>",
    )
    p.add_argument(
        "--bad-ratio", type=float, default=DEFAULT_BAD_RATIO, help="bad records per valid event (default %(default)s)"
    )
    p.add_argument(
        "--dup-ratio", type=float, default=DEFAULT_DUP_RATIO, help="duplicates per valid event (default %(default)s)"
    )
    p.add_argument(
        "--late-ratio", type=float, default=DEFAULT_LATE_RATIO, help="fraction of late events (default %(default)s)"
    )
    p.add_argument(
        "--supernodes",
        action="store_true",
        help="plant identifiers several persons use: store kiosks (shared), family tablets (ambiguous) and a "
        "call-centre agent login (shared); listed under 'supernodes' in truth.json",
    )
    for name, what in SUPERNODE_OPTIONS.items():
        p.add_argument(
            f"--{name.replace('_', '-')}",
            type=int,
            default=None,
            help=f"with --supernodes: {what} (default {getattr(Supernodes(), name)})",
        )
    return p


#: The :class:`generator.supernodes.Supernodes` fields the command line sets (``--kiosk-users``, ...).
SUPERNODE_OPTIONS: dict[str, str] = {
    "kiosks": "store kiosks",
    "kiosk_users": "persons logging in on each kiosk (> 5)",
    "families": "family tablets",
    "family_size": "members per family tablet (2 to 5)",
    "agent_calls": "callers whose phone the call-centre agent logs (0, or > 10)",
}


def supernodes_of(args: argparse.Namespace) -> Supernodes | None:
    """The supernodes the parsed arguments ask for (``None`` without ``--supernodes``).

    Raises
    ------
    ValueError
        For counts :class:`generator.supernodes.Supernodes` refuses.
    """
    if not args.supernodes:
        return None
    given = {name: getattr(args, name) for name in SUPERNODE_OPTIONS if getattr(args, name) is not None}
    return Supernodes(**given)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and validate arguments; exits with status 2 and a clear message if invalid."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.persons < 1:
        parser.error(f"--persons must be at least 1, got {args.persons}")
    if args.persons > 1_000_000:
        parser.error(f"--persons must be at most 1000000, got {args.persons}")
    if args.rate is not None and not args.rate > 0:
        parser.error(f"--rate must be a positive number of records per second, got {args.rate}")
    for name in ("bad_ratio", "late_ratio"):
        v = getattr(args, name)
        if not 0.0 <= v < 1.0:
            parser.error(f"--{name.replace('_', '-')} must be in [0, 1), got {v}")
    if not 0.0 <= args.dup_ratio <= 1.0:
        parser.error(f"--dup-ratio must be in [0, 1], got {args.dup_ratio}")
    if args.days < 1:
        parser.error(f"--days must be at least 1, got {args.days}")
    if args.min_valid_timestamp_ms < 0:
        parser.error(
            f"--min-valid-timestamp-ms must be >= 0 (ingestion never accepts events before the Unix "
            f"epoch), got {args.min_valid_timestamp_ms}"
        )
    if args.base_time_ms < args.min_valid_timestamp_ms:
        parser.error(
            f"--base-time-ms {args.base_time_ms} ({iso_utc(args.base_time_ms)}) is before "
            f"--min-valid-timestamp-ms {args.min_valid_timestamp_ms} "
            f"({iso_utc(args.min_valid_timestamp_ms)}): ingestion would dead-letter every event; for "
            f"history, pass the JOURNEY_BACKFILL_MIN_VALID_TIMESTAMP_MS of the backfill topics as "
            f"--min-valid-timestamp-ms and produce to a backfill topic with --topic"
        )
    if args.topic is not None and not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", args.topic):
        parser.error(f"--topic {args.topic!r} is not a valid Kafka topic name")
    if not args.no_produce and not args.bootstrap.strip():
        parser.error("--bootstrap must not be empty (or pass --no-produce)")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out} exists and is not a directory")
    given = [f"--{n.replace('_', '-')}" for n in SUPERNODE_OPTIONS if getattr(args, n) is not None]
    if given and not args.supernodes:
        parser.error(f"{', '.join(given)}: only with --supernodes")
    try:
        supernodes_of(args)
    except ValueError as e:
        parser.error(f"--supernodes: {e}")
    return args


def describe(
    summary: dict[str, Any],
    truth_path: Path,
    report: Any | None,
    failed: bool = False,
    params: dict[str, Any] | None = None,
) -> str:
    """One paragraph: records per kind, per error type and per topic, and what was produced.

    Parameters
    ----------
    summary : dict
        :meth:`generator.truth.GroundTruth.summary`.
    truth_path : Path
        Where ``truth.json`` was written.
    report : ProduceReport or None
        The produce report, ``None`` if nothing was produced.
    failed : bool
        Producing was attempted and failed.
    params : dict or None
        :attr:`generator.truth.GroundTruth.params`; a history dataset (lower bound before
        2000-01-01) gets a sentence on the ingestion settings it needs.
    """
    bad = ", ".join(f"{k}={v}" for k, v in summary["bad_by_error_type"].items())
    topics = ", ".join(f"{k}={v}" for k, v in summary["topics"].items())
    text = (
        f"Generated {summary['records']} records for {summary['persons']} persons: "
        f"{summary['valid']} valid, {summary['duplicate']} duplicates and {summary['bad']} bad ({bad}). "
        f"Per topic: {topics}. "
        f"{summary['carts']} carts ({summary['carts_purchased']} purchased, {summary['carts_abandoned']} not), "
        f"{summary['late_events']} late and {summary['out_of_order_events']} out-of-order events, "
        f"{summary['erased_persons']} erasure requests. Ground truth: {truth_path}."
    )
    if "shared_identifiers" in summary:
        text += (
            f" Supernodes planted: {summary['shared_identifiers']} shared identifiers and "
            f"{summary['family_devices']} family devices."
        )
    bound = (params or {}).get("min_valid_timestamp_ms", MIN_VALID_TIMESTAMP_MS)
    if bound < MIN_VALID_TIMESTAMP_MS:
        text += (
            f" History from {iso_utc(params['base_time_ms'])} (invalid timestamps planted against "
            f"{iso_utc(bound)}): ingest it from a topic matching JOURNEY_BACKFILL_TOPIC_PATTERN with "
            f"JOURNEY_BACKFILL_MIN_VALID_TIMESTAMP_MS={bound}."
        )
    if failed:
        return text + " Producing FAILED."
    if report is None:
        return text + " Not produced (--no-produce)."
    return text + (
        f" Produced {report.delivered} records in {report.elapsed_s:.1f} s ({report.records_per_s:.0f} records/s)."
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m generator``; returns the exit status."""
    args = parse_args(argv)
    try:
        dataset = generate(
            args.seed,
            args.persons,
            base_time_ms=args.base_time_ms,
            bad_ratio=args.bad_ratio,
            dup_ratio=args.dup_ratio,
            late_ratio=args.late_ratio,
            days=args.days,
            min_valid_timestamp_ms=args.min_valid_timestamp_ms,
            supernodes=supernodes_of(args),
        )
    except ValueError as e:  # a combination parse_args does not check (e.g. a calendar reaching 2100)
        build_parser().error(str(e))
    truth_path = dataset.truth.write(args.out / "truth.json")
    report = None
    if not args.no_produce:
        from generator.produce import ProduceError, produce

        try:
            report = produce(dataset, args.bootstrap, rate=args.rate, progress=not args.no_progress, topic=args.topic)
        except (ProduceError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            print(
                describe(dataset.summary(), truth_path, None, failed=True, params=dataset.truth.params), file=sys.stderr
            )
            return 1
    print(describe(dataset.summary(), truth_path, report, params=dataset.truth.params))
    return 0


if __name__ == "__main__":
    sys.exit(main())
