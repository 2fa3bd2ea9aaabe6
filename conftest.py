"""Project root on sys.path for every test (pytest's pythonpath does this too), and the test
suite's own local stack.

The end-to-end and chaos tests start (and afterwards stop) a stack of their own: data and logs
in ``.stack/test``, every port shifted by 10000 (Kafka 19092, Cassandra 19042, Flink web UI
18081). So ``make test`` never touches, and never waits for, what ``make demo`` built and left
running on the default ports; both can be up at once. Set before ``local.stack`` is imported.
"""

import os
from pathlib import Path

os.environ.setdefault("JOURNEY_STACK_DIR", str(Path(__file__).resolve().parent / ".stack" / "test"))
os.environ.setdefault("JOURNEY_STACK_PORT_OFFSET", "10000")
