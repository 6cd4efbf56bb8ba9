"""The h2 connection as the proxy uses it: settings, configuration and a graceful GOAWAY.

h2 treats any GOAWAY, sent or received, as the end of the connection: its state machine refuses every later
frame. RFC 9113 §6.8 says otherwise: streams up to the GOAWAY's last-stream-id continue to completion. So
the proxy receives a NO_ERROR GOAWAY without closing the h2 state (:class:`ProxyH2Connection`) and sends its
own drain GOAWAY as raw bytes (:func:`goaway_frame`), leaving h2 able to finish the open streams.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import h2.stream
import h2.utilities
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import ConnectionTerminated, Event, RequestReceived, TrailersReceived
from h2.exceptions import StreamClosedError, StreamIDTooLowError
from h2.settings import SettingCodes, Settings
from h2.stream import STREAM_OPEN, H2Stream, StreamState
from h2.utilities import HeaderValidationFlags
from hyperframe.frame import Frame, GoAwayFrame, HeadersFrame, RstStreamFrame

from sc_proxy.http2.hpack_decoder import FastDecoder
from sc_proxy.http2.hpack_encoder import FastEncoder
from sc_proxy.http2.validate import check_request

_utf8_encode_headers = h2.utilities.utf8_encode_headers


def _headers_as_bytes(headers: Iterable[Any]) -> Any:
    # h2 rebuilds every header list it sends into new (bytes, bytes) tuples; the proxy's lists hold such
    # tuples already, so they go on as they are (anything else still takes h2's conversion).
    if type(headers) is list:
        for header in headers:
            if type(header) is not tuple or type(header[0]) is not bytes or type(header[1]) is not bytes:
                return _utf8_encode_headers(headers)
        return headers
    return _utf8_encode_headers(headers)


h2.stream.utf8_encode_headers = _headers_as_bytes  # type: ignore[attr-defined]


#: The connection preface a prior-knowledge HTTP/2 client sends first (RFC 9113 §3.4).
PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

#: Flow-control windows we advertise. They bound what the proxy may hold per stream / per connection when
#: the other side is slower: data is acknowledged only once it was handed to the other side.
STREAM_WINDOW: Final = 256 * 1024
CONNECTION_WINDOW: Final = 1024 * 1024
#: Concurrent streams a client may open on one downstream connection.
MAX_CONCURRENT_STREAMS: Final = 128
MAX_FRAME_SIZE: Final = 16384


class _ProxyConfiguration(H2Configuration):
    """H2Configuration whose options are plain attributes. h2 reads them on every frame and stream sent or
    received; the base class's validating descriptors make each read a Python call (up to 9 % of the
    proxy's samples). The values are set once here, from literals, so their validation is not missed."""

    client_side = False
    validate_outbound_headers = False
    normalize_outbound_headers = False
    split_outbound_cookies = False
    validate_inbound_headers = False
    normalize_inbound_headers = False
    header_encoding = None


class _UncheckedStream(H2Stream):
    """An h2 stream of a connection where h2 neither validates nor normalises header fields: the flags h2
    builds for those steps (several isinstance checks and a named tuple, per header block sent or
    received) are never read, so a constant stands in for them."""

    def _build_hdr_validation_flags(self, events: Any) -> HeaderValidationFlags:
        return _UNUSED_FLAGS


_UNUSED_FLAGS: Final = HeaderValidationFlags(
    is_client=False, is_trailer=False, is_response_header=False, is_push_promise=False
)


class ProxyH2Connection(H2Connection):
    """An h2 connection that lets streams below a graceful GOAWAY finish, and codes header blocks with
    :class:`~sc_proxy.http2.hpack_encoder.FastEncoder` and :class:`~sc_proxy.http2.hpack_decoder.FastDecoder`
    (same wire format and checks as hpack's, a fraction of the CPU)."""

    def __init__(self, config: H2Configuration) -> None:
        super().__init__(config)
        #: Check request heads and trailers with :func:`~sc_proxy.http2.validate.check_request` (the
        #: downstream side, with h2's own slower inbound validation off).
        self.check_requests = False
        self._headers_unchecked = not (
            config.validate_inbound_headers
            or config.normalize_inbound_headers
            or config.validate_outbound_headers
            or config.normalize_outbound_headers
        )
        self.encoder = FastEncoder()
        decoder = FastDecoder()
        decoder.max_header_list_size = self.decoder.max_header_list_size
        decoder.max_allowed_table_size = self.decoder.max_allowed_table_size
        self.decoder = decoder

    def _begin_new_stream(self, stream_id: int, allowed_ids: Any) -> H2Stream:
        stream = super()._begin_new_stream(stream_id, allowed_ids)
        if self._headers_unchecked:
            stream.__class__ = _UncheckedStream
        return stream

    def _receive_frame(self, frame: Frame) -> list[Event]:
        # h2's own, less its first line, a trace call that formats repr(frame) for every frame received
        # although the logger discards it (about 4 % of the proxy's CPU per request).
        try:
            frames, events = self._frame_dispatch_table[frame.__class__](frame)
        except StreamClosedError as e:
            # A frame on a stream we reset: RST_STREAM again (a stream error); otherwise a connection error.
            if self._stream_is_closed_by_reset(e.stream_id):
                f = RstStreamFrame(e.stream_id)
                f.error_code = e.error_code
                self._prepare_for_sending([f])
                events = e._events
            else:
                raise
        except StreamIDTooLowError as e:
            # A frame on a stream already forgotten: a stream error if it was reset, else a connection error.
            if self._stream_is_closed_by_reset(e.stream_id):
                f = RstStreamFrame(e.stream_id)
                f.error_code = ErrorCodes.STREAM_CLOSED
                self._prepare_for_sending([f])
                events = []
            elif self._stream_is_closed_by_end(e.stream_id):
                raise StreamClosedError(e.stream_id) from e
            else:
                raise
        else:
            self._prepare_for_sending(frames)
        return events  # type: ignore[no-any-return]

    def _prepare_for_sending(self, frames: list[Frame]) -> None:
        # h2's own, less its assertion that every frame fits the peer's frame size (a generator run per
        # call; h2 builds its frames to fit).
        if frames:
            if len(frames) == 1:
                self._data_to_send += frames[0].serialize()
            else:
                self._data_to_send += b"".join([f.serialize() for f in frames])

    def _receive_headers_frame(self, frame: HeadersFrame) -> tuple[list[Frame], list[Event]]:
        frames, events = super()._receive_headers_frame(frame)
        if self.check_requests:
            for ev in events:
                t = type(ev)
                if t is RequestReceived:
                    check_request(ev.headers, trailers=False)  # type: ignore[attr-defined]
                elif t is TrailersReceived:
                    check_request(ev.headers, trailers=True)  # type: ignore[attr-defined]
        return frames, events

    # h2 counts the open streams of a connection before opening each stream, visiting every stream it
    # holds (and forgetting closed ones on the way): a few microseconds per stream opened with 64 streams
    # in flight. Its only use of the count is "would one more exceed the limit?", and the number of
    # streams held, closed ones included, bounds the count from above: while that number is below the
    # limit (and below _SCAN_AT, so closed streams are still forgotten regularly) it gives the same answer.
    _SCAN_AT: Final = 128

    @property
    def open_outbound_streams(self) -> int:
        """The open streams we initiated, or an upper bound of them below the peer's limit."""
        return self._open_or_bound(int(self.config.client_side), self.remote_settings.max_concurrent_streams)

    @property
    def open_inbound_streams(self) -> int:
        """The open streams the peer initiated, or an upper bound of them below our limit."""
        return self._open_or_bound(
            int(not self.config.client_side), self.local_settings.max_concurrent_streams
        )

    def _open_or_bound(self, remainder: int, limit: int) -> int:
        held = len(self.streams)
        if held < limit and held < self._SCAN_AT:
            return held
        return self._open_streams(remainder)

    def _open_streams(self, remainder: int) -> int:
        # h2's count, reading each stream's state once instead of through two properties; closed streams
        # are forgotten as h2 does.
        count = 0
        closed: list[int] = []
        closed_state = StreamState.CLOSED
        for stream_id, stream in self.streams.items():
            state = stream.state_machine.state
            if STREAM_OPEN[state]:
                if stream_id % 2 == remainder:
                    count += 1
            elif state == closed_state:
                closed.append(stream_id)
        for stream_id in closed:
            self._closed_streams[stream_id] = self.streams.pop(stream_id).closed_by
        return count

    def _receive_goaway_frame(self, frame: GoAwayFrame) -> tuple[list[Any], list[Event]]:
        if frame.error_code:
            # An error GOAWAY ends the connection for good: h2's own handling.
            return super()._receive_goaway_frame(frame)
        event = ConnectionTerminated()
        event.error_code = frame.error_code
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]


def server_connection(max_header_bytes: int) -> ProxyH2Connection:
    """The downstream side: validates what clients send (they may be hostile), trusts what we send."""
    conn = ProxyH2Connection(
        _ProxyConfiguration(
            client_side=False,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            # Validated by check_request instead, the same rules in one pass. Normalisation would only
            # join cookie fields, which a proxy must not do.
            validate_inbound_headers=False,
            normalize_inbound_headers=False,
        )
    )
    conn.check_requests = True
    _local_settings(conn, max_header_bytes, MAX_CONCURRENT_STREAMS)
    return conn


def client_connection(max_header_bytes: int) -> ProxyH2Connection:
    """The upstream side: the task's app (or the next proxy) is trusted to speak valid HTTP/2 header
    fields; skipping h2's per-field validation there is a measurable share of the codec's time."""
    conn = ProxyH2Connection(
        _ProxyConfiguration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            validate_inbound_headers=False,
            normalize_inbound_headers=False,
        )
    )
    _local_settings(conn, max_header_bytes, 0)  # no pushed streams either (ENABLE_PUSH 0)
    return conn


def _local_settings(conn: H2Connection, max_header_bytes: int, max_streams: int) -> None:
    # A fresh Settings object: values assigned to h2's own one stay pending (unsent) until acknowledged.
    values = {
        SettingCodes.MAX_CONCURRENT_STREAMS: max_streams,
        SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
        SettingCodes.MAX_HEADER_LIST_SIZE: max_header_bytes,
        SettingCodes.MAX_FRAME_SIZE: MAX_FRAME_SIZE,
    }
    if conn.config.client_side:
        values[SettingCodes.ENABLE_PUSH] = 0
    conn.local_settings = Settings(client=conn.config.client_side, initial_values=values)


def start(conn: H2Connection) -> None:
    """Send the preface/SETTINGS and open the connection window to :data:`CONNECTION_WINDOW`."""
    conn.initiate_connection()
    conn.increment_flow_control_window(CONNECTION_WINDOW - 65535)


def goaway_frame(last_stream_id: int, error_code: int = 0) -> bytes:
    """A GOAWAY frame, written beside h2 so its state machine keeps serving open streams."""
    frame = GoAwayFrame(stream_id=0, last_stream_id=last_stream_id, error_code=error_code)
    return bytes(frame.serialize())


def is_preface_prefix(data: bytes) -> bool:
    """True while ``data`` may still turn out to be the HTTP/2 preface."""
    n = min(len(data), len(PREFACE))
    return data[:n] == PREFACE[:n]
