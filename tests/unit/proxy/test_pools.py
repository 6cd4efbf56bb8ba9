"""One pool cache for every protocol: a pool per (route, upstream protocol), shared by the route's
connections, never confused between routes or protocols."""

from __future__ import annotations

from sc_proxy.config import parse_config
from sc_proxy.http1.pool import Pool, new_pool
from sc_proxy.listeners import build_plan
from sc_proxy.metrics import Registry
from sc_proxy.pools import pool_for


def test_a_pool_per_route_and_protocol() -> None:
    static = {"static": [{"address": "10.0.0.1", "port": 80}]}
    config = parse_config(
        {
            "version": "pools",
            "egress": {"mode": "listeners"},
            "endpoints": [
                {"name": "one", "appProtocol": "http", "discovery": static},
                {"name": "two", "appProtocol": "http2", "discovery": static},
            ],
            "aliases": [
                {"address": "127.255.0.1", "port": 80, "endpoint": "one"},
                {"address": "127.255.0.2", "port": 80, "endpoint": "one"},
                {"address": "127.255.0.3", "port": 80, "endpoint": "two"},
            ],
        }
    )
    routes = build_plan(config, Registry()).egress_routes
    one, also_one, two = (routes[(f"127.255.0.{i}", 80)] for i in (1, 2, 3))
    pool = pool_for(one, "http1", new_pool)
    assert isinstance(pool, Pool)
    assert pool.cluster is one.cluster
    # Two aliases of one endpoint share its route, hence its pool.
    assert pool_for(also_one, "http1", new_pool) is pool
    assert pool_for(two, "http1", new_pool) is not pool
    # The same route's HTTP/2 pool is another object (an HTTP/1.1 client on an http2 listener needs both).
    made: list[object] = []
    h2 = pool_for(one, "http2", lambda r: made.append(r) or object())
    assert h2 is not pool
    assert pool_for(one, "http2", lambda r: made.append(r) or object()) is h2
    assert made == [one]
