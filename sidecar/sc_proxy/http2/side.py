"""What the downstream and upstream HTTP/2 connections share: the h2 state, batched writes, and the set of
streams waiting for flow-control window (or for a slow socket) on this connection."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from sc_proxy.http2.codec import ProxyH2Connection

if TYPE_CHECKING:
    from sc_proxy.http2.stream import ProxyStream


class H2Side(asyncio.Protocol):
    """One HTTP/2 connection of the proxy (either direction)."""

    h2: ProxyH2Connection
    transport: asyncio.Transport | None

    def __init__(self) -> None:
        self.transport = None
        #: The socket's write buffer is over its high-water mark: send nothing flow-controlled.
        self.paused = False
        #: Streams with data queued for this connection, waiting for window or for the socket.
        self.blocked: dict[ProxyStream, None] = {}
        self._flush_handle: asyncio.Handle | None = None
        self.loop = asyncio.get_running_loop()

    def flush(self) -> None:
        """Write whatever h2 has queued."""
        data = self.h2.data_to_send()
        if data and self.transport is not None:
            self.transport.write(data)

    def schedule_flush(self) -> None:
        """Flush at the end of this loop iteration: batches the frames of every stream touched meanwhile."""
        if self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_handle = None
        self.flush()

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
