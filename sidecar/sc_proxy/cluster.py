"""The live set of tasks behind one endpoint: round robin with outlier ejection.

Discovery replaces the host set with :meth:`Cluster.set_hosts` (health state of hosts that stay is kept);
connection handlers call :meth:`Cluster.pick` (:meth:`Cluster.pick_retry` for a retry) and report each
failure. Everything runs on the event loop thread, so there is no locking.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import NamedTuple

from sc_proxy import policy
from sc_proxy.config import Outlier

_NO_EXCLUDE: frozenset[Host] = frozenset()


class Host(NamedTuple):
    """One task: address and port (a NamedTuple: cheap to hash)."""

    address: str
    port: int

    def __str__(self) -> str:
        return f"[{self.address}]:{self.port}" if ":" in self.address else f"{self.address}:{self.port}"


EjectionHook = Callable[[Host, float], None]


class Cluster:
    """Hosts of one endpoint plus their outlier state."""

    __slots__ = ("_clock", "_ejected", "_health", "_hosts", "_rr", "name", "on_eject", "on_return", "outlier")

    def __init__(
        self,
        name: str,
        outlier: Outlier | None = None,
        hosts: Iterable[Host] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.outlier = outlier or Outlier()
        self._clock = clock
        self._hosts: tuple[Host, ...] = ()
        self._health: dict[Host, policy.HostHealth] = {}
        self._rr = 0
        self._ejected = 0  # hosts with ejected_until != 0 (some may be due to return)
        #: Called with (host, seconds) on ejection and (host, 0) on return; for metrics and logs.
        self.on_eject: EjectionHook | None = None
        self.on_return: EjectionHook | None = None
        self.set_hosts(hosts)

    @property
    def hosts(self) -> tuple[Host, ...]:
        return self._hosts

    def set_hosts(self, hosts: Iterable[Host]) -> None:
        """Replace the host set (discovery update); keeps the state of hosts that remain."""
        new = tuple(dict.fromkeys(hosts))
        health = {h: self._health.get(h) or policy.HostHealth() for h in new}
        if self.on_return is not None:
            # An ejected host that left discovery is no longer out of rotation (keeps the gauge honest).
            for host, state in self._health.items():
                if state.ejected_until and host not in health:
                    self.on_return(host, 0.0)
        self._hosts = new
        self._health = health
        self._ejected = sum(1 for s in health.values() if s.ejected_until)
        if self._rr >= len(new):
            self._rr = 0

    def ejected_hosts(self) -> list[Host]:
        """Hosts currently out of rotation."""
        self._expire(self._clock())
        return [h for h, s in self._health.items() if s.ejected_until]

    def health(self, host: Host) -> policy.HostHealth | None:
        return self._health.get(host)

    def _expire(self, now: float) -> None:
        if not self._ejected:
            return
        for host, state in self._health.items():
            if state.ejected_until and state.ejected_until <= now:
                policy.end_ejection(state)
                self._ejected -= 1
                if self.on_return is not None:
                    self.on_return(host, 0.0)

    def pick(self, exclude: frozenset[Host] = _NO_EXCLUDE) -> Host | None:
        """Next host in round robin that is neither ejected nor in ``exclude``.

        When every candidate is ejected, fall back to all non-excluded hosts (routing somewhere beats failing
        every request). ``None`` only when there is no host outside ``exclude``.
        """
        hosts = self._hosts
        n = len(hosts)
        if not n:
            return None
        start = self._rr
        if self._ejected:
            self._expire(self._clock())
        if not self._ejected and not exclude:
            # Hot path: plain round robin.
            host = hosts[start if start < n else 0]
            self._rr = (start + 1) % n
            return host
        health = self._health
        fallback = -1
        for i in range(n):
            idx = (start + i) % n
            host = hosts[idx]
            if host in exclude:
                continue
            if health[host].ejected_until:
                if fallback < 0:
                    fallback = idx
                continue
            self._rr = (idx + 1) % n
            return host
        if fallback < 0:
            return None
        self._rr = (fallback + 1) % n
        return hosts[fallback]

    def pick_retry(self, tried: frozenset[Host], last: Host) -> Host | None:
        """The host for a retry after ``last`` failed: one this request has not tried yet (the seed: "the
        second attempt avoids using the host from the previous connection"); when every host has been
        tried, any but ``last``; and ``last`` itself only when it is the one host left, as Envoy's
        ``previous_hosts`` predicate gives up after its selection attempts: with one task, or a request that
        met a stale pooled connection, trying again beats failing."""
        return self.pick(tried) or self.pick(frozenset((last,))) or self.pick()

    def report_failure(self, host: Host) -> None:
        """Count a connect failure, reset or failed answer of ``host``; may eject it.

        Successes are not reported: they do not change the count (see :func:`policy.record_failure`).
        """
        state = self._health.get(host)
        if state is None or state.ejected_until:
            return  # gone from discovery, or already out of rotation
        now = self._clock()
        if not policy.record_failure(state, now, self.outlier):
            return
        self._expire(now)
        if not policy.may_eject(len(self._hosts), self._ejected, self.outlier):
            state.failures.clear()
            return
        duration = policy.eject(state, now, self.outlier)
        self._ejected += 1
        if self.on_eject is not None:
            self.on_eject(host, duration)
