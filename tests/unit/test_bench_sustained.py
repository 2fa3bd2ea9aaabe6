"""The pure parts of ``bench/sustained.py``: the rate fit, the py-spy summary, the ratios and
the targets (the measurements themselves need the real stack: ``make bench``)."""

from __future__ import annotations

import math

import pytest

from bench.sustained import parse_args, pyspy_top, ratios_and_targets, slope


def test_slope_is_the_least_squares_rate_of_stepwise_commits() -> None:
    # commits every 2 s of 2,000 records: 1,000 records/s whatever the sampling phase
    points = [(t * 0.5, 2000 * int(t * 0.5 // 2)) for t in range(0, 121)]
    assert slope(points) == pytest.approx(1000, rel=0.05)
    assert math.isnan(slope([(1.0, 5), (1.0, 9)]))


def test_pyspy_top_counts_own_and_inclusive_time_by_function_not_line(tmp_path) -> None:
    raw = tmp_path / "tm.txt"
    raw.write_text(
        "run (x.py:1);DedupeByEventId.process_element (operators/dedupe.py:40);ValueStateImpl.value (pyflink/s.py:9) 6\n"
        "run (x.py:1);DedupeByEventId.process_element (operators/dedupe.py:44) 2\n"
        "run (x.py:1);Codec.encode (models/avro_codec.py:73) 2\n"
        "garbage line\n"
        " 7\n"
    )
    top = pyspy_top(raw)
    assert top["samples"] == 10 and top["no_python"] == 7
    assert top["own"][0] == ("ValueStateImpl.value (pyflink/s.py)", 0.6)
    assert dict(top["own"])["DedupeByEventId.process_element (operators/dedupe.py)"] == 0.2
    assert dict(top["inclusive_project"]) == {
        "DedupeByEventId.process_element (operators/dedupe.py)": 0.8,
        "Codec.encode (models/avro_codec.py)": 0.2,
    }


def run(stage: str, p: int, rate: float, requests: float | None = None) -> dict:
    return {"stage": stage, "parallelism": p, "records_per_s": rate, "cassandra": {"requests_per_event": requests}}


def test_ratios_take_the_best_parallelism_and_compare_the_pipeline_in_raw_records() -> None:
    data = {
        "normalized_per_raw": 0.9,
        "runs": [
            run("ingestion", 1, 10_000),
            run("ingestion", 2, 9_000),
            run("profiles", 1, 1_000),
            run("profiles", 2, 1_800),
            run("pipeline", 2, 900, requests=0.15),
        ],
        "baselines": {
            "plain_loop": {
                "ingestion": {"records_per_s": 40_000},
                "profiles": {"records_per_s": 4_000},
                "pipeline": {"records_per_s": 2_000},
            },
            "handwritten": {"records_per_s": 2_000},
        },
        "latency": {"produce_to_profile_ms": {"p99": 800.0}},
    }
    ratios, targets = ratios_and_targets(data)
    assert ratios["ingestion_vs_plain_loop"] == 0.25
    assert ratios["profiles_vs_plain_loop"] == 0.45
    assert ratios["pipeline_vs_plain_loop"] == pytest.approx(0.5)  # 900 normalized/s = 1,000 raw/s
    assert ratios["pipeline_p2_vs_handwritten"] == pytest.approx(0.5)  # 900 normalized = 1,000 raw per s
    assert ratios["p2_over_p1"] == {"ingestion": 0.9, "profiles": 1.8}
    met = {t["name"]: t["met"] for t in targets}
    assert met == {
        "every stage >= 0.5x its plain-loop ceiling": False,
        "pipeline p=2 (exactly-once) vs hand-written consumer": False,
        "ingestion sustained records/s": False,
        "p99 produce -> profile at half load (ms)": True,
        "Cassandra requests per event (pipeline)": True,
        "p=2 / p=1, profiles (identity)": True,
    }


def test_a_target_without_a_measurement_is_neither_met_nor_missed() -> None:
    _, targets = ratios_and_targets({"normalized_per_raw": 1.0, "runs": [run("ingestion", 1, 5_000)]})
    assert {t["name"]: t["met"] for t in targets}["p99 produce -> profile at half load (ms)"] is None


def test_arguments_are_checked() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--stages", "ingestion,nonsense"])
    with pytest.raises(SystemExit):
        parse_args(["--parallelism", "1,8"])
    args = parse_args(["--parallelism", "1,2,4", "--load-steps", "0.5,1"])
    assert args.parallelism == [1, 2, 4] and args.load_steps == [0.5, 1.0]
