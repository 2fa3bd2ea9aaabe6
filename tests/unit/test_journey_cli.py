"""``journey rules validate`` (the job's own validation, offline) and ``journey privacy report``: clear errors and exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from journey_cli.main import main
from models.segments import DEFAULT_RULES_PATH


def test_validate_lists_each_rule_with_the_features_it_uses(capsys):
    assert main(["rules", "validate", str(DEFAULT_RULES_PATH)]) == 0
    out = capsys.readouterr().out
    assert "ok  high_value v1 [marketing] uses lifetime_value, purchases_7d" in out
    assert out.count("\n") == 6


def test_an_invalid_file_exits_2_naming_the_rule_and_the_problem(tmp_path: Path, capsys):
    bad = tmp_path / "rules.yaml"
    bad.write_text("- {name: vip, version: 2, purpose: marketing, expression: 'visits > 3'}\n")
    assert main(["rules", "validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "journey rules: " in err and "rule 'vip' v2: unknown field(s) visits" in err


def test_a_missing_file_and_an_unknown_command_are_clear(tmp_path: Path, capsys):
    assert main(["rules", "validate", str(tmp_path / "nope.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["nope"]) == 2
    assert "unknown command 'nope'" in capsys.readouterr().err


def test_privacy_report_refuses_what_it_cannot_look_up_with_the_reason(monkeypatch, capsys):
    from journey_cli.main import main as journey
    from journey_cli.privacy import ReportError, identifier_of

    monkeypatch.delenv("JOURNEY_PII_SALT", raising=False)
    assert journey(["privacy", "report", "--phone", "+1 415 555 0132"]) == 2
    assert "JOURNEY_PII_SALT" in capsys.readouterr().err
    with pytest.raises(ReportError, match="not a usable email"):
        identifier_of("email", "john.doe(at)example.com", "s" * 16)
    with pytest.raises(ReportError, match="blank"):
        identifier_of("cookie-id", "  ", None)
    assert identifier_of("loyalty-id", " LOY1 ", None) == ("loyalty_id", "LOY1")
    with pytest.raises(SystemExit):  # one identifier, exactly
        journey(["privacy", "report", "--email", "a@b.co", "--customer-id", "c1"])
