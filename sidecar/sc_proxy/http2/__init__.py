"""HTTP/2 and gRPC for endpoints with appProtocol ``http2`` or ``grpc``.

``http2_protocol_factory(route)`` is the handler the listeners register for both kinds. Each route gets one
:class:`~sc_proxy.http2.upstream.UpstreamPool` (multiplexed upstream connections per task) shared by every
client connection of that route, kept by :func:`sc_proxy.pools.pool_for` like the HTTP/1.1 pools, with the
state the route's connections share on their loop (the batch of connections to write, the perRequestTimeout
deadlines).

Layers, lowest first; a module imports only modules of lower layers, never (not even for type checking) one
of its own layer or above, except that the codec's modules use each other
(``tests/unit/proxy/test_http2_layers.py`` checks it):

1. the codec and the pure rules: ``connection``, ``codec``, ``frames``, ``events``, ``errors``,
   ``hpack_encoder``, ``hpack_decoder``, ``validate``, ``guard``, ``headers``, ``grpc``, ``deadlines``;
2. ``interfaces``: the :class:`typing.Protocol` contracts between the layers above;
3. ``side`` (what both kinds of connection share) and ``stream`` (one proxied stream and its policies,
   given its connections and pool as the shapes of layer 2);
4. ``upstream`` (connections to the tasks, the pool) and ``server`` (the client connection, which owns its
   streams);
5. this package, which wires a route's pool and client connections together.

No module of layers 2-5 keeps mutable state at module level: what connections share is held on objects
made per route.
"""

from __future__ import annotations

import asyncio
from typing import Final, NamedTuple

from sc_proxy.http2.deadlines import Deadlines
from sc_proxy.http2.server import H2ServerProtocol, grpc_request_counter
from sc_proxy.http2.side import FlushBatch
from sc_proxy.http2.upstream import UpstreamPool
from sc_proxy.metrics import Counter
from sc_proxy.pools import pool_for
from sc_proxy.route import Route

__all__ = ["LAYERS", "http2_protocol_factory"]

#: The proxy's layers above the codec, lowest first (the docstring's layers 2-4; the package is above all).
LAYERS: Final = (("interfaces",), ("side", "stream"), ("upstream", "server"))


class _RouteShared(NamedTuple):
    """What every connection of one route shares, made on the loop that serves the route."""

    pool: UpstreamPool
    batch: FlushBatch
    deadlines: Deadlines
    #: GrpcRequestCount of a gRPC ingress route (bound once per route).
    grpc_requests: Counter | None


def _new_shared(route: Route) -> _RouteShared:
    loop = asyncio.get_running_loop()
    batch = FlushBatch(loop)
    grpc_requests = None
    if route.direction == "ingress" and route.app_protocol == "grpc":
        grpc_requests = grpc_request_counter(route.name)
    return _RouteShared(UpstreamPool(route, batch), batch, Deadlines(loop), grpc_requests)


def http2_protocol_factory(route: Route) -> asyncio.Protocol:
    """The protocol for one accepted connection of an http2/grpc route."""
    shared = pool_for(route, "http2", _new_shared)
    return H2ServerProtocol(route, shared.pool, shared.batch, shared.deadlines, shared.grpc_requests)
