"""Listeners: build the routes from the config, bind every socket, hand accepted connections to handlers.

- ingress: one listener per served endpoint, forwarding to the local app;
- egress ``redirect``: one listener that iptables feeds; the original (VIP, port) is read with
  ``SO_ORIGINAL_DST`` at accept and mapped to the alias's route; unknown destinations are closed and counted;
- egress ``listeners``: one listener per alias address:port (no privilege needed).

The handler for a route comes from a registry keyed by appProtocol; the accepted transport is handed over
with ``transport.set_protocol(p); p.connection_made(transport)``.

An ingress with ``tls`` listens with a :class:`~sc_proxy.tls.ServerContext` (TLS 1.3 only): the handler gets
the decrypted stream, so every protocol is served over TLS unchanged. Building the plan reads the TLS files
(a bad file stops the start with an error naming the field).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from sc_proxy import tcp
from sc_proxy.accesslog import AccessLogger, AccessRecord
from sc_proxy.cluster import Cluster, Host
from sc_proxy.config import ConfigError, Ingress, IngressTls, ProxyConfig
from sc_proxy.discovery import Source, source_for
from sc_proxy.gateway import Gateway
from sc_proxy.lifecycle import Lifecycle
from sc_proxy.metrics import Counter, EgressStats, IngressStats, Registry, unknown_destination_counter
from sc_proxy.policy import effective_timeouts
from sc_proxy.route import Route
from sc_proxy.tls import (
    TLS_SHUTDOWN_SECONDS,
    ClientTls,
    Reloading,
    ServerContext,
    TlsStats,
    alpn_for,
    client_alpn_offers,
    failure_reason,
    peer_identity,
    server_context,
    tune_malloc_for_tls,
)

log = logging.getLogger("sc_proxy.listeners")

Handler = Callable[[Route], asyncio.Protocol]

T = TypeVar("T")

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
    #: The sources of endpoints this proxy also serves (its own service): they do not hold ``/ready`` back.
    own_sources: list[Source] = field(default_factory=list)
    clusters: dict[str, Cluster] = field(default_factory=dict)
    unknown_destination: Counter | None = None
    #: Ingress routes served over TLS, and the context their listeners use.
    ingress_tls: dict[Route, ServerContext] = field(default_factory=dict)
    #: Ingress routes admitting only some mutual-TLS callers (URI SAN identities).
    allowed_callers: dict[Route, frozenset[str]] = field(default_factory=dict)
    #: Gateway mode (``gateway`` in the config): its allow list and listener.
    gateway: Gateway | None = None


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


def _load_tls(prefix: str, files: dict[str, str | None], make: Callable[[], T]) -> T:
    """``make()`` (which reads ``files``), or a ConfigError naming the field: the file that cannot be read,
    else the ``tls`` block whose files do not make a context (bad PEM, a key that is not the cert's)."""
    for name, path in files.items():
        if path is None:
            continue
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise ConfigError(f"{prefix}.{name}: cannot read {path}: {exc.strerror}") from None
    try:
        return make()
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        reason = exc.reason if isinstance(exc, ssl.SSLError) and exc.reason else str(exc)
        raise ConfigError(f"{prefix}: the TLS files cannot be used: {reason}") from None


def _server_tls(i: int, ing: Ingress, tls: IngressTls, route: Route, tls_stats: TlsStats) -> ServerContext:
    stats = route.stats
    access = route.access_log
    paths = [tls.cert_file, tls.key_file] + ([tls.client_ca_file] if tls.client_ca_file else [])
    alpn = alpn_for(ing.app_protocol)

    def build() -> ssl.SSLContext:
        return server_context(tls.cert_file, tls.key_file, alpn, tls.client_ca_file)

    source = _load_tls(
        f"ingress.{i}.tls",
        {"certFile": tls.cert_file, "keyFile": tls.key_file, "clientCaFile": tls.client_ca_file},
        lambda: Reloading(f"ingress {ing.discovery_name}", paths, build, tls_stats),
    )

    def failed(exc: BaseException) -> None:
        stats.tls_errors.inc()
        if access is not None:
            access.log(
                AccessRecord(
                    start_time=time.time(),
                    direction="ingress",
                    name=route.name,
                    response_flags="DPE",  # Envoy's "downstream protocol error"
                    transport_failure=failure_reason(exc),
                )
            )

    return ServerContext(source, failed)


def build_plan(config: ProxyConfig, registry: Registry | None = None) -> Plan:
    """Routes, clusters and discovery sources for ``config``; the only I/O is reading the TLS files
    (raises :class:`~sc_proxy.config.ConfigError` naming the field when they cannot be used)."""
    lifecycle = Lifecycle()
    tls_stats = None
    if _uses_tls(config):
        tls_stats = TlsStats(registry)
        tune_malloc_for_tls()
    plan = Plan(lifecycle=lifecycle, unknown_destination=unknown_destination_counter(registry))
    access = None
    if config.access_log is not None:
        access = AccessLogger(
            config.access_log.format, config.access_log.include_query_parameters == "ENABLED"
        )
    routes_by_endpoint: dict[str, Route] = {}
    # A server that calls its own service: the first task of it finds no ready task of it (itself not yet
    # Ready), so waiting for that endpoint's first resolution would only delay it by the whole wait.
    served = {ing.discovery_name for ing in config.ingress}
    for j, ep in enumerate(config.endpoints):
        cluster = Cluster(ep.name, ep.outlier)
        stats = EgressStats(ep.name, registry)
        _wire_ejections(cluster, stats)
        per, idle = effective_timeouts(ep.app_protocol, ep.timeouts)
        client_tls = None
        if ep.tls is not None:
            assert tls_stats is not None
            t = ep.tls
            offers = client_alpn_offers(ep.app_protocol)
            client_tls = _load_tls(
                f"endpoints.{j}.tls",
                {"caFile": t.ca_file, "certFile": t.cert_file, "keyFile": t.key_file},
                lambda t=t, ep=ep, offers=offers: ClientTls(  # type: ignore[misc]
                    ep.name, t.ca_file, t.server_name, offers, tls_stats, t.cert_file, t.key_file
                ),
            )
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
            tls=client_tls,
            via=ep.via,
        )
        plan.clusters[ep.name] = cluster
        source = source_for(cluster, ep)
        plan.sources.append(source)
        if ep.name in served:
            plan.own_sources.append(source)
    if config.gateway is not None:
        plan.gateway = Gateway(config.gateway, lifecycle, registry)
        plan.sources.extend(plan.gateway.sources)
    for alias in config.aliases:
        plan.egress_routes[(alias.address, alias.port)] = routes_by_endpoint[alias.endpoint]
    for i, ing in enumerate(config.ingress):
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
            caller_identity=ing.tls is not None and ing.tls.client_ca_file is not None,
        )
        plan.ingress.append((ing.address, ing.port, route))
        if ing.tls is not None:
            assert tls_stats is not None
            plan.ingress_tls[route] = _server_tls(i, ing, ing.tls, route, tls_stats)
            if ing.tls.allowed_callers:
                plan.allowed_callers[route] = frozenset(ing.tls.allowed_callers)
    return plan


def _uses_tls(config: ProxyConfig) -> bool:
    return any(e.tls for e in config.endpoints) or any(i.tls for i in config.ingress)


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


class _CallerGate(asyncio.Protocol):
    """Admits a mutual-TLS caller whose identity is listed, then hands the connection to the handler;
    others are closed after the handshake (counted as rejected, logged with Envoy's ``UAEX`` flag)."""

    def __init__(self, route: Route, handler: Handler, allowed: frozenset[str]) -> None:
        self._route = route
        self._handler = handler
        self._allowed = allowed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        route = self._route
        caller = peer_identity(transport)
        if caller is None or caller not in self._allowed:
            route.stats.rejected.inc()
            log.info("ingress %s: caller %s is not in allowedCallers; closed", route.name, caller or "-")
            if route.access_log is not None:
                route.access_log.log(
                    AccessRecord(
                        start_time=time.time(),
                        direction="ingress",
                        name=route.name,
                        response_flags="UAEX",  # Envoy's "unauthorized"
                        peer_identity=caller or "-",
                    )
                )
            transport.close()
            return
        proto = self._handler(route)
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
        self,
        kind: str,
        factory: Callable[[], asyncio.BaseProtocol],
        host: str,
        port: int,
        tls: ServerContext | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            if tls is None:
                server = await loop.create_server(factory, host, port, reuse_address=True, backlog=1024)
            else:
                server = await loop.create_server(
                    factory,
                    host,
                    port,
                    reuse_address=True,
                    backlog=1024,
                    ssl=tls,
                    # A caller must finish its handshake as fast as it must send a request head.
                    ssl_handshake_timeout=self.config.limits.header_timeout_seconds,
                    ssl_shutdown_timeout=TLS_SHUTDOWN_SECONDS,
                )
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
            tls = self.plan.ingress_tls.get(route)
            allowed = self.plan.allowed_callers.get(route)
            factory: Callable[[], asyncio.BaseProtocol]
            if allowed is not None:
                factory = lambda h=handler, r=route, a=allowed: _CallerGate(r, h, a)  # type: ignore[misc]  # noqa: E731
            else:
                factory = lambda h=handler, r=route: h(r)  # type: ignore[misc]  # noqa: E731
            await self._bind("ingress", factory, address, port, tls)
            if address == "0.0.0.0":
                # Like Envoy, also [::]: in a dual-stack cluster client proxies find AAAA records too.
                try:
                    await self._bind("ingress", factory, "::", port, tls)
                except OSError as exc:  # no IPv6 in this pod: IPv4 alone is fine
                    log.info("ingress %s: IPv6 not available (%s)", route.name, exc.strerror)
        gateway = self.plan.gateway
        if gateway is not None:
            # Stops accepting with the ingress listeners when the proxy drains.
            await self._bind("ingress", gateway.protocol(), gateway.config.address, gateway.config.port)
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
