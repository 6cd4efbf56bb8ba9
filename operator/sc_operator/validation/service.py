"""Rules on one ConnectService spec (pure). Each rule is a function returning its violations.

Rules that ECS states for Service Connect apply when ``serviceConnectConfiguration.enabled`` is true.
The deployment-controller rule applies always: this operator implements only the ECS (rolling) controller.
The schema limits are checked again here (not only by the CRD schema), because objects can reach the
operator or ``scctl`` without passing an API server that knows the current schema.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from pydantic import ValidationError

from sc_operator.api.service import ConnectServiceSpec
from sc_operator.api.units import parse_cpu, parse_memory
from sc_operator.validation.endpoints import SCC, discovery_name, port_mappings, served
from sc_operator.validation.schema import null_violations, violations_from
from sc_operator.validation.tls import tls_rules
from sc_operator.validation.violation import (
    DEPLOYMENT_CONTROLLER_MESSAGE,
    IMPORTED_SC_ANNOTATION,
    RULES,
    Violation,
)

TD = "spec.taskDefinition"
Rule = Callable[[ConnectServiceSpec], Iterator[Violation]]


def _sc_enabled(spec: ConnectServiceSpec) -> bool:
    config = spec.service_connect_configuration
    return config is not None and config.enabled


def deployment_controller(spec: ConnectServiceSpec) -> Iterator[Violation]:
    controller = spec.deployment_controller
    if controller is not None and controller.type != "ECS":
        yield Violation(
            "deployment-controller",
            "spec.deploymentController.type",
            f"{DEPLOYMENT_CONTROLLER_MESSAGE} (got {controller.type})",
        )


def windows(spec: ConnectServiceSpec) -> Iterator[Violation]:
    platform = spec.task_definition.runtime_platform
    family = platform.operating_system_family if platform else None
    if family is not None and family.startswith("WINDOWS"):
        yield Violation(
            "windows",
            f"{TD}.runtimePlatform.operatingSystemFamily",
            f"Service Connect does not support Windows containers; use LINUX (got {family})",
        )


def task_memory(spec: ConnectServiceSpec) -> Iterator[Violation]:
    task = spec.task_definition
    if task.memory is None:
        yield Violation(
            "task-memory-required",
            f"{TD}.memory",
            "Service Connect requires task-level memory: the proxy runs on the task memory that no "
            'container reserves (e.g. memory: "512")',
        )
        return
    try:
        total = parse_memory(task.memory)
    except ValueError as exc:
        yield Violation("task-size", f"{TD}.memory", f'{exc}; use MiB ("512") or GB ("1 GB")')
        return
    limits = [c.memory for c in task.container_definitions if c.memory is not None]
    if limits and sum(limits) >= total:
        yield Violation(
            "container-memory",
            f"{TD}.containerDefinitions",
            f"Service Connect allows container memory limits only if the task memory is larger than their "
            f"sum: the containers' memory adds up to {sum(limits)} MiB and the task has {total} MiB, "
            f"leaving nothing for the proxy",
        )


def task_cpu(spec: ConnectServiceSpec) -> Iterator[Violation]:
    if spec.task_definition.cpu is None:
        return
    try:
        total = parse_cpu(spec.task_definition.cpu)
    except ValueError as exc:
        yield Violation("task-size", f"{TD}.cpu", f'{exc}; use CPU units ("256") or vCPU ("0.25 vCPU")')
        return
    used = sum(c.cpu or 0 for c in spec.task_definition.container_definitions)
    if used > total:
        # The task size becomes the pod's resources, which the API server holds the containers to.
        yield Violation(
            "container-cpu",
            f"{TD}.containerDefinitions",
            f"the CPU reserved for all containers must not exceed the task cpu: the containers' cpu adds up "
            f"to {used} units and the task has {total}",
        )


def container_reservations(spec: ConnectServiceSpec) -> Iterator[Violation]:
    """A container reserves its memoryReservation, else its memory; together no more than the task."""
    task = spec.task_definition
    if task.memory is None:
        return
    try:
        total = parse_memory(task.memory)
    except ValueError:
        return  # task_memory reports it
    reserved = sum(c.memory_reservation or c.memory or 0 for c in task.container_definitions)
    if reserved > total:
        yield Violation(
            "container-memory-reservation",
            f"{TD}.containerDefinitions",
            f"the memory reserved for all containers (memoryReservation, else memory) must not exceed the "
            f"task memory: they add up to {reserved} MiB and the task has {total} MiB",
        )


def _network_mode(spec: ConnectServiceSpec) -> str:
    return spec.task_definition.network_mode or "awsvpc"


def bridge_hostname_and_links(spec: ConnectServiceSpec) -> Iterator[Violation]:
    bridge = _network_mode(spec) == "bridge"
    for i, container in enumerate(spec.task_definition.container_definitions):
        where = f"{TD}.containerDefinitions[{i}]"
        if bridge and container.hostname is not None:
            yield Violation(
                "bridge-hostname",
                f"{where}.hostname",
                "Service Connect does not support hostname for tasks in bridge network mode; remove it "
                "or use awsvpc",
            )
        if container.links:
            yield Violation(
                "links",
                f"{where}.links",
                "Service Connect does not support task definition links; reach other services through "
                "their client aliases instead",
            )


def network_mode(spec: ConnectServiceSpec) -> Iterator[Violation]:
    """ECS intercepts Service Connect traffic only in awsvpc tasks (NAT) and bridge tasks (TPROXY); the
    ECS agent accepts ingress in those two modes only. On Kubernetes a host-network pod would also share
    the node's network (and its iptables) with every other pod, so host is refused outright."""
    if _network_mode(spec) == "host":
        yield Violation(
            "network-mode",
            f"{TD}.networkMode",
            "Service Connect supports the awsvpc and bridge network modes, not host (the ECS agent "
            "intercepts Service Connect traffic only in awsvpc and bridge tasks); use awsvpc",
        )


def awsvpc_host_port(spec: ConnectServiceSpec) -> Iterator[Violation]:
    """ECS RegisterTaskDefinition: in awsvpc mode hostPort is left out or equals containerPort (the task
    has its own address, so there is no host to map from)."""
    if _network_mode(spec) != "awsvpc":
        return
    for ci, container in enumerate(spec.task_definition.container_definitions):
        for pi, mapping in enumerate(container.port_mappings or []):
            if mapping.host_port is not None and mapping.host_port != mapping.container_port:
                yield Violation(
                    "awsvpc-host-port",
                    f"{TD}.containerDefinitions[{ci}].portMappings[{pi}].hostPort",
                    f"in the awsvpc network mode hostPort must be left out or equal the containerPort "
                    f"({mapping.container_port}); got {mapping.host_port}. Use bridge to publish a "
                    "different port on the node",
                )


#: requiresCompatibilities values whose tasks Service Connect cannot run (reference §10).
UNSUPPORTED_COMPATIBILITIES = {
    "EXTERNAL": "ECS Anywhere External container instances are not supported by Service Connect",
    "MANAGED_INSTANCES": "ECS Managed Instances are not supported by Service Connect",
}


def external_instances(spec: ConnectServiceSpec) -> Iterator[Violation]:
    for i, compat in enumerate(spec.task_definition.requires_compatibilities or []):
        if compat in UNSUPPORTED_COMPATIBILITIES:
            yield Violation(
                "external-instances",
                f"{TD}.requiresCompatibilities[{i}]",
                f"{UNSUPPORTED_COMPATIBILITIES[compat]} (got {compat}); use EC2 or FARGATE",
            )


def bridge_tls(spec: ConnectServiceSpec) -> Iterator[Violation]:
    if _network_mode(spec) != "bridge":
        return
    for i, service in enumerate(served(spec)):
        if service.tls is not None:
            yield Violation(
                "bridge-tls",
                f"{SCC}.services[{i}].tls",
                "Service Connect TLS is not supported in bridge network mode; use awsvpc",
            )


def port_names(spec: ConnectServiceSpec) -> Iterator[Violation]:
    mappings = port_mappings(spec)
    seen_mapping: dict[str, str] = {}
    for ci, container in enumerate(spec.task_definition.container_definitions):
        for pi, mapping in enumerate(container.port_mappings or []):
            where = f"{TD}.containerDefinitions[{ci}].portMappings[{pi}]"
            if mapping.name is not None:
                if mapping.name in seen_mapping:
                    yield Violation(
                        "port-name-duplicate",
                        f"{where}.name",
                        f"port mapping names must be unique in the task definition; {mapping.name!r} is "
                        f"already used at {seen_mapping[mapping.name]}",
                    )
                else:
                    seen_mapping[mapping.name] = where
    seen_service: dict[str, int] = {}
    for i, service in enumerate(served(spec)):
        field = f"{SCC}.services[{i}].portName"
        if service.port_name not in mappings:
            known = ", ".join(sorted(mappings)) or "none"
            yield Violation(
                "port-name-unknown",
                field,
                f"portName {service.port_name!r} must match the name of a portMapping in the task "
                f"definition (named port mappings: {known})",
            )
        if service.port_name in seen_service:
            yield Violation(
                "port-name-duplicate",
                field,
                f"portName {service.port_name!r} is already served by "
                f"services[{seen_service[service.port_name]}]",
            )
        else:
            seen_service[service.port_name] = i


def ports(spec: ConnectServiceSpec) -> Iterator[Violation]:
    """Port 0 is in the ECS model's range but the ECS agent requires 1-65535 for what it listens on."""

    def bad(port: int | None) -> bool:
        return port is not None and not 1 <= port <= 65535

    for ci, container in enumerate(spec.task_definition.container_definitions):
        for pi, mapping in enumerate(container.port_mappings or []):
            if bad(mapping.container_port):
                yield Violation(
                    "port-range",
                    f"{TD}.containerDefinitions[{ci}].portMappings[{pi}].containerPort",
                    f"{RULES['port-range']}; got {mapping.container_port}",
                )
    for i, service in enumerate(served(spec)):
        where = f"{SCC}.services[{i}]"
        if bad(service.ingress_port_override):
            yield Violation(
                "port-range",
                f"{where}.ingressPortOverride",
                f"{RULES['port-range']}; got {service.ingress_port_override}",
            )
        for ai, alias in enumerate(service.client_aliases or []):
            if bad(alias.port):
                yield Violation(
                    "port-range",
                    f"{where}.clientAliases[{ai}].port",
                    f"{RULES['port-range']}; got {alias.port}",
                )


def dns_names(spec: ConnectServiceSpec) -> Iterator[Violation]:
    for i, service in enumerate(served(spec)):
        for ai, alias in enumerate(service.client_aliases or []):
            name = alias.dns_name
            if name is None:
                continue
            labels = name.rstrip(".").split(".")
            if any(not 1 <= len(label) <= 63 for label in labels):
                yield Violation(
                    "dns-name",
                    f"{SCC}.services[{i}].clientAliases[{ai}].dnsName",
                    "dnsName must be a valid DNS name: every dot-separated label 1-63 characters; "
                    f"got {name!r}",
                )


def client_aliases(spec: ConnectServiceSpec) -> Iterator[Violation]:
    for i, service in enumerate(served(spec)):
        count = len(service.client_aliases or [])
        if count != 1:
            yield Violation(
                "client-alias",
                f"{SCC}.services[{i}].clientAliases",
                "each Service Connect service needs exactly one clientAlias with a port (the ECS API allows "
                f"at most 1 and requires one); got {count}",
            )


def per_request_timeout(spec: ConnectServiceSpec) -> Iterator[Violation]:
    mappings = port_mappings(spec)
    for i, service in enumerate(served(spec)):
        timeout = service.timeout
        if timeout is None or timeout.per_request_timeout_seconds is None:
            continue
        found = mappings.get(service.port_name)
        if found is not None and found[1].app_protocol is None:
            yield Violation(
                "tcp-per-request-timeout",
                f"{SCC}.services[{i}].timeout.perRequestTimeoutSeconds",
                f"perRequestTimeoutSeconds applies only to appProtocol http, http2 or grpc; port mapping "
                f"{service.port_name!r} has no appProtocol (TCP)",
            )


def access_log(spec: ConnectServiceSpec) -> Iterator[Violation]:
    config = spec.service_connect_configuration
    if (
        config is not None
        and config.access_log_configuration is not None
        and config.log_configuration is None
    ):
        yield Violation(
            "access-log",
            f"{SCC}.accessLogConfiguration",
            "accessLogConfiguration requires logConfiguration in serviceConnectConfiguration",
        )


def unique_within_service(spec: ConnectServiceSpec) -> Iterator[Violation]:
    """Discovery names and (dnsName, port) pairs must be unique in the namespace, so also in one service."""
    names: dict[str, int] = {}
    aliases: dict[tuple[str, int], int] = {}
    for i, service in enumerate(served(spec)):
        name = discovery_name(service)
        if name in names:
            yield Violation(
                "discovery-name-duplicate",
                f"{SCC}.services[{i}].discoveryName",
                f"discovery names must be unique within a namespace; {name!r} is already used by "
                f"services[{names[name]}] (discoveryName defaults to the portName)",
            )
        else:
            names[name] = i
        for ai, alias in enumerate(service.client_aliases or []):
            key = (alias.dns_name or name, alias.port)
            if key in aliases:
                yield Violation(
                    "client-alias-duplicate",
                    f"{SCC}.services[{i}].clientAliases[{ai}]",
                    f"each (dnsName, port) must be unique within a namespace; {key[0]}:{key[1]} is already "
                    f"used by services[{aliases[key]}] (dnsName defaults to the discoveryName)",
                )
            else:
                aliases[key] = i


#: Cloud Map allows 1000 instances per service, so ECS allows 1000 tasks per Service Connect service.
MAX_TASKS_PER_SERVICE = 1000


def task_quota(spec: ConnectServiceSpec) -> Iterator[Violation]:
    if served(spec) and spec.desired_count > MAX_TASKS_PER_SERVICE:
        yield Violation(
            "task-quota",
            "spec.desiredCount",
            f"a Service Connect service that serves endpoints may run at most {MAX_TASKS_PER_SERVICE} tasks "
            f"(the Cloud Map instances-per-service quota); got {spec.desired_count}",
        )


ALWAYS: tuple[Rule, ...] = (
    deployment_controller,
    task_cpu,
    container_reservations,
    ports,
    network_mode,
    awsvpc_host_port,
)
WITH_SERVICE_CONNECT: tuple[Rule, ...] = (
    windows,
    task_memory,
    external_instances,
    bridge_hostname_and_links,
    bridge_tls,
    tls_rules,
    port_names,
    client_aliases,
    dns_names,
    per_request_timeout,
    access_log,
    unique_within_service,
    task_quota,
)


def validate_spec(spec: ConnectServiceSpec) -> list[Violation]:
    """Every violation of a parsed ConnectService spec (not only the first)."""
    rules = ALWAYS + (WITH_SERVICE_CONNECT if _sc_enabled(spec) else ())
    return [violation for rule in rules for violation in rule(spec)]


def parse_and_validate(spec: Mapping[str, Any]) -> tuple[ConnectServiceSpec | None, list[Violation]]:
    """Parse a raw spec and validate it: the model (None when it does not parse) and every violation.

    When the spec does not match the schema, the schema violations are all that can be reported: the
    semantic rules need a parsed spec.
    """
    # The models read an explicit null as unset, so the semantic rules still apply beside it.
    nulls = null_violations(ConnectServiceSpec, spec, "spec")
    try:
        model = ConnectServiceSpec.model_validate(spec)
    except ValidationError as exc:
        return None, nulls + violations_from(exc, "spec")
    return model, nulls + validate_spec(model)


def imported_service_connect(obj: Mapping[str, Any]) -> list[Violation]:
    """An object ``scctl import-ecs`` made from a service with Service Connect must still enable it."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    if annotations.get(IMPORTED_SC_ANNOTATION) != "enabled":
        return []
    spec = obj.get("spec")
    scc = spec.get("serviceConnectConfiguration") if isinstance(spec, Mapping) else None
    if isinstance(scc, Mapping) and scc.get("enabled") is True:
        return []
    return [
        Violation(
            "imported-service-connect",
            f"{SCC}",
            f"the ECS service this was imported from had Service Connect enabled (annotation "
            f"{IMPORTED_SC_ANNOTATION}), but the spec has no enabled serviceConnectConfiguration; "
            "re-import it (for describe-services output, ECS keeps it under deployments[]) or remove "
            "the annotation to run it without Service Connect",
        )
    ]


def validate_service(obj: Mapping[str, Any]) -> list[Violation]:
    """Every violation of a ConnectService object (``apiVersion``/``kind``/``metadata``/``spec``)."""
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        return [Violation("required", "spec", "a ConnectService needs a spec")]
    return imported_service_connect(obj) + parse_and_validate(spec)[1]
