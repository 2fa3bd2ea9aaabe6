"""History backfill: per-topic lower bounds of ``occurred_at``, their config guards, the
generator's history datasets, and docs/operations.md agreeing with the code. No services.

Real order history (2010-2011, the 1990s) must load through backfill topics unchanged, while
live topics keep the 2000-01-01 bound and impossible timestamps (before the Unix epoch, beyond
the future skew relative to the Kafka record timestamp) stay dead-lettered everywhere.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from generator.__main__ import main as generator_main
from generator.__main__ import parse_args
from generator.produce import check_produce_time, produce
from generator.synth import DAY_MS, MIN_VALID_TIMESTAMP_MS, GroundTruth, generate, invalid_timestamps
from models.avro_codec import SchemaCatalog
from models.config import ConfigError, FlinkJobSettings, IngestConfig, ProfilesConfig
from models.ingest import Accepted, DeadLettered, IngestSettings, Ingestor, SourceRecord

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = ROOT / "docs" / "operations.md"
SALT = "backfill-unit-salt-0123456789"
CATALOG = SchemaCatalog.load()
EVENT = CATALOG.codec("Event")

#: the Kafka record timestamp of the backfill: the time it is produced (2027-01-15)
NOW = 1_800_000_000_000
BACKFILL_TOPIC = "journey.events.backfill"
LIVE_TOPIC = "journey.events.pos"
BACKFILL_PATTERN = r"journey\.events\.backfill"


def ms(iso: str) -> int:
    """Epoch ms of an ISO date/time in UTC."""
    return int(datetime.fromisoformat(iso).replace(tzinfo=timezone.utc).timestamp() * 1000)


SINCE_1990 = ms("1990-01-01")
DEFAULT = IngestSettings(SALT)
BACKFILL = IngestSettings(SALT, backfill_topic_pattern=BACKFILL_PATTERN, backfill_min_valid_timestamp_ms=SINCE_1990)
SINCE_EPOCH = IngestSettings(SALT, backfill_topic_pattern=BACKFILL_PATTERN, backfill_min_valid_timestamp_ms=0)


def purchase(event_id: str, occurred_at: int, total: float = 15.3) -> dict[str, Any]:
    """A store purchase as a retailer's order history would carry it."""
    return {
        "event_id": event_id,
        "event_type": "store_purchase",
        "channel": "pos",
        "occurred_at": occurred_at,
        "schema_version": 1,
        "identifiers": {
            "customer_id": "17850",
            "email": None,
            "phone": None,
            "device_id": None,
            "cookie_id": None,
            "loyalty_id": None,
        },
        "context": {"source": "order-history"},
        "payload": (
            "journey.v1.Purchase",
            {
                "order_id": f"5{event_id[-5:]}",
                "cart_id": None,
                "currency": "GBP",
                "total": total,
                "items": [{"product_id": "85123A", "category": "home", "quantity": 6, "unit_price": 2.55}],
                "store_id": "uk-online",
            },
        ),
    }


def ingest(settings: IngestSettings, event: dict[str, Any], topic: str, kafka_ts: int = NOW):
    return Ingestor(settings, CATALOG).process(SourceRecord(EVENT.encode(event), topic, 0, 7, kafka_ts))


def dead_letter(result: Accepted | DeadLettered) -> dict[str, Any]:
    assert isinstance(result, DeadLettered), result
    return CATALOG.decode(result.value, expect="DeadLetter")[1]


def occurred_at_out(result: Accepted | DeadLettered) -> int:
    assert isinstance(result, Accepted), dead_letter(result)["error_detail"]
    return CATALOG.decode(result.value, expect="NormalizedEvent")[1]["occurred_at"]


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "when",
    [
        "2010-12-01T08:26:00",
        "2011-12-09T12:50:00",
        "1998-03-14T10:00:00",
        "1990-01-01T00:00:00",
        "1999-12-31T23:59:59.999",
    ],
)
def test_real_order_history_passes_a_backfill_topic_with_occurred_at_unchanged(when: str) -> None:
    assert occurred_at_out(ingest(BACKFILL, purchase("hist-00001", ms(when)), BACKFILL_TOPIC)) == ms(when)


def test_an_order_of_2010_12_01_passes_a_backfill_topic_bounded_at_2010_12_01_to_the_millisecond() -> None:
    settings = IngestSettings(
        SALT, backfill_topic_pattern=BACKFILL_PATTERN, backfill_min_valid_timestamp_ms=ms("2010-12-01")
    )
    assert occurred_at_out(ingest(settings, purchase("hist-00002", ms("2010-12-01")), BACKFILL_TOPIC)) == ms(
        "2010-12-01"
    )
    dl = dead_letter(ingest(settings, purchase("hist-00003", ms("2010-12-01") - 1), BACKFILL_TOPIC))
    assert dl["error_type"] == "invalid_timestamp"
    assert "JOURNEY_BACKFILL_MIN_VALID_TIMESTAMP_MS" in dl["error_detail"]


def test_1990s_history_accepted_on_a_backfill_topic_is_dead_lettered_by_the_default_config_saying_how_to_load_it() -> (
    None
):
    event = purchase("hist-01998", ms("1998-03-14T10:00:00"))
    assert occurred_at_out(ingest(BACKFILL, event, BACKFILL_TOPIC)) == event["occurred_at"]
    dl = dead_letter(ingest(DEFAULT, event, BACKFILL_TOPIC))
    assert dl["error_type"] == "invalid_timestamp"
    detail = dl["error_detail"]
    assert "1998-03-14T10:00:00Z" in detail and "2000-01-01T00:00:00Z" in detail
    assert "JOURNEY_MIN_VALID_TIMESTAMP_MS" in detail  # the bound that was violated
    assert "JOURNEY_BACKFILL_TOPIC_PATTERN" in detail and "JOURNEY_BACKFILL_MIN_VALID_TIMESTAMP_MS" in detail
    assert "docs/operations.md#history-backfill" in detail


def test_history_on_a_live_topic_keeps_the_live_bound_when_backfill_topics_are_configured() -> None:
    dl = dead_letter(ingest(BACKFILL, purchase("hist-01999", ms("1999-06-30")), LIVE_TOPIC))
    assert dl["error_type"] == "invalid_timestamp"
    assert dl["source_topic"] == LIVE_TOPIC
    assert "set by JOURNEY_MIN_VALID_TIMESTAMP_MS" in dl["error_detail"]
    assert f"does not match JOURNEY_BACKFILL_TOPIC_PATTERN={BACKFILL_PATTERN!r}" in dl["error_detail"]


@pytest.mark.parametrize("topic", ["journey.events.backfill2", "xjourney.events.backfill", "journey.events.web"])
def test_the_backfill_bound_applies_only_to_topics_matching_the_whole_pattern(topic: str) -> None:
    assert BACKFILL.bounds_for(topic).min_ts_ms == MIN_VALID_TIMESTAMP_MS
    assert (
        dead_letter(ingest(BACKFILL, purchase("hist-00004", ms("1995-05-05")), topic))["error_type"]
        == "invalid_timestamp"
    )


def test_history_older_than_the_backfill_bound_is_dead_lettered_saying_which_setting_to_lower() -> None:
    dl = dead_letter(ingest(BACKFILL, purchase("hist-01989", ms("1989-12-31T23:59:59.999")), BACKFILL_TOPIC))
    assert dl["error_type"] == "invalid_timestamp"
    detail = dl["error_detail"]
    assert "set by JOURNEY_BACKFILL_MIN_VALID_TIMESTAMP_MS" in detail and "1990-01-01T00:00:00Z" in detail
    assert "lower JOURNEY_BACKFILL_MIN_VALID_TIMESTAMP_MS" in detail


@pytest.mark.parametrize("settings", [DEFAULT, BACKFILL, SINCE_EPOCH], ids=["default", "since-1990", "since-epoch"])
@pytest.mark.parametrize("topic", [LIVE_TOPIC, BACKFILL_TOPIC])
@pytest.mark.parametrize("occurred_at", [-1, -ms("2000-01-01"), -(2**63)], ids=["1ms", "1940", "min-long"])
def test_an_event_before_the_unix_epoch_is_dead_lettered_under_every_config(
    settings: IngestSettings, topic: str, occurred_at: int
) -> None:
    dl = dead_letter(ingest(settings, purchase("hist-00005", occurred_at), topic))
    assert dl["error_type"] == "invalid_timestamp"
    assert "before the Unix epoch" in dl["error_detail"] and "never accepted" in dl["error_detail"]


@pytest.mark.parametrize("settings", [DEFAULT, BACKFILL, SINCE_EPOCH], ids=["default", "since-1990", "since-epoch"])
@pytest.mark.parametrize("topic", [LIVE_TOPIC, BACKFILL_TOPIC])
def test_an_event_beyond_the_future_skew_of_the_kafka_timestamp_is_dead_lettered_under_every_config(
    settings: IngestSettings, topic: str
) -> None:
    just_beyond = purchase("hist-00006", NOW + settings.max_future_skew_ms + 1)
    dl = dead_letter(ingest(settings, just_beyond, topic))
    assert dl["error_type"] == "invalid_timestamp"
    assert f"JOURNEY_MAX_FUTURE_SKEW_MS={settings.max_future_skew_ms}" in dl["error_detail"]
    assert f"Kafka record timestamp {NOW}" in dl["error_detail"]
    assert isinstance(ingest(settings, purchase("hist-00007", NOW + settings.max_future_skew_ms), topic), Accepted)


def test_history_with_the_kafka_timestamp_set_to_the_order_date_is_still_judged_only_by_the_bounds() -> None:
    # a producer that stamps records with the historical time (which Kafka retention then
    # deletes within days, see docs/operations.md) does not change the verdict
    when = ms("2010-12-01T08:26:00")
    assert occurred_at_out(ingest(BACKFILL, purchase("hist-00008", when), BACKFILL_TOPIC, kafka_ts=when)) == when


def test_an_occurred_at_in_epoch_seconds_is_dead_lettered_with_a_unit_hint() -> None:
    seconds = ms("2010-12-01T08:26:00") // 1000
    detail = dead_letter(ingest(BACKFILL, purchase("hist-00009", seconds), BACKFILL_TOPIC))["error_detail"]
    assert "looks like epoch seconds, which would be 2010-12-01T08:26:00Z" in detail
    micros = ms("2010-12-01T08:26:00") * 1000
    detail = dead_letter(ingest(BACKFILL, purchase("hist-00010", micros), BACKFILL_TOPIC))["error_detail"]
    assert "looks like epoch microseconds, which would be 2010-12-01T08:26:00Z" in detail


# ----------------------------------------------------------------------------- configuration


def test_by_default_there_are_no_backfill_topics_and_live_topics_keep_the_2000_bound() -> None:
    cfg = IngestConfig(pii_salt=SALT)
    assert (cfg.min_valid_timestamp_ms, cfg.backfill_topic_pattern, cfg.backfill_min_valid_timestamp_ms) == (
        ms("2000-01-01"),
        "",
        None,
    )
    assert IngestSettings.of(cfg).bounds_for(BACKFILL_TOPIC).min_ts_ms == ms("2000-01-01")


def test_backfill_settings_are_read_from_the_environment_and_reach_the_ingestion_settings() -> None:
    cfg = IngestConfig.from_env(
        {
            "JOURNEY_PII_SALT": SALT,
            "JOURNEY_BACKFILL_TOPIC_PATTERN": BACKFILL_PATTERN,
            "JOURNEY_BACKFILL_MIN_VALID_TIMESTAMP_MS": str(SINCE_1990),
        }
    )
    assert (cfg.backfill_topic_pattern, cfg.backfill_min_valid_timestamp_ms) == (BACKFILL_PATTERN, SINCE_1990)
    settings = IngestSettings.of(cfg)
    assert settings.bounds_for(BACKFILL_TOPIC).min_ts_ms == SINCE_1990
    assert settings.bounds_for("journey.events.web").min_ts_ms == ms("2000-01-01")
    empty = IngestConfig.from_env(
        {"JOURNEY_PII_SALT": SALT, "JOURNEY_BACKFILL_TOPIC_PATTERN": "", "JOURNEY_BACKFILL_MIN_VALID_TIMESTAMP_MS": ""}
    )
    assert (empty.backfill_topic_pattern, empty.backfill_min_valid_timestamp_ms) == ("", None)


def test_a_whole_job_lowered_to_the_epoch_accepts_1970_but_still_refuses_negative_timestamps() -> None:
    settings = IngestSettings.of(
        IngestConfig.from_env({"JOURNEY_PII_SALT": SALT, "JOURNEY_MIN_VALID_TIMESTAMP_MS": "0"})
    )
    assert occurred_at_out(ingest(settings, purchase("hist-00011", 1), LIVE_TOPIC)) == 1
    dl = dead_letter(ingest(settings, purchase("hist-00012", -1), LIVE_TOPIC))
    assert "before the Unix epoch" in dl["error_detail"]


@pytest.mark.parametrize(
    "env, variable, message",
    [
        ({"JOURNEY_MIN_VALID_TIMESTAMP_MS": "-1"}, "JOURNEY_MIN_VALID_TIMESTAMP_MS", "before the Unix epoch"),
        ({"JOURNEY_MIN_VALID_TIMESTAMP_MS": "946684800"}, "JOURNEY_MIN_VALID_TIMESTAMP_MS", "looks like epoch seconds"),
        (
            {"JOURNEY_MIN_VALID_TIMESTAMP_MS": "946684800000000"},
            "JOURNEY_MIN_VALID_TIMESTAMP_MS",
            "2100-01-01 or later",
        ),
        ({"JOURNEY_MIN_VALID_TIMESTAMP_MS": "2000-01-01"}, "JOURNEY_MIN_VALID_TIMESTAMP_MS", "epoch milliseconds"),
        (
            {"JOURNEY_BACKFILL_TOPIC_PATTERN": BACKFILL_PATTERN},
            "JOURNEY_BACKFILL_MIN_VALID_TIMESTAMP_MS",
            "the earliest real date",
        ),
        ({"JOURNEY_BACKFILL_MIN_VALID_TIMESTAMP_MS": "631152000000"}, "JOURNEY_BACKFILL_TOPIC_PATTERN", "no topic"),
        (
            {
                "JOURNEY_BACKFILL_TOPIC_PATTERN": BACKFILL_PATTERN,
                "JOURNEY_BACKFILL_MIN_VALID_TIMESTAMP_MS": "-86400000",
            },
            "JOURNEY_BACKFILL_MIN_VALID_TIMESTAMP_MS",
            "before the Unix epoch",
        ),
        (
            {
                "JOURNEY_BACKFILL_TOPIC_PATTERN": BACKFILL_PATTERN,
                "JOURNEY_BACKFILL_MIN_VALID_TIMESTAMP_MS": "631152000",
            },
            "JOURNEY_BACKFILL_MIN_VALID_TIMESTAMP_MS",
            "631152000000 (1990-01-01T00:00:00Z)",
        ),
        (
            {
                "JOURNEY_BACKFILL_TOPIC_PATTERN": BACKFILL_PATTERN,
                "JOURNEY_BACKFILL_MIN_VALID_TIMESTAMP_MS": "1990-01-01",
            },
            "JOURNEY_BACKFILL_MIN_VALID_TIMESTAMP_MS",
            "631152000000",
        ),
        (
            {"JOURNEY_BACKFILL_TOPIC_PATTERN": r"journey\.events\..*", "JOURNEY_BACKFILL_MIN_VALID_TIMESTAMP_MS": "0"},
            "JOURNEY_BACKFILL_TOPIC_PATTERN",
            "matches the live topic journey.events.web",
        ),
        (
            {"JOURNEY_BACKFILL_TOPIC_PATTERN": ".*", "JOURNEY_BACKFILL_MIN_VALID_TIMESTAMP_MS": "0"},
            "JOURNEY_BACKFILL_TOPIC_PATTERN",
            "live traffic would lose its lower bound",
        ),
        (
            {
                "JOURNEY_BACKFILL_TOPIC_PATTERN": r"journey\.(normalized|history)",
                "JOURNEY_BACKFILL_MIN_VALID_TIMESTAMP_MS": "0",
            },
            "JOURNEY_BACKFILL_TOPIC_PATTERN",
            "matches the output topic journey.normalized",
        ),
        (
            {
                "JOURNEY_BACKFILL_TOPIC_PATTERN": "journey.events.(backfill",
                "JOURNEY_BACKFILL_MIN_VALID_TIMESTAMP_MS": "0",
            },
            "JOURNEY_BACKFILL_TOPIC_PATTERN",
            "is not a regex",
        ),
        (
            {"JOURNEY_BACKFILL_TOPIC_PATTERN": r"journey\.backfill", "JOURNEY_BACKFILL_MIN_VALID_TIMESTAMP_MS": "0"},
            "JOURNEY_INPUT_TOPIC_PATTERN",
            "would never be read",
        ),
    ],
    ids=[
        "negative",
        "seconds",
        "microseconds",
        "iso-date",
        "pattern-without-bound",
        "bound-without-pattern",
        "backfill-negative",
        "backfill-seconds",
        "backfill-iso-date",
        "matches-live-topics",
        "matches-everything",
        "matches-output",
        "not-a-regex",
        "not-subscribed",
    ],
)
def test_nonsense_time_bounds_are_refused_naming_the_variable(env: dict[str, str], variable: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        IngestConfig.from_env({"JOURNEY_PII_SALT": SALT, **env})
    assert variable in str(e.value) and message in str(e.value), str(e.value)


def test_the_live_topics_a_backfill_pattern_must_not_match_are_the_catalogues_input_topics() -> None:
    from k8s.topics import INPUT_TOPICS
    from models.config import LIVE_INPUT_TOPICS

    assert LIVE_INPUT_TOPICS == INPUT_TOPICS
    for topic in INPUT_TOPICS:
        with pytest.raises(ConfigError, match=re.escape(topic)):
            IngestConfig(pii_salt=SALT, backfill_topic_pattern=re.escape(topic), backfill_min_valid_timestamp_ms=0)


def test_ingest_settings_refuse_the_same_nonsense_as_the_config() -> None:
    with pytest.raises(ConfigError, match="JOURNEY_BACKFILL_MIN_VALID_TIMESTAMP_MS"):
        IngestSettings(SALT, backfill_topic_pattern=BACKFILL_PATTERN)
    with pytest.raises(ConfigError, match="before the Unix epoch"):
        IngestSettings(SALT, min_valid_timestamp_ms=-5)


# ----------------------------------------------------------------------------- generator


@pytest.fixture(scope="module")
def history() -> Any:
    """Order history from 2010-12-01 over 60 days, for backfill topics bounded at 1990-01-01."""
    return generate(11, 8, base_time_ms=ms("2010-12-01"), days=60, min_valid_timestamp_ms=SINCE_1990, bad_ratio=0.2)


def test_a_generated_2010_history_is_ingested_from_a_backfill_topic_exactly_as_labelled(history: Any) -> None:
    ingestor = Ingestor(BACKFILL, CATALOG)
    wrong = []
    for r in history.records:
        out = ingestor.process(SourceRecord(r.value, BACKFILL_TOPIC, 0, 0, NOW))
        if r.kind == "bad":
            if not isinstance(out, DeadLettered) or out.error_type != r.expected_error:
                wrong.append((r.expected_error, out))
        elif (
            not isinstance(out, Accepted)
            or CATALOG.decode(out.value, expect="NormalizedEvent")[1]["occurred_at"] != r.occurred_at
        ):
            wrong.append((r.event_id, out))
    assert wrong == []
    valid = [r.occurred_at for r in history.records if r.kind == "valid"]
    assert ms("2010-12-01") <= min(valid) and max(valid) < ms("2011-03-01")


def test_a_history_datasets_invalid_timestamps_are_impossible_under_its_bound_and_include_pre_epoch(
    history: Any,
) -> None:
    assert history.truth.params["min_valid_timestamp_ms"] == SINCE_1990
    choices = dict((v, t) for t, v in invalid_timestamps(SINCE_1990))
    assert choices["before_epoch"] < 0 and choices["year_1989"] < SINCE_1990 and choices["year_2100"] > NOW + DAY_MS
    variants = {b.variant for b in history.truth.bad_records if b.error_type == "invalid_timestamp"}
    assert variants and variants <= set(choices)
    # the default datasets keep their variants (and so their bytes)
    assert [v for _, v in invalid_timestamps(MIN_VALID_TIMESTAMP_MS)] == ["epoch_5ms", "year_2100", "year_1999"]


def test_a_1990s_history_dataset_is_refused_under_the_default_bound_and_made_under_a_backfill_bound() -> None:
    with pytest.raises(ValueError, match="JOURNEY_BACKFILL_MIN_VALID_TIMESTAMP_MS"):
        generate(1, 2, base_time_ms=ms("1996-05-01"))
    ds = generate(1, 2, base_time_ms=ms("1996-05-01"), min_valid_timestamp_ms=SINCE_1990)
    assert min(r.occurred_at for r in ds.records if r.kind == "valid") >= ms("1996-05-01")
    with pytest.raises(ValueError, match="Unix epoch"):
        generate(1, 2, base_time_ms=0, min_valid_timestamp_ms=-1)


def test_produce_time_skew_check_passes_history_and_still_refuses_the_future(history: Any) -> None:
    check_produce_time(history, NOW)
    check_produce_time(history, ms("2011-02-01"))  # history produced while it was still recent
    with pytest.raises(ValueError, match="invalid_timestamp"):
        check_produce_time(history, ms("2010-12-01"))  # the end of it would look like the future


class _FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None]] = []
        self._callbacks: list[Any] = []

    def list_topics(self, timeout: float) -> Any:
        return type("Md", (), {"topics": {BACKFILL_TOPIC: type("T", (), {"error": None})()}})()

    def produce(self, topic: str, value: bytes, key: bytes | None, on_delivery: Any) -> None:
        self.sent.append((topic, key))
        self._callbacks.append((on_delivery, topic))

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        for cb, topic in self._callbacks:
            cb(None, type("M", (), {"topic": lambda self, t=topic: t})())
        return 0


def test_produce_sends_a_history_dataset_to_one_backfill_topic_keyed_by_person(history: Any) -> None:
    fake = _FakeProducer()
    report = produce(history, "fake:9092", progress=False, producer_factory=lambda conf: fake, topic=BACKFILL_TOPIC)
    assert report.per_topic == {BACKFILL_TOPIC: len(history.records)}
    assert [k for _, k in fake.sent] == [r.key for r in history.records]
    with pytest.raises(ValueError, match="topic"):
        produce(history, "fake:9092", progress=False, producer_factory=lambda conf: fake, topic="bad topic")


def test_generator_cli_makes_history_for_a_backfill_bound_and_refuses_it_without_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "--persons",
        "3",
        "--seed",
        "4",
        "--out",
        str(tmp_path),
        "--no-produce",
        "--base-time-ms",
        str(ms("1998-03-01")),
        "--days",
        "400",
    ]
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    assert "--min-valid-timestamp-ms" in capsys.readouterr().err
    assert generator_main(argv + ["--min-valid-timestamp-ms", str(SINCE_1990)]) == 0
    assert f"JOURNEY_BACKFILL_MIN_VALID_TIMESTAMP_MS={SINCE_1990}" in capsys.readouterr().out
    truth = GroundTruth.load(tmp_path / "truth.json")
    assert truth.params["min_valid_timestamp_ms"] == SINCE_1990 and truth.params["days"] == 400


# ----------------------------------------------------------------------------- docs/operations.md


@pytest.fixture(scope="module")
def operations() -> str:
    return OPERATIONS.read_text()


def _backfill_section(text: str) -> str:
    return text.split("## History backfill", 1)[1].split("\n## ", 1)[0]


def test_operations_doc_names_only_settings_the_jobs_read(operations: str) -> None:
    known = {
        f"JOURNEY_{f.name.upper()}" for cls in (FlinkJobSettings, IngestConfig, ProfilesConfig) for f in fields(cls)
    }
    named = set(re.findall(r"JOURNEY_[A-Z_]+[A-Z]", operations))
    assert {
        "JOURNEY_BACKFILL_TOPIC_PATTERN",
        "JOURNEY_BACKFILL_MIN_VALID_TIMESTAMP_MS",
        "JOURNEY_MIN_VALID_TIMESTAMP_MS",
        "JOURNEY_MAX_FUTURE_SKEW_MS",
        "JOURNEY_DEDUPE_TTL_MS",
    } <= named
    assert named <= known, named - known


def test_operations_doc_worked_example_configures_a_valid_backfill_and_generates_history(
    operations: str, tmp_path: Path
) -> None:
    section = _backfill_section(operations)
    block = re.search(r"<!-- backfill-example -->\s*```bash\n(.*?)\n```", section, re.S)
    assert block, "docs/operations.md: the worked example is marked <!-- backfill-example -->"
    script = block.group(1).replace("\\\n", " ")
    env = {k: shlex.split(v)[0] for k, v in re.findall(r"^export (JOURNEY_\w+)=(.*)$", script, re.M)}
    cfg = IngestConfig.from_env({"JOURNEY_PII_SALT": SALT, **env})
    settings = IngestSettings.of(cfg)
    (gen,) = [shlex.split(line) for line in script.splitlines() if "-m generator" in line]
    args = parse_args(gen[gen.index("generator") + 1 :])
    assert args.topic and re.fullmatch(cfg.input_topic_pattern, args.topic)
    assert (
        settings.bounds_for(args.topic).min_ts_ms
        == cfg.backfill_min_valid_timestamp_ms
        == args.min_valid_timestamp_ms
        < args.base_time_ms
    )
    ds = generate(
        args.seed, 2, base_time_ms=args.base_time_ms, days=args.days, min_valid_timestamp_ms=args.min_valid_timestamp_ms
    )
    ingestor = Ingestor(settings, CATALOG)
    for r in ds.records:
        out = ingestor.process(SourceRecord(r.value, args.topic, 0, 0, NOW))
        assert (out.error_type if isinstance(out, DeadLettered) else None) == r.expected_error


def test_operations_doc_states_the_defaults_the_code_has(operations: str) -> None:
    section = _backfill_section(operations)
    cfg = IngestConfig(pii_salt=SALT)
    for value in (cfg.min_valid_timestamp_ms, cfg.max_future_skew_ms, cfg.dedupe_ttl_ms):
        assert str(value) in section, value


def test_operations_doc_quotes_the_dead_letter_detail_ingestion_writes(operations: str) -> None:
    quoted = re.search(r"For example:\s*```\n(.*?)\n```", _backfill_section(operations), re.S)
    assert quoted, "docs/operations.md: the example detail follows 'For example:'"
    detail = dead_letter(ingest(DEFAULT, purchase("hist-00012", ms("1998-01-01")), LIVE_TOPIC))["error_detail"]
    assert " ".join(quoted.group(1).split("\n")) == detail
