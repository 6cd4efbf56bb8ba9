"""Connection registry for graceful drain (reference §3.5: SIGTERM drains every listener for 20 s).

Every connection handler registers itself while open. On drain the listeners stop accepting (done by the
listeners module), then each registered connection is asked to :meth:`Drainable.drain` — close now if idle,
else after the in-flight response, and stop keep-alive — and the process waits until none is left or the
drain time is over, then aborts the rest.
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class Drainable(Protocol):
    """What a connection handler offers the lifecycle."""

    def drain(self) -> None:
        """Stop keep-alive: close now if idle, else close after the in-flight request/response."""

    def abort(self) -> None:
        """Close both sides now."""


class Lifecycle:
    """The set of open connections and whether the proxy is draining."""

    __slots__ = ("_conns", "_empty", "draining")

    def __init__(self) -> None:
        self._conns: set[Drainable] = set()
        self._empty: asyncio.Event | None = None
        self.draining = False

    @property
    def active(self) -> int:
        return len(self._conns)

    def register(self, conn: Drainable) -> None:
        self._conns.add(conn)
        if self.draining:
            # Accepted just before the listener closed: serve what is in flight, keep nothing alive.
            conn.drain()

    def unregister(self, conn: Drainable) -> None:
        self._conns.discard(conn)
        if not self._conns and self._empty is not None:
            self._empty.set()

    def start_drain(self) -> None:
        """Ask every open connection to finish (idempotent)."""
        self.draining = True
        for conn in list(self._conns):
            conn.drain()

    async def wait_closed(self, deadline: float) -> bool:
        """Wait until every connection is gone; True if that happened within ``deadline`` seconds."""
        if not self._conns:
            return True
        self._empty = asyncio.Event()
        try:
            await asyncio.wait_for(self._empty.wait(), deadline)
        except TimeoutError:
            return not self._conns
        return True

    def abort_all(self) -> None:
        for conn in list(self._conns):
            conn.abort()
