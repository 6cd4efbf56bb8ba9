"""``ConnectNamespace``: the cluster-scoped registry of endpoints (an AWS Cloud Map namespace)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from sc_operator.api.common import ApiModel, Condition, Count, Endpoint, StatusModel
from sc_operator.api.service import AutoRedeploy
from sc_operator.api.tls import NamespaceTls

#: A linked cluster's name: a DNS label, as it appears in endpoints' ``cluster`` and in messages.
CLUSTER_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
ClusterName = Annotated[str, Field(min_length=1, max_length=63, pattern=CLUSTER_NAME_PATTERN)]
ObjectName = Annotated[str, Field(min_length=1, max_length=253)]


class SecretKeyRef(ApiModel):
    """A key of a Secret (the operator reads Secrets only where its RBAC lets it: the chart grants its
    own namespace)."""

    namespace: ObjectName
    name: ObjectName
    key: Annotated[str, Field(min_length=1, max_length=253)] = "kubeconfig"


class PeerGateway(ApiModel):
    """Where this cluster's proxies reach a peer's gateway: an IP address (a LoadBalancer's or a node's)
    and the port. A DNS name is refused: the proxy dials addresses, and resolving it would be one more
    thing to keep current."""

    address: Annotated[str, Field(min_length=2, max_length=45)]
    port: Annotated[int, Field(ge=1, le=65535)] = 15443


class PeerCluster(ApiModel):
    """A linked cluster whose ConnectNamespace of the same name shares this one's endpoints."""

    cluster: ClusterName
    """The peer's name in this cluster: marks the endpoints mirrored from it, and names it in conflicts.
    It must differ from this cluster's own name (the operator's SC_CLUSTER_NAME)."""
    kubeconfig_secret: SecretKeyRef
    """A kubeconfig for the peer's API server, with a credential that may read the peer's ConnectNamespace
    and EndpointSlices and nothing else (``scctl link`` creates both)."""
    network: Literal["flat", "gateway"] = "flat"
    """flat: pod IPs are routable between the clusters, clients dial the peer's tasks directly. gateway:
    pod networks are not routable; clients dial the peer's gateway (``gateway``), which forwards each
    connection to the task named in its PROXY protocol v2 header."""
    gateway: PeerGateway | None = None
    """The peer's gateway Service (its ``gateway.service`` in the chart): required with ``network:
    gateway``, refused with ``flat``."""


class ConnectNamespaceSpec(ApiModel):
    """The desired state of a ConnectNamespace; its name is the namespace name services refer to."""

    description: Annotated[str, Field(max_length=1024)] | None = None
    auto_redeploy: AutoRedeploy | None = None
    """Ours: the default autoRedeploy policy of the ConnectServices in this namespace (each may override
    it field by field). Unset: off, as in ECS."""
    peers: list[PeerCluster] | None = None
    """Ours: linked clusters whose ConnectNamespace of the same name is one namespace with this one.
    Their endpoints are mirrored read-only into this status (marked with ``cluster``); names stay unique
    across all of them."""
    tls: NamespaceTls | None = None
    """Ours: the CA of the namespace's TLS services whose issuerCertificateAuthority is {} (unset: a CA
    the operator creates for the namespace)."""


class ServiceUsage(StatusModel):
    """A ConnectService using the namespace and how many tasks it runs."""

    namespace: str
    name: str
    tasks: Count | None = None


class PeerStatus(StatusModel):
    """What this cluster knows of one linked cluster."""

    cluster: str
    reachable: bool | None = None
    """Whether the last attempt to read the peer succeeded."""
    stale: bool | None = None
    """True while the peer cannot be read: its endpoints are the last known ones, kept, not removed."""
    last_sync_time: datetime | None = None
    """When the peer was last read successfully (the time its mirrored endpoints are from)."""
    unreachable_since: datetime | None = None
    """Set while the peer cannot be read: since when."""
    message: str | None = None
    """Why the peer is unreachable or refused, or what was mirrored."""
    endpoint_count: Count | None = None
    """Endpoints mirrored from the peer."""
    conflicts: list[str] | None = None
    """Peer endpoints not mirrored because a name is already held here; each message names both
    owners."""


class ConnectNamespaceStatus(StatusModel):
    """The registry: every endpoint with its owner, and a revision that grows on every change."""

    observed_generation: int | None = None
    conditions: list[Condition] | None = None
    endpoints: list[Endpoint] | None = None
    endpoint_count: Count | None = None
    """len(endpoints), kept for `kubectl get` (a printer column cannot count)."""
    revision: Count | None = None
    """Grows by one on every change to endpoints; ConnectDeployments record the revision they pinned."""
    services: list[ServiceUsage] | None = None
    """Every ConnectService using the namespace, client-only ones included: they hold it from deletion."""
    service_count: Count | None = None
    """ConnectServices using the namespace, client-only ones included."""
    task_count: Count | None = None
    """Running tasks (pods) of those services; more than 2000 adds proxy memory."""
    peers: list[PeerStatus] | None = None
    """One entry per linked cluster (spec.peers): reachable or stale since when, conflicts."""
