"""Endpoint discovery: feeds a :class:`~sc_proxy.cluster.Cluster` its live host set.

One small interface (:class:`Source`: ``start`` / ``close``) with two implementations:

- :class:`StaticSource`: the addresses in the config (tests, fixed upstreams);
- :class:`DnsSource`: a headless Service. With ``srvName`` the SRV records give one (target, port) per task
  and the targets' A/AAAA records (from the additional section, else looked up) give the addresses, so
  tasks on different ports (a server changing its ingress port mid-rollout) are all reached. Without it,
  the A/AAAA records of ``name`` with the fixed ``port``. Re-resolved every ``intervalSeconds``; a failed or
  empty resolution keeps the last good set (a DNS hiccup must not empty the cluster; tasks that are really
  gone fail their connections and get ejected by outlier detection).

Warming up: until the first resolution succeeds, it is retried quickly (0.1 s, doubling up to
``intervalSeconds``). A headless Service's records appear a moment after its first task turns Ready (the
EndpointSlice, then the cluster DNS, follow), and a client started in that moment would otherwise serve
its app "no healthy upstream" for a whole interval. ``start`` returns at the first success, so the proxy
holds ``/ready`` back until then, bounded by the caller (as Envoy warms a cluster before its listeners),
except for the endpoints it serves itself (``Plan.own_sources``: no task of them may be Ready yet).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any, Protocol

from sc_proxy.cluster import Cluster, Host
from sc_proxy.config import DnsDiscovery, Endpoint, parse_resolver

log = logging.getLogger("sc_proxy.discovery")

#: The first retry while warming up; later ones double, up to the refresh interval.
WARMUP_RETRY_SECONDS = 0.1


class Source(Protocol):
    """A discovery source bound to one cluster."""

    async def start(self) -> None:
        """Fill the cluster once (best effort) and keep it updated in the background."""

    async def close(self) -> None:
        """Stop updating."""


class StaticSource:
    """Hosts from the configuration file."""

    def __init__(self, cluster: Cluster, hosts: Iterable[Host]) -> None:
        self._cluster = cluster
        self._hosts = tuple(hosts)

    async def start(self) -> None:
        self._cluster.set_hosts(self._hosts)

    async def close(self) -> None:
        return None


class ResolutionError(Exception):
    """DNS gave no usable answer."""


def _make_resolver(cfg: DnsDiscovery) -> Any:
    # dnspython is imported only when an endpoint uses DNS (about 2 MiB and 0.1 s of start-up otherwise).
    import dns.asyncresolver

    if cfg.resolver is None:
        resolver = dns.asyncresolver.Resolver()
    else:
        address, port = parse_resolver(cfg.resolver)
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [address]
        resolver.port = port
    # Bounded: a slow resolver must not stall the refresh loop beyond one interval.
    resolver.lifetime = min(2.0, max(0.2, cfg.interval_seconds))
    resolver.timeout = resolver.lifetime
    return resolver


async def _addresses(resolver: Any, name: str) -> list[str]:
    """A and AAAA records of ``name`` (either may be absent)."""
    results = await asyncio.gather(
        resolver.resolve(name, "A", raise_on_no_answer=False, search=False),
        resolver.resolve(name, "AAAA", raise_on_no_answer=False, search=False),
        return_exceptions=True,
    )
    out: list[str] = []
    errors: list[BaseException] = []
    for res in results:
        if isinstance(res, BaseException):
            errors.append(res)
            continue
        out.extend(r.address for r in res)
    if not out and errors:
        raise ResolutionError(f"{name}: {errors[0]!r}")
    return out


def _additional_addresses(answer: Any) -> dict[str, list[str]]:
    import dns.rdatatype

    found: dict[str, list[str]] = {}
    for rrset in answer.response.additional:
        if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            found.setdefault(rrset.name.to_text(), []).extend(r.address for r in rrset)
    return found


async def resolve_hosts(resolver: Any, cfg: DnsDiscovery) -> list[Host]:
    """One resolution of the configured records; raises :class:`ResolutionError` when nothing usable."""
    import dns.exception

    try:
        if cfg.srv_name is None:
            assert cfg.port is not None  # the model guarantees srvName or port
            return [Host(a, cfg.port) for a in sorted(await _addresses(resolver, cfg.name))]
        answer = await resolver.resolve(cfg.srv_name, "SRV", search=False)
        extra = _additional_addresses(answer)
        hosts: list[Host] = []
        for srv in sorted(answer, key=lambda r: (r.priority, r.target.to_text(), r.port)):
            target = srv.target.to_text()
            addrs = extra.get(target)
            if addrs is None:
                addrs = await _addresses(resolver, target)
            hosts.extend(Host(a, srv.port) for a in sorted(addrs))
        return hosts
    except (dns.exception.DNSException, OSError) as exc:
        raise ResolutionError(f"{cfg.srv_name or cfg.name}: {exc!r}") from exc


class DnsSource:
    """Hosts from DNS, refreshed in the background."""

    def __init__(self, cluster: Cluster, cfg: DnsDiscovery) -> None:
        self._cluster = cluster
        self._cfg = cfg
        self._resolver = _make_resolver(cfg)
        self._task: asyncio.Task[None] | None = None
        self._warm = asyncio.Event()
        self._failing = False
        #: Successful / failed resolutions so far (tests and logs).
        self.successes = 0
        self.failures = 0

    async def refresh(self) -> bool:
        """Resolve once and update the cluster; False (set unchanged) on failure or an empty answer."""
        try:
            hosts = await resolve_hosts(self._resolver, self._cfg)
            if not hosts:
                raise ResolutionError(f"{self._cfg.srv_name or self._cfg.name}: no records")
        except Exception as exc:  # a resolver bug must not stop discovery either: keep the set
            self.failures += 1
            if not self._failing:
                log.warning("discovery %s: %s; keeping %d known hosts", self._cluster.name, exc,
                            len(self._cluster.hosts))  # fmt: skip
            self._failing = True
            return False
        self.successes += 1
        self._failing = False
        if tuple(hosts) != self._cluster.hosts:
            log.info("discovery %s: %s", self._cluster.name, ", ".join(str(h) for h in hosts))
            self._cluster.set_hosts(hosts)
        return True

    async def _loop(self) -> None:
        delay = min(WARMUP_RETRY_SECONDS, self._cfg.interval_seconds)
        while not await self.refresh():
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._cfg.interval_seconds)
        self._warm.set()
        while True:
            await asyncio.sleep(self._cfg.interval_seconds)
            await self.refresh()

    async def start(self) -> None:
        """Start refreshing; return once a resolution has succeeded (see "Warming up")."""
        self._task = asyncio.get_running_loop().create_task(self._loop())
        await self._warm.wait()

    async def close(self) -> None:
        self._warm.set()  # a start() still waiting returns
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def source_for(cluster: Cluster, endpoint: Endpoint) -> Source:
    """The discovery source an endpoint's config asks for."""
    d = endpoint.discovery
    if d.static is not None:
        return StaticSource(cluster, [Host(h.address, h.port) for h in d.static])
    assert d.dns is not None
    return DnsSource(cluster, d.dns)
