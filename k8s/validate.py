"""Validate the Kubernetes manifests offline, strictly, against the schemas their API server
and operator would apply.

* ``FlinkDeployment`` (``flink.apache.org/v1beta1``): the ``openAPIV3Schema`` of the Flink
  Kubernetes Operator's CRD kept in ``k8s/crds/`` (1.15.0, the first to accept
  ``flinkVersion: v2_2``), turned into a JSON schema by :func:`crd_json_schema`.
* Every built-in kind (ConfigMap, Secret, Job, ...): Kubernetes' own schemas for
  :data:`KUBERNETES_VERSION`, bundled by the ``kubernetes-validate`` package (strict variant).

Strict means a field the schema does not declare is an error (``kubectl apply
--validate=strict``); a misspelt key would otherwise be pruned silently by the API server and
the setting lost. Nothing here needs a cluster or the network.

Usage::

    python -m k8s.validate              # every k8s/*.yaml; exit 1 and one line per error
    python -m k8s.validate FILE ...

Examples
--------
>>> schema = crd_json_schema({"spec": {"versions": [{"name": "v1", "schema": {"openAPIV3Schema": {
...     "type": "object", "properties": {"spec": {"type": "object", "properties": {
...     "parallelism": {"type": "integer"}, "size": {"anyOf": [{"type": "integer"}, {"type": "string"}],
...     "x-kubernetes-int-or-string": True}}}}}}}]}}, "v1")
>>> schema["properties"]["spec"]["additionalProperties"]
False
>>> [e.split(": ", 1)[1] for e in errors_of({"spec": {"parallelism": "2"}}, schema)]
["'2' is not of type 'integer'"]
"""

from __future__ import annotations

import copy
import functools
import sys
from pathlib import Path
from typing import Any, Iterable

import jsonschema
import yaml

K8S = Path(__file__).resolve().parent
CRDS = K8S / "crds"
#: the Kubernetes release whose built-in schemas the manifests are checked against
KUBERNETES_VERSION = "1.33.0"
#: custom resources -> (their CRD file, the served version)
CUSTOM_KINDS: dict[tuple[str, str], tuple[Path, str]] = {
    ("flink.apache.org/v1beta1", "FlinkDeployment"): (CRDS / "flinkdeployments.flink.apache.org.yml", "v1beta1"),
}
#: the fields every object has, which a CRD's schema leaves to the API server
_OBJECT_FIELDS = {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}}


def _strict(node: Any) -> Any:
    """A copy of an OpenAPI v3 schema node as a JSON schema that refuses undeclared fields."""
    if isinstance(node, list):
        return [_strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if node.get("nullable") is True and isinstance(node.get("type"), str):
        out["type"] = [node["type"], "null"]
        out.pop("nullable")
    if (
        node.get("type") == "object"
        and "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def crd_json_schema(crd: dict[str, Any], version: str) -> dict[str, Any]:
    """The strict JSON schema of ``version`` of a CustomResourceDefinition."""
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema = _strict(copy.deepcopy(served["schema"]["openAPIV3Schema"]))
    schema.setdefault("properties", {})
    for name, field in _OBJECT_FIELDS.items():
        schema["properties"].setdefault(name, field)
    return schema


@functools.lru_cache(maxsize=None)
def _custom_schema(api_version: str, kind: str) -> dict[str, Any]:
    path, version = CUSTOM_KINDS[(api_version, kind)]
    return crd_json_schema(yaml.safe_load(path.read_text()), version)


def errors_of(doc: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """Every violation of ``schema`` by ``doc``, as ``path: message``, in document order."""
    validator = jsonschema.Draft7Validator(schema)
    found = sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}" for e in found]


def validate_doc(doc: dict[str, Any]) -> list[str]:
    """The errors of one manifest document (empty: valid)."""
    key = (str(doc.get("apiVersion")), str(doc.get("kind")))
    if key in CUSTOM_KINDS:
        return errors_of(doc, _custom_schema(*key))
    import kubernetes_validate

    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        where = ".".join(str(p) for p in e.absolute_path) or "(root)"
        return [f"{where}: {e.message}"]
    except kubernetes_validate.SchemaNotFoundError as e:
        return [f"(root): {e.message}"]
    return []


def validate_files(paths: Iterable[Path]) -> list[str]:
    """Every error of every document of ``paths``, as ``file: kind/name: path: message``."""
    errors = []
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is None:
                continue
            name = f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
            errors += [f"{path.name}: {name}: {e}" for e in validate_doc(doc)]
    return errors


def manifests() -> list[Path]:
    """The manifests this project ships (``k8s/*.yaml``)."""
    return sorted(K8S.glob("*.yaml"))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    paths = [Path(a) for a in args] or manifests()
    errors = validate_files(paths)
    for e in errors:
        print(e)
    print(
        f"{len(paths)} files checked against Kubernetes {KUBERNETES_VERSION} and the Flink operator's CRD: "
        f"{len(errors)} errors",
        file=sys.stderr,
    )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
