"""What :meth:`~sc_proxy.http2.connection.Connection.receive_data` reports: one small class per event.

Names and fields follow h2's events, so code and readers that know h2 know these. ``stream_ended`` is a
bool here (h2 gives the StreamEnded event or None); a :class:`StreamEnded` still follows every frame that
carried END_STREAM.
"""

from __future__ import annotations

from typing import TypeAlias

Headers: TypeAlias = list[tuple[bytes, bytes]]


class RequestReceived:
    """A client opened a stream with this request head (server side)."""

    __slots__ = ("headers", "stream_ended", "stream_id")

    def __init__(self, stream_id: int, headers: Headers, stream_ended: bool) -> None:
        self.stream_id = stream_id
        self.headers = headers
        self.stream_ended = stream_ended


class RequestRefused:
    """The codec refused a request for a limit (RST_STREAM sent; the stream is never reported otherwise):
    ``protection`` names the limit as the ``ProtectionTriggeredCount`` metric does."""

    __slots__ = ("protection", "stream_id")

    def __init__(self, stream_id: int, protection: str) -> None:
        self.stream_id = stream_id
        self.protection = protection


class ResponseReceived:
    """The final response head on a stream we opened (client side); 1xx heads are not reported."""

    __slots__ = ("headers", "stream_ended", "stream_id")

    def __init__(self, stream_id: int, headers: Headers, stream_ended: bool) -> None:
        self.stream_id = stream_id
        self.headers = headers
        self.stream_ended = stream_ended


class TrailersReceived:
    """A header block after the head and the body: trailers (END_STREAM follows as :class:`StreamEnded`)."""

    __slots__ = ("headers", "stream_id")

    def __init__(self, stream_id: int, headers: Headers) -> None:
        self.stream_id = stream_id
        self.headers = headers


class DataReceived:
    """Body bytes. ``flow_controlled_length`` (padding included) is what to acknowledge once handled."""

    __slots__ = ("data", "flow_controlled_length", "stream_ended", "stream_id")

    def __init__(self, stream_id: int, data: bytes, flow_controlled_length: int, stream_ended: bool) -> None:
        self.stream_id = stream_id
        self.data = data
        self.flow_controlled_length = flow_controlled_length
        self.stream_ended = stream_ended


class StreamEnded:
    """The peer will send nothing more on the stream."""

    __slots__ = ("stream_id",)

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id


class StreamReset:
    """The stream ended abnormally: reset by the peer (``remote_reset``) or by the codec for a stream error
    of the peer's (it sent RST_STREAM with ``error_code`` itself)."""

    __slots__ = ("error_code", "remote_reset", "stream_id")

    def __init__(self, stream_id: int, error_code: int, remote_reset: bool = True) -> None:
        self.stream_id = stream_id
        self.error_code = error_code
        self.remote_reset = remote_reset


class WindowUpdated:
    """The peer opened a flow-control window: of a stream, or (``stream_id`` 0) of the connection."""

    __slots__ = ("delta", "stream_id")

    def __init__(self, stream_id: int, delta: int) -> None:
        self.stream_id = stream_id
        self.delta = delta


class RemoteSettingsChanged:
    """A SETTINGS frame of the peer, applied (and acknowledged): ``changed_settings`` maps each setting it
    carried (its code, :mod:`sc_proxy.http2.settings`) to the new value."""

    __slots__ = ("changed_settings",)

    def __init__(self, changed_settings: dict[int, int]) -> None:
        self.changed_settings = changed_settings


class ConnectionTerminated:
    """The peer sent GOAWAY. With NO_ERROR, streams up to ``last_stream_id`` go on (RFC 9113 §6.8)."""

    __slots__ = ("additional_data", "error_code", "last_stream_id")

    def __init__(self, error_code: int, last_stream_id: int, additional_data: bytes | None) -> None:
        self.error_code = error_code
        self.last_stream_id = last_stream_id
        self.additional_data = additional_data


Event: TypeAlias = (
    RequestReceived
    | RequestRefused
    | ResponseReceived
    | TrailersReceived
    | DataReceived
    | StreamEnded
    | StreamReset
    | WindowUpdated
    | RemoteSettingsChanged
    | ConnectionTerminated
)
