"""The recording stores' common write (tests): each ``(action, values, timestamp)`` statement a
Cassandra store would execute appended to a file as one JSON line, which the readers of
:mod:`state.journey_store` and :mod:`state.learning_store` replay as Cassandra would keep it."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable


def jsonable(v: Any) -> Any:
    """A CQL value as JSON holds it (a timestamp as epoch ms, a list of tuples as lists).

    >>> from datetime import timezone
    >>> jsonable(datetime(1970, 1, 1, 0, 0, 1, tzinfo=timezone.utc)), jsonable([("a", 1)]), jsonable(2.5)
    (1000, [['a', 1]], 2.5)
    """
    if isinstance(v, datetime):
        return int(round(v.timestamp() * 1000))
    if isinstance(v, list):
        return [list(x) if isinstance(x, tuple) else x for x in v]
    return v


def append_statements(path: Path, statements: Iterable[tuple[str, tuple[Any, ...], int]]) -> int:
    """Append the statements to ``path``; returns how many (the requests a store would make)."""
    lines = [json.dumps([action, [jsonable(v) for v in values], ts]) for action, values, ts in statements]
    with open(path, "a") as f:
        f.write("".join(line + "\n" for line in lines))
    return len(lines)
