"""Listeners: build the routes from the config, bind every socket, hand accepted connections to handlers.

- ingress: one listener per served endpoint, forwarding to the local app;
- egress ``redirect``: one listener that iptables feeds; the original (VIP, port) is read with
  ``SO_ORIGINAL_DST`` at accept and mapped to the alias's route; unknown destinations are closed and counted;
- egress ``listeners``: one listener per alias address:port (no privilege needed).

The handler for a route comes from a registry keyed by appProtocol; the accepted transport is handed over
with ``transport.set_protocol(p); p.connection_made(transport)``.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sc_proxy import tcp
from sc_proxy.accesslog import AccessLogger
from sc_proxy.cluster import Cluster, Host
from sc_proxy.config import ProxyConfig
from sc_proxy.discovery import Source, source_for
from sc_proxy.lifecycle import Lifecycle
from sc_proxy.metrics import Counter, EgressStats, IngressStats, Registry, unknown_destination_counter
from sc_proxy.policy import effective_timeouts
from sc_proxy.route import Route

log = logging.getLogger("sc_proxy.listeners")

Handler = Callable[[Route], asyncio.Protocol]

#: ``SO_ORIGINAL_DST`` from linux/netfilter_ipv4.h (not exported by the socket module).
SO_ORIGINAL_DST = 80


def default_handlers(needed: Iterable[str] = ("tcp", "http", "http2", "grpc")) -> dict[str, Handler]:
    """appProtocol → connection handler (http2 and grpc share the HTTP/2 handler).

    Only the handlers in ``needed`` are imported: each costs start-up time and 1-2 MiB of RSS per proxy.
    """
    wanted = set(needed)
    handlers: dict[str, Handler] = {"tcp": tcp.TcpRelay}
    if wanted & {"http2", "grpc"}:
        from sc_proxy.http2 import http2_protocol_factory

        h2: Handler = http2_protocol_factory
        handlers["http2"] = handlers["grpc"] = h2
    if "http" in wanted:
        from sc_proxy.http1 import http1_protocol_factory

        handlers["http"] = http1_protocol_factory
    return handlers


@dataclass
class Plan:
    """Everything built from the config before any socket is bound."""

    lifecycle: Lifecycle
    ingress: list[tuple[str, int, Route]] = field(default_factory=list)  # (address, port, route)
    egress_routes: dict[tuple[str, int], Route] = field(default_factory=dict)  # (VIP, port) -> route
    sources: list[Source] = field(default_factory=list)
    clusters: dict[str, Cluster] = field(default_factory=dict)
    unknown_destination: Counter | None = None


def _wire_ejections(cluster: Cluster, stats: EgressStats) -> None:
    def ejected(host: Host, seconds: float) -> None:
        stats.ejections.inc()
        stats.ejected_hosts.inc()
        # Like Envoy's outlier event log: ejections appear in the proxy's log stream.
        log.warning("outlier: ejected %s from %s for %.1f s", host, cluster.name, seconds)

    def returned(host: Host, _: float) -> None:
        stats.ejected_hosts.dec()
        log.info("outlier: %s back in %s", host, cluster.name)

    cluster.on_eject = ejected
    cluster.on_return = returned


def build_plan(config: ProxyConfig, registry: Registry | None = None) -> Plan:
    """Routes, clusters and discovery sources for ``config`` (no I/O)."""
    lifecycle = Lifecycle()
    plan = Plan(lifecycle=lifecycle, unknown_destination=unknown_destination_counter(registry))
    access = None
    if config.access_log is not None:
        access = AccessLogger(
            config.access_log.format, config.access_log.include_query_parameters == "ENABLED"
        )
    routes_by_endpoint: dict[str, Route] = {}
    for ep in config.endpoints:
        cluster = Cluster(ep.name, ep.outlier)
        stats = EgressStats(ep.name, registry)
        _wire_ejections(cluster, stats)
        per, idle = effective_timeouts(ep.app_protocol, ep.timeouts)
        routes_by_endpoint[ep.name] = Route(
            direction="egress",
            name=ep.name,
            app_protocol=ep.app_protocol,
            cluster=cluster,
            per_request_timeout=per,
            idle_timeout=idle,
            retries=ep.retries.attempts,
            stats=stats,
            access_log=access,
            lifecycle=lifecycle,
            connect_timeout=ep.connect_timeout_seconds,
            retry_on_503=ep.retries.retry_on_503,
            max_replay_body_bytes=ep.retries.max_replay_body_bytes,
            limits=config.limits,
        )
        plan.clusters[ep.name] = cluster
        plan.sources.append(source_for(cluster, ep))
    for alias in config.aliases:
        plan.egress_routes[(alias.address, alias.port)] = routes_by_endpoint[alias.endpoint]
    for ing in config.ingress:
        cluster = Cluster(f"ingress-{ing.discovery_name}", hosts=[Host(ing.app_address, ing.app_port)])
        per, idle = effective_timeouts(ing.app_protocol, ing.timeouts)
        route = Route(
            direction="ingress",
            name=ing.discovery_name,
            app_protocol=ing.app_protocol,
            cluster=cluster,
            per_request_timeout=per,
            idle_timeout=idle,
            # The local app is one host: a retry could only hit it again.
            retries=0,
            stats=IngressStats(ing.discovery_name, registry),
            access_log=access,
            lifecycle=lifecycle,
            limits=config.limits,
        )
        plan.ingress.append((ing.address, ing.port, route))
    return plan


def original_destination(transport: asyncio.BaseTransport) -> tuple[str, int] | None:
    """The (address, port) a redirected IPv4 connection was sent to, or None if unavailable."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    except OSError:
        return None
    port, packed = struct.unpack_from("!2xH4s", raw)
    return socket.inet_ntoa(packed), int(port)


class _Dispatch(asyncio.Protocol):
    """Accepts on the redirect listener and hands the connection to the route's handler."""

    def __init__(self, listener: EgressRedirect) -> None:
        self._listener = listener

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        route = None
        dest = original_destination(transport)
        if dest is not None:
            route = self._listener.routes.get(dest)
        if route is None:
            self._listener.unknown.inc()
            transport.close()
            return
        proto = self._listener.handlers[route.app_protocol](route)
        transport.set_protocol(proto)
        proto.connection_made(transport)


@dataclass
class EgressRedirect:
    routes: dict[tuple[str, int], Route]
    handlers: dict[str, Handler]
    unknown: Counter


class Listeners:
    """The bound servers of one proxy process."""

    def __init__(self, config: ProxyConfig, plan: Plan, handlers: dict[str, Handler] | None = None) -> None:
        self.config = config
        self.plan = plan
        needed = {r.app_protocol for _, _, r in plan.ingress} | {
            r.app_protocol for r in plan.egress_routes.values()
        }
        self.handlers = handlers or default_handlers(needed)
        self.servers: list[tuple[str, asyncio.Server]] = []  # (kind, server); kind "ingress" | "egress"

    async def _bind(
        self, kind: str, factory: Callable[[], asyncio.BaseProtocol], host: str, port: int
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            server = await loop.create_server(factory, host, port, reuse_address=True, backlog=1024)
        except OSError as exc:
            hint = ""
            if exc.errno == errno.EADDRINUSE and kind == "egress" and host != self._egress_address():
                hint = (
                    f"; another container of the task already listens on port {port}, and the no-privilege"
                    " egress mode cannot share a client-alias port with the task (use egress.mode redirect)"
                )
            message = f"cannot listen on {host}:{port} ({kind}): {exc.strerror}{hint}"
            raise OSError(exc.errno, message) from exc
        self.servers.append((kind, server))

    def _egress_address(self) -> str | None:
        egress = self.config.egress
        return egress.address if egress is not None and egress.mode == "redirect" else None

    async def bind_all(self) -> None:
        """Bind every listener; raises OSError naming the one that failed."""
        for address, port, route in self.plan.ingress:
            handler = self.handlers[route.app_protocol]
            await self._bind("ingress", lambda h=handler, r=route: h(r), address, port)  # type: ignore[misc]
            if address == "0.0.0.0":
                # Like Envoy, also [::]: in a dual-stack cluster client proxies find AAAA records too.
                try:
                    await self._bind("ingress", lambda h=handler, r=route: h(r), "::", port)  # type: ignore[misc]
                except OSError as exc:  # no IPv6 in this pod: IPv4 alone is fine
                    log.info("ingress %s: IPv6 not available (%s)", route.name, exc.strerror)
        egress = self.config.egress
        if egress is None:
            return
        if egress.mode == "redirect":
            assert egress.port is not None
            assert self.plan.unknown_destination is not None
            target = EgressRedirect(self.plan.egress_routes, self.handlers, self.plan.unknown_destination)
            await self._bind("egress", lambda: _Dispatch(target), egress.address, egress.port)
        else:
            for (address, port), route in self.plan.egress_routes.items():
                handler = self.handlers[route.app_protocol]
                await self._bind("egress", lambda h=handler, r=route: h(r), address, port)  # type: ignore[misc]

    def stop_accepting(self, kinds: tuple[str, ...] = ("ingress", "egress")) -> None:
        for kind, server in self.servers:
            if kind in kinds:
                server.close()
