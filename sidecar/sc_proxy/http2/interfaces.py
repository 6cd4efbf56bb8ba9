"""The contracts between the HTTP/2 proxy's layers: what a stream needs of the connections it relays
between, and what the upstream side needs of a stream.

Only :class:`typing.Protocol` classes (and the one message both sides agree on): a stream
(:mod:`~sc_proxy.http2.stream`) is given objects with these shapes and never imports the connections, and
the upstream side (:mod:`~sc_proxy.http2.upstream`) carries streams it knows only by
:class:`UpstreamStream`. See the package docstring for the layer order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    from sc_proxy.cluster import Host
    from sc_proxy.http2.connection import Connection
    from sc_proxy.http2.deadlines import Deadlines
    from sc_proxy.http2.headers import Headers
    from sc_proxy.metrics import Counter

#: The message of a failed connection attempt (told apart from a connection lost later: flag UF vs UC).
CONNECT_ERROR: Final = "upstream connect error"


class Pumped(Protocol):
    """Something a connection holds back until it can send again (a stream waiting for window)."""

    def pump(self, side: Side) -> None:
        """``side`` has window (or socket room) again."""


class Side(Protocol):
    """One HTTP/2 connection of the proxy, as a stream sends on it."""

    @property
    def h2(self) -> Connection: ...

    @property
    def paused(self) -> bool:
        """The socket's write buffer is over its high-water mark: send nothing flow-controlled."""

    @property
    def blocked(self) -> dict[Pumped, None]:
        """Streams with data queued for this connection, waiting for window or for the socket."""

    def block(self, stream: Pumped) -> None: ...

    def schedule_flush(self) -> None:
        """Write what the codec queued, once the current batch of events is handled."""


class Downstream(Side, Protocol):
    """The client connection a stream belongs to."""

    @property
    def deadlines(self) -> Deadlines:
        """Where the stream's perRequestTimeout is kept."""

    @property
    def peer(self) -> str:
        """The caller's mutual-TLS identity, ``-`` when none (access log)."""

    def stream_done(self, sid: int) -> None:
        """Stream ``sid`` ended (both ways, or was given up): the connection forgets it."""


class Upstream(Side, Protocol):
    """A connection to a task a stream is relayed on."""

    def stream_done(self, sid: int) -> None:
        """The stream left upstream stream ``sid``."""

    def unqueue(self, stream: UpstreamStream) -> None:
        """``stream`` no longer waits for this connection to be ready."""


class UpstreamStream(Pumped, Protocol):
    """A client stream as the upstream connections and their pool carry it."""

    #: The connection the stream waits on (connecting, or its SETTINGS not seen yet).
    queued: Upstream | None

    @property
    def host(self) -> Host | None:
        """The task the stream's current attempt goes to."""

    @property
    def up_headers(self) -> Headers:
        """The request head as it goes upstream."""

    def head_ends_request(self) -> bool:
        """Whether the request head goes upstream with END_STREAM."""

    def attached(self, up: Upstream, sid: int) -> None:
        """``up`` opened upstream stream ``sid`` for this stream and sent the request head."""

    def on_response(self, headers: Headers, ended: bool) -> None: ...

    def on_response_data(self, data: bytes, flow_len: int, ended: bool = False) -> None: ...

    def on_response_trailers(self, trailers: Headers) -> None: ...

    def on_response_end(self) -> None: ...

    def on_upstream_reset(self, code: int) -> None: ...

    def upstream_failed(self, message: str, failure: str | None = None) -> None: ...


class Pool(Protocol):
    """Where a stream asks for an upstream stream: the route's upstream connections."""

    @property
    def grpc_status(self) -> dict[str, Counter] | None:
        """The gRPC status-class counters of the route (egress gRPC only)."""

    def assign(self, host: Host, stream: UpstreamStream) -> None:
        """Open ``stream`` on a connection to ``host``."""
