"""HTTP/2 and gRPC for endpoints with appProtocol ``http2`` or ``grpc``.

``http2_protocol_factory(route)`` is the handler the listeners register for both kinds. Each route gets one
:class:`~sc_proxy.http2.upstream.UpstreamPool` (multiplexed upstream connections per task) shared by every
client connection of that route, kept by :func:`sc_proxy.pools.pool_for` like the HTTP/1.1 pools.
"""

from __future__ import annotations

import asyncio

from sc_proxy.http2.server import H2ServerProtocol, grpc_request_counter
from sc_proxy.http2.upstream import UpstreamPool
from sc_proxy.metrics import Counter
from sc_proxy.pools import pool_for
from sc_proxy.route import Route

__all__ = ["http2_protocol_factory"]


def _new_pool(route: Route) -> tuple[UpstreamPool, Counter | None]:
    """The route's pool and, for gRPC ingress, its GrpcRequestCount child (bound once per route)."""
    grpc_requests = None
    if route.direction == "ingress" and route.app_protocol == "grpc":
        grpc_requests = grpc_request_counter(route.name)
    return UpstreamPool(route), grpc_requests


def http2_protocol_factory(route: Route) -> asyncio.Protocol:
    """The protocol for one accepted connection of an http2/grpc route."""
    pool, grpc_requests = pool_for(route, "http2", _new_pool)
    return H2ServerProtocol(route, pool, grpc_requests)
