"""The API models parse real objects, dump them back unchanged, and keep the ECS names and limits."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from sc_operator.api import (
    ConnectDeploymentSpec,
    ConnectNamespaceStatus,
    ConnectServiceSpec,
    ConnectServiceStatus,
    parse_cpu,
    parse_memory,
)


def nginx_spec() -> dict[str, Any]:
    """The seed tutorial's nginx service (Fargate CLI tutorial), as a ConnectService spec."""
    return {
        "desiredCount": 1,
        "deploymentConfiguration": {"maximumPercent": 200, "minimumHealthyPercent": 0},
        "deploymentController": {"type": "ECS"},
        "taskDefinition": {
            "family": "service-connect-nginx",
            "executionRoleArn": "arn:aws:iam::123456789012:role/ecsTaskExecutionRole",
            "networkMode": "awsvpc",
            "cpu": "256",
            "memory": "512",
            "containerDefinitions": [
                {
                    "name": "webserver",
                    "image": "public.ecr.aws/docker/library/nginx:latest",
                    "cpu": 100,
                    "essential": True,
                    "portMappings": [
                        {"name": "nginx", "containerPort": 80, "protocol": "tcp", "appProtocol": "http"}
                    ],
                    "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "/ecs/nginx"}},
                }
            ],
        },
        "serviceConnectConfiguration": {
            "enabled": True,
            "services": [{"portName": "nginx", "clientAliases": [{"port": 80}]}],
            "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-stream-prefix": "sc"}},
        },
    }


def test_tutorial_service_round_trips_unchanged() -> None:
    spec = nginx_spec()
    model = ConnectServiceSpec.model_validate(spec)
    assert model.task_definition.container_definitions[0].port_mappings is not None
    assert model.task_definition.container_definitions[0].port_mappings[0].app_protocol == "http"
    assert model.to_wire() == spec


def test_defaults_of_an_ecs_service() -> None:
    spec = nginx_spec()
    del spec["desiredCount"]
    spec["deploymentConfiguration"] = {}
    model = ConnectServiceSpec.model_validate(spec)
    assert model.desired_count == 1
    assert model.deployment_configuration is not None
    assert model.deployment_configuration.maximum_percent == 200
    assert model.deployment_configuration.minimum_healthy_percent == 100


def test_snake_case_names_work_in_python() -> None:
    model = ConnectServiceSpec.model_validate(nginx_spec())
    copy = ConnectServiceSpec(desired_count=3, task_definition=model.task_definition)
    assert copy.to_wire()["desiredCount"] == 3


def test_misspelt_field_is_refused_with_its_name() -> None:
    spec = nginx_spec()
    spec["serviceConnectConfiguration"]["services"][0]["discoverName"] = "x"
    with pytest.raises(ValidationError, match="discoverName"):
        ConnectServiceSpec.model_validate(spec)


@pytest.mark.parametrize(
    ("field", "value", "ok"),
    [
        ("discoveryName", "a" * 64, True),
        ("discoveryName", "a" * 65, False),
        ("discoveryName", "-leading-dash", False),
        ("discoveryName", "_under_ok-1", True),
        ("discoveryName", "Upper", False),
        ("portName", "nginx", True),
    ],
)
def test_name_limits(field: str, value: str, ok: bool) -> None:
    spec = nginx_spec()
    spec["serviceConnectConfiguration"]["services"][0][field] = value
    if ok:
        ConnectServiceSpec.model_validate(spec)
    else:
        with pytest.raises(ValidationError, match=field):
            ConnectServiceSpec.model_validate(spec)


@pytest.mark.parametrize(("port", "ok"), [(0, True), (65535, True), (65536, False), (-1, False)])
def test_client_alias_port_model_range(port: int, ok: bool) -> None:
    spec = nginx_spec()
    spec["serviceConnectConfiguration"]["services"][0]["clientAliases"] = [{"port": port}]
    if ok:
        ConnectServiceSpec.model_validate(spec)
    else:
        with pytest.raises(ValidationError, match="port"):
            ConnectServiceSpec.model_validate(spec)


def test_deployment_controllers_ecs_refuses_are_still_parsed() -> None:
    spec = nginx_spec()
    spec["deploymentController"] = {"type": "CODE_DEPLOY"}
    assert ConnectServiceSpec.model_validate(spec).deployment_controller is not None
    spec["deploymentController"] = {"type": "BLUE"}
    with pytest.raises(ValidationError, match="type"):
        ConnectServiceSpec.model_validate(spec)


def test_status_tolerates_fields_it_does_not_know() -> None:
    status = ConnectServiceStatus.model_validate(
        {
            "runningCount": 2,
            "kopf": {"progress": {}},
            "conditions": [
                {"type": "Accepted", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
            ],
            "deployments": [{"name": "web-1", "status": "PRIMARY", "rolloutState": "COMPLETED"}],
        }
    )
    assert status.running_count == 2
    assert status.conditions is not None
    assert status.to_wire()["conditions"][0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"


def test_namespace_status_and_pinned_endpoints_share_the_endpoint_shape() -> None:
    endpoint = {
        "discoveryName": "nginx",
        "dnsName": "nginx",
        "port": 80,
        "appProtocol": "http",
        "service": {"namespace": "web", "name": "nginx"},
    }
    ns = ConnectNamespaceStatus.model_validate({"endpoints": [endpoint], "revision": 4})
    dep = ConnectDeploymentSpec.model_validate(
        {"service": "nginx", "taskDefinitionHash": "abc", "namespaceRevision": 4, "endpoints": [endpoint]}
    )
    assert ns.endpoints == dep.endpoints
    assert dep.to_wire()["endpoints"] == [endpoint]


@pytest.mark.parametrize(
    ("value", "units"),
    [("256", 256), (256, 256), ("0.25 vCPU", 256), ("1 vCPU", 1024), ("2 vcpu", 2048), (" 512 ", 512)],
)
def test_parse_cpu(value: int | str, units: int) -> None:
    assert parse_cpu(value) == units


@pytest.mark.parametrize(
    ("value", "mib"),
    [("512", 512), (512, 512), ("1 GB", 1024), ("1GB", 1024), ("0.5 GB", 512), ("2gb", 2048)],
)
def test_parse_memory(value: int | str, mib: int) -> None:
    assert parse_memory(value) == mib


@pytest.mark.parametrize("value", ["", "lots", "1 TB", "-5", "0.1 vCPU", "1.5"])
def test_parse_cpu_refuses_non_ecs_values(value: str) -> None:
    with pytest.raises(ValueError, match="cpu"):
        parse_cpu(value)


@pytest.mark.parametrize("value", ["", "1 TB", "0.3 GB", "x512"])
def test_parse_memory_refuses_non_ecs_values(value: str) -> None:
    with pytest.raises(ValueError, match="memory"):
        parse_memory(value)
