"""What the downstream and upstream HTTP/2 connections share: the h2 state, batched writes, and the set of
streams waiting for flow-control window (or for a slow socket) on this connection.

Streams are known here only as :class:`~sc_proxy.http2.interfaces.Pumped`; this module imports no other
layer of the proxy (see the package docstring).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sc_proxy.http2.connection import Connection
    from sc_proxy.http2.interfaces import Pumped


class FlushBatch:
    """The connections written to since the last flush, written together in one loop callback.

    Shared by every connection of a route (client connections and the pool's upstream connections, which a
    stream always pairs), made in and bound to the loop that runs them.
    """

    __slots__ = ("_dirty", "_handle", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._dirty: list[H2Side] = []
        self._handle: asyncio.Handle | None = None

    def add(self, side: H2Side) -> None:
        """Write ``side``'s frames in the pending callback (scheduling one if there is none)."""
        self._dirty.append(side)
        if self._handle is None:
            self._handle = self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write the frames of every connection touched since the last flush."""
        self._handle = None
        dirty = self._dirty
        while dirty:
            side = dirty.pop()
            side._dirty = False
            side.flush()


class H2Side(asyncio.Protocol):
    """One HTTP/2 connection of the proxy (either direction)."""

    h2: Connection
    transport: asyncio.Transport | None

    def __init__(self, batch: FlushBatch) -> None:
        self.transport = None
        #: The socket's write buffer is over its high-water mark: send nothing flow-controlled.
        self.paused = False
        #: Streams with data queued for this connection, waiting for window or for the socket.
        self.blocked: dict[Pumped, None] = {}
        self.batch = batch
        self._dirty = False
        self.loop = asyncio.get_running_loop()

    def flush(self) -> None:
        """Write whatever h2 has queued."""
        data = self.h2.data_to_send()
        if data and self.transport is not None:
            self.transport.write(data)

    def schedule_flush(self) -> None:
        """Write this connection's frames once the current batch of events is handled: in a loop callback
        (:meth:`FlushBatch.flush`) that runs after every connection readable in this loop iteration was
        read. Batches the frames of every stream touched meanwhile, from any connection, into one write."""
        if not self._dirty:
            self._dirty = True
            self.batch.add(self)

    def block(self, stream: Pumped) -> None:
        self.blocked[stream] = None

    def unblock_all(self) -> None:
        """Window opened (or the socket drained): let every waiting stream send again."""
        if not self.blocked:
            return
        waiting = list(self.blocked)
        self.blocked.clear()
        for stream in waiting:
            stream.pump(self)

    def unblock(self, stream_obj: Pumped | None) -> None:
        if stream_obj is not None and self.blocked.pop(stream_obj, 0) is None:
            stream_obj.pump(self)

    # -- asyncio write back-pressure -------------------------------------------------------------------
    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.unblock_all()
        self.flush()
