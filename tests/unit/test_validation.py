"""Every refusal of DESIGN.md "Reconciling" as a rule: id, field path, and the ECS rule in the message."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import pytest

from sc_operator.api import ConnectServiceSpec, Endpoint, ServiceRef
from sc_operator.registry import Member, Registry
from sc_operator.validation import (
    RULES,
    STANDALONE_TASK_MESSAGE,
    StaticRegistry,
    Violation,
    effective_endpoints,
    parse_and_validate,
    validate_namespace,
    validate_registration,
    validate_service,
    validate_together,
)

WEB = ServiceRef(namespace="web", name="nginx")
SCC = "spec.serviceConnectConfiguration"
TD = "spec.taskDefinition"


def base() -> dict[str, Any]:
    """A valid server: the tutorial's nginx, with a second TCP port to exercise cross-port rules."""
    return {
        "desiredCount": 2,
        "taskDefinition": {
            "family": "nginx",
            "networkMode": "awsvpc",
            "cpu": "256",
            "memory": "512",
            "containerDefinitions": [
                {
                    "name": "web",
                    "image": "nginx",
                    "memory": 256,
                    "portMappings": [
                        {"name": "nginx", "containerPort": 80, "appProtocol": "http"},
                        {"name": "redis", "containerPort": 6379},
                    ],
                }
            ],
        },
        "serviceConnectConfiguration": {
            "enabled": True,
            "namespace": "tutorial",
            "services": [{"portName": "nginx", "clientAliases": [{"port": 80}]}],
        },
    }


def check(spec: dict[str, Any]) -> list[Violation]:
    return validate_service(
        {"apiVersion": "serviceconnect.dev/v1alpha1", "kind": "ConnectService", "spec": spec}
    )


def rules(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {(v.rule, v.field) for v in check(spec)}


def svc(spec: dict[str, Any], i: int = 0) -> dict[str, Any]:
    service: dict[str, Any] = spec["serviceConnectConfiguration"]["services"][i]
    return service


def container(spec: dict[str, Any]) -> dict[str, Any]:
    c: dict[str, Any] = spec["taskDefinition"]["containerDefinitions"][0]
    return c


def test_the_tutorial_service_is_valid() -> None:
    assert check(base()) == []


def test_violation_reads_as_field_rule_message() -> None:
    spec = base()
    spec["deploymentController"] = {"type": "CODE_DEPLOY"}
    [violation] = check(spec)
    assert str(violation) == (
        "spec.deploymentController.type: [deployment-controller] Service Connect supports only the ECS "
        "deployment controller; CODE_DEPLOY (blue/green) and EXTERNAL are not supported (got CODE_DEPLOY)"
    )


@pytest.mark.parametrize(
    ("controller", "refused"), [("ECS", False), ("CODE_DEPLOY", True), ("EXTERNAL", True)]
)
def test_deployment_controller(controller: str, refused: bool) -> None:
    spec = base()
    spec["deploymentController"] = {"type": controller}
    assert rules(spec) == (
        {("deployment-controller", "spec.deploymentController.type")} if refused else set()
    )


def test_unknown_deployment_controller_names_the_rule() -> None:
    spec = base()
    spec["deploymentController"] = {"type": "BLUE_GREEN"}
    assert rules(spec) == {("deployment-controller", "spec.deploymentController.type")}


def test_standalone_task_message_is_the_ecs_rule() -> None:
    assert STANDALONE_TASK_MESSAGE == (
        "Service Connect supports only tasks created by a service; standalone tasks are not supported"
    )
    assert RULES["standalone-task"] == STANDALONE_TASK_MESSAGE


@pytest.mark.parametrize(("family", "refused"), [("LINUX", False), ("WINDOWS_SERVER_2019_FULL", True)])
def test_windows(family: str, refused: bool) -> None:
    spec = base()
    spec["taskDefinition"]["runtimePlatform"] = {"operatingSystemFamily": family, "cpuArchitecture": "X86_64"}
    expected = {("windows", f"{TD}.runtimePlatform.operatingSystemFamily")} if refused else set()
    assert rules(spec) == expected


def test_task_memory_required() -> None:
    spec = base()
    del spec["taskDefinition"]["memory"]
    [violation] = check(spec)
    assert (violation.rule, violation.field) == ("task-memory-required", f"{TD}.memory")
    assert "requires task-level memory" in violation.message


@pytest.mark.parametrize(
    ("limits", "task", "refused"),
    [
        ([511], "512", False),  # below: room for the proxy
        ([512], "512", True),  # equal: nothing left
        ([256, 256], "512", True),  # the sum counts
        ([1023], "1 GB", False),
        ([1024], "1 GB", True),
        ([None], "512", False),  # no limit at all is fine
    ],
)
def test_container_memory_must_stay_below_task_memory(
    limits: list[int | None], task: str, refused: bool
) -> None:
    spec = base()
    spec["taskDefinition"]["memory"] = task
    template = container(spec)
    spec["taskDefinition"]["containerDefinitions"] = []
    for i, limit in enumerate(limits):
        c = copy.deepcopy(template)
        c["name"] = f"c{i}"
        c.pop("memory")
        if i > 0:
            c.pop("portMappings")
        if limit is not None:
            c["memory"] = limit
        spec["taskDefinition"]["containerDefinitions"].append(c)
    assert rules(spec) == ({("container-memory", f"{TD}.containerDefinitions")} if refused else set())


@pytest.mark.parametrize(("field_name", "value"), [("memory", "1 TB"), ("cpu", "lots"), ("cpu", "0.1 vCPU")])
def test_task_sizes_must_be_ecs_sizes(field_name: str, value: str) -> None:
    spec = base()
    spec["taskDefinition"][field_name] = value
    assert rules(spec) == {("task-size", f"{TD}.{field_name}")}


@pytest.mark.parametrize(("mode", "refused"), [("awsvpc", False), ("bridge", True)])
def test_hostname_in_bridge_mode(mode: str, refused: bool) -> None:
    spec = base()
    spec["taskDefinition"]["networkMode"] = mode
    container(spec)["hostname"] = "web"
    expected = {("bridge-hostname", f"{TD}.containerDefinitions[0].hostname")} if refused else set()
    assert rules(spec) == expected


def test_links() -> None:
    spec = base()
    container(spec)["links"] = ["db"]
    assert rules(spec) == {("links", f"{TD}.containerDefinitions[0].links")}


@pytest.mark.parametrize(("mode", "refused"), [("awsvpc", False), ("bridge", True)])
def test_tls_with_bridge(mode: str, refused: bool) -> None:
    spec = base()
    spec["taskDefinition"]["networkMode"] = mode
    svc(spec)["tls"] = {"issuerCertificateAuthority": {}}
    assert rules(spec) == ({("bridge-tls", f"{SCC}.services[0].tls")} if refused else set())


def test_host_mode_is_refused_for_servers_and_clients_alike() -> None:
    """ECS intercepts Service Connect traffic only in awsvpc and bridge tasks; a host-network pod would
    share the node's network, so host mode is refused whatever the service does."""
    spec = base()
    spec["taskDefinition"]["networkMode"] = "host"
    assert rules(spec) == {("network-mode", f"{TD}.networkMode")}
    del spec["serviceConnectConfiguration"]["services"]
    assert rules(spec) == {("network-mode", f"{TD}.networkMode")}
    spec["serviceConnectConfiguration"]["enabled"] = False
    assert rules(spec) == {("network-mode", f"{TD}.networkMode")}
    violation = check(spec)[0]
    assert "awsvpc and bridge" in violation.message


@pytest.mark.parametrize("mode", ["awsvpc", "bridge"])
def test_awsvpc_and_bridge_are_accepted(mode: str) -> None:
    spec = base()
    spec["taskDefinition"]["networkMode"] = mode
    assert rules(spec) == set()


@pytest.mark.parametrize(
    ("compat", "refused"),
    [
        (["EC2"], False),
        (["FARGATE", "EC2"], False),
        (["EXTERNAL"], True),
        (["EC2", "MANAGED_INSTANCES"], True),
    ],
)
def test_ecs_anywhere_and_managed_instances_are_refused(compat: list[str], refused: bool) -> None:
    spec = base()
    spec["taskDefinition"]["requiresCompatibilities"] = compat
    field = f"{TD}.requiresCompatibilities[{len(compat) - 1}]"
    assert rules(spec) == ({("external-instances", field)} if refused else set())
    if refused:
        message = check(spec)[0].message
        assert "not supported by Service Connect" in message
    # Without Service Connect the field is only recorded, as ECS runs such services without it.
    spec["serviceConnectConfiguration"]["enabled"] = False
    assert rules(spec) == set()


@pytest.mark.parametrize(
    ("mode", "host_port", "refused"),
    [
        ("awsvpc", 80, False),
        ("awsvpc", 8080, True),
        ("awsvpc", 0, True),
        ("bridge", 8080, False),
        ("bridge", 0, False),
    ],
)
def test_awsvpc_host_port_equals_container_port(mode: str, host_port: int, refused: bool) -> None:
    spec = base()
    spec["taskDefinition"]["networkMode"] = mode
    spec["taskDefinition"]["containerDefinitions"][0]["portMappings"][0]["hostPort"] = host_port
    field = f"{TD}.containerDefinitions[0].portMappings[0].hostPort"
    assert rules(spec) == ({("awsvpc-host-port", field)} if refused else set())


@pytest.mark.parametrize(("port_name", "refused"), [("nginx", False), ("redis", True)])
def test_per_request_timeout_only_on_http_kinds(port_name: str, refused: bool) -> None:
    spec = base()
    svc(spec)["portName"] = port_name
    svc(spec)["timeout"] = {"perRequestTimeoutSeconds": 30, "idleTimeoutSeconds": 60}
    field_path = f"{SCC}.services[0].timeout.perRequestTimeoutSeconds"
    assert rules(spec) == ({("tcp-per-request-timeout", field_path)} if refused else set())


def test_idle_timeout_is_fine_on_tcp() -> None:
    spec = base()
    svc(spec)["portName"] = "redis"
    svc(spec)["timeout"] = {"idleTimeoutSeconds": 0}
    assert check(spec) == []


@pytest.mark.parametrize(("value", "ok"), [(0, True), (2147483647, True), (2147483648, False), (-1, False)])
def test_timeout_range(value: int, ok: bool) -> None:
    spec = base()
    svc(spec)["timeout"] = {"idleTimeoutSeconds": value}
    assert rules(spec) == (
        set() if ok else {("timeout-range", f"{SCC}.services[0].timeout.idleTimeoutSeconds")}
    )


def test_port_name_not_in_task_definition() -> None:
    spec = base()
    svc(spec)["portName"] = "http"
    [violation] = check(spec)
    assert (violation.rule, violation.field) == ("port-name-unknown", f"{SCC}.services[0].portName")
    assert "nginx, redis" in violation.message


def test_duplicate_port_name_in_services() -> None:
    spec = base()
    spec["serviceConnectConfiguration"]["services"].append(
        {"portName": "nginx", "discoveryName": "nginx2", "clientAliases": [{"port": 8080}]}
    )
    assert rules(spec) == {("port-name-duplicate", f"{SCC}.services[1].portName")}


def test_duplicate_port_mapping_names_in_the_task() -> None:
    spec = base()
    container(spec)["portMappings"][1]["name"] = "nginx"
    assert ("port-name-duplicate", f"{TD}.containerDefinitions[0].portMappings[1].name") in rules(spec)


def test_missing_port_name_is_required() -> None:
    spec = base()
    del svc(spec)["portName"]
    assert rules(spec) == {("required", f"{SCC}.services[0].portName")}


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("a" * 64, True),
        ("a" * 65, False),
        ("-x", False),
        ("_x", True),
        ("x-", True),
        ("X", False),
        ("a.b", False),
    ],
)
def test_discovery_name(name: str, ok: bool) -> None:
    spec = base()
    svc(spec)["discoveryName"] = name
    assert rules(spec) == (set() if ok else {("discovery-name", f"{SCC}.services[0].discoveryName")})


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("a" * 63, True),
        ("a" * 64, False),  # one DNS label may hold 63 characters
        (".".join(["a" * 63, "b" * 63]), True),  # 127 characters
        (".".join(["a" * 63, "b" * 63]) + "c", False),  # 128 characters
        ("nginx.tutorial", True),
        ("-nginx", False),
        ("a..b", False),
        ("Nginx", False),
    ],
)
def test_dns_name(name: str, ok: bool) -> None:
    spec = base()
    svc(spec)["clientAliases"][0]["dnsName"] = name
    assert rules(spec) == (set() if ok else {("dns-name", f"{SCC}.services[0].clientAliases[0].dnsName")})


def test_port_name_format_on_the_mapping() -> None:
    spec = base()
    container(spec)["portMappings"][1]["name"] = "Redis"
    assert rules(spec) == {("port-name", f"{TD}.containerDefinitions[0].portMappings[1].name")}


@pytest.mark.parametrize(("port", "ok"), [(1, True), (65535, True), (0, False), (65536, False)])
def test_client_alias_port_range(port: int, ok: bool) -> None:
    spec = base()
    svc(spec)["clientAliases"][0]["port"] = port
    assert rules(spec) == (set() if ok else {("port-range", f"{SCC}.services[0].clientAliases[0].port")})


@pytest.mark.parametrize(("port", "ok"), [(1, True), (65535, True), (0, False), (70000, False)])
def test_container_and_ingress_ports(port: int, ok: bool) -> None:
    spec = base()
    container(spec)["portMappings"][0]["containerPort"] = port
    svc(spec)["ingressPortOverride"] = port
    expected = {
        ("port-range", f"{TD}.containerDefinitions[0].portMappings[0].containerPort"),
        ("port-range", f"{SCC}.services[0].ingressPortOverride"),
    }
    assert rules(spec) == (set() if ok else expected)


def test_bridge_dynamic_host_port_zero_is_allowed() -> None:
    spec = base()
    spec["taskDefinition"]["networkMode"] = "bridge"
    container(spec)["portMappings"][0]["hostPort"] = 0
    assert check(spec) == []


@pytest.mark.parametrize("aliases", [[], None, [{"port": 80}, {"port": 81}]])
def test_exactly_one_client_alias(aliases: list[dict[str, int]] | None) -> None:
    spec = base()
    if aliases is None:
        del svc(spec)["clientAliases"]
    else:
        svc(spec)["clientAliases"] = aliases
    assert rules(spec) == {("client-alias", f"{SCC}.services[0].clientAliases")}


def test_client_alias_without_port() -> None:
    spec = base()
    svc(spec)["clientAliases"] = [{"dnsName": "nginx"}]
    assert rules(spec) == {("client-alias", f"{SCC}.services[0].clientAliases[0].port")}


def test_access_log_needs_log_configuration() -> None:
    spec = base()
    spec["serviceConnectConfiguration"]["accessLogConfiguration"] = {"format": "JSON"}
    assert rules(spec) == {("access-log", f"{SCC}.accessLogConfiguration")}
    spec["serviceConnectConfiguration"]["logConfiguration"] = {"logDriver": "awslogs"}
    assert check(spec) == []


def test_duplicate_discovery_name_and_alias_within_one_service() -> None:
    spec = base()
    spec["serviceConnectConfiguration"]["services"].append(
        {"portName": "redis", "discoveryName": "nginx", "clientAliases": [{"port": 80, "dnsName": "nginx"}]}
    )
    assert rules(spec) == {
        ("discovery-name-duplicate", f"{SCC}.services[1].discoveryName"),
        ("client-alias-duplicate", f"{SCC}.services[1].clientAliases[0]"),
    }


def test_all_violations_are_reported_not_just_the_first() -> None:
    spec = base()
    spec["deploymentController"] = {"type": "EXTERNAL"}
    del spec["taskDefinition"]["memory"]
    container(spec)["links"] = ["db"]
    svc(spec)["portName"] = "redis"
    svc(spec)["timeout"] = {"perRequestTimeoutSeconds": 5}
    assert {v.rule for v in check(spec)} == {
        "deployment-controller",
        "task-memory-required",
        "links",
        "tcp-per-request-timeout",
    }


def test_all_schema_violations_are_reported_together() -> None:
    spec = base()
    svc(spec)["discoveryName"] = "-bad"
    svc(spec)["clientAliases"][0]["port"] = 70000
    svc(spec)["discoverName"] = "typo"
    found = rules(spec)
    assert found == {
        ("discovery-name", f"{SCC}.services[0].discoveryName"),
        ("port-range", f"{SCC}.services[0].clientAliases[0].port"),
        ("schema", f"{SCC}.services[0].discoverName"),
    }


def test_service_connect_rules_wait_until_it_is_enabled() -> None:
    spec = base()
    spec["serviceConnectConfiguration"]["enabled"] = False
    del spec["taskDefinition"]["memory"]
    container(spec)["links"] = ["db"]
    assert check(spec) == []


def test_missing_spec() -> None:
    assert [str(v) for v in validate_service({"kind": "ConnectService"})] == [
        "spec: [required] a ConnectService needs a spec"
    ]


def test_every_rule_id_used_is_documented() -> None:
    spec = base()
    spec["deploymentController"] = {"type": "EXTERNAL"}
    del svc(spec)["clientAliases"]
    assert all(v.rule in RULES for v in check(spec))


# -- effective endpoints ----------------------------------------------------------------------------------


def parsed(spec: dict[str, Any]) -> ConnectServiceSpec:
    model, violations = parse_and_validate(spec)
    assert violations == []
    assert model is not None
    return model


def test_effective_endpoint_defaults() -> None:
    [endpoint] = effective_endpoints(parsed(base()), WEB)
    assert endpoint == Endpoint(
        discovery_name="nginx", port_name="nginx", dns_name="nginx", port=80, app_protocol="http", service=WEB
    )


def test_effective_endpoints_use_explicit_names_and_tcp() -> None:
    spec = base()
    spec["serviceConnectConfiguration"]["services"] = [
        {
            "portName": "redis",
            "discoveryName": "cache",
            "clientAliases": [{"port": 6379, "dnsName": "cache.shop"}],
        }
    ]
    [endpoint] = effective_endpoints(parsed(spec), WEB)
    assert (endpoint.discovery_name, endpoint.dns_name, endpoint.port, endpoint.app_protocol) == (
        "cache",
        "cache.shop",
        6379,
        None,
    )


def test_client_only_service_registers_nothing() -> None:
    spec = base()
    del spec["serviceConnectConfiguration"]["services"]
    assert effective_endpoints(parsed(spec), WEB) == []
    spec["serviceConnectConfiguration"] = {"enabled": False}
    assert effective_endpoints(parsed(spec), WEB) == []


# -- cross-object rules -----------------------------------------------------------------------------------

OTHER = ServiceRef(namespace="shop", name="other")


def ep(discovery: str, dns: str, port: int, owner: ServiceRef) -> Endpoint:
    return Endpoint(discovery_name=discovery, dns_name=dns, port=port, service=owner)


@dataclass(frozen=True)
class PlainRegistry:
    """The smallest registry the rules accept: endpoints with owners, and the member services."""

    endpoints: tuple[Endpoint, ...] = ()
    members: tuple[ServiceRef, ...] = field(default=())

    def holders(self) -> list[ServiceRef]:
        return list(self.members)


def test_registration_into_an_empty_namespace() -> None:
    assert validate_registration(parsed(base()), WEB, "tutorial", {"tutorial": Registry()}) == []


def test_duplicate_discovery_name_in_the_namespace() -> None:
    registry = Registry(endpoints=(ep("nginx", "web-other", 8080, OTHER),))
    [violation] = validate_registration(parsed(base()), WEB, "tutorial", {"tutorial": registry})
    assert (violation.rule, violation.field) == (
        "discovery-name-duplicate",
        f"{SCC}.services[0].discoveryName",
    )
    assert "shop/other" in violation.message


def named(discovery: str, dns: str) -> dict[str, Any]:
    spec = base()
    svc(spec)["discoveryName"] = discovery
    svc(spec)["clientAliases"] = [{"port": 80, "dnsName": dns}]
    return spec


def test_duplicate_dns_name_and_port_in_the_namespace() -> None:
    registry = PlainRegistry(endpoints=(ep("else", "nginx", 80, OTHER),))
    [violation] = validate_registration(
        parsed(named("web", "nginx")), WEB, "tutorial", {"tutorial": registry}
    )
    assert (violation.rule, violation.field) == (
        "client-alias-duplicate",
        f"{SCC}.services[0].clientAliases[0]",
    )
    assert "nginx:80" in violation.message


def test_same_dns_name_on_another_port_is_fine() -> None:
    registry = PlainRegistry(endpoints=(ep("else", "nginx", 8080, OTHER),))
    spec = parsed(named("web", "nginx"))
    assert validate_registration(spec, WEB, "tutorial", {"tutorial": registry}) == []


def test_a_discovery_name_that_is_another_endpoints_dns_name_is_refused_naming_both_owners() -> None:
    # Clients resolve discoveryNames and dnsNames alike (render.vips), so "nginx" would mean two endpoints.
    registry = PlainRegistry(endpoints=(ep("else", "nginx", 8080, OTHER),))
    [violation] = validate_registration(parsed(base()), WEB, "tutorial", {"tutorial": registry})
    assert (violation.rule, violation.field) == ("client-name-collision", f"{SCC}.services[0].discoveryName")
    assert "discoveryName 'nginx'" in violation.message
    assert str(WEB) in violation.message
    assert "shop/other" in violation.message
    assert "dnsName of endpoint 'else'" in violation.message


def test_a_dns_name_that_is_another_endpoints_discovery_name_is_refused() -> None:
    registry = PlainRegistry(endpoints=(ep("cache", "cache", 6379, OTHER),))
    [violation] = validate_registration(
        parsed(named("web", "cache")), WEB, "tutorial", {"tutorial": registry}
    )
    assert (violation.rule, violation.field) == (
        "client-name-collision",
        f"{SCC}.services[0].clientAliases[0].dnsName",
    )
    assert "shop/other" in violation.message


def test_names_of_two_entries_of_one_service_collide_too() -> None:
    spec = base()
    spec["taskDefinition"]["containerDefinitions"][0]["portMappings"].append(
        {"name": "admin", "containerPort": 9090, "protocol": "tcp"}
    )
    spec["serviceConnectConfiguration"]["services"].append(
        {"portName": "admin", "discoveryName": "admin", "clientAliases": [{"port": 9090, "dnsName": "nginx"}]}
    )
    violations = validate_registration(parsed(spec), WEB, "tutorial", {"tutorial": Registry()})
    assert [(v.rule, v.field) for v in violations] == [
        ("client-name-collision", f"{SCC}.services[1].clientAliases[0].dnsName")
    ]


def test_a_shared_port_name_is_never_refused() -> None:
    # Services sharing a task definition (ECS allows it; each with its own discoveryName) share portNames;
    # a portName equal to another endpoint's discoveryName is normal too. It just resolves to neither.
    shared = Endpoint(discovery_name="other", port_name="nginx", dns_name="other", port=81, service=OTHER)
    registry = PlainRegistry(endpoints=(shared,))
    assert validate_registration(parsed(base()), WEB, "tutorial", {"tutorial": registry}) == []


def test_own_endpoints_never_conflict() -> None:
    registry = Registry(endpoints=(ep("nginx", "nginx", 80, WEB),), members=(Member(WEB),))
    assert validate_registration(parsed(base()), WEB, "tutorial", {"tutorial": registry}) == []


def test_a_service_in_two_namespaces() -> None:
    registries = {
        "tutorial": PlainRegistry(),
        "legacy": PlainRegistry(members=(WEB,)),
    }
    [violation] = validate_registration(parsed(base()), WEB, "tutorial", registries)
    assert (violation.rule, violation.field) == ("one-namespace", f"{SCC}.namespace")
    assert "'legacy'" in violation.message


def test_a_service_holding_endpoints_in_another_namespace() -> None:
    registries = {"tutorial": Registry(), "legacy": Registry(endpoints=(ep("nginx", "nginx", 80, WEB),))}
    assert {v.rule for v in validate_registration(parsed(base()), WEB, "tutorial", registries)} == {
        "one-namespace"
    }


def test_task_size_of_the_wrong_type_names_the_ecs_forms() -> None:
    spec = base()
    spec["taskDefinition"]["memory"] = [512]
    [violation] = check(spec)
    assert (violation.rule, violation.field) == ("task-size", f"{TD}.memory")
    assert '"1 GB"' in violation.message


def test_validate_together_refuses_the_later_claim_only() -> None:
    a, b, c = (ServiceRef(namespace="web", name=n) for n in ("a", "b", "c"))
    other = base()
    svc(other)["discoveryName"] = "other"
    svc(other)["clientAliases"] = [{"port": 81}]
    found = validate_together(
        [(a, "ns", parsed(base())), (b, "ns", parsed(base())), (c, "ns", parsed(other))]
    )
    assert found[a] == []
    assert {v.rule for v in found[b]} == {"discovery-name-duplicate", "client-alias-duplicate"}
    assert found[c] == []


def test_validate_together_sees_a_service_in_two_namespaces() -> None:
    found = validate_together([(WEB, "one", parsed(base())), (WEB, "two", parsed(base()))])
    assert [v.rule for v in found[WEB]] == ["one-namespace"]


def test_static_registry_replaces_what_a_service_held() -> None:
    registry = (
        StaticRegistry().with_service(WEB, [ep("x", "x", 80, WEB)]).with_service(WEB, [ep("y", "y", 80, WEB)])
    )
    assert [e.discovery_name for e in registry.endpoints] == ["y"]
    assert registry.holders() == [WEB]


def test_explicit_null_is_refused_like_the_api_server_does() -> None:
    spec = base()
    container(spec)["portMappings"][0]["appProtocol"] = None
    svc(spec)["clientAliases"][0]["dnsName"] = None
    assert rules(spec) == {
        ("schema", f"{TD}.containerDefinitions[0].portMappings[0].appProtocol"),
        ("schema", f"{SCC}.services[0].clientAliases[0].dnsName"),
    }
    assert "leave the field out" in check(spec)[0].message


def test_null_is_reported_beside_the_other_rules() -> None:
    spec = base()
    spec["taskDefinition"]["memory"] = None
    assert rules(spec) == {("schema", f"{TD}.memory"), ("task-memory-required", f"{TD}.memory")}


@pytest.mark.parametrize(("count", "refused"), [(1000, False), (1001, True)])
def test_task_quota_of_a_serving_service(count: int, refused: bool) -> None:
    spec = base()
    spec["desiredCount"] = count
    assert rules(spec) == ({("task-quota", "spec.desiredCount")} if refused else set())
    del spec["serviceConnectConfiguration"]["services"]  # a client registers no instances
    assert rules(spec) == set()


@pytest.mark.parametrize(
    ("namespace", "ok"),
    [
        ("tutorial", True),
        ("svc.local", True),
        ("a" * 253, True),
        ("a" * 254, False),
        ("arn:aws:servicediscovery:us-west-2:123456789012:namespace/ns-x", False),
        ("Tutorial", False),
        ("-x", False),
    ],
)
def test_namespace_names_a_connect_namespace(namespace: str, ok: bool) -> None:
    spec = base()
    spec["serviceConnectConfiguration"]["namespace"] = namespace
    assert rules(spec) == (set() if ok else {("namespace-name", f"{SCC}.namespace")})


def test_validate_namespace() -> None:
    assert validate_namespace({"kind": "ConnectNamespace", "metadata": {"name": "a"}}) == []
    assert validate_namespace({"spec": {"description": "shop"}}) == []
    assert [str(v) for v in validate_namespace({"spec": {"description": "x" * 1025}})] == [
        "spec.description: [schema] String should have at most 1024 characters; got '" + "x" * 1025 + "'"
    ]
    assert {(v.rule, v.field) for v in validate_namespace({"spec": {"typo": 1, "description": None}})} == {
        ("schema", "spec.typo"),
        ("schema", "spec.description"),
    }


@pytest.mark.parametrize(("container_cpu", "refused"), [(256, False), (257, True)])
def test_container_cpu_fits_the_task(container_cpu: int, refused: bool) -> None:
    spec = base()
    spec["taskDefinition"]["containerDefinitions"][0]["cpu"] = container_cpu
    assert rules(spec) == ({("container-cpu", f"{TD}.containerDefinitions")} if refused else set())


@pytest.mark.parametrize(("reservation", "refused"), [(512, False), (513, True)])
def test_container_memory_reservations_fit_the_task(reservation: int, refused: bool) -> None:
    spec = base()
    container = spec["taskDefinition"]["containerDefinitions"][0]
    del container["memory"]
    second = {**copy.deepcopy(container), "name": "side", "portMappings": [], "memory": 256}
    container["memoryReservation"] = reservation - 256  # the side car reserves its limit, 256
    spec["taskDefinition"]["containerDefinitions"].append(second)
    expected = {("container-memory-reservation", f"{TD}.containerDefinitions")} if refused else set()
    assert rules(spec) == expected
