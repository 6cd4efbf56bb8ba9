"""The upstream connection pools of every route, whatever the protocol: one cache, one key.

A pool is per (route, upstream protocol): a route (one per endpoint for egress, one per ingress listener)
owns one cluster, and every client connection of the route shares its pool. The protocol is part of the
key because one route may need two: an HTTP/1.1 client on an ``http2`` listener is relayed over HTTP/1.1.
Routes live as long as the process and the dict holds them, so a key is never reused for another route.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, TypeVar, cast

from sc_proxy.route import Route

P = TypeVar("P")
UpstreamProtocol = Literal["http1", "http2"]

_POOLS: dict[tuple[Route, UpstreamProtocol], object] = {}


def pool_for(route: Route, protocol: UpstreamProtocol, make: Callable[[Route], P]) -> P:
    """The ``protocol`` pool of ``route``, made by ``make(route)`` on first use."""
    key = (route, protocol)
    pool = _POOLS.get(key)
    if pool is None:
        pool = _POOLS[key] = make(route)
    return cast(P, pool)
