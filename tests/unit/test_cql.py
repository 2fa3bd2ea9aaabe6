"""state/schema.cql without services: statements, IF NOT EXISTS, no counters, profile columns."""

from __future__ import annotations

import dataclasses
import re
import types
import typing

import pytest

from models.profile import ProfileAggregate
from state.cassandra_schema import (
    DEFAULT_CQL_PATH,
    SchemaError,
    load_statements,
    missing_columns,
    parse_create_table,
    primary_key_columns,
    rename_keyspace,
    split_statements,
)
from state.profile_store import FIELD_TO_COLUMN, META_COLUMNS, TRAIT_COLUMNS

STATEMENTS = load_statements()
TABLES = {p[1]: p for p in map(parse_create_table, STATEMENTS) if p is not None}


def _primary_key(table: str) -> str:
    stmt = next(s for s in STATEMENTS if re.search(rf"\bjourney\.{table}\b", s))
    m = re.search(r"PRIMARY KEY \(", stmt)
    if m is None:  # inline "col type PRIMARY KEY"
        return re.search(r"(\w+)\s+\w+\s+PRIMARY KEY", stmt).group(1)
    depth, start = 1, m.end()
    for i in range(start, len(stmt)):
        depth += {"(": 1, ")": -1}.get(stmt[i], 0)
        if depth == 0:
            return re.sub(r"\s+", "", stmt[start:i])
    raise AssertionError(f"unbalanced PRIMARY KEY in {stmt}")


def test_cql_file_parses_into_the_expected_statements():
    heads = [re.match(r"CREATE (KEYSPACE|TABLE) IF NOT EXISTS ([\w.]+)", s).group(1, 2) for s in STATEMENTS]
    assert heads == [
        ("KEYSPACE", "journey"),
        ("TABLE", "journey.profiles"),
        ("TABLE", "journey.identity_links"),
        ("TABLE", "journey.sessions"),
        ("TABLE", "journey.carts"),
        ("TABLE", "journey.triggers"),
        ("TABLE", "journey.segment_members"),
        ("TABLE", "journey.profile_consent"),
        ("TABLE", "journey.profile_segments"),
        ("TABLE", "journey.scores"),
        ("TABLE", "journey.model_metrics"),
        ("TABLE", "journey.erased_identifiers"),
        ("TABLE", "journey.privacy_audit"),
    ]
    assert all(p[0] == "journey" for p in TABLES.values())
    assert _primary_key("profiles") == "profile_id"
    assert _primary_key("identity_links") == "(identifier_type,identifier_value)"
    assert _primary_key("sessions") == "(profile_id),started_at,session_id"
    assert _primary_key("carts") == "(profile_id),cart_id"
    assert _primary_key("triggers") == "(profile_id),fired_at,trigger_id"
    assert _primary_key("profile_consent") == "(profile_id),purpose"
    assert TABLES["identity_links"][2] == {
        "identifier_type": "text",
        "identifier_value": "text",
        "profile_id": "text",
        "version": "bigint",
    }


def test_every_statement_is_if_not_exists():
    assert STATEMENTS
    for stmt in STATEMENTS:
        assert re.match(r"(?i)^CREATE\s+(KEYSPACE|TABLE)\s+IF\s+NOT\s+EXISTS\b", stmt), stmt


def test_local_keyspace_is_simple_strategy_rf1_and_production_strategy_is_documented():
    assert "'class': 'SimpleStrategy', 'replication_factor': 1" in STATEMENTS[0]
    assert "NetworkTopologyStrategy" in DEFAULT_CQL_PATH.read_text()


def test_no_counter_columns():
    for _, table, columns in TABLES.values():
        for col, ctype in columns.items():
            assert "counter" not in ctype, f"{table}.{col} is a counter (not idempotent)"
    assert "counter" not in " ".join(STATEMENTS).lower()


def _expected_cql_type(tp: typing.Any, name: str) -> str:
    if name.endswith("_ms"):
        return "timestamp"
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is str:
        return "text"
    if tp is int:
        return "bigint"
    if origin is dict:
        key, value = args
        if key is int:  # UTC day numbers (purchase_day_cents) are CQL dates
            return f"map<date,{_expected_cql_type(value, '')}>"
        if typing.get_origin(value) is tuple:
            # identifiers: tuple[str, ...] -> frozen list; consent / crm: fixed tuple -> JSON text
            return "map<text,frozen<list<text>>>" if args[1] == tuple[str, ...] else "map<text,text>"
        return f"map<text,{_expected_cql_type(value, '')}>"
    if tp is float:
        return "double"
    raise AssertionError(f"unexpected field type {tp!r}")


def test_profile_table_has_a_column_for_every_profile_aggregate_field():
    columns = TABLES["profiles"][2]
    hints = typing.get_type_hints(ProfileAggregate)
    for f in dataclasses.fields(ProfileAggregate):
        column = f.name[:-3] if f.name.endswith("_ms") else f.name
        assert column in columns, f"ProfileAggregate.{f.name} has no column {column} in journey.profiles"
        assert FIELD_TO_COLUMN.get(f.name) == column, f"profile_store does not map {f.name} to {column}"
        tp = hints[f.name]
        if typing.get_origin(tp) in (typing.Union, types.UnionType):
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        assert columns[column] == _expected_cql_type(tp, f.name), f"{f.name}: {columns[column]}"
    # ... and nothing else besides the row metadata, the derived traits (tests/unit/test_profile_traits.py)
    # and the deprecated column kept for the release before (state/schema.cql)
    assert set(columns) == set(FIELD_TO_COLUMN.values()) | set(META_COLUMNS) | set(TRAIT_COLUMNS) | {"updated_by_event"}


def test_keyspace_override_rewrites_only_keyspace_names():
    moved = load_statements(keyspace="journey_test_abc")
    assert re.match(r"CREATE KEYSPACE IF NOT EXISTS journey_test_abc\s+WITH\b", moved[0])
    assert all("journey." not in s.split("comment")[0] for s in moved)
    assert [parse_create_table(s)[0] for s in moved[1:]] == ["journey_test_abc"] * (len(moved) - 1)
    # string literals are left alone
    stmt = "CREATE TABLE IF NOT EXISTS journey.t (k text PRIMARY KEY) WITH comment = 'see journey.t'"
    assert rename_keyspace(stmt, "ks2").endswith("ks2.t (k text PRIMARY KEY) WITH comment = 'see journey.t'")
    with pytest.raises(ValueError):
        load_statements(keyspace="bad-name; DROP")


def test_split_follows_the_files_layout_rule():
    """Whole-line comments dropped (a ';' in them is nothing); a statement ends only with a ';' that
    ends a line, so ';' in a literal does not; comments after code stay (Cassandra skips them)."""
    text = (
        "-- it's a comment; with a quote\nCREATE TABLE a.b (\n  k text PRIMARY KEY,  -- the key; (really)\n"
        "  v int\n) WITH comment = 'x; -- y''s';\n   -- indented comment;\nDROP TABLE a.b;  \n"
    )
    assert split_statements(text) == [
        "CREATE TABLE a.b (\n  k text PRIMARY KEY,  -- the key; (really)\n  v int\n) WITH comment = 'x; -- y''s'",
        "DROP TABLE a.b",
    ]
    assert parse_create_table(split_statements(text)[0]) == ("a", "b", {"k": "text", "v": "int"})
    with pytest.raises(SchemaError, match="without a ';'"):
        split_statements("CREATE TABLE a.b (k text PRIMARY KEY); DROP TABLE a.b")


def test_comments_left_in_the_files_statements_follow_code_on_column_lines():
    """What reading the column lists relies on: a '--' inside a statement starts a comment after
    a column definition, never inside a string literal."""
    for stmt in STATEMENTS:
        for line in stmt.splitlines():
            if "--" in line:
                assert re.match(r"^\s+\w+\s+\S", line) and "'" not in line, line


def test_table_definitions_of_the_file_and_what_an_older_table_may_get():
    profiles = next(s for s in STATEMENTS if parse_create_table(s) and parse_create_table(s)[1] == "profiles")
    assert primary_key_columns(profiles) == {"profile_id"}
    columns = parse_create_table(profiles)[2]
    older = {c: t for c, t in columns.items() if c not in ("purchase_days", "top_categories")}
    assert missing_columns(profiles, older, {"profile_id"}) == {
        "purchase_days": "bigint",
        "top_categories": "frozen<list<frozen<tuple<text,double>>>>",
    }
    assert missing_columns(profiles, {**older, "orders": "int"}, {"profile_id"}) is None  # another type
    assert missing_columns(profiles, older, {"profile_id", "version"}) is None  # another key
