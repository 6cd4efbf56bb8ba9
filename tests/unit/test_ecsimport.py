"""`scctl import-ecs` on every JSON document of the seeds, input and output forms, and on ECS variants the
seeds do not show; what it prints is what `scctl validate` judges.

The seed tutorial's JSON (seed 002: create-cluster output, describe-clusters output, Cloud Map
get-namespace output, the task definition, the create-service input and output) is kept in
fixtures/seed-002-json.txt exactly as the seed prints it; when the seed documents are at hand (beside the
repository in ../shared/seeds, or SC_SEEDS_DIR), the test checks that the fixture still holds every JSON
document they contain.
"""

from __future__ import annotations

import copy
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from sc_operator import cli
from sc_operator.ecsimport import EcsImportError, import_documents, kind_of
from support.ecsjson import json_blocks

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).parent / "fixtures" / "seed-002-json.txt"
SEEDS = Path(os.environ.get("SC_SEEDS_DIR") or ROOT.parent / "shared" / "seeds")
NS_ARN = "arn:aws:servicediscovery:us-west-2:123456789012:namespace/ns-EXAMPLE"
LABEL = "serviceconnect.dev/default-namespace"


def seed_documents() -> dict[str, Any]:
    """The seed's documents by what they are."""
    docs = [doc for _, doc in json_blocks(FIXTURE.read_text())]
    by_shape: dict[str, Any] = {}
    for doc in docs:
        if "cluster" in doc and "serviceName" not in doc:
            by_shape["create-cluster-output"] = doc
        elif "clusters" in doc:
            by_shape["describe-clusters-output"] = doc
        elif "Namespace" in doc:
            by_shape["get-namespace-output"] = doc
        elif "family" in doc:
            by_shape["task-definition"] = doc
        elif "serviceName" in doc:
            by_shape["create-service-input"] = doc
        elif "service" in doc:
            by_shape["create-service-output"] = doc
    assert len(by_shape) == len(docs) == 6, sorted(by_shape)
    return by_shape


SEED = seed_documents()


def write(tmp_path: Path, name: str, doc: Any) -> str:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(doc))
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[Any], str]:
    code = cli.main(list(argv), stdin=io.StringIO(""))
    captured = capsys.readouterr()
    return code, [d for d in yaml.safe_load_all(captured.out) if d is not None], captured.err


def validate(capsys: pytest.CaptureFixture[str], tmp_path: Path, objects: list[Any]) -> tuple[int, str]:
    path = tmp_path / "imported.yaml"
    path.write_text(yaml.safe_dump_all(objects))
    code = cli.main(["validate", "-f", str(path)], stdin=io.StringIO(""))
    return code, capsys.readouterr().out


def test_the_fixture_holds_every_json_document_of_the_seeds() -> None:
    if not SEEDS.is_dir():
        pytest.skip(f"the seed documents are not at {SEEDS}")
    from_seeds = [doc for path in sorted(SEEDS.glob("*.txt")) for _, doc in json_blocks(path.read_text())]
    assert from_seeds == [doc for _, doc in json_blocks(FIXTURE.read_text())]


@pytest.mark.parametrize("shape", sorted(SEED))
def test_every_seed_document_is_recognised(shape: str) -> None:
    expected = {
        "create-cluster-output": "cluster",
        "describe-clusters-output": "cluster",
        "get-namespace-output": "cloud-map-namespace",
        "task-definition": "task-definition",
        "create-service-input": "service",
        "create-service-output": "service",
    }
    assert kind_of(SEED[shape]) == expected[shape]


@pytest.mark.parametrize("cluster", ["create-cluster-output", "describe-clusters-output"])
@pytest.mark.parametrize("service", ["create-service-input", "create-service-output"])
def test_the_seed_tutorial_imports_whole_and_validates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cluster: str, service: str
) -> None:
    """Cluster (its ARN named by the get-namespace output), the service in either form, the task
    definition: a Namespace labelled with the default, the ConnectNamespace, and a ConnectService with
    Service Connect on, which scctl validate accepts."""
    code, objects, err = run(
        capsys,
        "import-ecs",
        "--cluster",
        write(tmp_path, "cluster", SEED[cluster]),
        "--cloud-map-namespace",
        write(tmp_path, "ns", SEED["get-namespace-output"]),
        "--service",
        write(tmp_path, "svc", SEED[service]),
        "--task-definition",
        write(tmp_path, "td", SEED["task-definition"]),
    )
    assert code == 0, err
    assert [o["kind"] for o in objects] == ["Namespace", "ConnectNamespace", "ConnectService"]
    namespace, connect_ns, svc = objects
    assert namespace["metadata"] == {"name": "tutorial", "labels": {LABEL: "service-connect"}}
    assert connect_ns["metadata"]["name"] == "service-connect"
    assert svc["metadata"]["namespace"] == "tutorial"
    assert svc["metadata"]["name"] == "service-connect-nginx-service"
    scc = svc["spec"]["serviceConnectConfiguration"]
    assert scc["enabled"] is True
    assert scc["services"][0]["portName"] == "nginx"
    assert scc["services"][0]["clientAliases"] == [{"port": 80}]
    assert svc["spec"]["taskDefinition"]["memory"] == "512"
    assert f"namespace ARN {NS_ARN} mapped to 'service-connect'" in err
    if service == "create-service-output":
        # The output form keeps Service Connect under deployments[]: recovered, namespace included.
        assert scc["namespace"] == "service-connect"
        assert "note: dropped deployments (the Service Connect configuration of deployments[0]" in err
    else:
        # The input form leaves the namespace to the cluster default, and asks for TLS.
        assert "namespace" not in scc
        # TLS is enforced, with the operator's CA in place of the AWS Private CA.
        assert scc["services"][0]["tls"] == {"issuerCertificateAuthority": {}}
        assert "services[0].tls.issuerCertificateAuthority.awsPcaAuthorityArn: certificateArn mapped" in err
        assert "mapped to {}: TLS is enforced" in err
        assert "services[0].tls.kmsKey: dropped" in err
    code, out = validate(capsys, tmp_path, objects)
    assert code == 0, out


def test_the_output_form_alone_keeps_service_connect(capsys: pytest.CaptureFixture[str]) -> None:
    """The regression: describe-services/create-service output used to import without Service Connect."""
    result = import_documents(service=SEED["create-service-output"], task_definition=SEED["task-definition"])
    svc = result.objects[-1]
    assert svc["spec"]["serviceConnectConfiguration"]["enabled"] is True
    assert "status" not in svc["spec"]
    assert "events" in result.dropped


def test_describe_services_takes_the_primary_deployment() -> None:
    service = copy.deepcopy(SEED["create-service-output"]["service"])
    primary = copy.deepcopy(service["deployments"][0])
    old = copy.deepcopy(primary)
    old["status"] = "ACTIVE"
    old["serviceConnectConfiguration"]["services"][0]["clientAliases"] = [{"port": 8080}]
    service["deployments"] = [old, primary]
    result = import_documents(
        service={"services": [service], "failures": []}, task_definition=SEED["task-definition"]
    )
    scc = result.objects[-1]["spec"]["serviceConnectConfiguration"]
    assert scc["services"][0]["clientAliases"] == [{"port": 80}]


def test_describe_services_with_several_services_is_refused() -> None:
    service = SEED["create-service-output"]["service"]
    with pytest.raises(EcsImportError, match="holds 2 services"):
        import_documents(service={"services": [service, service]}, task_definition=SEED["task-definition"])


@pytest.mark.parametrize(
    ("options", "namespace", "warning"),
    [
        ({"namespace_name": "service-connect"}, "service-connect", "'service-connect' (--namespace-name)"),
        ({"cloud_map_namespaces": [SEED["get-namespace-output"]]}, "service-connect", "(get-namespace"),
        ({}, None, "carries the id ns-EXAMPLE, not the name; left unset"),
    ],
)  # fmt: skip
def test_a_namespace_arn_is_mapped_to_a_name(
    options: dict[str, Any], namespace: str | None, warning: str
) -> None:
    service = copy.deepcopy(SEED["create-service-input"])
    service["serviceConnectConfiguration"]["namespace"] = NS_ARN
    result = import_documents(service=service, task_definition=SEED["task-definition"], **options)
    scc = result.objects[-1]["spec"]["serviceConnectConfiguration"]
    assert scc.get("namespace") == namespace
    assert any(warning in w for w in result.warnings), result.warnings


def test_a_cluster_default_arn_without_a_name_is_refused() -> None:
    with pytest.raises(EcsImportError, match="--namespace-name"):
        import_documents(cluster=SEED["create-cluster-output"])


def test_create_cluster_input_gives_the_default_namespace_label(capsys: pytest.CaptureFixture[str]) -> None:
    """`aws ecs create-cluster --cluster-name tutorial --service-connect-defaults namespace=service-connect`
    as --cli-input-json."""
    result = import_documents(
        cluster={"clusterName": "tutorial", "serviceConnectDefaults": {"namespace": "service-connect"}},
        namespace="web",
    )
    namespace, connect_ns = result.objects
    assert namespace == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "web", "labels": {LABEL: "service-connect"}},
    }
    assert connect_ns["kind"] == "ConnectNamespace"
    assert connect_ns["metadata"]["name"] == "service-connect"
    assert result.warnings == []


def test_the_label_is_the_one_the_operator_reads() -> None:
    from sc_operator.reconcile.context import DEFAULT_NAMESPACE_LABEL

    assert LABEL == DEFAULT_NAMESPACE_LABEL


# -- variants the seeds do not show --------------------------------------------------------------------

TWO_PORTS_TASK = {
    "family": "api",
    "networkMode": "awsvpc",
    "cpu": "512",
    "memory": "1024",
    "containerDefinitions": [
        {
            "name": "api",
            "image": "example/api",
            "portMappings": [
                {"name": "http", "containerPort": 3000, "appProtocol": "http"},
                {"name": "admin", "containerPort": 9000, "appProtocol": "grpc"},
            ],
        }
    ],
}


def variant_service(services: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "serviceName": "api",
        "desiredCount": 2,
        "taskDefinition": "api",
        "serviceConnectConfiguration": {"enabled": True, "namespace": "internal", "services": services},
    }


def test_two_endpoints_from_one_task_definition(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    services = [
        {"portName": "http", "clientAliases": [{"port": 80}]},
        {"portName": "admin", "discoveryName": "api-admin", "clientAliases": [{"port": 9000}]},
    ]
    code, objects, err = run(
        capsys,
        "import-ecs",
        "--service",
        write(tmp_path, "svc", variant_service(services)),
        "--task-definition",
        write(tmp_path, "td", TWO_PORTS_TASK),
    )
    assert code == 0, err
    assert "warning" not in err, err
    assert objects[0]["spec"]["serviceConnectConfiguration"]["services"] == services
    assert validate(capsys, tmp_path, objects)[0] == 0


def test_an_alias_whose_name_and_port_differ_from_the_container(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    services = [{"portName": "http", "clientAliases": [{"port": 8080, "dnsName": "api.internal"}]}]
    result = import_documents(service=variant_service(services), task_definition=TWO_PORTS_TASK)
    svc = result.objects[-1]
    assert svc["spec"]["serviceConnectConfiguration"]["services"][0]["clientAliases"] == [
        {"port": 8080, "dnsName": "api.internal"}
    ]
    assert (
        svc["spec"]["taskDefinition"]["containerDefinitions"][0]["portMappings"][0]["containerPort"] == 3000
    )
    assert validate(capsys, tmp_path, [svc])[0] == 0


def test_bridge_mode_with_hostname_is_refused_with_the_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task = copy.deepcopy(TWO_PORTS_TASK)
    task["networkMode"] = "bridge"
    task["containerDefinitions"][0]["hostname"] = "api-host"
    services = [{"portName": "http", "clientAliases": [{"port": 80}]}]
    code, objects, err = run(
        capsys,
        "import-ecs",
        "--service",
        write(tmp_path, "svc", variant_service(services)),
        "--task-definition",
        write(tmp_path, "td", task),
    )
    assert code == 0
    assert "warning: spec.taskDefinition.containerDefinitions[0].hostname: [bridge-hostname]" in err
    code, out = validate(capsys, tmp_path, objects)
    assert code == 1
    assert "[bridge-hostname] Service Connect does not support hostname" in out


def test_dropped_fields_that_did_something_are_warnings() -> None:
    service = copy.deepcopy(SEED["create-service-input"])
    service["loadBalancers"] = [{"targetGroupArn": "arn:aws:elasticloadbalancing:x", "containerPort": 80}]
    result = import_documents(service=service, task_definition=SEED["task-definition"])
    assert any(w.startswith("dropped loadBalancers:") for w in result.warnings)
    assert "launchType" in result.dropped


def test_validate_fails_an_imported_service_that_lost_service_connect(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    svc = import_documents(service=SEED["create-service-output"], task_definition=SEED["task-definition"])
    obj = svc.objects[-1]
    assert obj["metadata"]["annotations"] == {"serviceconnect.dev/ecs-service-connect": "enabled"}
    del obj["spec"]["serviceConnectConfiguration"]
    code, out = validate(capsys, tmp_path, [obj])
    assert code == 1
    assert "spec.serviceConnectConfiguration: [imported-service-connect]" in out
    # Disabled counts as lost too; without Service Connect in ECS there is no annotation to check.
    obj["spec"]["serviceConnectConfiguration"] = {"enabled": False}
    assert validate(capsys, tmp_path, [obj])[0] == 1
    plain = copy.deepcopy(SEED["create-service-input"])
    del plain["serviceConnectConfiguration"]
    result = import_documents(service=plain, task_definition=SEED["task-definition"])
    assert "annotations" not in result.objects[-1]["metadata"]
