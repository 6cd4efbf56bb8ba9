"""What the downstream and upstream HTTP/2 connections share: the h2 state, batched writes, and the set of
streams waiting for flow-control window (or for a slow socket) on this connection."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from sc_proxy.http2.connection import Connection

if TYPE_CHECKING:
    from sc_proxy.http2.stream import ProxyStream


_DIRTY: list[H2Side] = []
_HANDLE: asyncio.Handle | None = None
_HANDLE_LOOP: list[asyncio.AbstractEventLoop | None] = [None]


def flush_dirty() -> None:
    """Write the frames of every connection touched since the last flush."""
    global _HANDLE
    _HANDLE = None
    while _DIRTY:
        side = _DIRTY.pop()
        side._dirty = False
        side.flush()


class H2Side(asyncio.Protocol):
    """One HTTP/2 connection of the proxy (either direction)."""

    h2: Connection
    transport: asyncio.Transport | None

    def __init__(self) -> None:
        self.transport = None
        #: The socket's write buffer is over its high-water mark: send nothing flow-controlled.
        self.paused = False
        #: Streams with data queued for this connection, waiting for window or for the socket.
        self.blocked: dict[ProxyStream, None] = {}
        self._dirty = False
        self.loop = asyncio.get_running_loop()

    def flush(self) -> None:
        """Write whatever h2 has queued."""
        data = self.h2.data_to_send()
        if data and self.transport is not None:
            self.transport.write(data)

    def schedule_flush(self) -> None:
        """Write this connection's frames once the current batch of events is handled: in a loop callback
        (:func:`flush_dirty`) that runs after every connection readable in this loop iteration was read.
        Batches the frames of every stream touched meanwhile, from any connection, into one write."""
        if not self._dirty:
            self._dirty = True
            _DIRTY.append(self)
            global _HANDLE
            # One pending callback per process (the proxy runs one loop; a handle of another, stopped
            # loop, as in tests running several loops, does not count).
            if _HANDLE is None or _HANDLE_LOOP[0] is not self.loop:
                _HANDLE = self.loop.call_soon(flush_dirty)
                _HANDLE_LOOP[0] = self.loop

    def block(self, stream: ProxyStream) -> None:
        self.blocked[stream] = None

    def unblock_all(self) -> None:
        """Window opened (or the socket drained): let every waiting stream send again."""
        if not self.blocked:
            return
        waiting = list(self.blocked)
        self.blocked.clear()
        for stream in waiting:
            stream.pump(self)

    def unblock(self, stream_obj: ProxyStream | None) -> None:
        if stream_obj is not None and self.blocked.pop(stream_obj, 0) is None:
            stream_obj.pump(self)

    # -- asyncio write back-pressure -------------------------------------------------------------------
    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.unblock_all()
        self.flush()
