"""scctl and sc-operator as a user runs them: arguments in, text and exit codes out."""

from __future__ import annotations

import copy
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from sc_operator import cli
from sc_operator.crdgen import all_crds
from sc_operator.main import kopf_args

BIN = Path(sys.executable).parent

# The seed tutorial's inputs (Fargate CLI tutorial), trimmed to what matters.
TASK_DEFINITION = {
    "family": "service-connect-nginx",
    "executionRoleArn": "arn:aws:iam::123456789012:role/ecsTaskExecutionRole",
    "networkMode": "awsvpc",
    "containerDefinitions": [
        {
            "name": "webserver",
            "image": "public.ecr.aws/docker/library/nginx:latest",
            "cpu": 100,
            "portMappings": [
                {"name": "nginx", "containerPort": 80, "protocol": "tcp", "appProtocol": "http"}
            ],
            "essential": True,
            "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "/ecs/nginx"}},
        }
    ],
    "requiresCompatibilities": ["FARGATE"],
    "cpu": "256",
    "memory": "512",
}
CREATE_SERVICE = {
    "cluster": "tutorial",
    "deploymentConfiguration": {"maximumPercent": 200, "minimumHealthyPercent": 0},
    "deploymentController": {"type": "ECS"},
    "desiredCount": 1,
    "launchType": "FARGATE",
    "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-EXAMPLE"]}},
    "serviceName": "service-connect-nginx-service",
    "serviceConnectConfiguration": {
        "enabled": True,
        "services": [{"portName": "nginx", "clientAliases": [{"port": 80}]}],
        "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "/ecs/sc"}},
    },
    "taskDefinition": "service-connect-nginx",
}


def service_doc(**spec_changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "taskDefinition": TASK_DEFINITION,
        "serviceConnectConfiguration": CREATE_SERVICE["serviceConnectConfiguration"],
    }
    spec.update(spec_changes)
    return {
        "apiVersion": "serviceconnect.dev/v1alpha1",
        "kind": "ConnectService",
        "metadata": {"name": "nginx", "namespace": "web"},
        "spec": spec,
    }


def run(capsys: pytest.CaptureFixture[str], *argv: str, stdin: str = "") -> tuple[int, str, str]:
    code = cli.main(list(argv), stdin=io.StringIO(stdin))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "version")
    assert code == 0
    assert out.startswith("scctl ")
    assert "serviceconnect.dev/v1alpha1" in out


def test_crds_prints_every_crd_as_one_stream(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "crds")
    assert code == 0
    assert [d for d in yaml.safe_load_all(out) if d] == all_crds()


def test_validate_accepts_the_tutorial_service(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nginx.yaml"
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "web"}}
    path.write_text(yaml.safe_dump_all([namespace, service_doc()]))
    code, out, _ = run(capsys, "validate", "-f", str(path))
    assert code == 0
    assert out == f"{path}: ConnectService web/nginx: ok\n"


def test_validate_refuses_with_every_violation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.json"
    bad = service_doc(deploymentController={"type": "CODE_DEPLOY"})
    bad["spec"]["taskDefinition"] = {k: v for k, v in TASK_DEFINITION.items() if k != "memory"}
    path.write_text(json.dumps(bad))
    code, out, _ = run(capsys, "validate", "-f", str(path))
    assert code == 1
    assert out.splitlines()[0] == f"{path}: ConnectService web/nginx: refused"
    assert (
        "  spec.deploymentController.type: [deployment-controller] Service Connect supports only the ECS "
        "deployment controller; CODE_DEPLOY (blue/green) and EXTERNAL are not supported" in out
    )
    assert "  spec.taskDefinition.memory: [task-memory-required]" in out


def test_validate_reads_stdin_and_reports_json(capsys: pytest.CaptureFixture[str]) -> None:
    doc = service_doc()
    doc["spec"]["serviceConnectConfiguration"] = {
        "enabled": True,
        "services": [{"portName": "nginx", "discoveryName": "a" * 65, "clientAliases": [{"port": 65536}]}],
    }
    code, out, _ = run(capsys, "validate", "-f", "-", "-o", "json", stdin=yaml.safe_dump(doc))
    assert code == 1
    [entry] = json.loads(out)
    assert entry["object"] == "ConnectService web/nginx"
    assert {(v["rule"], v["field"]) for v in entry["violations"]} == {
        ("discovery-name", "spec.serviceConnectConfiguration.services[0].discoveryName"),
        ("port-range", "spec.serviceConnectConfiguration.services[0].clientAliases[0].port"),
    }


def test_validate_checks_api_version_and_namespaces(capsys: pytest.CaptureFixture[str]) -> None:
    docs = [
        {**service_doc(), "apiVersion": "serviceconnect.dev/v1"},
        {
            "apiVersion": "serviceconnect.dev/v1alpha1",
            "kind": "ConnectNamespace",
            "metadata": {"name": "a"},
            "spec": {"descripton": "typo"},
        },
        {
            "apiVersion": "serviceconnect.dev/v1alpha1",
            "kind": "ConnectNamespace",
            "metadata": {"name": "b"},
            "spec": {"description": None},
        },
    ]
    code, out, _ = run(capsys, "validate", "-f", "-", stdin=yaml.safe_dump_all(docs))
    assert code == 1
    assert "apiVersion: [schema] must be serviceconnect.dev/v1alpha1; got 'serviceconnect.dev/v1'" in out
    assert "ConnectNamespace a: refused" in out
    assert "spec.descripton: [schema] unknown field" in out
    assert "spec.description: [schema] null is not allowed" in out


@pytest.mark.parametrize(
    ("argv", "stdin", "message"),
    [
        (["validate", "-f", "/nonexistent/x.yaml"], "", "cannot read"),
        (["validate", "-f", "-"], "a: [unclosed", "not YAML or JSON"),
        (["validate", "-f", "-"], "apiVersion: v1\nkind: ConfigMap\n", "no ConnectService"),
        (["validate"], "", "give at least one -f FILE"),
    ],
)
def test_validate_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], stdin: str, message: str
) -> None:
    code, _, err = run(capsys, *argv, stdin=stdin)
    assert code == 2
    assert message in err


def test_validate_lists_its_rules(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "validate", "--rules")
    assert code == 0
    assert "deployment-controller" in out
    assert "standalone-task" in out


def test_import_ecs_converts_the_tutorial(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "svc.json").write_text(json.dumps(CREATE_SERVICE))
    (tmp_path / "td.json").write_text(json.dumps({"taskDefinition": TASK_DEFINITION}))  # describe output
    code, out, err = run(
        capsys,
        "import-ecs",
        "--service",
        str(tmp_path / "svc.json"),
        "--task-definition",
        str(tmp_path / "td.json"),
        "--namespace",
        "web",
    )
    assert code == 0
    obj = yaml.safe_load(out)
    assert obj["metadata"] == {
        "name": "service-connect-nginx-service",
        "namespace": "web",
        "annotations": {"serviceconnect.dev/ecs-service-connect": "enabled"},
    }
    assert obj["spec"]["taskDefinition"] == TASK_DEFINITION
    assert obj["spec"]["serviceConnectConfiguration"] == CREATE_SERVICE["serviceConnectConfiguration"]
    assert obj["spec"]["desiredCount"] == 1
    assert "note: dropped networkConfiguration" in err
    assert "warning" not in err
    # What it writes, scctl validate accepts.
    (tmp_path / "out.yaml").write_text(out)
    assert run(capsys, "validate", "-f", str(tmp_path / "out.yaml"))[0] == 0


def test_import_ecs_warns_about_what_service_connect_refuses(capsys: pytest.CaptureFixture[str]) -> None:
    service = {
        **CREATE_SERVICE,
        "deploymentController": {"type": "CODE_DEPLOY"},
        "taskDefinition": TASK_DEFINITION,
    }
    code, out, err = run(capsys, "import-ecs", "--service", "-", stdin=json.dumps(service))
    assert code == 0
    assert yaml.safe_load(out)["spec"]["deploymentController"] == {"type": "CODE_DEPLOY"}
    assert "warning: spec.deploymentController.type: [deployment-controller]" in err


def test_import_ecs_needs_the_task_definition(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "import-ecs", "--service", "-", stdin=json.dumps(CREATE_SERVICE))
    assert code == 2
    assert "pass its JSON with --task-definition" in err


def test_console_scripts_are_installed() -> None:
    out = subprocess.run([BIN / "scctl", "version"], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.startswith("scctl ")
    help_ = subprocess.run(
        [BIN / "sc-operator", "--help"], capture_output=True, text=True, timeout=60, check=True
    )
    for option in ("--all-namespaces", "--namespace", "--standalone", "--verbose", "--liveness", "--peering"):
        assert option in help_.stdout


def test_sc_operator_runs_our_handlers_with_kopf_options() -> None:
    assert kopf_args(["--standalone", "-A"]) == ["run", "-m", "sc_operator.handlers", "--standalone", "-A"]
    assert kopf_args(["run", "-n", "web"]) == ["run", "-m", "sc_operator.handlers", "-n", "web"]


def test_sc_operator_refuses_unknown_options() -> None:
    out = subprocess.run(
        [BIN / "sc-operator", "--no-such-option"], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 2
    assert "no-such-option" in out.stderr


def test_sidecar_package_does_not_import_the_operator() -> None:
    code = (
        "import sys, sc_proxy, pkgutil, importlib\n"
        "for m in pkgutil.walk_packages(sc_proxy.__path__, 'sc_proxy.'):\n"
        "    try: importlib.import_module(m.name)\n"
        "    except Exception: pass\n"
        "bad = [m for m in sys.modules if m.startswith(('sc_operator', 'kopf', 'kubernetes'))]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == ""


def test_validate_a_directory_like_kubectl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(service_doc()))
    (tmp_path / "b.json").write_text(json.dumps(service_doc(deploymentController={"type": "EXTERNAL"})))
    (tmp_path / "notes.txt").write_text("not a manifest")
    code, out, _ = run(capsys, "validate", "-f", str(tmp_path))
    assert code == 1
    assert out.splitlines()[0] == f"{tmp_path / 'a.yaml'}: ConnectService web/nginx: ok"
    assert f"{tmp_path / 'b.json'}: ConnectService web/nginx: refused" in out


def test_the_shipped_examples_pass_the_operators_rules(capsys: pytest.CaptureFixture[str]) -> None:
    examples = Path(__file__).resolve().parents[2] / "examples"
    code, out, err = run(capsys, "validate", "-f", str(examples))
    assert code == 0, out + err
    assert "ConnectService" in out


def test_validate_finds_two_services_claiming_one_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = service_doc()
    first["spec"]["serviceConnectConfiguration"] = {
        **CREATE_SERVICE["serviceConnectConfiguration"],
        "namespace": "t",
    }
    second = copy_with_name(first, "nginx-copy")
    elsewhere = copy_with_name(first, "nginx-elsewhere")
    elsewhere["spec"]["serviceConnectConfiguration"]["namespace"] = "other"
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(first))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump_all([second, elsewhere]))
    code, out, _ = run(capsys, "validate", "-f", str(tmp_path))
    assert code == 1
    lines = out.splitlines()
    assert lines[0].endswith("ConnectService web/nginx: ok")
    assert lines[1].endswith("ConnectService web/nginx-copy: refused")
    assert any("[discovery-name-duplicate]" in line and "by web/nginx" in line for line in lines)
    assert any("[client-alias-duplicate]" in line and "nginx:80" in line for line in lines)
    assert lines[-1].endswith("ConnectService web/nginx-elsewhere: ok")


def copy_with_name(doc: dict[str, Any], name: str) -> dict[str, Any]:
    copied: dict[str, Any] = json.loads(json.dumps(doc))
    copied["metadata"]["name"] = name
    return copied


def test_import_ecs_names_nested_fields_it_drops(capsys: pytest.CaptureFixture[str]) -> None:
    task = json.loads(json.dumps(TASK_DEFINITION))
    task["containerDefinitions"][0]["portMappings"][0]["containerPortRange"] = "8000-8010"
    task["containerDefinitions"][0]["ulimits"] = [{"name": "nofile", "softLimit": 1, "hardLimit": 2}]
    service = json.loads(json.dumps(CREATE_SERVICE))
    service["taskDefinition"] = task
    service["serviceConnectConfiguration"]["services"][0]["clientAliases"][0]["testTrafficRules"] = {
        "header": {"name": "x-test"}
    }
    code, out, err = run(
        capsys, "import-ecs", "--service", "-", "--name", "Web_Server", stdin=json.dumps(service)
    )
    assert code == 0
    assert "dropped taskDefinition.containerDefinitions[0].portMappings[0].containerPortRange" in err
    assert "dropped taskDefinition.containerDefinitions[0].ulimits" in err
    assert "dropped serviceConnectConfiguration.services[0].clientAliases[0].testTrafficRules" in err
    obj = yaml.safe_load(out)
    assert obj["metadata"]["name"] == "web-server"
    assert obj["spec"]["taskDefinition"]["containerDefinitions"][0]["portMappings"][0] == {
        "name": "nginx",
        "containerPort": 80,
        "protocol": "tcp",
        "appProtocol": "http",
    }


def test_validate_refuses_the_aws_private_ca_saying_what_to_use(capsys: pytest.CaptureFixture[str]) -> None:
    doc = service_doc()
    scc = copy.deepcopy(doc["spec"]["serviceConnectConfiguration"])
    scc["services"][0]["tls"] = {"issuerCertificateAuthority": {"awsPcaAuthorityArn": "arn:aws:acm-pca:x"}}
    doc["spec"]["serviceConnectConfiguration"] = scc
    code, out, _ = run(capsys, "validate", "-f", "-", stdin=yaml.safe_dump(doc))
    assert code == 1
    assert (
        "  spec.serviceConnectConfiguration.services[0].tls.issuerCertificateAuthority.awsPcaAuthorityArn: "
        "[tls-aws-pca] AWS Private CA is not available to Service Connect for Kubernetes; use {}" in out
    )
    scc["services"][0]["tls"] = {"issuerCertificateAuthority": {}}
    code, out, _ = run(capsys, "validate", "-f", "-", stdin=yaml.safe_dump(doc))
    assert code == 0, out
