"""Apply ``state/schema.cql`` to Cassandra, idempotently.

The CQL file is split into statements by its layout rule (:func:`split_statements`: whole-line
``--`` comments dropped, a ``;`` at the end of a line ends a statement; comments after code go
to Cassandra, whose own parser skips them) and run in order; every statement is
``IF NOT EXISTS``, so applying it twice is a no-op. After each DDL statement the cluster's
schema agreement is awaited. Because ``IF NOT EXISTS`` silently keeps a table that already
exists with an *older* definition, an existing table that lacks columns of the file (and
otherwise agrees with it: same types, same primary key) gets them with ``ALTER TABLE ... ADD``,
decided from the table as Cassandra has it -- the driver's schema metadata,
``cluster.metadata.keyspaces[ks].tables[t]`` -- so that applying again adds nothing
(:func:`missing_columns`). The tables are then checked against the file (every column present
with the same type, the same primary key); a mismatch raises :class:`SchemaError` instead of
leaving writers to fail later. The file's side is read from its ``CREATE TABLE`` column lists
(:func:`parse_create_table`), which needs no Cassandra (the unit tests check the columns
against the models with it).

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
import time
from pathlib import Path
from typing import Sequence

from cassandra import AuthenticationFailed, ConsistencyLevel, DriverException, InvalidRequest
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable, Session
from cassandra.policies import ExponentialReconnectionPolicy
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy

from models.config import CassandraAuth, ConfigError
from state.tls import cassandra_ssl_context

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


class CassandraAuthError(CassandraUnavailableError):
    """Cassandra refused the connection: credentials missing or wrong (docs/security.md)."""


class CassandraTlsError(CassandraAuthError):
    """The TLS handshake with Cassandra failed (its certificate not trusted or not for its
    address, or TLS on one side only): waiting does not help (docs/security.md)."""


class SchemaError(RuntimeError):
    """The schema could not be applied, did not reach agreement, or differs from the file."""


#: longest pause between a session's attempts to reach a host marked down (seconds)
RECONNECT_MAX_S = 10.0

# ------------------------------------------------------------------ connecting


def _as_hosts(hosts: str | Sequence[str]) -> list[str]:
    return [hosts] if isinstance(hosts, str) else list(hosts)


def connect(
    hosts: str | Sequence[str] = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    connect_timeout: float = 5.0,
    request_timeout: float = 10.0,
    consistency: int = ConsistencyLevel.LOCAL_QUORUM,
    protocol_version: int = PROTOCOL_VERSION,
    auth: CassandraAuth | None = None,
    wait_s: float = 0.0,
) -> Session:
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
    auth : CassandraAuth or None
        ``PasswordAuthenticator`` credentials (an empty one: none) and TLS (``auth.tls``: the
        server's certificate and host name verified against ``auth.ssl_ca``, else the system's
        trust store; :func:`state.tls.cassandra_ssl_context`); ``None``:
        ``JOURNEY_CASSANDRA_USERNAME`` / ``_PASSWORD`` / ``_SSL`` / ``_SSL_CA`` of the environment.
    wait_s : float
        While no host answers, try again (1 s, 2 s, 4 s ... at most 10 s apart, each retry
        said on stderr) for up to this many seconds: an operator restarted during a Cassandra
        outage waits here instead of failing again. 0: fail at once.

    Returns
    -------
    cassandra.cluster.Session
        Call ``session.cluster.shutdown()`` when done.

    Raises
    ------
    CassandraUnavailableError
        If no host answers; the message names the address and suggests ``make up``.
    CassandraAuthError
        If Cassandra refuses the credentials, or requires some and none were given.
    CassandraTlsError
        If the TLS handshake fails (an untrusted certificate: set ``JOURNEY_CASSANDRA_SSL_CA``).
    models.config.ConfigError
        If the CA file is missing or holds no PEM certificate.
    """
    host_list = _as_hosts(hosts)
    auth = CassandraAuth.from_env() if auth is None else auth
    deadline, pause = time.monotonic() + wait_s, 1.0
    while True:
        try:
            return _connect_once(host_list, port, connect_timeout, request_timeout, consistency, protocol_version, auth)
        except CassandraAuthError:
            raise  # waiting does not make credentials right
        except CassandraUnavailableError as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            pause = min(pause, left)
            print(f"[cassandra] {exc} -- trying again in {pause:.0f} s (for {left:.0f} s more)", file=sys.stderr)
            time.sleep(pause)
            pause = min(pause * 2, 10.0)


def _connect_once(
    host_list: list[str],
    port: int,
    connect_timeout: float,
    request_timeout: float,
    consistency: int,
    protocol_version: int,
    auth: CassandraAuth,
) -> Session:
    credentials: dict[str, object] = (
        {"auth_provider": PlainTextAuthProvider(auth.username, auth.password)} if auth else {}
    )
    ssl_context = cassandra_ssl_context(auth)  # built here, in the process that connects
    if ssl_context is not None:
        credentials["ssl_context"] = ssl_context  # the driver sets server_hostname: names checked
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
        consistency_level=consistency,
        request_timeout=request_timeout,
    )
    cluster = Cluster(
        host_list,
        port=port,
        protocol_version=protocol_version,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        connect_timeout=connect_timeout,
        # a host marked down is tried again at most 10 s apart (the driver's default backs
        # off to 10 min: a session would stay cut off long after a short outage ended)
        reconnection_policy=ExponentialReconnectionPolicy(1.0, RECONNECT_MAX_S),
        **credentials,
    )
    try:
        return cluster.connect()
    except (NoHostAvailable, OSError) as exc:
        cluster.shutdown()
        where = ", ".join(f"{h}:{port}" for h in host_list)
        refusals = [e for e in getattr(exc, "errors", {}).values() if isinstance(e, AuthenticationFailed)]
        if refusals:
            reason = str(refusals[0]).splitlines()[0]
            raise CassandraAuthError(
                f"Cassandra at {where} refused the credentials of {auth.username!r}: {reason}"
                if auth
                else f"Cassandra at {where} requires authentication ({reason}): set JOURNEY_CASSANDRA_USERNAME "
                f"and JOURNEY_CASSANDRA_PASSWORD"
            ) from None
        errors = [str(e) for e in getattr(exc, "errors", {}).values()] or [str(exc)]
        handshake = [e for e in errors if "[SSL" in e or "CERTIFICATE_VERIFY_FAILED" in e]
        if handshake:
            reason = handshake[0].split("Last error: ")[-1]
            trust = f"the CA file {auth.ssl_ca}" if auth.ssl_ca else "the system's trust store"
            raise CassandraTlsError(
                f"Cassandra at {where}: the TLS handshake failed, its certificate was not accepted against "
                f"{trust} ({reason}): set JOURNEY_CASSANDRA_SSL_CA to the PEM file of the CA that signed it "
                f"(its names must cover {where})"
                if "CERTIFICATE_VERIFY_FAILED" in reason
                else f"Cassandra at {where}: the TLS handshake failed ({reason}): does it take TLS on this port? "
                f"(JOURNEY_CASSANDRA_SSL / JOURNEY_CASSANDRA_SSL_CA turn TLS on)"
            ) from None
        if not auth.tls and any("Connection reset by peer" in e for e in errors):
            # a Cassandra that takes TLS only resets a client that speaks CQL in the clear
            raise CassandraUnavailableError(
                f"Cassandra at {where} reset the connection ({errors[0]}): if it takes TLS only, set "
                f"JOURNEY_CASSANDRA_SSL_CA to the PEM file of its CA (or JOURNEY_CASSANDRA_SSL=true)"
            ) from None
        raise CassandraUnavailableError(
            f"Cassandra is not reachable at {where} ({exc}). Start the local stack with "
            f"`make up` (or `python local/stack.py up cassandra`) and retry."
        ) from exc


# ------------------------------------------------------------------ the CQL file: statements


def split_statements(text: str) -> list[str]:
    """Split the text of a CQL file of ours into statements, by its layout rule.

    The rule (``state/schema.cql`` follows it): a line whose first non-blank characters are
    ``--`` is a comment and is dropped; a statement ends with the ``;`` that ends a line
    (trailing blanks aside), and that ``;`` is removed. Everything else is kept as written,
    including comments after code (``col text,  -- why``), which Cassandra's own parser skips
    when the statement runs; a ``;`` elsewhere in a line (in a string literal) does not end a
    statement. So no CQL is lexed here, and statements stay readable as the file has them.

    Parameters
    ----------
    text : str
        The file's text.

    Returns
    -------
    list of str
        Non-empty statements without the final ``;``, stripped.

    Raises
    ------
    SchemaError
        If text follows the last statement without a ``;`` ending its line.

    Examples
    --------
    >>> split_statements("-- a comment; not a statement\\nCREATE TABLE a.b (\\n  k text PRIMARY KEY  -- key\\n)"
    ...                  " WITH comment = 'x; y';\\n\\nDROP TABLE a.b;\\n")
    ["CREATE TABLE a.b (\\n  k text PRIMARY KEY  -- key\\n) WITH comment = 'x; y'", 'DROP TABLE a.b']
    """
    statements: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        if line.lstrip().startswith("--"):
            continue
        code = line.rstrip()
        current.append(code)
        if code.endswith(";"):
            statements.append("\n".join(current)[:-1].strip())
            current = []
    rest = "\n".join(current).strip()
    if rest:
        raise SchemaError(f"the CQL text ends without a ';' at the end of a line after: {rest[:80]!r}")
    return [s for s in statements if s]


_HEAD = r"(?i)^(\s*(?:CREATE|ALTER|DROP)\s+{kind}\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?){ks}"


def rename_keyspace(statement: str, keyspace: str, original: str = DEFAULT_KEYSPACE) -> str:
    """Rewrite the keyspace a statement of ours creates or alters, ``original`` -> ``keyspace``.

    By the file's rule, the keyspace is named at the head of each statement and nowhere else:
    ``CREATE KEYSPACE [IF NOT EXISTS] <ks>`` or ``CREATE TABLE [IF NOT EXISTS] <ks>.<table>``
    (or ``ALTER`` / ``DROP``); nothing else in the statement (literals, comments) changes.

    Examples
    --------
    >>> rename_keyspace("CREATE TABLE IF NOT EXISTS journey.t (k text PRIMARY KEY) "
    ...                 "WITH comment = 'journey.t'", "journey_test")
    "CREATE TABLE IF NOT EXISTS journey_test.t (k text PRIMARY KEY) WITH comment = 'journey.t'"
    >>> rename_keyspace("CREATE KEYSPACE journey\\n  WITH replication = {}", "ks2")
    'CREATE KEYSPACE ks2\\n  WITH replication = {}'
    """
    if not _KEYSPACE_NAME.match(keyspace):
        raise ValueError(f"invalid keyspace name {keyspace!r} (letters, digits, _; at most 48)")
    ks = re.escape(original)
    for kind, after in (("KEYSPACE", r"\b"), ("TABLE", r"(?=\s*\.)")):
        statement = re.sub(_HEAD.format(kind=kind, ks=ks) + after, lambda m: m.group(1) + keyspace, statement, count=1)
    return statement


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
        raise ValueError(
            f"replication {replication}: NetworkTopologyStrategy needs a replication factor per "
            f'data centre, e.g. {{"class": "NetworkTopologyStrategy", "dc1": 3}}'
        )
    for name, factor in factors.items():
        if not re.fullmatch(r"\w+", name) or not str(factor).isdigit() or int(str(factor)) < 1:
            raise ValueError(
                f"replication {replication}: {name}={factor!r} must be a data centre name with a "
                f"positive integer factor"
            )
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


# ------------------------------------------------------------------ the file's tables


_CREATE_TABLE = re.compile(r"(?is)^\s*CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(?:(\w+)\.)?(\w+)\s*\(")


def _table_definition(statement: str) -> tuple[str | None, str, list[str]] | None:
    """Keyspace, table and the top-level entries of a ``CREATE TABLE``'s column list.

    Comments after code (``--``) are dropped line by line first (the column list holds no
    string literals); the list ends at the parenthesis that closes it; entries are split at
    commas outside ``<>`` and ``()`` (``map<text, bigint>``, ``PRIMARY KEY ((a, b), c)``).
    """
    code = "\n".join(line.split("--", 1)[0] for line in statement.splitlines())
    m = _CREATE_TABLE.match(code)
    if m is None:
        return None
    entries: list[str] = []
    depth, buf = 0, []  # type: tuple[int, list[str]]
    for ch in code[m.end() :]:
        if ch in "<(":
            depth += 1
        elif ch in ">)":
            depth -= 1
            if depth < 0:  # the parenthesis that closes the column list
                break
        if ch == "," and depth == 0:
            entries.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    entries.append("".join(buf))
    return m.group(1), m.group(2), [" ".join(e.split()) for e in entries if e.strip()]


def _normal_type(cql_type: str) -> str:
    """A CQL type as compared here: lower case, no blanks (``map<text,frozen<list<text>>>``)."""
    return re.sub(r"\s+", "", cql_type).lower()


def parse_create_table(statement: str) -> tuple[str | None, str, dict[str, str]] | None:
    """Keyspace, table and ``{column: type}`` of a ``CREATE TABLE`` (None for other statements).

    Types are lower-cased with spaces removed (``map<text,frozen<list<text>>>``); the
    ``PRIMARY KEY`` clause and a column's inline ``PRIMARY KEY`` / ``STATIC`` are dropped.

    Examples
    --------
    >>> parse_create_table("CREATE TABLE IF NOT EXISTS ks.t (k text PRIMARY KEY, "
    ...                    "m map<text, frozen<list<text>>>) WITH comment = 'c'")
    ('ks', 't', {'k': 'text', 'm': 'map<text,frozen<list<text>>>'})
    >>> parse_create_table("CREATE TABLE t (\\n  a int,  -- the (first, only) column\\n  PRIMARY KEY (a)\\n)")
    (None, 't', {'a': 'int'})
    """
    parsed = _table_definition(statement)
    if parsed is None:
        return None
    keyspace, table, entries = parsed
    columns: dict[str, str] = {}
    for entry in entries:
        if re.match(r"(?i)^PRIMARY\s+KEY\b", entry):
            continue
        name, _, ctype = entry.partition(" ")
        ctype = re.sub(r"(?i)\s+(PRIMARY\s+KEY|STATIC)\b.*$", "", ctype)
        columns[name.strip('"')] = _normal_type(ctype)
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
    parsed = _table_definition(statement)
    if parsed is None:
        return set()
    out: set[str] = set()
    for entry in parsed[2]:
        clause = re.match(r"(?is)^PRIMARY\s+KEY\s*\((.*)\)", entry)
        if clause:
            out.update(c.strip().strip('"') for c in re.split(r"[(),]", clause.group(1)) if c.strip())
        elif re.search(r"(?i)\bPRIMARY\s+KEY\b", entry):
            out.add(entry.split()[0].strip('"'))
    return out


def missing_columns(
    statement: str, actual: dict[str, str], actual_key: set[str] | None = None
) -> dict[str, str] | None:
    """Columns of a ``CREATE TABLE`` that an existing table lacks and that may be added.

    Parameters
    ----------
    statement : str
        A ``CREATE TABLE`` statement of the file.
    actual : dict of str to str
        The existing table's ``{column: type}`` (types as Cassandra reports them).
    actual_key : set of str, optional
        The existing table's primary key columns, if known: they must be the file's.

    Returns
    -------
    dict of str to str or None
        ``{column: type}`` to add with ``ALTER TABLE ... ADD`` (empty: nothing to do), in the
        file's order; ``None`` if the table is not a predecessor of the file's (a column of
        another type, or another primary key): nothing is added then, and the verification
        reports the differences.

    Examples
    --------
    >>> stmt = "CREATE TABLE IF NOT EXISTS ks.t (k text PRIMARY KEY, a bigint, m map<date, bigint>)"
    >>> missing_columns(stmt, {"k": "text", "a": "bigint"}, {"k"})
    {'m': 'map<date,bigint>'}
    >>> missing_columns(stmt, {"k": "text", "a": "bigint", "m": "map<date, bigint>"})
    {}
    >>> missing_columns(stmt, {"k": "text", "a": "int"}) is None  # another type
    True
    >>> missing_columns(stmt, {"id": "uuid", "a": "bigint"}) is None  # another key
    True
    >>> missing_columns(stmt, {"k": "text", "a": "bigint"}, {"k", "a"}) is None  # another key
    True
    """
    parsed = parse_create_table(statement)
    if parsed is None:
        return {}
    expected = parsed[2]
    have = {c: _normal_type(t) for c, t in actual.items()}
    if any(c in have and have[c] != t for c, t in expected.items()):
        return None
    key = primary_key_columns(statement)
    if any(c not in have for c in key) or (actual_key is not None and set(actual_key) != key):
        return None
    return {c: t for c, t in expected.items() if c not in have}


# ------------------------------------------------------------------ the live tables (driver metadata)


def _live_table(session: Session, keyspace: str, table: str) -> tuple[dict[str, str], set[str]] | None:
    """``({column: type}, primary key columns)`` of a table as Cassandra has it now, from the
    driver's schema metadata (refreshed first); None if there is no such table."""
    cluster = session.cluster
    try:
        cluster.refresh_table_metadata(keyspace, table)  # an absent table is no error: the metadata tells
    except DriverException as exc:
        raise SchemaError(f"could not read the definition of {keyspace}.{table} from Cassandra: {exc}") from exc
    ks = cluster.metadata.keyspaces.get(keyspace)
    meta = ks.tables.get(table) if ks is not None else None
    if meta is None:
        return None
    return ({name: col.cql_type for name, col in meta.columns.items()}, {col.name for col in meta.primary_key})


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
        assert keyspace is not None
        live = _live_table(session, keyspace, table)
        if live is None:
            continue
        for col, ctype in (missing_columns(stmt, *live) or {}).items():
            alter = f"ALTER TABLE {keyspace}.{table} ADD {col} {ctype}"
            try:
                _run_ddl(session, alter, agreement_timeout)
            except InvalidRequest:
                # another process added it in the meantime: fine if it is there now (verified later)
                now = _live_table(session, keyspace, table)
                if now is None or col not in now[0]:
                    raise
                continue
            executed.append(alter)
    return executed


# ------------------------------------------------------------------ applying


def _verify_tables(session: Session, statements: list[str]) -> None:
    """Raise SchemaError if a table in the database lacks a column of the file, types differ,
    or its primary key is not the file's."""
    problems = []
    for stmt in statements:
        parsed = parse_create_table(stmt)
        if parsed is None:
            continue
        keyspace, table, expected = parsed
        live = _live_table(session, keyspace or "", table)
        if live is None:
            problems.append(f"{keyspace}.{table}: table missing")
            continue
        actual = {c: _normal_type(t) for c, t in live[0].items()}
        for col, ctype in expected.items():
            if col not in actual:
                problems.append(f"{keyspace}.{table}: column {col} ({ctype}) missing")
            elif actual[col] != ctype:
                problems.append(f"{keyspace}.{table}: column {col} is {actual[col]}, the file says {ctype}")
        key = primary_key_columns(stmt)
        if live[1] != key:
            problems.append(f"{keyspace}.{table}: primary key is {sorted(live[1])}, the file says {sorted(key)}")
    if problems:
        raise SchemaError(
            "the existing schema differs from the CQL file (IF NOT EXISTS keeps existing "
            "tables as they are, and missing columns are only added to a table whose other "
            "columns and key agree with the file; migrate it explicitly): " + "; ".join(problems)
        )


def apply_schema(
    session_or_hosts: Session | str | Sequence[str],
    cql_path: str | Path = DEFAULT_CQL_PATH,
    *,
    keyspace: str | None = None,
    port: int = DEFAULT_PORT,
    agreement_timeout: float = 30.0,
    verify: bool = True,
    replication: dict[str, object] | None = None,
    add_columns: bool = True,
) -> list[str]:
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
    session: Session = connect(session_or_hosts, port) if owned else session_or_hosts
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
    ap.add_argument(
        "--replication",
        help="keyspace replication as JSON, e.g. "
        '\'{"class": "NetworkTopologyStrategy", "dc1": 3}\' (default: the file\'s SimpleStrategy, RF 1)',
    )
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
        statements = apply_schema(args.host, args.cql, keyspace=args.keyspace, port=args.port, replication=replication)
    except (CassandraUnavailableError, ConfigError) as exc:  # ConfigError: a bad JOURNEY_CASSANDRA_SSL_CA
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SchemaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    tables = [p[1] for p in map(parse_create_table, statements) if p]
    added = [s.split(" ADD ", 1)[1] for s in statements if s.startswith("ALTER TABLE ")]
    print(
        f"schema applied to {args.host}:{args.port}, keyspace {args.keyspace}: "
        f"{len(statements)} statements, tables {', '.join(tables)}"
        + (f"; columns added: {', '.join(added)}" if added else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
