"""``make bench`` (report): ``bench/results/sustained.json`` as plots and a README table.

Reads the sustained-throughput benchmark's JSON (``bench/sustained.py``) and

* prints a Markdown table: per run (stage, parallelism) the sustained records/s, the ratio
  to the same logic in a plain loop, checkpoint p50/max duration and size, Cassandra
  requests per event and the busiest vertex; then the baselines, the max bounded rate, the
  latency percentiles and the targets, headed by the machine and the date it ran on;
* writes that table into README.md between ``<!-- bench:sustained:begin -->`` and
  ``<!-- bench:sustained:end -->`` (idempotent; ``--no-readme`` leaves README alone);
* draws PNGs under ``--outdir`` with matplotlib (Agg, no display): achieved vs offered
  rate, the latency CDFs, records/s per stage at each parallelism. A plot whose data is
  missing is skipped with a note.

Every field except ``benchmark``, ``when``, ``machine`` and ``runs`` may be missing or null;
missing values print as "—". matplotlib is imported only to draw, so the table needs none.

    python -m bench.report [--json bench/results/sustained.json] [--readme README.md]
                           [--no-readme] [--outdir bench/results]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN = "<!-- bench:sustained:begin -->"
END = "<!-- bench:sustained:end -->"
PLACEHOLDER = "Run `make bench` to fill in this table."
DASH = "—"
STAGE_ORDER = ("ingestion", "profiles", "pipeline")
PNG_THROUGHPUT = "sustained_throughput_vs_offered_load.png"
PNG_LATENCY = "sustained_latency_cdf.png"
PNG_PARALLELISM = "sustained_parallelism.png"
TITLE = "**Sustained throughput** (`bench/sustained.py`; plots: `bench/results/sustained_*.png`)"
VERTEX_WIDTH = 48  # Flink vertex names are whole operator chains: cut them for the table

Note = Callable[[str], None]


class ReportError(Exception):
    """The input cannot be reported on (missing file, not the sustained benchmark, no README markers)."""


# ---------------------------------------------------------------------------------------------
# input


def load(path: Path) -> dict[str, Any]:
    """The sustained benchmark's JSON; :class:`ReportError` for anything else."""
    if not path.is_file():
        raise ReportError(f"{path} does not exist (run `make bench` first)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path} is not readable JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("benchmark") != "sustained":
        found = data.get("benchmark") if isinstance(data, dict) else type(data).__name__
        raise ReportError(f"{path} is not a sustained benchmark result (benchmark: {found!r})")
    problems = []
    if not isinstance(data.get("when"), str):
        problems.append("'when' (a date string)")
    if not isinstance(data.get("machine"), dict):
        problems.append("'machine' (an object)")
    if not isinstance(data.get("runs"), list):
        problems.append("'runs' (a list)")
    if problems:
        raise ReportError(f"{path} lacks {', '.join(problems)}")
    return data


def get(obj: Any, *keys: str) -> Any:
    """``obj[k1][k2]...``, or None where a level is missing or not an object."""
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def num(value: Any) -> float | None:
    """A finite number, else None (booleans, strings, NaN and infinities are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _stage_key(stage: Any) -> tuple[int, str]:
    s = str(stage)
    return (STAGE_ORDER.index(s) if s in STAGE_ORDER else len(STAGE_ORDER), s)


def _stages(names: Iterable[Any]) -> list[str]:
    return sorted({str(n) for n in names if n is not None}, key=_stage_key)


# ---------------------------------------------------------------------------------------------
# formatting


def fmt_rate(value: Any) -> str:
    """Records/s: thousands separators, whole numbers from 100 up."""
    v = num(value)
    if v is None:
        return DASH
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.1f}"


def fmt_ratio(value: Any) -> str:
    v = num(value)
    return DASH if v is None else f"{v:.2f}×"


def fmt_ms(value: Any) -> str:
    v = num(value)
    return DASH if v is None else f"{v:,.0f}"


def fmt_bytes(value: Any) -> str:
    v = num(value)
    if v is None:
        return DASH
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(v) < 1024 or unit == "GiB":
            return f"{v:,.0f} {unit}" if unit == "B" else f"{v:,.1f} {unit}"
        v /= 1024
    raise AssertionError("unreachable")


def fmt_per_event(value: Any) -> str:
    v = num(value)
    return DASH if v is None else f"{v:.2f}"


def fmt_value(value: Any) -> str:
    """Anything: whole numbers as integers, others with 2 decimals below 100, text as it is."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value or DASH
    v = num(value)
    if v is None:
        return DASH
    if v.is_integer() and abs(v) < 1e15:
        return f"{int(v):,}"
    return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"


def fmt_met(value: Any) -> str:
    return "✔" if value is True else "✘" if value is False else DASH


def cell(text: Any) -> str:
    """A Markdown table cell: no pipes or line breaks from the data."""
    s = str(text).replace("\n", " ").replace("|", "\\|").strip()
    return s or DASH


def _row(cells: Iterable[Any]) -> str:
    return "| " + " | ".join(cell(c) for c in cells) + " |"


def busiest_vertex(run: dict[str, Any]) -> str:
    """The vertex with the highest busy ratio, as ``name (97%)``."""
    ratios = get(run, "busy_ratio")
    if not isinstance(ratios, dict):
        return DASH
    scored = [(v, str(k)) for k, r in ratios.items() if (v := num(r)) is not None]
    if not scored:
        return DASH
    ratio, name = max(scored)
    if len(name) > VERTEX_WIDTH:
        name = name[: VERTEX_WIDTH - 1] + "…"
    return f"{name} ({ratio * 100:.0f}%)"


def _latency_label(key: str) -> str:
    base = key[:-3] if key.endswith("_ms") else key
    return base.replace("_to_", " → ").replace("_", " ")


def _latency_series(data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    lat = get(data, "latency")
    if not isinstance(lat, dict):
        return []
    return [(k, v) for k, v in lat.items() if isinstance(v, dict)]


# ---------------------------------------------------------------------------------------------
# the table


def header(data: dict[str, Any]) -> str:
    m = get(data, "machine")
    return (
        f"Measured {fmt_value(get(data, 'when'))} on {fmt_value(get(m, 'cpus'))} cores / "
        f"{fmt_value(get(m, 'memory_gib'))} GiB ({fmt_value(get(m, 'cpu_model'))}), "
        f"Python {fmt_value(get(m, 'python'))}, Flink {fmt_value(get(m, 'flink'))}, by `make bench`."
    )


def _setup_line(data: dict[str, Any]) -> str:
    m, s = get(data, "machine"), get(data, "settings")
    eo = get(s, "exactly_once")
    return (
        f"Setup: {fmt_value(get(m, 'taskmanagers'))} TaskManagers × {fmt_value(get(m, 'slots_per_taskmanager'))} "
        f"slots; warm-up {fmt_value(get(s, 'warmup_s'))} s, measured window {fmt_value(get(s, 'window_s'))} s, "
        f"checkpoints every {fmt_ms(get(s, 'checkpoint_ms'))} ms, exactly-once "
        f"{'on' if eo is True else 'off' if eo is False else DASH}."
    )


def runs_table(data: dict[str, Any]) -> tuple[list[str], bool]:
    """The per-run table rows and whether a run's backlog drained before its window ended."""
    lines = [
        _row(
            (
                "stage",
                "parallelism",
                "records/s sustained",
                "× plain loop",
                "checkpoint p50 / max ms",
                "checkpoint size",
                "Cassandra req/event",
                "busiest vertex",
            )
        ),
        "|---|--:|--:|--:|--:|--:|--:|---|",
    ]
    drained_any = False
    runs = sorted(
        _dicts(get(data, "runs")),
        key=lambda r: (_stage_key(r.get("stage")), num(r.get("parallelism")) or 0.0),
    )
    for run in runs:
        stage = run.get("stage")
        rate = num(run.get("records_per_s"))
        ceiling = num(get(data, "baselines", "plain_loop", str(stage), "records_per_s"))
        ratio = rate / ceiling if rate is not None and ceiling else None
        rate_text = fmt_rate(rate)
        if run.get("drained_before_end") is True and rate is not None:
            rate_text += " †"
            drained_any = True
        p50, pmax = get(run, "checkpoints", "duration_ms_p50"), get(run, "checkpoints", "duration_ms_max")
        ckpt = DASH if num(p50) is None and num(pmax) is None else f"{fmt_ms(p50)} / {fmt_ms(pmax)}"
        lines.append(
            _row(
                (
                    fmt_value(stage),
                    fmt_value(run.get("parallelism")),
                    rate_text,
                    fmt_ratio(ratio),
                    ckpt,
                    fmt_bytes(get(run, "checkpoints", "size_bytes_last")),
                    fmt_per_event(get(run, "cassandra", "requests_per_event")),
                    busiest_vertex(run),
                )
            )
        )
    return lines, drained_any


def _baseline_lines(data: dict[str, Any]) -> list[str]:
    plain = get(data, "baselines", "plain_loop")
    stages = _stages(plain.keys()) if isinstance(plain, dict) else []
    plain_text = ", ".join(f"{s} {fmt_rate(get(plain, s, 'records_per_s'))}/s" for s in stages) or DASH
    hw = get(data, "baselines", "handwritten")
    hw_stages = get(hw, "stages")
    hw_desc = f" ({' → '.join(str(s) for s in hw_stages)})" if isinstance(hw_stages, list) and hw_stages else ""
    hw_rate = num(get(hw, "records_per_s"))
    return [
        f"- Plain-loop ceiling (the same logic in one CPython loop, no Flink): {plain_text}.",
        f"- Hand-written pipeline{hw_desc}: {fmt_rate(hw_rate)}{'/s' if hw_rate is not None else ''}, "
        f"{fmt_per_event(get(hw, 'cassandra_requests_per_event'))} Cassandra req/event; "
        f"the pipeline at parallelism 2 reaches {fmt_ratio(get(data, 'ratios', 'pipeline_p2_vs_handwritten'))} of it.",
    ]


def _scaling_line(data: dict[str, Any]) -> str:
    p2 = get(data, "ratios", "p2_over_p1")
    stages = _stages(p2.keys()) if isinstance(p2, dict) else []
    text = ", ".join(f"{s} {fmt_ratio(get(p2, s))}" for s in stages) or DASH
    return f"- Parallelism 2 over 1: {text}."


def _max_bounded_line(data: dict[str, Any]) -> str:
    mbr = get(data, "max_bounded_rate")
    stages = _stages(mbr.keys()) if isinstance(mbr, dict) else []
    parts = [f"{s} {fmt_rate(get(mbr, s))}{'/s' if num(get(mbr, s)) is not None else ''}" for s in stages]
    return f"- Max bounded rate (highest offered load whose lag stayed bounded): {', '.join(parts) or DASH}."


def _latency_line(data: dict[str, Any]) -> str:
    series = _latency_series(data)
    offered = num(get(data, "latency", "offered_per_s"))
    at = f" at {fmt_rate(offered)}/s offered" if offered is not None else ""
    parts = []
    for key, s in series:
        count = num(s.get("count"))
        notes = [f"{fmt_value(s.get('count'))} samples"] if count is not None else []
        if num(s.get("never")):
            notes.append(f"{fmt_value(s.get('never'))} never seen")
            if num(s.get("never_due_after_input")):
                notes[-1] += f", {fmt_value(s.get('never_due_after_input'))} of them due after the last input"
        n = f" ({', '.join(notes)})" if notes else ""
        parts.append(f"{_latency_label(key)} p50 {fmt_ms(s.get('p50'))} ms / p99 {fmt_ms(s.get('p99'))} ms{n}")
    return f"- Latency{at}: {'; '.join(parts) or DASH}."


def targets_table(data: dict[str, Any]) -> list[str]:
    targets = _dicts(get(data, "targets"))
    if not targets:
        return ["Targets: —"]
    lines = [_row(("target", "wanted", "value", "met")), "|---|---|--:|:-:|"]
    for t in targets:
        lines.append(
            _row(
                (fmt_value(t.get("name")), fmt_value(t.get("target")), fmt_value(t.get("value")), fmt_met(t.get("met")))
            )
        )
    return lines


def render_table(data: dict[str, Any]) -> str:
    """The Markdown block (without the markers) for README.md and the terminal."""
    rows, drained = runs_table(data)
    out = [TITLE, "", header(data), "", _setup_line(data), "", *rows]
    if drained:
        out += ["", "† the backlog drained before the window ended: a lower bound, not a sustained rate."]
    out += ["", *_baseline_lines(data), _scaling_line(data), _max_bounded_line(data), _latency_line(data)]
    out += ["", *targets_table(data)]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# README


def replace_block(text: str, block: str) -> str:
    """``text`` with everything between the markers replaced by ``block`` (idempotent)."""
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise ReportError(f"README needs exactly one {BEGIN} and one {END}")
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    if end < start:
        raise ReportError(f"README has {END} before {BEGIN}")
    return text[:start] + "\n\n" + block.strip("\n") + "\n\n" + text[end:]


def update_readme(path: Path, block: str) -> bool:
    """Writes ``block`` between the markers of ``path``; True if the file changed."""
    if not path.is_file():
        raise ReportError(f"{path} does not exist")
    text = path.read_text(encoding="utf-8")
    new = replace_block(text, block)
    if new == text:
        return False
    path.write_text(new, encoding="utf-8")
    return True


# ---------------------------------------------------------------------------------------------
# plots (matplotlib imported here only)


def _figure(width: float = 8.0, height: float = 5.0) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)  # Agg: renders to files, never to a display
    return fig


def _thousands(axis: Any, log: bool = False) -> None:
    """Tick labels as plain numbers with separators (on a log axis also the 2s, 3s and 5s between decades)."""
    from matplotlib.ticker import FuncFormatter

    def label(v: float, _pos: Any) -> str:
        return f"{v:,.0f}" if v >= 1 else f"{v:g}"

    def minor(v: float, _pos: Any) -> str:
        lead = v / 10 ** math.floor(math.log10(v)) if v > 0 else 0.0
        return label(v, _pos) if any(math.isclose(lead, d) for d in (2, 3, 5)) else ""

    axis.set_major_formatter(FuncFormatter(label))
    if log:
        axis.set_minor_formatter(FuncFormatter(minor))


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, format="png")
    return path


def plot_throughput_vs_offered(data: dict[str, Any], outdir: Path, note: Note = print) -> Path | None:
    """Achieved vs offered rate per (stage, parallelism), the y = x line, the max bounded rate."""
    series: dict[tuple[str, str], list[tuple[float, float, bool | None]]] = {}
    for p in _dicts(get(data, "offered_load")):
        offered, achieved = num(p.get("offered_per_s")), num(p.get("achieved_per_s"))
        if offered is None or achieved is None:
            continue
        bounded = p.get("bounded") if isinstance(p.get("bounded"), bool) else None
        key = (str(p.get("stage", DASH)), fmt_value(p.get("parallelism")))
        series.setdefault(key, []).append((offered, achieved, bounded))
    if not series:
        note(f"skipped {PNG_THROUGHPUT}: no offered_load points")
        return None
    fig = _figure()
    ax = fig.add_subplot()
    top = max(max(o, a) for pts in series.values() for o, a, _ in pts)
    ax.plot([0, top * 1.05], [0, top * 1.05], ls="--", color="grey", lw=1, label="y = x (keeps up)")
    for (stage, par), pts in sorted(series.items(), key=lambda kv: (_stage_key(kv[0][0]), kv[0][1])):
        pts.sort()
        (line,) = ax.plot([o for o, _, _ in pts], [a for _, a, _ in pts], marker="o", label=f"{stage} p={par}")
        unbounded = [(o, a) for o, a, b in pts if b is False]
        if unbounded:
            ax.scatter(*zip(*unbounded), marker="x", s=80, color=line.get_color(), zorder=3)
    mbr = get(data, "max_bounded_rate")
    for stage in _stages(mbr.keys()) if isinstance(mbr, dict) else []:
        rate = num(mbr.get(stage))
        if rate is not None:
            ax.axvline(rate, ls=":", color="black", lw=1)
            ax.annotate(
                f"max bounded {stage}\n{fmt_rate(rate)}/s",
                (rate, 0.02),
                xycoords=("data", "axes fraction"),
                xytext=(4, 0),
                textcoords="offset points",
                fontsize=8,
            )
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    _thousands(ax.xaxis)
    _thousands(ax.yaxis)
    ax.set_xlabel("offered rate (records/s)")
    ax.set_ylabel("achieved rate (records/s)")
    ax.set_title("Sustained throughput vs offered load (x: lag grew without bound)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, outdir / PNG_THROUGHPUT)


def _percentile(sorted_samples: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted samples."""
    rank = max(1, math.ceil(q / 100 * len(sorted_samples)))
    return sorted_samples[rank - 1]


def plot_latency_cdf(data: dict[str, Any], outdir: Path, note: Note = print) -> Path | None:
    """Empirical CDF of each latency series' samples (ms, log x), p50/p99 marked."""
    curves = []
    for key, s in _latency_series(data):
        raw = s.get("samples")
        samples = sorted(v for x in raw if (v := num(x)) is not None) if isinstance(raw, list) else []
        if samples:
            curves.append((key, s, samples))
    if not curves:
        note(f"skipped {PNG_LATENCY}: no latency samples")
        return None
    fig = _figure()
    ax = fig.add_subplot()
    for key, s, samples in curves:
        n = len(samples)
        (line,) = ax.step(
            samples, [(i + 1) / n for i in range(n)], where="post", label=f"{_latency_label(key)} (n={n})"
        )
        for q in (50, 99):
            value = num(s.get(f"p{q}"))
            if value is None:
                value = _percentile(samples, q)
            ax.plot([value], [q / 100], marker="o", color=line.get_color())
            ax.annotate(
                f"p{q} {fmt_ms(value)} ms",
                (value, q / 100),
                xytext=(6, -12) if q == 50 else (-6, 4),
                textcoords="offset points",
                ha="left" if q == 50 else "right",
                fontsize=8,
                color=line.get_color(),
            )
    low, high = min(c[2][0] for c in curves), max(c[2][-1] for c in curves)
    if low > 0:
        ax.set_xscale("log")
        ax.set_xlim(low / 1.2, high * 1.2)
    _thousands(ax.xaxis, log=low > 0)
    offered = num(get(data, "latency", "offered_per_s"))
    at = f" at {fmt_rate(offered)}/s offered" if offered is not None else ""
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("fraction of samples ≤ x")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"Latency CDF{at}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, outdir / PNG_LATENCY)


def plot_parallelism(data: dict[str, Any], outdir: Path, note: Note = print) -> Path | None:
    """Grouped bars: records/s per stage at each parallelism, with the baselines as lines."""
    rates: dict[tuple[str, float], float] = {}
    for run in _dicts(get(data, "runs")):
        rate, par = num(run.get("records_per_s")), num(run.get("parallelism"))
        if rate is not None and par is not None:
            rates[(str(run.get("stage")), par)] = rate
    if not rates:
        note(f"skipped {PNG_PARALLELISM}: no runs with records_per_s and parallelism")
        return None
    stages = _stages(s for s, _ in rates)
    pars = sorted({p for _, p in rates})
    width = 0.8 / len(pars)
    fig = _figure()
    ax = fig.add_subplot()
    for j, par in enumerate(pars):
        xs = [i - 0.4 + width * (j + 0.5) for i, s in enumerate(stages) if (s, par) in rates]
        ys = [rates[(s, par)] for s in stages if (s, par) in rates]
        bars = ax.bar(xs, ys, width * 0.95, label=f"parallelism {fmt_value(par)}")
        ax.bar_label(bars, labels=[fmt_rate(y) for y in ys], fontsize=7, padding=2)
    plain_label = "plain loop (no Flink)"
    for i, stage in enumerate(stages):
        ceiling = num(get(data, "baselines", "plain_loop", stage, "records_per_s"))
        if ceiling is not None:
            ax.hlines(ceiling, i - 0.45, i + 0.45, colors="black", linestyles="--", label=plain_label)
            ax.annotate(
                fmt_rate(ceiling), (i, ceiling), xytext=(0, 3), textcoords="offset points", ha="center", fontsize=7
            )
            plain_label = "_nolegend_"
    hw = num(get(data, "baselines", "handwritten", "records_per_s"))
    if hw is not None:
        hw_stages = get(data, "baselines", "handwritten", "stages")
        desc = " → ".join(str(s) for s in hw_stages) if isinstance(hw_stages, list) and hw_stages else ""
        label = f"hand-written ({desc})" if desc else "hand-written"
        if "pipeline" in stages:
            i = stages.index("pipeline")
            ax.hlines(hw, i - 0.45, i + 0.45, colors="tab:red", linestyles=":", lw=2, label=label)
            ax.annotate(
                fmt_rate(hw), (i - 0.45, hw), xytext=(0, 3), textcoords="offset points", color="tab:red", fontsize=7
            )
        else:
            ax.axhline(hw, color="tab:red", ls=":", lw=2, label=label)
    ax.set_xticks(range(len(stages)), stages)
    _thousands(ax.yaxis)
    ax.set_ylabel("records/s sustained")
    ax.set_title("Sustained throughput per stage and parallelism")
    ax.set_ylim(bottom=0)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, outdir / PNG_PARALLELISM)


def write_plots(data: dict[str, Any], outdir: Path, note: Note = print) -> list[Path]:
    """Every plot whose data is there; the written paths."""
    written = []
    for plot in (plot_throughput_vs_offered, plot_latency_cdf, plot_parallelism):
        path = plot(data, outdir, note)
        if path is not None:
            written.append(path)
    return written


# ---------------------------------------------------------------------------------------------
# CLI


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=RESULTS / "sustained.json", help="the benchmark's result")
    ap.add_argument("--readme", type=Path, default=README, help="README to write the table into")
    ap.add_argument("--no-readme", action="store_true", help="print and plot only")
    ap.add_argument("--outdir", type=Path, default=RESULTS, help="where the PNGs go")
    args = ap.parse_args(argv)
    try:
        data = load(args.json)
    except ReportError as exc:
        print(f"bench.report: error: {exc}", file=sys.stderr)
        return 2
    block = render_table(data)
    print(block)
    print()
    try:
        for path in write_plots(data, args.outdir):
            print(f"wrote {path}")
    except ImportError as exc:
        print(f"plots skipped: matplotlib is not importable ({exc})")
    if not args.no_readme:
        try:
            changed = update_readme(args.readme, block)
        except ReportError as exc:
            print(f"bench.report: error: {exc}", file=sys.stderr)
            return 2
        print(f"{args.readme}: table {'updated' if changed else 'already up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
