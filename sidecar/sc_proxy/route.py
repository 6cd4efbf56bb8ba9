"""What a connection handler needs to serve one listener (or one alias of the egress listener)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from sc_proxy.accesslog import AccessLogger
from sc_proxy.cluster import Cluster
from sc_proxy.config import Limits, Via
from sc_proxy.lifecycle import Lifecycle
from sc_proxy.metrics import EgressStats, IngressStats
from sc_proxy.tls import ClientTls


@dataclass(frozen=True, slots=True, eq=False)
class Route:
    """Immutable per-listener settings, built once at start and shared by every connection.

    ``cluster``: for ingress one host, the local app; for egress the endpoint's tasks from discovery.
    Timeouts are in seconds, ``None`` = disabled (ECS's 0); the ECS defaults are already applied.
    ``tls`` (egress): originate TLS to the tasks; ``caller_identity`` (ingress, mutual TLS): the caller's
    certificate identity is read per connection for the access log. ``via`` (egress): the tasks are
    reached through a peer cluster's gateway (:func:`sc_proxy.tls.dial`).
    ``retries`` is the number of extra attempts after the first.
    """

    direction: Literal["ingress", "egress"]
    name: str
    app_protocol: Literal["tcp", "http", "http2", "grpc"]
    cluster: Cluster
    per_request_timeout: float | None
    idle_timeout: float | None
    retries: int
    stats: IngressStats | EgressStats
    access_log: AccessLogger | None
    lifecycle: Lifecycle
    connect_timeout: float = 5.0
    retry_on_503: bool = True
    max_replay_body_bytes: int = 65536
    limits: Limits = field(default_factory=Limits)
    tls: ClientTls | None = None
    caller_identity: bool = False
    via: Via | None = None
