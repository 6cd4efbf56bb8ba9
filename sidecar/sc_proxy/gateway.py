"""Gateway mode: the one address a peer cluster dials when pod networks are not routable between clusters.

Each connection starts with a PROXY protocol v2 header (:mod:`sc_proxy.proxyproto`) naming the task the
client proxy wants. The gateway routes it only when that ``address:port`` is a host its ``allow``
discovery currently lists (the Ready tasks of this cluster's linked endpoints, on the port their clients
dial); anything else — another pod, another port, the API server, a LOCAL header, garbage, a header that
does not arrive in time — is closed and counted. It never reads past the header: the bytes that follow
(TLS when the namespace has it) are spliced to the task, whose own proxy terminates them, so TLS and
mutual TLS stay end to end between the two sidecars.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import cast

from sc_proxy import proxyproto
from sc_proxy.cluster import Cluster, Host
from sc_proxy.config import GatewayConfig
from sc_proxy.discovery import DnsSource, Source, StaticSource
from sc_proxy.lifecycle import Lifecycle
from sc_proxy.metrics import REGISTRY, Counter, Registry

log = logging.getLogger("sc_proxy.gateway")

#: The ``Result`` label values of ``GatewayConnectionCount``.
RESULTS: tuple[str, ...] = ("routed", "refused", "bad_header", "header_timeout", "connect_failed")


def allowed(destination: tuple[str, int] | None, clusters: Iterable[Cluster]) -> bool:
    """May the gateway route to ``destination``? Only to a host some allow-list cluster holds now."""
    if destination is None:
        return False
    host = Host(*destination)
    return any(host in c.hosts for c in clusters)


class GatewayStats:
    """``GatewayConnectionCount{Result=…}``: what became of each accepted connection."""

    def __init__(self, registry: Registry | None = None) -> None:
        reg = registry or REGISTRY
        self.results: dict[str, Counter] = {}
        for result in RESULTS:
            c = reg.child(
                "GatewayConnectionCount",
                "counter",
                "Connections accepted by the gateway, by what became of them.",
                "Result",
                result,
            )
            assert isinstance(c, Counter)
            self.results[result] = c


class Gateway:
    """The allow list (clusters fed by discovery sources) and the listener's settings."""

    def __init__(self, config: GatewayConfig, lifecycle: Lifecycle, registry: Registry | None = None) -> None:
        self.config = config
        self.lifecycle = lifecycle
        self.stats = GatewayStats(registry)
        self.clusters: list[Cluster] = []
        self.sources: list[Source] = []
        for i, d in enumerate(config.allow):
            cluster = Cluster(f"gateway-allow-{i}")
            self.clusters.append(cluster)
            if d.static is not None:
                self.sources.append(StaticSource(cluster, [Host(h.address, h.port) for h in d.static]))
            else:
                assert d.dns is not None
                self.sources.append(DnsSource(cluster, d.dns))

    def protocol(self) -> Callable[[], asyncio.BaseProtocol]:
        return lambda: _Downstream(self)


class _Upstream(asyncio.Protocol):
    def __init__(self, down: _Downstream) -> None:
        self._down = down

    def data_received(self, data: bytes) -> None:
        assert self._down.down is not None
        self._down.down.write(data)

    def eof_received(self) -> bool:
        self._down.half_close(upstream=True)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._down.close()

    def pause_writing(self) -> None:
        if self._down.down is not None:
            self._down.down.pause_reading()

    def resume_writing(self) -> None:
        if self._down.down is not None:
            self._down.down.resume_reading()


class _Downstream(asyncio.Protocol):
    """One connection from a peer's client proxy: header, check, connect, splice."""

    def __init__(self, gateway: Gateway) -> None:
        self._gw = gateway
        self._buf = b""
        self.down: asyncio.Transport | None = None
        self._up: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._eofs: set[bool] = set()
        self._closed = False
        self._pending: list[bytes] = []
        self._pending_eof = False
        self._task: asyncio.Task[None] | None = None
        self._connecting = False  # the header was accepted; the connection to the task is being made

    # -- Drainable ------------------------------------------------------------------------------------
    def drain(self) -> None:
        """In-flight connections finish on their own; a connection still sending its header is closed."""
        if self._up is None:
            self.close()

    def abort(self) -> None:
        self.close()

    # -- downstream -----------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.down = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self._gw.lifecycle.register(self)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._gw.config.header_timeout_seconds, self._header_timeout)

    def _header_timeout(self) -> None:
        self._timer = None
        self._refuse("header_timeout", "no PROXY header in time")

    def _refuse(self, result: str, why: str) -> None:
        self._gw.stats.results[result].inc()
        peer = self.down.get_extra_info("peername") if self.down is not None else None
        log.info("gateway: closed a connection from %s: %s", peer, why)
        self.close()

    def data_received(self, data: bytes) -> None:
        if self._up is not None:
            self._up.write(data)
            return
        if self._connecting:
            self._pending.append(data)
            return
        if self._closed:
            return
        self._buf += data
        try:
            decoded = proxyproto.decode(self._buf)
        except proxyproto.HeaderError as exc:
            self._cancel_timer()
            self._refuse("bad_header", str(exc))
            return
        if decoded is None:
            return
        header, used = decoded
        self._cancel_timer()
        rest, self._buf = self._buf[used:], b""
        dest = header.destination
        if not allowed(dest, self._gw.clusters):
            self._refuse("refused", f"destination {dest} is not an allowed task")
            return
        assert dest is not None
        if rest:
            self._pending.append(rest)
        assert self.down is not None
        self.down.pause_reading()
        self._connecting = True
        self._task = asyncio.get_running_loop().create_task(self._connect(dest))

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _connect(self, dest: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await asyncio.wait_for(
                loop.create_connection(lambda: _Upstream(self), dest[0], dest[1]),
                self._gw.config.connect_timeout_seconds,
            )
        except (OSError, TimeoutError) as exc:
            self._refuse("connect_failed", f"cannot connect to {dest[0]}:{dest[1]}: {exc}")
            return
        if self._closed:
            transport.close()
            return
        self._gw.stats.results["routed"].inc()
        self._up = transport
        pending, self._pending = self._pending, []
        if pending:
            transport.write(b"".join(pending))
        if self._pending_eof:
            transport.write_eof()
        elif self.down is not None:
            self.down.resume_reading()

    def eof_received(self) -> bool:
        if self._up is None:
            if not self._connecting:  # EOF before a complete header
                self._cancel_timer()
                self._refuse("bad_header", "connection closed before a complete header")
                return False
            self._pending_eof = True
            return True
        self.half_close(upstream=False)
        return True

    def half_close(self, upstream: bool) -> None:
        """One side sent EOF: pass it on; when both have, the connection is done."""
        self._eofs.add(upstream)
        other = self.down if upstream else self._up
        if other is not None and other.can_write_eof() and not other.is_closing():
            other.write_eof()
        if len(self._eofs) == 2:
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.close()

    def pause_writing(self) -> None:
        if self._up is not None:
            self._up.pause_reading()

    def resume_writing(self) -> None:
        if self._up is not None:
            self._up.resume_reading()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._cancel_timer()
        self._gw.lifecycle.unregister(self)
        for t in (self.down, self._up):
            if t is not None:
                t.close()
