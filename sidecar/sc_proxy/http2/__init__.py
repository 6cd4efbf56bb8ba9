"""HTTP/2 and gRPC for endpoints with appProtocol ``http2`` or ``grpc``.

``http2_protocol_factory(route)`` is the handler the listeners register for both kinds. Each route gets one
:class:`~sc_proxy.http2.upstream.UpstreamPool` (multiplexed upstream connections per task) shared by every
client connection of that route.
"""

from __future__ import annotations

import asyncio

from sc_proxy.http2.server import H2ServerProtocol, grpc_request_counter
from sc_proxy.http2.upstream import UpstreamPool
from sc_proxy.metrics import Counter
from sc_proxy.route import Route

__all__ = ["http2_protocol_factory"]

# Routes live as long as the process; one pool (and one GrpcRequestCount child) each.
_POOLS: dict[Route, tuple[UpstreamPool, Counter | None]] = {}


def http2_protocol_factory(route: Route) -> asyncio.Protocol:
    """The protocol for one accepted connection of an http2/grpc route."""
    entry = _POOLS.get(route)
    if entry is None:
        grpc_requests = None
        if route.direction == "ingress" and route.app_protocol == "grpc":
            grpc_requests = grpc_request_counter(route.name)
        entry = _POOLS[route] = (UpstreamPool(route), grpc_requests)
    return H2ServerProtocol(route, entry[0], entry[1])
