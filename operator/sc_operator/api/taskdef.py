"""The inline ECS task definition of a ConnectService (RegisterTaskDefinition, field for field).

Only the fields that matter to Service Connect or to running the containers are modelled. Fields that
Service Connect refuses (``links``, ``hostname`` in bridge mode, Windows) are modelled on purpose so that
validation can name the rule instead of the object being refused as "unknown field".
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from sc_operator.api.common import ApiModel, AppProtocol, PortName

NetworkMode = Literal["awsvpc", "bridge", "host"]
OperatingSystemFamily = Literal[
    "LINUX",
    "WINDOWS_SERVER_2019_FULL",
    "WINDOWS_SERVER_2019_CORE",
    "WINDOWS_SERVER_2016_FULL",
    "WINDOWS_SERVER_2004_CORE",
    "WINDOWS_SERVER_2022_CORE",
    "WINDOWS_SERVER_2022_FULL",
    "WINDOWS_SERVER_2025_CORE",
    "WINDOWS_SERVER_2025_FULL",
    "WINDOWS_SERVER_20H2_CORE",
]
CpuArchitecture = Literal["X86_64", "ARM64"]
TransportProtocol = Literal["tcp", "udp"]

# ECS task-level cpu and memory are strings ("256", "0.25 vCPU", "1 GB"); YAML users naturally write
# plain numbers, so both are accepted (x-kubernetes-int-or-string) and parsed by sc_operator.api.units.
EcsSize = int | str
ContainerPort = Annotated[int, Field(ge=0, le=65535)]


class KeyValuePair(ApiModel):
    """An environment variable."""

    name: str
    value: str | None = None


class Secret(ApiModel):
    """A secret reference, as in ECS ``secrets`` and ``secretOptions``."""

    name: str
    value_from: str


class LogConfiguration(ApiModel):
    """ECS LogConfiguration; Kubernetes collects stdout itself, so the driver is recorded, not used."""

    log_driver: Literal[
        "json-file", "syslog", "journald", "gelf", "fluentd", "awslogs", "splunk", "awsfirelens"
    ]
    options: dict[str, str] | None = None
    secret_options: list[Secret] | None = None


class PortMapping(ApiModel):
    """A container port; ``name`` is what serviceConnectConfiguration.services[].portName refers to."""

    name: PortName | None = None
    container_port: ContainerPort | None = None
    host_port: ContainerPort | None = None
    """bridge: a non-zero port is published on the node's address; 0 or unset (dynamic) publishes nothing.
    awsvpc: leave it out or equal to containerPort."""
    protocol: TransportProtocol | None = None
    """tcp (default) or udp; Service Connect intercepts TCP only."""
    app_protocol: AppProtocol | None = None
    """http, http2 or grpc; unset means TCP (no per-request timeout, no HTTP metrics)."""


class HealthCheck(ApiModel):
    """A container health check (ECS HealthCheck); becomes the pod's readiness and liveness probes."""

    command: list[str] = Field(min_length=1)
    """["CMD", ...] or ["CMD-SHELL", "..."], as in ECS."""
    interval: Annotated[int, Field(ge=5, le=300)] | None = None
    timeout: Annotated[int, Field(ge=2, le=120)] | None = None
    retries: Annotated[int, Field(ge=1, le=10)] | None = None
    start_period: Annotated[int, Field(ge=0, le=300)] | None = None


class ContainerDefinition(ApiModel):
    """One container of the task."""

    name: Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[a-zA-Z0-9_-]+$")]
    image: Annotated[str, Field(min_length=1)]
    cpu: Annotated[int, Field(ge=0)] | None = None
    """CPU units (1024 = one vCPU)."""
    memory: Annotated[int, Field(ge=1)] | None = None
    """Hard memory limit in MiB."""
    memory_reservation: Annotated[int, Field(ge=1)] | None = None
    """Soft memory limit (request) in MiB."""
    port_mappings: list[PortMapping] | None = None
    environment: list[KeyValuePair] | None = None
    secrets: list[Secret] | None = None
    command: list[str] | None = None
    entry_point: list[str] | None = None
    working_directory: str | None = None
    essential: bool | None = None
    """Defaults to true; a task stops when an essential container stops."""
    health_check: HealthCheck | None = None
    hostname: str | None = None
    """Not supported with Service Connect in bridge mode."""
    links: list[str] | None = None
    """Not supported with Service Connect."""
    log_configuration: LogConfiguration | None = None


class RuntimePlatform(ApiModel):
    """The task's platform; Service Connect supports Linux only."""

    cpu_architecture: CpuArchitecture | None = None
    operating_system_family: OperatingSystemFamily | None = None


class TaskDefinition(ApiModel):
    """An ECS task definition, inline (the family is recorded; revisions are ConnectDeployments)."""

    family: Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[a-zA-Z0-9_-]+$")]
    network_mode: NetworkMode | None = None
    """awsvpc (the default here: every pod has its own address) or bridge (hostPort is published on the
    node); host is refused, as Service Connect does not support it."""
    cpu: EcsSize | None = None
    """Task CPU: CPU units ("256", 256) or vCPU ("0.25 vCPU"); bounds the whole task, proxy included."""
    memory: EcsSize | None = None
    """Task memory, required by Service Connect: MiB ("512", 512) or GB ("1 GB"); bounds the whole task,
    proxy included."""
    runtime_platform: RuntimePlatform | None = None
    container_definitions: list[ContainerDefinition] = Field(min_length=1)
    execution_role_arn: str | None = None
    """Recorded for ECS compatibility; unused on Kubernetes."""
    task_role_arn: str | None = None
    """Recorded for ECS compatibility; unused on Kubernetes."""
    requires_compatibilities: list[Literal["EC2", "FARGATE", "EXTERNAL", "MANAGED_INSTANCES"]] | None = None
    """Recorded for ECS compatibility; with Service Connect, EXTERNAL (ECS Anywhere) and MANAGED_INSTANCES
    are refused, as ECS does not support them."""
