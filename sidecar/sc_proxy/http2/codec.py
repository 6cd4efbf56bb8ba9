"""The proxy's HTTP/2 connections as it configures them: settings, windows, and a graceful GOAWAY.

RFC 9113 §6.8: after a NO_ERROR GOAWAY, streams up to its last-stream-id continue to completion. The
connection state (:class:`~sc_proxy.http2.connection.Connection`) keeps serving open streams after sending
or receiving one; the drain GOAWAY is written as raw bytes (:func:`goaway_frame`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final

from sc_proxy.config import Limits
from sc_proxy.http2 import frames
from sc_proxy.http2.connection import Connection
from sc_proxy.http2.guard import FloodGuard

if TYPE_CHECKING:
    from collections.abc import Callable

#: The connection preface a prior-knowledge HTTP/2 client sends first (RFC 9113 §3.4).
PREFACE: Final = frames.PREFACE

#: Flow-control windows we advertise. They bound what the proxy may hold per stream / per connection when
#: the other side is slower: data is acknowledged only once it was handed to the other side.
STREAM_WINDOW: Final = 256 * 1024
CONNECTION_WINDOW: Final = 1024 * 1024
#: Concurrent streams a client may open on one downstream connection.
MAX_CONCURRENT_STREAMS: Final = 128
MAX_FRAME_SIZE: Final = frames.DEFAULT_FRAME_SIZE


def server_connection(
    max_header_bytes: int, limits: Limits | None = None, clock: Callable[[], float] = time.monotonic
) -> Connection:
    """The downstream side: checks what clients send (they may be hostile), with the header-count limit
    and the flood defences of ``limits`` (the defaults when not given); ``clock`` times those."""
    if limits is None:
        limits = Limits()
    return Connection(
        client_side=False,
        max_header_list_size=max_header_bytes,
        max_concurrent_streams=MAX_CONCURRENT_STREAMS,
        stream_window=STREAM_WINDOW,
        max_frame_size=MAX_FRAME_SIZE,
        check_requests=True,
        max_header_count=limits.max_header_count,
        guard=FloodGuard(limits.http2, clock),
    )


def client_connection(max_header_bytes: int) -> Connection:
    """The upstream side: the task's app (or the next proxy) is trusted to send valid header fields; the
    framing, flow control and stream rules are enforced all the same."""
    return Connection(
        client_side=True,
        max_header_list_size=max_header_bytes,
        max_concurrent_streams=0,  # no pushed streams either (ENABLE_PUSH 0)
        stream_window=STREAM_WINDOW,
        max_frame_size=MAX_FRAME_SIZE,
    )


def start(conn: Connection) -> None:
    """Send the preface/SETTINGS and open the connection window to :data:`CONNECTION_WINDOW`."""
    conn.initiate_connection()
    conn.increment_flow_control_window(CONNECTION_WINDOW - frames.DEFAULT_WINDOW)


def goaway_frame(last_stream_id: int, error_code: int = 0) -> bytes:
    """A GOAWAY frame; the connection keeps serving the streams up to ``last_stream_id``."""
    return frames.goaway(last_stream_id, error_code)


def is_preface_prefix(data: bytes) -> bool:
    """True while ``data`` may still turn out to be the HTTP/2 preface."""
    n = min(len(data), len(PREFACE))
    return data[:n] == PREFACE[:n]
