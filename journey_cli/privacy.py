"""``journey privacy report``: what the system holds on a person (a subject access request,
``docs/privacy.md``), read from Cassandra with plain CQL.

The person is named by one identifier as the business knows it: a raw email or phone (hashed
here with the salt, ``JOURNEY_PII_SALT``, exactly as ingestion hashes it), or a customer,
device, cookie or loyalty id, or a profile id. The identifier is resolved through
``identity_links`` to the profile, and every table keyed by profile is read: the profile, its
sessions, carts, triggers, segments, consent and scores, under the profile's id and under its
earlier ids (each identifier's own canonical id: a session written before a merge stays under
the id that held it; rows of tables with a ``stream`` under an earlier id count when the
stream is one of the person's identifiers). Nothing raw is printed but what was asked for:
emails and phones appear only as their salted hashes.

Exit status: 0 (a report, also "nothing held"), 2 (bad arguments or configuration: a missing
salt for an email or phone, an unusable value, Cassandra unreachable).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Iterable, Mapping

from models.config import DEFAULT_COUNTRY_CODE, ConfigError, ProfilesConfig
from models.erasure import tombstone_key
from models.normalize import normalize_email, normalize_phone, pii_hash

#: (option, identifier type in the identity graph, hashed with the salt)
IDENTIFIERS = (
    ("email", "email_hash", True),
    ("phone", "phone_hash", True),
    ("customer-id", "customer_id", False),
    ("device-id", "device_id", False),
    ("cookie-id", "cookie_id", False),
    ("loyalty-id", "loyalty_id", False),
)
#: tables keyed by profile, and what to read from each
TABLES = {
    "sessions": "profile_id, session_id, stream, started_at, ended_at, events, purchases, revenue, engagement",
    "carts": "profile_id, cart_id, stream, status, opened_at, value",
    "triggers": "profile_id, trigger_id, kind, fired_at, stream, suppressed",
    "profile_segments": "profile_id, segment, rule_version, entered_at, purpose",
    "profile_consent": "profile_id, purpose, granted, changed_at, source, event_id, suppressed",
    "scores": "profile_id, model, model_version, cluster, propensity, churn_risk, at, session_id",
}


class ReportError(Exception):
    """Bad input or configuration: the message says what to do."""


def identifier_of(option: str, value: str, salt: str | None, country: str = DEFAULT_COUNTRY_CODE) -> tuple[str, str]:
    """``(identifier type, value)`` as the identity graph keys it.

    >>> identifier_of("email", " Ann@Example.COM", "s" * 16) == ("email_hash", pii_hash("email", "ann@example.com", "s" * 16))
    True
    >>> identifier_of("customer-id", "C-1", None)
    ('customer_id', 'C-1')
    """
    for opt, id_type, hashed in IDENTIFIERS:
        if opt != option:
            continue
        if not hashed:
            if not value.strip():
                raise ReportError(f"--{option} is blank")
            return id_type, value.strip()
        if not salt or len(salt) < 16:
            raise ReportError(
                f"--{option} is hashed with the PII salt: set JOURNEY_PII_SALT (at least 16 characters; "
                "on the local stack: JOURNEY_PII_SALT=$(cat .stack/demo-pii-salt))"
            )
        norm = normalize_email(value) if option == "email" else normalize_phone(value, country)
        if norm is None:
            raise ReportError(f"--{option} {value!r} is not a usable {option} (ingestion would drop it too)")
        return id_type, pii_hash(option, norm, salt)
    raise ReportError(f"unknown identifier option --{option}")


def _plain(v: Any) -> Any:
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, datetime):
        return (v if v.tzinfo else v.replace(tzinfo=timezone.utc)).isoformat().replace("+00:00", "Z")
    if isinstance(v, Mapping):  # (the driver's maps are its own ordered types)
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (set, frozenset)):
        return sorted((_plain(x) for x in v), key=str)
    if isinstance(v, Iterable) and not isinstance(v, (str, bytes)):  # lists, tuples, the driver's sorted sets
        return [_plain(x) for x in v]
    return v


def report(session: Any, keyspace: str, identifier: tuple[str, str] | None, profile_id: str | None) -> dict[str, Any]:
    """Everything held on the person: ``{"identifier", "profile_id", "profile", <table>: rows}``
    (``profile_id`` None: nothing linked)."""
    out: dict[str, Any] = {"identifier": None if identifier is None else list(identifier)}
    if profile_id is None:
        assert identifier is not None
        link = session.execute(
            f"SELECT profile_id FROM {keyspace}.identity_links WHERE identifier_type = %s AND identifier_value = %s",
            identifier,
        ).one()
        profile_id = None if link is None else link.profile_id
    out["profile_id"] = profile_id
    if identifier is not None:  # an erased identifier: the ledger says by which request (docs/privacy.md)
        stone = session.execute(
            f"SELECT request_id, erased_at FROM {keyspace}.erased_identifiers WHERE tombstone = %s",
            (tombstone_key(identifier),),
        ).one()
        out["erased"] = None if stone is None else {"request_id": stone.request_id, "at": _plain(stone.erased_at)}
    if profile_id is None:
        return out
    from state.journey_store import JourneyStore

    row = session.execute(f"SELECT * FROM {keyspace}.profiles WHERE profile_id = %s", (profile_id,)).one()
    out["profile"] = None if row is None else {k: _plain(v) for k, v in row._asdict().items()}
    aliases, streams = JourneyStore(session, keyspace).profile_ids_of(profile_id)
    out["profile_ids"] = aliases
    for table, cols in TABLES.items():
        rows = []
        for pid in aliases:
            for r in session.execute(f"SELECT {cols} FROM {keyspace}.{table} WHERE profile_id = %s", (pid,)):
                d = {k: _plain(v) for k, v in r._asdict().items()}
                if pid == profile_id or "stream" not in d or d["stream"] in streams:
                    rows.append(d)
        out[table] = rows
    return out


def summary(rep: dict[str, Any]) -> str:
    """The report in a few lines (``--json`` prints all of it)."""
    ident = rep["identifier"]
    who = f"{ident[0]} {ident[1]}" if ident else f"profile {rep['profile_id']}"
    if rep["profile_id"] is None:
        if rep.get("erased"):
            return f"{who}: nothing held (erased by request {rep['erased']['request_id']}, {rep['erased']['at']})"
        return f"{who}: nothing held (no identity link)"
    lines = [f"{who} -> profile {rep['profile_id']} (rows also read under {len(rep['profile_ids']) - 1} earlier ids)"]
    prof = rep.get("profile")
    if prof is None:
        lines.append("  profile row: none")
    else:
        ids = prof.get("identifiers") or {}
        lines.append(f"  identifiers: {sum(len(v) for v in ids.values())} ({', '.join(sorted(ids))})")
    for table in TABLES:
        lines.append(f"  {table:<17} {len(rep[table])}")
    for c in rep["profile_consent"]:
        lines.append(
            f"  consent {c['purpose']:<16} {'granted' if c['granted'] else 'denied':<8} "
            f"since {c['changed_at'] or '-'} from {c['source']} ({c['suppressed']} triggers suppressed)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="journey privacy report", description=__doc__.splitlines()[0])
    who = ap.add_mutually_exclusive_group(required=True)
    for opt, _, _ in IDENTIFIERS:
        who.add_argument(f"--{opt}")
    who.add_argument("--profile-id")
    ap.add_argument("--json", action="store_true", help="print the whole report as JSON")
    args = ap.parse_args(argv)
    try:
        cfg = ProfilesConfig.from_env()
        identifier = None
        if args.profile_id is None:
            opt = next(o for o, _, _ in IDENTIFIERS if getattr(args, o.replace("-", "_")) is not None)
            identifier = identifier_of(opt, getattr(args, opt.replace("-", "_")), os.environ.get("JOURNEY_PII_SALT"))
        from state.cassandra_schema import connect

        try:
            session = connect(cfg.cassandra_host, cfg.cassandra_port, auth=cfg.cassandra_auth())
        except Exception as e:  # noqa: BLE001 - any driver error: say where it tried
            raise ReportError(f"cannot reach Cassandra at {cfg.cassandra_host}:{cfg.cassandra_port}: {e}") from None
        try:
            rep = report(session, cfg.keyspace, identifier, args.profile_id)
        finally:
            session.cluster.shutdown()
    except (ReportError, ConfigError) as e:
        print(f"journey privacy report: {e}", file=sys.stderr)
        return 2
    print(json.dumps(rep, indent=1, sort_keys=True) if args.json else summary(rep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
