"""Shared building blocks of the API: the base model, ECS name and number types, conditions.

Limits follow the ECS API model (service-2.json): names of ports and discovery names are at most 64
characters of ``[a-z0-9_-]`` and may not start with ``-``; client alias DNS names are at most 127
characters of ``[a-z0-9_.-]``; ports are 0-65535 (the model range; ``sc_operator.validation`` also
refuses 0 where the ECS agent requires 1-65535); timeouts are 0-2147483647 seconds.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

#: portName and discoveryName: 1-64 characters of [a-z0-9_-], not starting with '-'.
NAME_PATTERN = r"^[a-z0-9_][a-z0-9_-]{0,63}$"
NAME_MAX_LENGTH = 64
#: clientAliases[].dnsName: 1-127 characters of [a-z0-9_.-], not starting with '-'.
DNS_NAME_PATTERN = r"^[a-z0-9_][a-z0-9_.-]{0,126}$"
DNS_NAME_MAX_LENGTH = 127
#: A ConnectNamespace is a cluster-scoped object, so its name is a DNS-1123 subdomain.
OBJECT_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
OBJECT_NAME_MAX_LENGTH = 253
PORT_MAX = 65535
TIMEOUT_MAX = 2147483647

PortName = Annotated[str, Field(min_length=1, max_length=NAME_MAX_LENGTH, pattern=NAME_PATTERN)]
DiscoveryName = Annotated[str, Field(min_length=1, max_length=NAME_MAX_LENGTH, pattern=NAME_PATTERN)]
DnsName = Annotated[str, Field(min_length=1, max_length=DNS_NAME_MAX_LENGTH, pattern=DNS_NAME_PATTERN)]
Port = Annotated[int, Field(ge=0, le=PORT_MAX)]
TimeoutSeconds = Annotated[int, Field(ge=0, le=TIMEOUT_MAX)]
Count = Annotated[int, Field(ge=0)]

#: Unset means TCP: no L7 handling, no per-request timeout.
AppProtocol = Literal["http", "http2", "grpc"]


class ApiModel(BaseModel):
    """Base of every spec model: camelCase on the wire, unknown fields refused.

    Refusing unknown fields matters for ``scctl validate``: a misspelt ECS field would otherwise be dropped
    silently (the API server prunes it too). Types are strict for the same reason: the models must refuse
    what the CRD schema refuses, or ``scctl validate`` would pass objects ``kubectl apply`` rejects.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
        # Strict types, as the API server checks them: "80" is not a port and "yes" is not a boolean.
        strict=True,
        use_attribute_docstrings=True,
    )

    def to_wire(self) -> dict[str, object]:
        """The object as it is stored in Kubernetes: camelCase keys, unset fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class StatusModel(ApiModel):
    """Base of status models: tolerant of fields it does not know.

    Status is written by the operator (and by kopf); a newer operator may write fields an older reader
    does not know, and that must not break reading.
    """

    # Lax types: timestamps arrive as RFC 3339 strings.
    model_config = ConfigDict(extra="ignore", strict=False)


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(StatusModel):
    """A Kubernetes-style condition, e.g. ``Accepted`` or ``Ready``."""

    type: str
    """The condition's name, e.g. Accepted, Ready, Progressing."""
    status: ConditionStatus
    reason: str | None = None
    """A CamelCase machine-readable reason, e.g. DeploymentControllerNotSupported."""
    message: str | None = None
    """A human-readable explanation; for refusals it names the ECS rule."""
    last_transition_time: datetime | None = None
    observed_generation: int | None = None
    """The .metadata.generation the condition was computed from."""


class GatewayAddress(StatusModel):
    """A cluster's gateway Service as seen from its peers: an IP address and a port."""

    model_config = ConfigDict(frozen=True)  # part of an endpoint, which is hashed

    address: Annotated[str, Field(min_length=2, max_length=45)]
    port: Annotated[int, Field(ge=1, le=65535)]


class ServiceRef(StatusModel):
    """A ConnectService by Kubernetes namespace and name."""

    model_config = ConfigDict(frozen=True)

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


class Endpoint(StatusModel):
    """One registered endpoint of a ConnectNamespace: what clients reach as dnsName:port."""

    model_config = ConfigDict(frozen=True)

    discovery_name: str
    """The Cloud Map service name; unique in the namespace."""
    port_name: str | None = None
    """The task definition's portMapping name; clients reach the endpoint by it too when no other endpoint
    of the namespace uses the same portName (unset on endpoints registered before it was recorded)."""
    dns_name: str
    """The name clients use; (dnsName, port) is unique in the namespace."""
    port: int
    app_protocol: AppProtocol | None = None
    """http, http2 or grpc; unset means TCP."""
    service: ServiceRef
    """The ConnectService that owns the endpoint."""
    cluster: str | None = None
    """The linked cluster whose operator registered the endpoint (``spec.peers[].cluster``); unset: this
    cluster. Mirrored endpoints are read-only copies kept current by this cluster's operator."""
    per_request_timeout_seconds: int | None = None
    """The owner's timeout.perRequestTimeoutSeconds: clients' proxies enforce it too (ECS does)."""
    idle_timeout_seconds: int | None = None
    """The owner's timeout.idleTimeoutSeconds, for clients' proxies."""
    tls: bool | None = None
    """The owner serves this endpoint over TLS: clients pinned with it originate TLS 1.3 and verify the
    ConnectNamespace's CA bundle. A client keeps what it pinned (plaintext or TLS) until redeployed."""
    via: GatewayAddress | None = None
    """Mirrored from a peer linked with ``network: gateway``: clients' proxies connect to this gateway
    address instead of the tasks, naming each task in a PROXY protocol v2 header (the peer's
    ``spec.peers[].gateway``). A client keeps what it pinned until redeployed."""

    @property
    def local(self) -> bool:
        """Registered in this cluster (not mirrored from a linked one)."""
        return self.cluster is None

    def owner(self) -> str:
        """``ns/name``, or ``ns/name in cluster c`` for a mirrored endpoint (names both halves of a
        cross-cluster conflict)."""
        return str(self.service) if self.cluster is None else f"{self.service} in cluster {self.cluster}"
