"""HTTP/2 error codes (RFC 9113 §7) and the exceptions of the proxy's HTTP/2 codec."""

from __future__ import annotations

import enum


class ErrorCodes(enum.IntEnum):
    """The error codes of RST_STREAM and GOAWAY frames."""

    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD


def code_name(code: int) -> str:
    """``PROTOCOL_ERROR`` for 1; the number itself for a code this module does not know."""
    try:
        return ErrorCodes(code).name
    except ValueError:
        return str(code)


class H2Error(Exception):
    """Anything the codec refuses to do or to accept."""


class ProtocolError(H2Error):
    """The peer broke the protocol: a connection error. The codec has queued a GOAWAY naming
    ``error_code``; the connection is unusable afterwards."""

    def __init__(self, message: str, error_code: int = ErrorCodes.PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.error_code = error_code


class StreamClosedError(H2Error):
    """A frame was to be sent on a stream that is closed (or was never opened) in that direction."""

    def __init__(self, stream_id: int) -> None:
        super().__init__(f"stream {stream_id} is closed")
        self.stream_id = stream_id


class FlowControlError(H2Error):
    """More data was to be sent than the peer's window (or its frame size) allows."""


class TooManyStreamsError(H2Error):
    """A new stream would exceed the peer's SETTINGS_MAX_CONCURRENT_STREAMS (or it sent GOAWAY)."""


class NoAvailableStreamIDError(H2Error):
    """Every client stream id of the connection was used."""


class LimitExceeded(ProtocolError):
    """A flood defence fired (:mod:`sc_proxy.http2.guard`): a connection error, GOAWAY ENHANCE_YOUR_CALM.
    ``protection`` names the defence as the ``ProtectionTriggeredCount`` metric does."""

    def __init__(self, message: str, protection: str) -> None:
        super().__init__(message, ErrorCodes.ENHANCE_YOUR_CALM)
        self.protection = protection
