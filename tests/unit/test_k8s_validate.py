"""The k8s manifests validate offline against the Flink operator's CRD and Kubernetes' own
schemas (k8s/validate.py), and a planted error in any of them fails."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from k8s.validate import KUBERNETES_VERSION, manifests, validate_doc, validate_files

ROOT = Path(__file__).resolve().parents[2]


def _doc(kind: str, name: str | None = None) -> dict[str, Any]:
    for path in manifests():
        for d in yaml.safe_load_all(path.read_text()):
            if d and d["kind"] == kind and name in (None, d["metadata"]["name"]):
                return d
    raise AssertionError(f"no {kind} {name or ''} in k8s/*.yaml")


def test_every_shipped_manifest_is_valid() -> None:
    kinds = {d["kind"] for p in manifests() for d in yaml.safe_load_all(p.read_text()) if d}
    assert {"FlinkDeployment", "ConfigMap", "Secret", "Job"} <= kinds
    assert validate_files(manifests()) == []


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def plant(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        node[int(last) if last.isdigit() else last] = value

    return plant


PLANTED = {
    "a misspelt FlinkDeployment field": ("FlinkDeployment", _set("spec.jobb", {"upgradeMode": "savepoint"}), "jobb"),
    "a Flink version the operator does not know": ("FlinkDeployment", _set("spec.flinkVersion", "v9_9"), "v9_9"),
    "a parallelism that is not a number": ("FlinkDeployment", _set("spec.job.parallelism", "two"), "parallelism"),
    "an unknown upgrade mode": ("FlinkDeployment", _set("spec.job.upgradeMode", "sometimes"), "sometimes"),
    "a misspelt pod template field": (
        "FlinkDeployment",
        _set("spec.podTemplate.spec.containers.0.imagee", "x"),
        "imagee",
    ),
    "a ConfigMap value that is not a string": ("ConfigMap", _set("data.JOURNEY_COALESCE_MS", 1000), "1000"),
    "a misspelt Job field": ("Job", _set("spec.template.spec.restartPolicyy", "Never"), "restartPolicyy"),
    "a Secret with a misspelt data field": ("Secret", _set("stringDatta", {"x": "y"}), "stringDatta"),
}


@pytest.mark.parametrize("case", list(PLANTED), ids=lambda c: c.replace(" ", "-"))
def test_a_planted_error_fails_validation(case: str) -> None:
    kind, plant, mentioned = PLANTED[case]
    doc = copy.deepcopy(_doc(kind))
    assert validate_doc(doc) == []
    plant(doc)
    errors = validate_doc(doc)
    assert errors, f"{case}: not caught"
    assert any(mentioned in e for e in errors), errors


def test_an_unknown_kind_is_an_error_not_a_pass() -> None:
    doc = copy.deepcopy(_doc("ConfigMap"))
    doc["kind"] = "ConfigMapp"
    errors = validate_doc(doc)
    assert errors and "ConfigMapp" in errors[0] and KUBERNETES_VERSION.rsplit(".", 1)[0] in errors[0]


def test_the_command_exits_1_and_names_the_file_and_field_of_a_planted_error(tmp_path: Path) -> None:
    doc = copy.deepcopy(_doc("FlinkDeployment", "journey-profiles"))
    doc["spec"]["job"]["entryClasss"] = "x"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    r = subprocess.run([sys.executable, "-m", "k8s.validate", str(bad)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 1
    assert "bad.yaml: FlinkDeployment/journey-profiles: spec.job: " in r.stdout and "entryClasss" in r.stdout
    ok = subprocess.run([sys.executable, "-m", "k8s.validate"], cwd=ROOT, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
