"""The generated CRDs: in sync with the models, structural, valid apiextensions.k8s.io/v1 documents.

That kube-apiserver 1.20 really accepts them (Established, no NonStructuralSchema) is proven by the
integration tests, which install crds/ into a real API server.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel

from sc_operator import crdgen
from sc_operator.api import KINDS

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "crds"

# Keys apiextensions.k8s.io/v1 JSONSchemaProps do not have, or forbid in CRDs.
FORBIDDEN = {"$ref", "$defs", "definitions", "const", "title", "prefixItems", "patternProperties", "oneOf"}
FORBIDDEN |= {"dependencies", "deprecated", "discriminator", "id", "readOnly", "writeOnly", "xml"}


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, sub in (node.get("properties") or {}).items():
        yield from walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}.*")


def schema_of(doc: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


@pytest.fixture(params=[k.kind for k in KINDS])
def crd(request: pytest.FixtureRequest) -> dict[str, Any]:
    return next(crdgen.crd(k) for k in KINDS if k.kind == request.param)


def test_committed_crds_match_the_models() -> None:
    for name, text in crdgen.crd_files().items():
        path = CRD_DIR / name
        assert path.exists(), f"crds/{name} is missing: run hack/gen-crds"
        assert path.read_text() == text, f"crds/{name} is out of date with sc_operator.api: run hack/gen-crds"
    committed = {p.name for p in CRD_DIR.glob("serviceconnect.dev_*.yaml")}
    assert committed == set(crdgen.crd_files())


def test_gen_crds_check_reports_a_stale_directory(tmp_path: Path) -> None:
    script = REPO / "hack" / "gen-crds"
    env = {"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"}
    for name, text in crdgen.crd_files().items():
        (tmp_path / name).write_text(text)
    stale = tmp_path / "serviceconnect.dev_connectservices.yaml"
    stale.write_text(stale.read_text().replace("csvc", "oldname"))
    out = subprocess.run(
        [str(script), "--out", str(tmp_path), "--check"],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=60,
    )
    assert out.returncode == 1
    assert "-    - oldname" in out.stdout
    assert "+    - csvc" in out.stdout
    assert "out of date" in out.stderr
    fresh = subprocess.run([str(script), "--out", str(tmp_path)], check=True, env=env, timeout=60)
    assert fresh.returncode == 0
    assert stale.read_text() == crdgen.crd_files()[stale.name]


def test_schema_is_structural(crd: dict[str, Any]) -> None:
    schema = schema_of(crd)
    for path, node in walk(schema):
        where = f"{crd['metadata']['name']}{path}"
        assert not FORBIDDEN & node.keys(), f"{where}: forbidden keys {FORBIDDEN & node.keys()}"
        assert "anyOf" not in node, f"{where}: anyOf (nullable unions must be collapsed)"
        assert node.get("type") != "null", where
        assert node.get("type") or node.get("x-kubernetes-int-or-string"), f"{where}: no type"
        assert node.get("additionalProperties") is not False, where
        assert not ("properties" in node and "additionalProperties" in node), where
        assert "default" not in node, f"{where}: defaults are applied by the models, not the API server"
        # kube-apiserver 1.20 publishes nullable fields untyped, which blinds kubectl explain.
        assert "nullable" not in node, where
        assert node.get("uniqueItems") is not True, where
        for bound in ("exclusiveMinimum", "exclusiveMaximum"):
            assert isinstance(node.get(bound, False), bool), f"{where}: {bound} must be a boolean"
        if "properties" in node:
            assert node["type"] == "object", where
            assert set(node.get("required", [])) <= node["properties"].keys(), where
    assert schema_of(crd)["properties"]["metadata"] == {"type": "object"}


def test_free_form_only_where_intended(crd: dict[str, Any]) -> None:
    preserved = [p for p, n in walk(schema_of(crd)) if n.get("x-kubernetes-preserve-unknown-fields")]
    assert preserved == []


def test_crd_documents_are_valid_apiextensions_v1(crd: dict[str, Any]) -> None:
    # kubernetes-validate ships schemas from 1.25 on; apiextensions.k8s.io/v1 did not change since 1.20 in
    # any field we use. The real 1.20 API server is exercised by the integration tests.
    kubernetes_validate.validate(crd, "1.25.0", strict=True)


def test_validator_catches_a_broken_document() -> None:
    broken = crdgen.crd(KINDS[1])
    broken["spec"]["versions"][0]["served"] = "yes"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.25.0", strict=True)


def test_names_columns_and_status_subresource() -> None:
    docs = {d["spec"]["names"]["kind"]: d for d in crdgen.all_crds()}
    assert {k: d["spec"]["names"]["shortNames"] for k, d in docs.items()} == {
        "ConnectNamespace": ["cns"],
        "ConnectService": ["csvc"],
        "ConnectDeployment": ["cdep"],
    }
    assert docs["ConnectNamespace"]["spec"]["scope"] == "Cluster"
    assert docs["ConnectService"]["spec"]["scope"] == "Namespaced"
    for doc in docs.values():
        version = doc["spec"]["versions"][0]
        assert version["subresources"] == {"status": {}}
        assert doc["spec"]["names"]["categories"] == ["serviceconnect"]
        assert doc["spec"]["group"] == "serviceconnect.dev"
        assert version["name"] == "v1alpha1"
    columns = {
        c["name"]: c["jsonPath"]
        for c in docs["ConnectService"]["spec"]["versions"][0]["additionalPrinterColumns"]
    }
    assert columns["Rollout"] == '.status.deployments[?(@.status=="PRIMARY")].rolloutState'
    assert columns["Accepted"] == '.status.conditions[?(@.type=="Accepted")].status'
    assert {"Desired", "Running", "ConnectNamespace", "Age"} <= columns.keys()


def test_every_printer_column_points_at_a_schema_field() -> None:
    for doc in crdgen.all_crds():
        version = doc["spec"]["versions"][0]
        paths = {p for p, _ in walk(schema_of(doc))}
        for column in version["additionalPrinterColumns"]:
            json_path = column["jsonPath"]
            if json_path.startswith(".metadata."):
                continue
            # .status.deployments[?(...)].rolloutState -> .status.deployments[].rolloutState
            simple = json_path.split("[?")[0] + ("[]" + json_path.split(")]")[1] if "[?" in json_path else "")
            assert simple in paths, f"{doc['metadata']['name']}: column {column['name']} -> {json_path}"


def test_ecs_limits_survive_generation() -> None:
    spec = schema_of(crdgen.crd(KINDS[1]))["properties"]["spec"]["properties"]
    svc = spec["serviceConnectConfiguration"]["properties"]["services"]["items"]["properties"]
    assert svc["discoveryName"]["maxLength"] == 64
    assert svc["discoveryName"]["pattern"] == "^[a-z0-9_][a-z0-9_-]{0,63}$"
    assert "nullable" not in svc["discoveryName"]
    alias = svc["clientAliases"]["items"]
    assert alias["required"] == ["port"]
    assert alias["properties"]["port"]["maximum"] == 65535
    assert alias["properties"]["dnsName"]["maxLength"] == 127
    assert svc["timeout"]["properties"]["perRequestTimeoutSeconds"]["maximum"] == 2147483647
    assert spec["deploymentController"]["properties"]["type"]["enum"] == ["ECS", "CODE_DEPLOY", "EXTERNAL"]
    task = spec["taskDefinition"]["properties"]
    assert task["memory"]["x-kubernetes-int-or-string"] is True
    options = task["containerDefinitions"]["items"]["properties"]["logConfiguration"]["properties"]["options"]
    assert options["additionalProperties"] == {"type": "string"}


class _Leaf(BaseModel):
    n: int


def test_conversions_of_pydantic_constructs() -> None:
    from typing import Annotated, Literal

    from pydantic import Field

    class Model(BaseModel):
        one: Literal["x"]
        gt: Annotated[int, Field(gt=0, lt=10)]
        tags: set[str]
        leaf: _Leaf | None = None
        size: int | str

    schema = crdgen.structural_schema(Model)
    props = schema["properties"]
    assert props["one"] == {"type": "string", "enum": ["x"]}
    assert props["gt"] == {
        "type": "integer",
        "exclusiveMaximum": True,
        "exclusiveMinimum": True,
        "maximum": 10,
        "minimum": 0,
    }
    assert props["tags"]["x-kubernetes-list-type"] == "set"
    assert "uniqueItems" not in props["tags"]
    assert props["leaf"] == {
        "type": "object",
        "properties": {"n": {"type": "integer"}},
        "required": ["n"],
    }
    assert props["size"] == {"x-kubernetes-int-or-string": True}


def test_unstructurable_models_are_refused() -> None:
    class Free(BaseModel):
        anything: Any

    class Either(BaseModel):
        value: int | list[str]

    class Node(BaseModel):
        children: list[Node]

    for model in (Free, Either, Node):
        with pytest.raises(crdgen.SchemaError):
            crdgen.structural_schema(model)


def test_scctl_style_stream_has_every_crd() -> None:
    docs = [d for d in yaml.safe_load_all(crdgen.multi_document_yaml()) if d]
    assert [d["metadata"]["name"] for d in docs] == [k.crd_name for k in KINDS]


def test_gen_crds_check_covers_crds_and_the_chart() -> None:
    env = {"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [str(REPO / "hack" / "gen-crds"), "--check"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    chart_copy = REPO / "charts" / "service-connect" / "files" / "crds"
    if chart_copy.is_dir():
        assert {p.name for p in chart_copy.glob("*.yaml")} == set(crdgen.crd_files())
