"""Apply ``state/schema.cql`` to Cassandra, idempotently.

The CQL file is split into statements (comments stripped, ``;`` outside string literals ends a
statement) and run in order; every statement is ``IF NOT EXISTS``, so applying it twice is a
no-op. After each DDL statement the cluster's schema agreement is awaited. Because
``IF NOT EXISTS`` silently keeps a table that already exists with an *older* definition, an
existing table that lacks columns of the file (and otherwise agrees with it: same types, same
primary key columns) gets them with ``ALTER TABLE ... ADD``, decided from
``system_schema.columns`` so that applying again adds nothing (:func:`missing_columns`). The
tables are then checked against the file (every column present with the same type); a
mismatch raises :class:`SchemaError` instead of leaving writers to fail later.

Command line (``make up`` starts Cassandra first)::

    python -m state.cassandra_schema [--host 127.0.0.1] [--port 9042] [--keyspace journey]
                                     [--replication '{"class": "NetworkTopologyStrategy", "dc1": 3}']

From Python::

    from state.cassandra_schema import apply_schema, connect
    apply_schema("127.0.0.1")                                # hosts: connects and disconnects
    session = connect("127.0.0.1")
    apply_schema(session, keyspace="journey_test_1a2b")      # an existing session; test keyspace
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Sequence

from cassandra import ConsistencyLevel, InvalidRequest
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable, Session
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy

DEFAULT_CQL_PATH = Path(__file__).resolve().with_name("schema.cql")
DEFAULT_KEYSPACE = "journey"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9042
# Cassandra 4.0+ speaks native protocol v5. Pinning it avoids the driver's probe of the DSE
# protocol versions (66 -> 65 -> 5), which logs two "Downgrading core protocol" warnings.
PROTOCOL_VERSION = 5

_KEYSPACE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,47}$")


class CassandraUnavailableError(ConnectionError):
    """Cassandra could not be reached at the given address."""


class SchemaError(RuntimeError):
    """The schema could not be applied, did not reach agreement, or differs from the file."""


# ------------------------------------------------------------------ connecting


def _as_hosts(hosts: str | Sequence[str]) -> list[str]:
    return [hosts] if isinstance(hosts, str) else list(hosts)


def connect(hosts: str | Sequence[str] = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
            connect_timeout: float = 5.0, request_timeout: float = 10.0,
            consistency: int = ConsistencyLevel.LOCAL_QUORUM,
            protocol_version: int = PROTOCOL_VERSION) -> Session:
    """Open a session (no default keyspace) or raise a clear error.

    Parameters
    ----------
    hosts : str or sequence of str
        Contact point(s).
    port : int
        Native transport port.
    connect_timeout, request_timeout : float
        Seconds to wait for a connection / for each request.
    consistency : int
        Default consistency level (``LOCAL_QUORUM``: 1 replica on the local RF 1 node, a
        majority of the local data centre in production).
    protocol_version : int
        Native protocol version (5 for Cassandra 4.0+).

    Returns
    -------
    cassandra.cluster.Session
        Call ``session.cluster.shutdown()`` when done.

    Raises
    ------
    CassandraUnavailableError
        If no host answers; the message names the address and suggests ``make up``.
    """
    host_list = _as_hosts(hosts)
    profile = ExecutionProfile(load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
                               consistency_level=consistency, request_timeout=request_timeout)
    cluster = Cluster(host_list, port=port, protocol_version=protocol_version,
                      execution_profiles={EXEC_PROFILE_DEFAULT: profile},
                      connect_timeout=connect_timeout)
    try:
        return cluster.connect()
    except (NoHostAvailable, OSError) as exc:
        cluster.shutdown()
        where = ", ".join(f"{h}:{port}" for h in host_list)
        raise CassandraUnavailableError(
            f"Cassandra is not reachable at {where} ({exc}). Start the local stack with "
            f"`make up` (or `python local/stack.py up cassandra`) and retry.") from exc


# ------------------------------------------------------------------ parsing the CQL file


def _segments(text: str) -> list[tuple[str, str]]:
    """Split CQL text into ``(kind, chunk)`` pieces, kind being "code", "literal" or "comment".

    One left-to-right scan, so a quote inside a comment or ``--`` / ``;`` inside a literal are
    not misread; ``''`` inside a literal is an escaped quote.
    """
    out: list[tuple[str, str]] = []
    i, n, start = 0, len(text), 0

    def emit(kind: str, a: int, b: int) -> None:
        if a < b:
            out.append((kind, text[a:b]))

    while i < n:
        two = text[i:i + 2]
        if text[i] == "'":
            j = i + 1
            while True:
                j = text.find("'", j)
                if j < 0:
                    raise SchemaError(f"unterminated string literal at offset {i}")
                if text[j + 1:j + 2] == "'":
                    j += 2
                    continue
                break
            emit("code", start, i)
            emit("literal", i, j + 1)
            i = start = j + 1
        elif two in ("--", "//", "/*"):
            if two == "/*":
                j = text.find("*/", i + 2)
                if j < 0:
                    raise SchemaError(f"unterminated /* comment at offset {i}")
                j += 2
            else:
                j = text.find("\n", i)
                j = n if j < 0 else j
            emit("code", start, i)
            emit("comment", i, j)
            i = start = j
        else:
            i += 1
    emit("code", start, n)
    return out


def split_statements(text: str) -> list[str]:
    """Split CQL text into statements without comments or the trailing ``;``.

    Parameters
    ----------
    text : str
        CQL source: ``--``, ``//`` and ``/* */`` comments, ``'...'`` literals (``''`` escapes).

    Returns
    -------
    list of str
        Non-empty statements, whitespace-normalised to single spaces outside literals.

    Examples
    --------
    >>> split_statements("-- c; not a statement\\nCREATE TABLE a.b (k text PRIMARY KEY)"
    ...                  " WITH comment = 'x; y';  ;\\n/* z; */ DROP TABLE a.b")
    ["CREATE TABLE a.b (k text PRIMARY KEY) WITH comment = 'x; y'", 'DROP TABLE a.b']
    """
    statements: list[str] = []
    current: list[str] = []
    for kind, chunk in _segments(text):
        if kind == "literal":
            current.append(chunk)
            continue
        if kind == "comment":
            current.append(" ")
            continue
        parts = chunk.split(";")
        for k, part in enumerate(parts):
            current.append(re.sub(r"\s+", " ", part))
            if k < len(parts) - 1:
                statements.append("".join(current).strip())
                current = []
    statements.append("".join(current).strip())
    return [s for s in statements if s]


def rename_keyspace(statement: str, keyspace: str, original: str = DEFAULT_KEYSPACE) -> str:
    """Rewrite ``original`` as ``keyspace`` where it names the keyspace (outside literals).

    Handles ``CREATE KEYSPACE [IF NOT EXISTS] <ks>`` and qualified names ``<ks>.<table>``.

    Examples
    --------
    >>> rename_keyspace("CREATE TABLE IF NOT EXISTS journey.t (k text PRIMARY KEY) "
    ...                 "WITH comment = 'journey.t'", "journey_test")
    "CREATE TABLE IF NOT EXISTS journey_test.t (k text PRIMARY KEY) WITH comment = 'journey.t'"
    """
    if not _KEYSPACE_NAME.match(keyspace):
        raise ValueError(f"invalid keyspace name {keyspace!r} (letters, digits, _; at most 48)")
    ks = re.escape(original)
    keyspace_decl = re.compile(rf"(?i)(\bKEYSPACE\s+(?:IF\s+NOT\s+EXISTS\s+)?){ks}\b")
    qualified = re.compile(rf"(?i)(?<![\w.]){ks}(?=\s*\.)")
    out = []
    for kind, chunk in _segments(statement):
        if kind == "code":
            chunk = qualified.sub(keyspace, keyspace_decl.sub(rf"\g<1>{keyspace}", chunk))
        out.append(chunk)
    return "".join(out)


_REPLICATION = re.compile(r"(?is)(\bWITH\s+replication\s*=\s*)\{[^}]*\}")
_STRATEGIES = ("SimpleStrategy", "NetworkTopologyStrategy")


def replication_map(replication: dict[str, object]) -> str:
    """A validated CQL replication map from a dict (the ``--replication`` JSON).

    ``class`` is ``SimpleStrategy`` (with ``replication_factor``) or
    ``NetworkTopologyStrategy`` (with a factor per data centre); factors are positive integers.

    Examples
    --------
    >>> replication_map({"class": "NetworkTopologyStrategy", "dc1": 3})
    "{'class': 'NetworkTopologyStrategy', 'dc1': '3'}"
    >>> replication_map({"class": "NetworkTopologyStrategy"})
    Traceback (most recent call last):
    ...
    ValueError: replication {'class': 'NetworkTopologyStrategy'}: NetworkTopologyStrategy needs a ...
    """
    if not isinstance(replication, dict):
        raise ValueError(f"replication {replication!r} must be a JSON object with a class")
    cls = replication.get("class")
    factors = {k: v for k, v in replication.items() if k != "class"}
    if cls not in _STRATEGIES:
        raise ValueError(f"replication {replication}: class must be one of {', '.join(_STRATEGIES)}")
    if cls == "SimpleStrategy" and set(factors) != {"replication_factor"}:
        raise ValueError(f"replication {replication}: SimpleStrategy takes exactly replication_factor")
    if cls == "NetworkTopologyStrategy" and not factors:
        raise ValueError(f"replication {replication}: NetworkTopologyStrategy needs a replication factor per "
                         f'data centre, e.g. {{"class": "NetworkTopologyStrategy", "dc1": 3}}')
    for name, factor in factors.items():
        if not re.fullmatch(r"\w+", name) or not str(factor).isdigit() or int(str(factor)) < 1:
            raise ValueError(f"replication {replication}: {name}={factor!r} must be a data centre name with a "
                             f"positive integer factor")
    entries = [f"'class': '{cls}'"] + [f"'{k}': '{int(str(v))}'" for k, v in factors.items()]
    return "{" + ", ".join(entries) + "}"


def set_replication(statement: str, replication: dict[str, object]) -> str:
    """Replace the replication map of a ``CREATE KEYSPACE`` statement (others unchanged).

    >>> set_replication("CREATE KEYSPACE IF NOT EXISTS journey WITH replication = "
    ...                 "{'class': 'SimpleStrategy', 'replication_factor': 1} AND durable_writes = true",
    ...                 {"class": "NetworkTopologyStrategy", "dc1": 3})
    "CREATE KEYSPACE IF NOT EXISTS journey WITH replication = {'class': 'NetworkTopologyStrategy', 'dc1': '3'} AND durable_writes = true"
    """
    if not re.match(r"(?is)^\s*CREATE\s+KEYSPACE\b", statement):
        return statement
    cql = replication_map(replication)
    return _REPLICATION.sub(lambda m: m.group(1) + cql, statement, count=1)


def load_statements(cql_path: str | Path = DEFAULT_CQL_PATH, keyspace: str | None = None) -> list[str]:
    """Read the CQL file as statements, optionally moved to another keyspace.

    Parameters
    ----------
    cql_path : str or Path
        The CQL file (default ``state/schema.cql``).
    keyspace : str, optional
        Keyspace replacing ``journey`` (e.g. a test keyspace).

    Returns
    -------
    list of str
    """
    statements = split_statements(Path(cql_path).read_text(encoding="utf-8"))
    if keyspace is not None and keyspace != DEFAULT_KEYSPACE:
        statements = [rename_keyspace(s, keyspace) for s in statements]
    return statements


_CREATE_TABLE = re.compile(
    r"(?is)^\s*CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(?:(\w+)\.)?(\w+)\s*\((.*)\)")


def _split_top_level(body: str) -> list[str]:
    parts, depth, buf = [], 0, []
    for ch in body:
        if ch in "<(":
            depth += 1
        elif ch in ">)":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(buf).strip())
            buf = []
        else:
            buf.append(ch)
    parts.append("".join(buf).strip())
    return [p for p in parts if p]


def parse_create_table(statement: str) -> tuple[str | None, str, dict[str, str]] | None:
    """Keyspace, table and ``{column: type}`` of a ``CREATE TABLE`` (None for other statements).

    Types are lower-cased with spaces removed (``map<text,frozen<list<text>>>``); the
    ``PRIMARY KEY`` clause and a column's inline ``PRIMARY KEY`` / ``STATIC`` are dropped.

    Examples
    --------
    >>> parse_create_table("CREATE TABLE IF NOT EXISTS ks.t (k text PRIMARY KEY, "
    ...                    "m map<text, frozen<list<text>>>) WITH comment = 'c'")
    ('ks', 't', {'k': 'text', 'm': 'map<text,frozen<list<text>>>'})
    """
    m = _CREATE_TABLE.match(statement)
    if m is None:
        return None
    keyspace, table, rest = m.group(1), m.group(2), m.group(3)
    # rest may run past the column list (e.g. "... ) WITH CLUSTERING ORDER BY (a ASC)"): cut at
    # the parenthesis that closes the column list.
    depth, end = 1, len(rest)
    for i, ch in enumerate(rest):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                end = i
                break
    columns: dict[str, str] = {}
    for part in _split_top_level(rest[:end]):
        if re.match(r"(?i)^PRIMARY\s+KEY\b", part):
            continue
        name, _, ctype = part.partition(" ")
        ctype = re.sub(r"(?i)\s+(PRIMARY\s+KEY|STATIC)\b.*$", "", ctype)
        columns[name.strip('"')] = re.sub(r"\s+", "", ctype).lower()
    return keyspace, table, columns


def primary_key_columns(statement: str) -> set[str]:
    """Columns of the primary key of a ``CREATE TABLE`` (inline or ``PRIMARY KEY (...)``).

    Examples
    --------
    >>> sorted(primary_key_columns("CREATE TABLE ks.t (a text, b int, c int, PRIMARY KEY ((a, b), c))"))
    ['a', 'b', 'c']
    >>> primary_key_columns("CREATE TABLE ks.t (k text PRIMARY KEY, v int)")
    {'k'}
    """
    parsed = parse_create_table(statement)
    if parsed is None:
        return set()
    m = _CREATE_TABLE.match(statement)
    assert m is not None
    body = m.group(3)
    out: set[str] = set()
    for part in _split_top_level(body):
        clause = re.match(r"(?is)^PRIMARY\s+KEY\s*\((.*)\)", part)
        if clause:
            out.update(c.strip().strip('"') for c in re.split(r"[(),]", clause.group(1)) if c.strip())
        elif re.search(r"(?i)\bPRIMARY\s+KEY\b", part):
            out.add(part.split()[0].strip('"'))
    return out & set(parsed[2])


def missing_columns(statement: str, actual: dict[str, str]) -> dict[str, str] | None:
    """Columns of a ``CREATE TABLE`` that an existing table lacks and that may be added.

    Parameters
    ----------
    statement : str
        A ``CREATE TABLE`` statement of the file.
    actual : dict of str to str
        The existing table's ``{column: type}`` (types as ``system_schema.columns`` gives them).

    Returns
    -------
    dict of str to str or None
        ``{column: type}`` to add with ``ALTER TABLE ... ADD`` (empty: nothing to do), in the
        file's order; ``None`` if the table is not a predecessor of the file's (a column of
        another type, or a primary key column missing): nothing is added then, and the
        verification reports the differences.

    Examples
    --------
    >>> stmt = "CREATE TABLE IF NOT EXISTS ks.t (k text PRIMARY KEY, a bigint, m map<date, bigint>)"
    >>> missing_columns(stmt, {"k": "text", "a": "bigint"})
    {'m': 'map<date,bigint>'}
    >>> missing_columns(stmt, {"k": "text", "a": "bigint", "m": "map<date, bigint>"})
    {}
    >>> missing_columns(stmt, {"k": "text", "a": "int"}) is None  # another type
    True
    >>> missing_columns(stmt, {"id": "uuid", "a": "bigint"}) is None  # another key
    True
    """
    parsed = parse_create_table(statement)
    if parsed is None:
        return {}
    expected = parsed[2]
    have = {c: re.sub(r"\s+", "", t).lower() for c, t in actual.items()}
    if any(c in have and have[c] != t for c, t in expected.items()):
        return None
    if any(c not in have for c in primary_key_columns(statement)):
        return None
    return {c: t for c, t in expected.items() if c not in have}


def _table_columns(session: Session, keyspace: str, table: str) -> dict[str, str]:
    rows = session.execute(
        "SELECT column_name, type FROM system_schema.columns WHERE keyspace_name = %s AND table_name = %s",
        (keyspace, table))
    return {r.column_name: r.type for r in rows}


def _run_ddl(session: Session, stmt: str, agreement_timeout: float) -> None:
    result = session.execute(stmt, timeout=max(agreement_timeout, 10.0))
    if not result.response_future.is_schema_agreed:
        if not session.cluster.control_connection.wait_for_schema_agreement(wait_time=agreement_timeout):
            raise SchemaError(f"no schema agreement within {agreement_timeout} s after: {stmt[:80]}...")


def _add_missing_columns(session: Session, statements: list[str], agreement_timeout: float) -> list[str]:
    """``ALTER TABLE ... ADD`` every column of the file an existing table lacks; returns those statements."""
    executed = []
    for stmt in statements:
        parsed = parse_create_table(stmt)
        if parsed is None or parsed[0] is None:
            continue
        keyspace, table, _ = parsed
        for col, ctype in (missing_columns(stmt, _table_columns(session, keyspace, table)) or {}).items():
            alter = f"ALTER TABLE {keyspace}.{table} ADD {col} {ctype}"
            try:
                _run_ddl(session, alter, agreement_timeout)
            except InvalidRequest:
                # another process added it in the meantime: fine if it is there now (verified later)
                if col not in _table_columns(session, keyspace, table):
                    raise
                continue
            executed.append(alter)
    return executed


# ------------------------------------------------------------------ applying


def _verify_tables(session: Session, statements: list[str]) -> None:
    """Raise SchemaError if a table in the database lacks a column of the file or types differ."""
    problems = []
    for stmt in statements:
        parsed = parse_create_table(stmt)
        if parsed is None:
            continue
        keyspace, table, expected = parsed
        rows = session.execute(
            "SELECT column_name, type FROM system_schema.columns WHERE keyspace_name = %s AND table_name = %s",
            (keyspace, table))
        actual = {r.column_name: re.sub(r"\s+", "", r.type).lower() for r in rows}
        for col, ctype in expected.items():
            if col not in actual:
                problems.append(f"{keyspace}.{table}: column {col} ({ctype}) missing")
            elif actual[col] != ctype:
                problems.append(f"{keyspace}.{table}: column {col} is {actual[col]}, the file says {ctype}")
    if problems:
        raise SchemaError("the existing schema differs from the CQL file (IF NOT EXISTS keeps existing "
                          "tables as they are, and missing columns are only added to a table whose other "
                          "columns and key agree with the file; migrate it explicitly): " + "; ".join(problems))


def apply_schema(session_or_hosts: Session | str | Sequence[str], cql_path: str | Path = DEFAULT_CQL_PATH, *,
                 keyspace: str | None = None, port: int = DEFAULT_PORT, agreement_timeout: float = 30.0,
                 verify: bool = True, replication: dict[str, object] | None = None,
                 add_columns: bool = True) -> list[str]:
    """Run every statement of the CQL file, idempotently, waiting for schema agreement.

    Parameters
    ----------
    session_or_hosts : Session, str or sequence of str
        An open session, or contact point(s) to connect to (and disconnect from afterwards).
    cql_path : str or Path
        The CQL file (default ``state/schema.cql``).
    keyspace : str, optional
        Apply into this keyspace instead of ``journey`` (the names are rewritten).
    port : int
        Native transport port, when hosts are given.
    agreement_timeout : float
        Seconds to wait for schema agreement after each statement.
    verify : bool
        Check afterwards that each table has the file's columns with the file's types.
    replication : dict, optional
        The keyspace's replication instead of the file's local ``SimpleStrategy``, RF 1 (see
        :func:`replication_map`). Like every statement it applies only when the keyspace is
        created; an existing keyspace keeps its replication (``ALTER KEYSPACE`` by hand).
    add_columns : bool
        Add the columns of the file that an existing table lacks (``ALTER TABLE ... ADD``,
        only where :func:`missing_columns` allows it: same types and primary key otherwise).

    Returns
    -------
    list of str
        The statements executed: the file's, then any ``ALTER TABLE ... ADD``.

    Raises
    ------
    CassandraUnavailableError
        If Cassandra cannot be reached.
    SchemaError
        If agreement is not reached in time or an existing table differs from the file.
    """
    statements = load_statements(cql_path, keyspace)
    if replication is not None:
        statements = [set_replication(st, replication) for st in statements]
    owned = not isinstance(session_or_hosts, Session)
    session = connect(session_or_hosts, port) if owned else session_or_hosts
    try:
        for stmt in statements:
            _run_ddl(session, stmt, agreement_timeout)
        added = _add_missing_columns(session, statements, agreement_timeout) if add_columns else []
        if verify:
            _verify_tables(session, statements)
    finally:
        if owned:
            session.cluster.shutdown()
    return statements + added


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: apply the schema; exit 2 with a clear message if Cassandra is down."""
    ap = argparse.ArgumentParser(prog="python -m state.cassandra_schema", description=__doc__.splitlines()[0])
    ap.add_argument("--host", default=DEFAULT_HOST, help="contact point (default %(default)s)")
    ap.add_argument("--port", type=int, default=DEFAULT_PORT, help="native port (default %(default)s)")
    ap.add_argument("--keyspace", default=DEFAULT_KEYSPACE, help="keyspace (default %(default)s)")
    ap.add_argument("--cql", default=str(DEFAULT_CQL_PATH), help="CQL file (default state/schema.cql)")
    ap.add_argument("--replication", help="keyspace replication as JSON, e.g. "
                    '\'{"class": "NetworkTopologyStrategy", "dc1": 3}\' (default: the file\'s SimpleStrategy, RF 1)')
    args = ap.parse_args(argv)
    replication = None
    if args.replication:
        import json

        try:
            replication = json.loads(args.replication)
            replication_map(replication)
        except ValueError as exc:
            print(f"error: --replication: {exc}", file=sys.stderr)
            return 2
    try:
        statements = apply_schema(args.host, args.cql, keyspace=args.keyspace, port=args.port,
                                  replication=replication)
    except CassandraUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SchemaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    tables = [p[1] for p in map(parse_create_table, statements) if p]
    added = [s.split(" ADD ", 1)[1] for s in statements if s.startswith("ALTER TABLE ")]
    print(f"schema applied to {args.host}:{args.port}, keyspace {args.keyspace}: "
          f"{len(statements)} statements, tables {', '.join(tables)}"
          + (f"; columns added: {', '.join(added)}" if added else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
