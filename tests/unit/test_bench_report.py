"""bench/report.py: the sustained benchmark's table, README block, plots and CLI, on a synthetic result."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from bench import report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REPO_README = Path(__file__).resolve().parents[2] / "README.md"


def sample() -> dict[str, Any]:
    return {
        "benchmark": "sustained",
        "when": "2026-12-01T01:23:45Z",
        "machine": {
            "cpus": 2,
            "memory_gib": 24,
            "cpu_model": "Test CPU @ 2.0GHz",
            "python": "3.11.7",
            "flink": "2.2.1",
            "taskmanagers": 2,
            "slots_per_taskmanager": 4,
        },
        "settings": {"warmup_s": 15, "window_s": 60, "checkpoint_ms": 2000, "exactly_once": True},
        "runs": [
            {
                "stage": "pipeline",
                "parallelism": 2,
                "records_per_s": 1200.0,
                "window_s": 60.0,
                "records_in_window": 72000,
                "backlog": 100000,
                "drained_before_end": False,
                "checkpoints": {
                    "count": 30,
                    "duration_ms_p50": 250.0,
                    "duration_ms_max": 1800.0,
                    "size_bytes_last": 2048,
                },
                "cassandra": {"requests_per_event": 0.25, "mutations_per_event": 2.0},
                "busy_ratio": {"identity-router | fold": 0.5, "Source: Kafka": 0.1},
                "backpressured_ratio": {"Source: Kafka": 0.8},
            },
            {
                "stage": "ingestion",
                "parallelism": 1,
                "records_per_s": 3500.0,
                "window_s": 60.0,
                "records_in_window": 210000,
                "backlog": 400000,
                "drained_before_end": False,
                "checkpoints": {
                    "count": 30,
                    "duration_ms_p50": 120.0,
                    "duration_ms_max": 900.0,
                    "size_bytes_last": 1234567,
                },
                "cassandra": {"requests_per_event": 0.2, "mutations_per_event": 1.8},
                "busy_ratio": {"Source: Kafka -> decode": 0.97, "sink": 0.3},
                "backpressured_ratio": {"Source: Kafka -> decode": 0.0},
            },
            {
                "stage": "ingestion",
                "parallelism": 2,
                "records_per_s": 5600.0,
                "drained_before_end": True,
                "checkpoints": None,
                "busy_ratio": {},
            },
            {"stage": "profiles", "parallelism": 1, "records_per_s": 700.0},
        ],
        "baselines": {
            "plain_loop": {
                "ingestion": {"records_per_s": 19000.0},
                "profiles": {"records_per_s": 7000.0},
                "pipeline": {"records_per_s": 3000.0},
            },
            "handwritten": {
                "records_per_s": 1500.0,
                "cassandra_requests_per_event": 0.3,
                "stages": ["ingest", "identity", "fold"],
            },
        },
        "offered_load": [
            {
                "stage": "pipeline",
                "parallelism": 2,
                "offered_per_s": o,
                "achieved_per_s": a,
                "lag_growth_per_s": g,
                "bounded": b,
            }
            for o, a, g, b in ((500.0, 498.0, 0.5, True), (800.0, 795.0, 1.0, True), (1200.0, 900.0, 300.0, False))
        ],
        "max_bounded_rate": {"pipeline": 800.0},
        "latency": {
            "offered_per_s": 400.0,
            "produce_to_profile_ms": {
                "p50": 500.0,
                "p99": 900.0,
                "count": 200,
                "samples": [300.0 + 3 * i for i in range(200)],
            },
            "due_to_trigger_ms": {
                "p50": 2900.0,
                "p99": 3400.0,
                "count": 50,
                "samples": [2500.0 + 20 * i for i in range(50)],
            },
        },
        "ratios": {
            "ingestion_vs_plain_loop": 0.2,
            "profiles_vs_plain_loop": 0.1,
            "pipeline_p2_vs_handwritten": 0.8,
            "p2_over_p1": {"ingestion": 1.6, "profiles": 1.5},
        },
        "targets": [
            {"name": "every stage >= 0.5x its plain-loop ceiling", "target": ">= 0.5", "value": 0.1, "met": False},
            {"name": "pipeline p2 >= hand-written", "target": ">= 1.0", "value": 0.8, "met": True},
            {"name": "latency p99", "target": "< 1 s", "value": None, "met": None},
        ],
    }


def lines_of(text: str) -> list[str]:
    return text.splitlines()


# ---------------------------------------------------------------------------------------------
# the table


def test_header_names_the_machine_and_the_date():
    table = report.render_table(sample())
    assert (
        "Measured 2026-12-01T01:23:45Z on 2 cores / 24 GiB (Test CPU @ 2.0GHz), Python 3.11.7, Flink 2.2.1, "
        "by `make bench`."
    ) in lines_of(table)
    assert (
        "Setup: 2 TaskManagers × 4 slots; warm-up 15 s, measured window 60 s, checkpoints every 2,000 ms, "
        "exactly-once on."
    ) in lines_of(table)


def test_run_rows_have_the_numbers_the_ratios_and_the_busiest_vertex_in_stage_order():
    rows = [line for line in lines_of(report.render_table(sample())) if line.startswith("| ") and " | " in line]
    runs = rows[1 : 1 + 4]
    assert runs == [
        "| ingestion | 1 | 3,500 | 0.18× | 120 / 900 | 1.2 MiB | 0.20 | Source: Kafka -> decode (97%) |",
        "| ingestion | 2 | 5,600 † | 0.29× | — | — | — | — |",
        "| profiles | 1 | 700 | 0.10× | — | — | — | — |",
        "| pipeline | 2 | 1,200 | 0.40× | 250 / 1,800 | 2.0 KiB | 0.25 | identity-router \\| fold (50%) |",
    ]
    assert rows[0].startswith("| stage | parallelism | records/s sustained | × plain loop |")


def test_baselines_scaling_max_bounded_rate_and_latency_lines():
    table = lines_of(report.render_table(sample()))
    assert (
        "- Plain-loop ceiling (the same logic in one CPython loop, no Flink): ingestion 19,000/s, "
        "profiles 7,000/s, pipeline 3,000/s."
    ) in table
    assert (
        "- Hand-written pipeline (ingest → identity → fold): 1,500/s, 0.30 Cassandra req/event; "
        "the pipeline at parallelism 2 reaches 0.80× of it."
    ) in table
    assert "- Parallelism 2 over 1: ingestion 1.60×, profiles 1.50×." in table
    assert "- Max bounded rate (highest offered load whose lag stayed bounded): pipeline 800/s." in table
    assert (
        "- Latency at 400/s offered: produce → profile p50 500 ms / p99 900 ms (200 samples); "
        "due → trigger p50 2,900 ms / p99 3,400 ms (50 samples)."
    ) in table
    assert "† the backlog drained before the window ended: a lower bound, not a sustained rate." in table


def test_targets_table_marks_met_and_missed():
    table = lines_of(report.render_table(sample()))
    assert "| every stage >= 0.5x its plain-loop ceiling | >= 0.5 | 0.10 | ✘ |" in table
    assert "| pipeline p2 >= hand-written | >= 1.0 | 0.80 | ✔ |" in table
    assert "| latency p99 | < 1 s | — | — |" in table


def test_only_the_required_keys_give_dashes_not_a_crash():
    data = {"benchmark": "sustained", "when": "2026-12-02", "machine": {}, "runs": [{"stage": "ingestion"}]}
    table = lines_of(report.render_table(data))
    assert "Measured 2026-12-02 on — cores / — GiB (—), Python —, Flink —, by `make bench`." in table
    assert "| ingestion | — | — | — | — | — | — | — |" in table
    assert "- Plain-loop ceiling (the same logic in one CPython loop, no Flink): —." in table
    assert "- Hand-written pipeline: —, — Cassandra req/event; the pipeline at parallelism 2 reaches — of it." in table
    assert "- Max bounded rate (highest offered load whose lag stayed bounded): —." in table
    assert "- Latency: —." in table
    assert "Targets: —" in table
    assert not any("†" in line for line in table)


def test_nulls_and_non_numbers_are_dashes():
    data = sample()
    data["runs"] = [
        {
            "stage": "profiles",
            "parallelism": 2,
            "records_per_s": float("nan"),
            "checkpoints": {"duration_ms_p50": None, "duration_ms_max": 40.0, "size_bytes_last": "big"},
            "cassandra": None,
            "busy_ratio": {"fold": None},
        }
    ]
    data["baselines"] = None
    row = [line for line in lines_of(report.render_table(data)) if line.startswith("| profiles |")]
    assert row == ["| profiles | 2 | — | — | — / 40 | — | — | — |"]


@pytest.mark.parametrize(
    ("value", "text"),
    [(512, "512 B"), (2048, "2.0 KiB"), (1234567, "1.2 MiB"), (5 * 1024**3, "5.0 GiB"), (None, "—")],
)
def test_checkpoint_sizes_are_binary_units(value, text):
    assert report.fmt_bytes(value) == text


# ---------------------------------------------------------------------------------------------
# README


SAMPLE_README = f"""# Project

Intro with | pipes | and `make bench`.

| command | what |
|---|---|
| `make bench` | the benchmarks |

{report.BEGIN}

{report.PLACEHOLDER}

{report.END}

## After

The rest stays as it is.
"""


def test_readme_block_is_replaced_idempotently_and_nothing_else_changes(tmp_path: Path):
    readme = tmp_path / "README.md"
    readme.write_text(SAMPLE_README, encoding="utf-8")
    block = report.render_table(sample())
    assert report.update_readme(readme, block) is True
    once = readme.read_text(encoding="utf-8")
    assert report.update_readme(readme, block) is False
    assert readme.read_text(encoding="utf-8") == once
    before, rest = SAMPLE_README.split(report.BEGIN)
    after = rest.split(report.END)[1]
    assert once.startswith(before + report.BEGIN + "\n\n")
    assert once.endswith("\n\n" + report.END + after)
    assert once == before + report.BEGIN + "\n\n" + block + "\n\n" + report.END + after
    assert report.PLACEHOLDER not in once


def test_a_new_result_replaces_the_old_table(tmp_path: Path):
    readme = tmp_path / "README.md"
    readme.write_text(SAMPLE_README, encoding="utf-8")
    report.update_readme(readme, report.render_table(sample()))
    newer = sample()
    newer["when"] = "2027-01-01T00:00:00Z"
    report.update_readme(readme, report.render_table(newer))
    text = readme.read_text(encoding="utf-8")
    assert "2027-01-01T00:00:00Z" in text and "2026-12-01T01:23:45Z" not in text
    assert text.count(report.BEGIN) == 1 and text.count(report.END) == 1


@pytest.mark.parametrize(
    "text",
    [
        "# no markers\n",
        f"{report.BEGIN}\nx\n",
        f"{report.END}\nx\n{report.BEGIN}\n",
        f"{report.BEGIN}\n{report.END}\n{report.BEGIN}\n{report.END}\n",
    ],
)
def test_missing_or_broken_markers_are_an_error(text: str):
    with pytest.raises(report.ReportError):
        report.replace_block(text, "table")


def test_the_repository_readme_has_one_marker_block():
    text = REPO_README.read_text(encoding="utf-8")
    assert text.count(report.BEGIN) == 1 and text.count(report.END) == 1
    assert text.index(report.BEGIN) < text.index(report.END)


# ---------------------------------------------------------------------------------------------
# plots


def test_all_three_plots_are_written_as_png(tmp_path: Path):
    notes: list[str] = []
    written = report.write_plots(sample(), tmp_path / "out", notes.append)
    names = {p.name for p in written}
    assert names == {report.PNG_THROUGHPUT, report.PNG_LATENCY, report.PNG_PARALLELISM}
    for path in written:
        data = path.read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5000, path
    assert notes == []


def test_a_plot_without_its_data_is_skipped_with_a_note(tmp_path: Path):
    data = sample()
    del data["offered_load"]
    data["latency"] = {"offered_per_s": 400.0, "produce_to_profile_ms": {"p50": 1.0, "samples": []}}
    notes: list[str] = []
    written = report.write_plots(data, tmp_path, notes.append)
    assert [p.name for p in written] == [report.PNG_PARALLELISM]
    assert notes == [
        f"skipped {report.PNG_THROUGHPUT}: no offered_load points",
        f"skipped {report.PNG_LATENCY}: no latency samples",
    ]
    assert not (tmp_path / report.PNG_THROUGHPUT).exists()


def test_plots_survive_partial_data(tmp_path: Path):
    data = sample()
    data["baselines"] = {}
    data["max_bounded_rate"] = None
    data["offered_load"] = [
        {"stage": "pipeline", "offered_per_s": 10.0, "achieved_per_s": None},
        {"offered_per_s": 5, "achieved_per_s": 5},
    ]
    data["latency"]["due_to_trigger_ms"] = {"samples": [0.0, 1.0, 2.0]}  # no p50/p99, a zero: linear x
    data["runs"].append({"stage": "journeys", "parallelism": 4, "records_per_s": 50.0})
    written = report.write_plots(data, tmp_path, lambda _: None)
    assert len(written) == 3
    assert all(p.read_bytes()[:8] == PNG_MAGIC for p in written)


def test_percentile_is_nearest_rank():
    samples = [float(i) for i in range(1, 101)]
    assert report._percentile(samples, 50) == 50.0
    assert report._percentile(samples, 99) == 99.0
    assert report._percentile([7.0], 99) == 7.0


# ---------------------------------------------------------------------------------------------
# CLI


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_cli_prints_plots_and_updates_the_given_readme(tmp_path: Path, capsys):
    src = write_json(tmp_path / "sustained.json", sample())
    readme = tmp_path / "README.md"
    readme.write_text(SAMPLE_README, encoding="utf-8")
    out_dir = tmp_path / "plots"
    args = ["--json", str(src), "--readme", str(readme), "--outdir", str(out_dir)]
    assert report.main(args) == 0
    out = capsys.readouterr().out
    assert "| ingestion | 1 | 3,500 | 0.18× |" in out
    assert f"{readme}: table updated" in out
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(
        [report.PNG_THROUGHPUT, report.PNG_LATENCY, report.PNG_PARALLELISM]
    )
    assert report.render_table(sample()) in readme.read_text(encoding="utf-8")
    assert report.main(args) == 0
    assert f"{readme}: table already up to date" in capsys.readouterr().out


def test_cli_no_readme_leaves_it_alone_and_notes_skipped_plots(tmp_path: Path, capsys):
    data = sample()
    data["latency"] = None
    src = write_json(tmp_path / "sustained.json", data)
    readme = tmp_path / "README.md"
    readme.write_text(SAMPLE_README, encoding="utf-8")
    args = ["--json", str(src), "--readme", str(readme), "--outdir", str(tmp_path), "--no-readme"]
    assert report.main(args) == 0
    assert readme.read_text(encoding="utf-8") == SAMPLE_README
    assert f"skipped {report.PNG_LATENCY}: no latency samples" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("{not json", "is not readable JSON"),
        (json.dumps([1, 2]), "is not a sustained benchmark result"),
        (
            json.dumps({"benchmark": "profiles", "runs": []}),
            "is not a sustained benchmark result (benchmark: 'profiles')",
        ),
        (json.dumps({"benchmark": "sustained", "when": "x", "machine": {}}), "lacks 'runs' (a list)"),
    ],
)
def test_cli_wrong_json_exits_2_with_a_clear_error(tmp_path: Path, capsys, content, message):
    src = tmp_path / "sustained.json"
    if content is not None:
        src.write_text(content, encoding="utf-8")
    readme = tmp_path / "README.md"
    readme.write_text(SAMPLE_README, encoding="utf-8")
    assert report.main(["--json", str(src), "--readme", str(readme), "--outdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench.report: error: ") and message in err
    assert readme.read_text(encoding="utf-8") == SAMPLE_README
    assert not list(tmp_path.glob("*.png"))


def test_cli_readme_without_markers_exits_2(tmp_path: Path, capsys):
    src = write_json(tmp_path / "sustained.json", copy.deepcopy(sample()))
    readme = tmp_path / "README.md"
    readme.write_text("# nothing here\n", encoding="utf-8")
    assert report.main(["--json", str(src), "--readme", str(readme), "--outdir", str(tmp_path / "o")]) == 2
    assert "README needs exactly one" in capsys.readouterr().err
    assert readme.read_text(encoding="utf-8") == "# nothing here\n"


def test_probes_never_seen_are_counted_with_those_due_after_the_last_input():
    data = sample()
    data["latency"]["due_to_trigger_ms"] |= {"never": 19, "never_due_after_input": 19}
    data["latency"]["produce_to_profile_ms"] |= {"never": 0, "never_due_after_input": 0}
    table = lines_of(report.render_table(data))
    assert (
        "- Latency at 400/s offered: produce → profile p50 500 ms / p99 900 ms (200 samples); "
        "due → trigger p50 2,900 ms / p99 3,400 ms (50 samples, 19 never seen, 19 of them due after the last input)."
    ) in table
