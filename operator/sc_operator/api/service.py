"""``ConnectService``: an ECS service with Service Connect, as a namespaced Kubernetes resource.

The spec mirrors ECS CreateService (desiredCount, deploymentController, deploymentConfiguration,
serviceConnectConfiguration) with the task definition inline. ``expectedRequestsPerSecond`` and
``proxyResources`` are ours: ECS has no such fields, they size the injected proxy.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from sc_operator.api.common import (
    OBJECT_NAME_MAX_LENGTH,
    OBJECT_NAME_PATTERN,
    ApiModel,
    Condition,
    Count,
    DiscoveryName,
    DnsName,
    Port,
    PortName,
    StatusModel,
    TimeoutSeconds,
)
from sc_operator.api.taskdef import LogConfiguration, TaskDefinition
from sc_operator.api.tls import TlsConfiguration

DeploymentControllerType = Literal["ECS", "CODE_DEPLOY", "EXTERNAL"]
DeploymentStatus = Literal["PRIMARY", "ACTIVE", "INACTIVE"]
RolloutState = Literal["IN_PROGRESS", "COMPLETED", "FAILED"]


class DeploymentController(ApiModel):
    """Only ECS works with Service Connect; the others are accepted here so validation can say so."""

    type: DeploymentControllerType


class DeploymentCircuitBreaker(ApiModel):
    """Stop a rollout whose tasks keep failing, optionally rolling back to the last COMPLETED one."""

    enable: bool
    rollback: bool


class DeploymentConfiguration(ApiModel):
    """How a rollout replaces tasks (maxSurge / maxUnavailable in Deployment terms)."""

    maximum_percent: Annotated[int, Field(ge=100)] = 200
    """Upper bound of running tasks during a rollout, as a percentage of desiredCount."""
    minimum_healthy_percent: Annotated[int, Field(ge=0, le=100)] = 100
    """Lower bound of healthy tasks during a rollout, as a percentage of desiredCount."""
    deployment_circuit_breaker: DeploymentCircuitBreaker | None = None


class ClientAlias(ApiModel):
    """The name and port clients use to reach an endpoint (ServiceConnectClientAlias)."""

    port: Port
    """The port clients connect to."""
    dns_name: DnsName | None = None
    """Defaults to the discoveryName (ECS would use "discoveryName.namespace")."""


class TimeoutConfiguration(ApiModel):
    """Proxy timeouts; 0 disables one. Defaults: idle 300 s (HTTP kinds) / 3600 s (TCP), per-request 15 s."""

    idle_timeout_seconds: TimeoutSeconds | None = None
    per_request_timeout_seconds: TimeoutSeconds | None = None
    """HTTP, HTTP2 and gRPC ports only."""


class ServiceConnectService(ApiModel):
    """One endpoint this service serves (ServiceConnectService)."""

    port_name: PortName
    """The name of a portMapping in the task definition."""
    discovery_name: DiscoveryName | None = None
    """Unique in the namespace; defaults to portName."""
    client_aliases: list[ClientAlias] | None = None
    """Exactly one alias (the ECS API allows at most one and requires one)."""
    ingress_port_override: Port | None = None
    """The port the proxy listens on for this endpoint; set it to let traffic to containerPort bypass it."""
    timeout: TimeoutConfiguration | None = None
    tls: TlsConfiguration | None = None


class AccessLogConfiguration(ApiModel):
    """Proxy access logs on stdout; needs logConfiguration."""

    format: Literal["TEXT", "JSON"]
    include_query_parameters: Literal["DISABLED", "ENABLED"] | None = None
    """DISABLED by default: query strings may carry secrets."""


class ServiceConnectConfiguration(ApiModel):
    """Service Connect for this service (ServiceConnectConfiguration); omit services for a client only."""

    enabled: bool
    namespace: (
        Annotated[str, Field(min_length=1, max_length=OBJECT_NAME_MAX_LENGTH, pattern=OBJECT_NAME_PATTERN)]
        | None
    ) = None
    """The ConnectNamespace's name (not an ARN); defaults to the one the Kubernetes namespace names in its
    label."""
    services: list[ServiceConnectService] | None = None
    log_configuration: LogConfiguration | None = None
    access_log_configuration: AccessLogConfiguration | None = None


class ProxyResources(ApiModel):
    """Override of the injected proxy's resources (ours, not ECS)."""

    cpu: Annotated[int, Field(ge=1)] | None = None
    """CPU units (1024 = one vCPU). Default 256, or 512 above 500 requests/s."""
    memory: Annotated[int, Field(ge=1)] | None = None
    """MiB. Default 64, +128 when the namespace holds more than 100 services or 2000 tasks."""


#: forceNewDeployment: any token up to 253 characters (kubectl-style timestamps, random strings).
ForceToken = Annotated[str, Field(min_length=1, max_length=253)]


class AutoRedeploy(ApiModel):
    """Ours, beyond ECS: redeploy a client when endpoints it could reach are added to its namespace.

    On a ConnectService it overrides, field by field, the default its ConnectNamespace sets; unset
    everywhere means off (ECS behaviour: new endpoints reach a service only when it is redeployed)."""

    on_new_endpoints: bool | None = None
    """Start a new deployment when the namespace holds endpoints of other services that the current
    deployment did not pin. Default false."""
    min_interval_seconds: TimeoutSeconds | None = None
    """At most one automatic redeploy per this many seconds. Default 300; with 0 the policy only waits
    for the current rollout to finish."""


class ConnectServiceSpec(ApiModel):
    """The desired state of a ConnectService."""

    desired_count: Count = 1
    task_definition: TaskDefinition
    service_connect_configuration: ServiceConnectConfiguration | None = None
    deployment_controller: DeploymentController | None = None
    """Defaults to ECS, the only controller Service Connect supports."""
    deployment_configuration: DeploymentConfiguration | None = None
    expected_requests_per_second: Count | None = None
    """Ours: the peak request rate; above 500 the proxy gets 512 CPU units instead of 256."""
    proxy_resources: ProxyResources | None = None
    """Ours: explicit proxy resources, overriding the computed ones."""
    force_new_deployment: ForceToken | None = None
    """ECS UpdateService forceNewDeployment, as a token: setting a value different from the one the
    current deployment was started with starts a new deployment of the same definition, which pins the
    namespace's endpoints as they are now. Setting the same value again does nothing (`scctl redeploy`
    writes a fresh timestamp)."""
    auto_redeploy: AutoRedeploy | None = None
    """Ours: redeploy automatically when endpoints are added to the namespace (off by default)."""


class DeploymentSummary(StatusModel):
    """One ConnectDeployment of the service, as ECS lists deployments in DescribeServices."""

    name: str
    """The ConnectDeployment's name."""
    status: DeploymentStatus
    rollout_state: RolloutState | None = None
    rollout_state_reason: str | None = None
    task_definition_hash: str | None = None
    desired_count: Count | None = None
    running_count: Count | None = None
    pending_count: Count | None = None
    failed_tasks: Count | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class ServiceConnectResource(StatusModel):
    """A discovery name the service registered (ECS ServiceConnectServiceResource)."""

    discovery_name: str


class ServiceEvent(StatusModel):
    """A recent decision about the service, newest first (ECS ServiceEvent)."""

    created_at: datetime
    message: str


class TlsCertificateStatus(StatusModel):
    """The service's TLS certificate (public facts only; the key is in the Secret)."""

    secret_name: str
    not_after: datetime | None = None
    """When the current certificate expires (it is renewed before)."""


class ConnectServiceStatus(StatusModel):
    """The observed state of a ConnectService."""

    observed_generation: int | None = None
    conditions: list[Condition] | None = None
    namespace: str | None = None
    """The ConnectNamespace the service is registered in (after defaulting)."""
    desired_count: Count | None = None
    running_count: Count | None = None
    pending_count: Count | None = None
    deployments: list[DeploymentSummary] | None = None
    service_connect_resources: list[ServiceConnectResource] | None = None
    events: list[ServiceEvent] | None = None
    """The latest events only (bounded); Kubernetes Events hold the full history."""
    tls_certificate: TlsCertificateStatus | None = None
    """Set while the service has a TLS certificate (it serves or calls TLS endpoints)."""
