"""The CRD schema and the operator's view agree on what is valid.

Each case changes one field of a valid ConnectService spec. The API server's view (the generated
openAPIV3Schema, checked here with a Draft 4 validator after mapping x-kubernetes-int-or-string) and the
operator's view (the models, plus its check for explicit nulls) must give the same answer. A generator
bug that drops a pattern, a bound or an enum fails here without a cluster; the integration tests prove
the same schema on a real kube-apiserver.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from sc_operator import crdgen
from sc_operator.api import CONNECT_SERVICE, ConnectServiceSpec
from sc_operator.validation.schema import null_violations


def draft4(node: Any) -> Any:
    """openAPIV3Schema -> JSON Schema Draft 4: `x-kubernetes-int-or-string` as a type list."""
    if isinstance(node, list):
        return [draft4(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: draft4(value) for key, value in node.items() if not key.startswith("x-kubernetes-")}
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    return out


SPEC_SCHEMA = draft4(crdgen.crd(CONNECT_SERVICE)["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def base() -> dict[str, Any]:
    return {
        "desiredCount": 1,
        "deploymentController": {"type": "ECS"},
        "deploymentConfiguration": {
            "maximumPercent": 200,
            "minimumHealthyPercent": 50,
            "deploymentCircuitBreaker": {"enable": True, "rollback": False},
        },
        "taskDefinition": {
            "family": "nginx",
            "networkMode": "awsvpc",
            "cpu": "256",
            "memory": 512,
            "runtimePlatform": {"cpuArchitecture": "ARM64", "operatingSystemFamily": "LINUX"},
            "containerDefinitions": [
                {
                    "name": "web",
                    "image": "nginx",
                    "cpu": 100,
                    "memory": 256,
                    "memoryReservation": 128,
                    "portMappings": [
                        {"name": "nginx", "containerPort": 80, "hostPort": 0, "appProtocol": "http"}
                    ],
                    "environment": [{"name": "A", "value": "1"}],
                    "healthCheck": {"command": ["CMD", "true"], "interval": 5, "timeout": 2, "retries": 1},
                }
            ],
        },
        "serviceConnectConfiguration": {
            "enabled": True,
            "namespace": "tutorial",
            "services": [
                {
                    "portName": "nginx",
                    "discoveryName": "nginx",
                    "clientAliases": [{"port": 80, "dnsName": "nginx.tutorial"}],
                    "ingressPortOverride": 15080,
                    "timeout": {"idleTimeoutSeconds": 0, "perRequestTimeoutSeconds": 15},
                }
            ],
            "logConfiguration": {"logDriver": "awslogs", "options": {"a": "b"}},
            "accessLogConfiguration": {"format": "TEXT", "includeQueryParameters": "ENABLED"},
        },
        "expectedRequestsPerSecond": 600,
        "proxyResources": {"cpu": 512, "memory": 128},
    }


SVC = ("serviceConnectConfiguration", "services", 0)
ALIAS = (*SVC, "clientAliases", 0)
PM = ("taskDefinition", "containerDefinitions", 0, "portMappings", 0)
CD = ("taskDefinition", "containerDefinitions", 0)
DELETE = object()

CASES: list[tuple[tuple[Any, ...], Any]] = [
    ((*SVC, "discoveryName"), "a" * 64),
    ((*SVC, "discoveryName"), "a" * 65),
    ((*SVC, "discoveryName"), "-a"),
    ((*SVC, "discoveryName"), "a.b"),
    ((*SVC, "discoveryName"), ""),
    ((*SVC, "portName"), "UPPER"),
    ((*SVC, "portName"), DELETE),
    ((*ALIAS, "dnsName"), "a" * 127),
    ((*ALIAS, "dnsName"), "a" * 128),
    ((*ALIAS, "dnsName"), "-a"),
    ((*ALIAS, "port"), 0),
    ((*ALIAS, "port"), 65535),
    ((*ALIAS, "port"), 65536),
    ((*ALIAS, "port"), -1),
    ((*ALIAS, "port"), "80"),
    ((*ALIAS, "port"), DELETE),
    ((*SVC, "ingressPortOverride"), 70000),
    ((*SVC, "timeout", "idleTimeoutSeconds"), 2147483647),
    ((*SVC, "timeout", "idleTimeoutSeconds"), 2147483648),
    ((*SVC, "timeout", "perRequestTimeoutSeconds"), -1),
    ((*SVC, "tls"), {"kmsKey": "k"}),
    ((*SVC, "tls"), {"issuerCertificateAuthority": {"awsPcaAuthorityArn": "arn"}}),
    ((*PM, "appProtocol"), "tcp"),
    ((*PM, "appProtocol"), "grpc"),
    ((*PM, "protocol"), "udp"),
    ((*PM, "protocol"), "sctp"),
    ((*PM, "containerPort"), 65536),
    ((*PM, "name"), "a" * 65),
    ((*CD, "name"), "bad name"),
    ((*CD, "image"), ""),
    ((*CD, "memory"), 0),
    ((*CD, "healthCheck", "interval"), 4),
    ((*CD, "healthCheck", "retries"), 11),
    ((*CD, "healthCheck", "command"), []),
    (("taskDefinition", "containerDefinitions"), []),
    (("taskDefinition", "networkMode"), "nat"),
    (("taskDefinition", "memory"), "1 GB"),
    (("taskDefinition", "memory"), 1.5),
    (("taskDefinition", "memory"), DELETE),
    (("taskDefinition", "runtimePlatform", "operatingSystemFamily"), "WINDOWS_SERVER_2022_CORE"),
    (("taskDefinition", "runtimePlatform", "operatingSystemFamily"), "MACOS"),
    (("taskDefinition", "family"), DELETE),
    (("deploymentController", "type"), "CODE_DEPLOY"),
    (("deploymentController", "type"), "BLUE_GREEN"),
    (("deploymentConfiguration", "maximumPercent"), 99),
    (("deploymentConfiguration", "minimumHealthyPercent"), 101),
    (("deploymentConfiguration", "deploymentCircuitBreaker"), {"enable": True}),
    (("serviceConnectConfiguration", "enabled"), DELETE),
    (("serviceConnectConfiguration", "enabled"), "yes"),
    (("serviceConnectConfiguration", "logConfiguration", "logDriver"), "syslog"),
    (("serviceConnectConfiguration", "logConfiguration", "logDriver"), "stdout"),
    (("serviceConnectConfiguration", "logConfiguration", "options"), {"a": 1}),
    (("serviceConnectConfiguration", "accessLogConfiguration", "format"), "CSV"),
    (("serviceConnectConfiguration", "accessLogConfiguration"), {"includeQueryParameters": "DISABLED"}),
    (("desiredCount",), -1),
    (("desiredCount",), DELETE),
    (("expectedRequestsPerSecond",), -5),
    (("proxyResources", "cpu"), 0),
    (("serviceConnectConfiguration", "services", 0, "clientAliases", 0, "dnsName"), None),
    ((*PM, "appProtocol"), None),
    (("taskDefinition", "networkMode"), None),
    (("serviceConnectConfiguration", "logConfiguration"), None),
    (("serviceConnectConfiguration", "namespace"), "arn:aws:servicediscovery:us-west-2:1:namespace/ns-1"),
    (("serviceConnectConfiguration", "namespace"), "a.b-c"),
]


def changed(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    spec = base()
    node: Any = spec
    for part in path[:-1]:
        node = node[part]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = copy.deepcopy(value)
    return spec


def schema_accepts(spec: dict[str, Any]) -> bool:
    obj = {
        "apiVersion": "serviceconnect.dev/v1alpha1",
        "kind": "ConnectService",
        "metadata": {},
        "spec": spec,
    }
    return not list(jsonschema.Draft4Validator(SPEC_SCHEMA).iter_errors(obj))


def model_accepts(spec: dict[str, Any]) -> bool:
    """What the operator's validation says about the spec's schema (rules beyond the schema aside)."""
    try:
        ConnectServiceSpec.model_validate(spec)
    except ValidationError:
        return False
    return not null_violations(ConnectServiceSpec, spec, "spec")


def test_the_base_spec_is_valid_for_both() -> None:
    assert schema_accepts(base())
    assert model_accepts(base())


@pytest.mark.parametrize(
    ("path", "value"), CASES, ids=[f"{'.'.join(map(str, p))}={v!r:.20}" for p, v in CASES]
)
def test_schema_and_models_agree(path: tuple[Any, ...], value: Any) -> None:
    spec = changed(path, value)
    assert schema_accepts(spec) == model_accepts(spec)


def test_the_cases_include_refusals() -> None:
    # Agreement is only meaningful if the cases exercise both answers.
    answers = {model_accepts(changed(p, v)) for p, v in CASES}
    assert answers == {True, False}


# -- generated specs ---------------------------------------------------------------------------------------

NAME = st.from_regex(r"\A[a-z0-9_][a-z0-9_-]{0,63}\Z")
WILD_NAME = st.one_of(NAME, st.text(alphabet="abcXYZ-_.:/ 0", min_size=0, max_size=70))
PORT = st.integers(min_value=-2, max_value=70000)
TIMEOUT = st.integers(min_value=-1, max_value=2**31)
ENUM = st.sampled_from(["http", "http2", "grpc", "tcp", "HTTP"])


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    """Specs around the valid ones: most fields drawn from just inside and just outside their limits."""
    spec = base()
    mapping = spec["taskDefinition"]["containerDefinitions"][0]["portMappings"][0]
    mapping["name"] = draw(WILD_NAME)
    mapping["containerPort"] = draw(PORT)
    mapping["appProtocol"] = draw(ENUM)
    service = spec["serviceConnectConfiguration"]["services"][0]
    service["discoveryName"] = draw(WILD_NAME)
    service["clientAliases"] = [
        {"port": draw(PORT), "dnsName": draw(st.one_of(NAME, WILD_NAME))}
        for _ in range(draw(st.integers(min_value=0, max_value=2)))
    ]
    service["timeout"] = {"idleTimeoutSeconds": draw(TIMEOUT), "perRequestTimeoutSeconds": draw(TIMEOUT)}
    spec["taskDefinition"]["memory"] = draw(
        st.one_of(st.integers(min_value=-1, max_value=4096), st.text(max_size=6))
    )
    spec["desiredCount"] = draw(st.integers(min_value=-1, max_value=5))
    return spec


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_schema_and_models_agree_on_generated_specs(spec: dict[str, Any]) -> None:
    assert schema_accepts(spec) == model_accepts(spec)
