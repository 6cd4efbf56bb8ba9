"""One HTTP/2 connection's state (RFC 9113): frames in, events out; calls in, frames queued to send.

The proxy's own codec, in place of h2's. h2 is general (every role, priorities, push, header validation and
normalisation as options, one event object per frame state transition); a proxy hop through it cost about
290 µs of CPU per request, 55-65 % of it inside h2 and hyperframe (``hack/bench-http2-path --profile``).
This codec does what the proxy needs and nothing else: prior-knowledge connections, a client or a server
role, no push, no priorities (PRIORITY is read and ignored, as RFC 9113 allows). Frames are parsed in one
loop from the 9-byte head; header blocks go through
:class:`~sc_proxy.http2.hpack_decoder.FastDecoder` / :class:`~sc_proxy.http2.hpack_encoder.FastEncoder`.

What it enforces, as the RFC asks: the preface and a first SETTINGS; frame sizes per type and
SETTINGS_MAX_FRAME_SIZE; stream-id rules (new ids increase, idle and closed streams); header blocks
contiguous (CONTINUATION), bounded and decodable; SETTINGS values; flow control in both directions (the
peer's windows before sending, ours on receipt, overflow of either); our SETTINGS_MAX_CONCURRENT_STREAMS;
request heads and trailers (:func:`~sc_proxy.http2.validate.check_request`, server side) and a request
body's ``content-length``. A connection error raises :class:`~sc_proxy.http2.errors.ProtocolError` with a
GOAWAY queued; a stream error queues RST_STREAM and reports :class:`~sc_proxy.http2.events.StreamReset`.

Given a :class:`~sc_proxy.http2.guard.FloodGuard` (the server side), the flood defences: streams reset or
refused, frames without work, WINDOW_UPDATE frames and unread answers are counted there, which raises
:class:`~sc_proxy.http2.errors.LimitExceeded` (GOAWAY ENHANCE_YOUR_CALM) past a limit; so do more than
twice ``max_concurrent_streams`` streams opened in one read (nginx's per-iteration limit), which bounds the
work one read of a rapid-reset client costs. A request with more than ``max_header_count`` header fields
is refused with RST_STREAM INTERNAL_ERROR (what Envoy's codec does) and reported as
:class:`~sc_proxy.http2.events.RequestRefused`. A stream the peer opened and reset (or broke, a stream
error) within one :meth:`Connection.receive_data` is not reported at all: nothing is done for a request
already cancelled.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Final

from hpack.exceptions import HPACKError, OversizedHeaderListError

from sc_proxy.http2 import frames
from sc_proxy.http2.errors import (
    ErrorCodes,
    FlowControlError,
    LimitExceeded,
    NoAvailableStreamIDError,
    ProtocolError,
    StreamClosedError,
    TooManyStreamsError,
)
from sc_proxy.http2.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    Headers,
    RemoteSettingsChanged,
    RequestReceived,
    RequestRefused,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from sc_proxy.http2.frames import (
    ACK,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    HEADERS,
    MAX_WINDOW,
    PADDED,
    PRIORITY_FLAG,
    SETTINGS,
    SettingCodes,
    head,
)
from sc_proxy.http2.guard import RAPID_RESET
from sc_proxy.http2.hpack_decoder import FastDecoder
from sc_proxy.http2.hpack_encoder import FastEncoder
from sc_proxy.http2.validate import check_request

if TYPE_CHECKING:
    from sc_proxy.http2.guard import FloodGuard

_PROTOCOL: Final = ErrorCodes.PROTOCOL_ERROR
_FRAME_SIZE: Final = ErrorCodes.FRAME_SIZE_ERROR
_FLOW: Final = ErrorCodes.FLOW_CONTROL_ERROR
_CLOSED: Final = ErrorCodes.STREAM_CLOSED
_HEAD_UNPACK: Final = frames.HEAD.unpack_from
#: Frames one header block may take (HEADERS and its CONTINUATIONs), as h2 allows.
_MAX_CONTINUATIONS: Final = 64
#: Streams we reset whose late frames are still ignored quietly (RFC 9113 §5.1, "closed").
_RESET_MEMORY: Final = 1024
#: The code of a request refused for its header count: Envoy's codec fails nghttp2's header callback,
#: which resets the stream with INTERNAL_ERROR.
_TOO_MANY_HEADERS: Final = ErrorCodes.INTERNAL_ERROR


class _Stream:
    __slots__ = (
        "expected", "heads_in", "in_window", "inbound", "out_window", "received", "recv_open", "send_open",
        "sid", "unacked",
    )  # fmt: skip

    def __init__(self, sid: int, inbound: bool, in_window: int, out_window: int) -> None:
        self.sid = sid
        self.inbound = inbound  # opened by the peer
        self.recv_open = True  # the peer may still send (no END_STREAM from it yet)
        self.send_open = True  # we may still send
        self.heads_in = False  # the (final) head arrived: the next header block is trailers
        self.in_window = in_window  # what the peer may still send on this stream
        self.out_window = out_window  # what we may still send
        self.unacked = 0  # bytes handled by the application, not yet returned by WINDOW_UPDATE
        self.expected: int | None = None  # a request's content-length
        self.received = 0


def _content_length(headers: Headers) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            if not value.isdigit():
                raise ProtocolError(f"invalid content-length {value!r}")
            return int(value)
    return None


def _field_count(headers: Headers) -> int:
    """Header fields as HTTP/1.1 would count them: no pseudo-header fields, the cookie crumbs of RFC 9113
    §8.2.3 as one field."""
    n = 0
    cookies = 0
    for name, _value in headers:
        if name[:1] == b":":
            continue
        if name == b"cookie":
            cookies += 1
            if cookies > 1:
                continue
        n += 1
    return n


def _informational(headers: Headers) -> bool:
    for name, value in headers:
        if name == b":status":
            return value[:1] == b"1"
    return False


class Connection:
    """The HTTP/2 state of one connection, client (``client_side``) or server.

    ``max_concurrent_streams`` limits the streams the peer may open (a server's; 0 for a client, which
    takes none); ``stream_window`` is the flow-control window advertised per stream, and the connection's
    window can be raised with :meth:`increment_flow_control_window`. Nothing is written anywhere: what to
    send accumulates until :meth:`data_to_send`.
    """

    def __init__(
        self,
        client_side: bool,
        *,
        max_header_list_size: int,
        max_concurrent_streams: int,
        stream_window: int,
        max_frame_size: int = frames.DEFAULT_FRAME_SIZE,
        check_requests: bool = False,
        max_header_count: int | None = None,
        guard: FloodGuard | None = None,
    ) -> None:
        self.client_side = client_side
        #: Check request heads and trailers (the server side of the proxy: clients may be hostile).
        self.check_requests = check_requests
        self._max_fields = max_header_count
        self.guard = guard
        # Streams the peer opened in the current receive_data, and those of them it reset in it too.
        self._fresh: set[int] = set()
        self._cancelled: set[int] = set()
        # A limit passed outside receive_data (a stream we refused): raised by the next receive_data.
        self._pending_error: LimitExceeded | None = None
        self.streams: dict[int, _Stream] = {}
        self.local_settings: dict[int, int] = {
            SettingCodes.MAX_CONCURRENT_STREAMS: max_concurrent_streams,
            SettingCodes.INITIAL_WINDOW_SIZE: stream_window,
            SettingCodes.MAX_HEADER_LIST_SIZE: max_header_list_size,
            SettingCodes.MAX_FRAME_SIZE: max_frame_size,
        }
        if client_side:
            self.local_settings[SettingCodes.ENABLE_PUSH] = 0
        self._max_in_streams = max_concurrent_streams
        self._max_fresh = 2 * max_concurrent_streams
        self._stream_window = stream_window
        self._max_frame = max_frame_size
        # A header block arriving in pieces may take, compressed, at most this much.
        self._block_limit = 2 * max_header_list_size + max_frame_size
        self.encoder = FastEncoder()
        self.decoder = FastDecoder()
        self.decoder.max_header_list_size = max_header_list_size

        #: The peer's settings as they stand.
        self.remote_max_concurrent_streams = MAX_WINDOW
        self.remote_initial_window = frames.DEFAULT_WINDOW
        self.max_outbound_frame_size = frames.DEFAULT_FRAME_SIZE
        self.remote_max_header_list_size: int | None = None

        self._conn_in = frames.DEFAULT_WINDOW  # what the peer may still send on the connection
        self._conn_target = frames.DEFAULT_WINDOW  # the connection window we keep open
        self._conn_unacked = 0
        self._conn_out = frames.DEFAULT_WINDOW  # what we may still send on the connection

        self.highest_inbound_stream_id = 0
        self._next_out = 1 if client_side else 2
        self._open_in = 0
        self._open_out = 0
        self._reset_ids: set[int] = set()
        self._reset_order: deque[int] = deque()
        #: The peer sent GOAWAY: no new stream of ours.
        self.goaway_received = False
        #: A connection error happened: the GOAWAY is queued, nothing more is taken.
        self.failed = False

        self._out: list[bytes] = []
        self._buf = b""
        self._awaiting_preface = not client_side
        self._settings_seen = False
        # A header block waiting for CONTINUATION: stream id, HEADERS flags, the pieces so far, their size.
        self._cont: tuple[int, int, list[bytes]] | None = None
        self._cont_size = 0

    # -- starting ----------------------------------------------------------------------------------------
    def initiate_connection(self) -> None:
        """Queue the preface (client side) and our SETTINGS."""
        if self.client_side:
            self._out.append(frames.PREFACE)
        self._out.append(frames.settings(self.local_settings))

    def increment_flow_control_window(self, increment: int) -> None:
        """Open the connection's receive window by ``increment`` (kept at the new size from now on)."""
        self._out.append(frames.window_update(0, increment))
        self._conn_in += increment
        self._conn_target += increment

    # -- what is queued ----------------------------------------------------------------------------------
    def data_to_send(self) -> bytes:
        out = self._out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return data

    # -- counts ------------------------------------------------------------------------------------------
    @property
    def open_inbound_streams(self) -> int:
        return self._open_in

    @property
    def open_outbound_streams(self) -> int:
        return self._open_out

    # -- sending -----------------------------------------------------------------------------------------
    def get_next_available_stream_id(self) -> int:
        if not self.client_side:
            raise StreamClosedError(0)
        if self._next_out > MAX_WINDOW:
            raise NoAvailableStreamIDError("every client stream id of this connection was used")
        return self._next_out

    def _open_outbound(self, sid: int) -> _Stream:
        if not self.client_side or sid & 1 == 0 or sid < self._next_out:
            raise StreamClosedError(sid)
        if self.goaway_received:
            raise TooManyStreamsError("the peer sent GOAWAY: no new streams")
        if self._open_out >= self.remote_max_concurrent_streams:
            raise TooManyStreamsError(
                f"{self._open_out} streams open, the peer's limit is {self.remote_max_concurrent_streams}"
            )
        if sid > MAX_WINDOW:
            raise NoAvailableStreamIDError("every client stream id of this connection was used")
        self._next_out = sid + 2
        s = _Stream(sid, False, self._stream_window, self.remote_initial_window)
        self.streams[sid] = s
        self._open_out += 1
        return s

    def send_headers(self, stream_id: int, headers: Headers, end_stream: bool = False) -> None:
        """A header block: a request (opening the stream, client side), a response head, or trailers."""
        s = self.streams.get(stream_id)
        if s is None:
            s = self._open_outbound(stream_id)
        elif not s.send_open:
            raise StreamClosedError(stream_id)
        block = self.encoder.encode(headers)
        flags = END_STREAM if end_stream else 0
        size = self.max_outbound_frame_size
        out = self._out
        n = len(block)
        if n <= size:
            out.append(head(n, HEADERS, flags | END_HEADERS, stream_id))
            out.append(block)
        else:
            out.append(head(size, HEADERS, flags, stream_id))
            out.append(block[:size])
            for pos in range(size, n, size):
                piece = block[pos : pos + size]
                last = pos + size >= n
                out.append(head(len(piece), CONTINUATION, END_HEADERS if last else 0, stream_id))
                out.append(piece)
        if end_stream:
            self._local_end(s)

    def _sendable(self, stream_id: int) -> _Stream:
        """The stream, open for sending; :class:`StreamClosedError` otherwise."""
        s = self.streams.get(stream_id)
        if s is None or not s.send_open:
            raise StreamClosedError(stream_id)
        return s

    def local_flow_control_window(self, stream_id: int) -> int:
        """How much DATA may be sent on the stream now (the smaller of its window and the connection's)."""
        s = self._sendable(stream_id)
        w = s.out_window
        c = self._conn_out
        return w if w < c else c

    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        """One DATA frame: ``data`` must fit the windows and the peer's frame size."""
        s = self._sendable(stream_id)
        n = len(data)
        if n > s.out_window or n > self._conn_out or n > self.max_outbound_frame_size:
            raise FlowControlError(
                f"{n} bytes on stream {stream_id}: window {min(s.out_window, self._conn_out)}, "
                f"frame size {self.max_outbound_frame_size}"
            )
        s.out_window -= n
        self._conn_out -= n
        if self.guard is not None:
            self.guard.data_sent()
        self._out.append(head(n, DATA, END_STREAM if end_stream else 0, stream_id))
        if n:
            self._out.append(data)
        if end_stream:
            self._local_end(s)

    def end_stream(self, stream_id: int) -> None:
        """END_STREAM alone (an empty DATA frame)."""
        s = self._sendable(stream_id)
        self._out.append(head(0, DATA, END_STREAM, stream_id))
        self._local_end(s)

    def reset_stream(self, stream_id: int, error_code: int = 0) -> None:
        """RST_STREAM: the stream ends at once, both ways."""
        s = self.streams.get(stream_id)
        if s is None:
            raise StreamClosedError(stream_id)
        self._out.append(frames.rst_stream(stream_id, error_code))
        self._close(s)
        self._remember_reset(stream_id)
        if s.inbound and error_code == ErrorCodes.REFUSED_STREAM and self.guard is not None:
            try:
                self.guard.stream_reset()
            except LimitExceeded as exc:
                self._pending_error = exc

    def acknowledge_received_data(self, acknowledged_size: int, stream_id: int) -> None:
        """``acknowledged_size`` bytes of DATA received on the stream were handled: let the peer send as
        much again (WINDOW_UPDATE once half a window was handled, per stream and per connection)."""
        if acknowledged_size <= 0:
            return
        unacked = self._conn_unacked + acknowledged_size
        if unacked >= self._conn_target >> 1:
            self._out.append(frames.window_update(0, unacked))
            self._conn_in += unacked
            unacked = 0
        self._conn_unacked = unacked
        s = self.streams.get(stream_id)
        if s is not None and s.recv_open:
            unacked = s.unacked + acknowledged_size
            if unacked >= self._stream_window >> 1:
                self._out.append(frames.window_update(stream_id, unacked))
                s.in_window += unacked
                unacked = 0
            s.unacked = unacked

    def _local_end(self, s: _Stream) -> None:
        s.send_open = False
        if not s.recv_open:
            self._close(s)

    def _close(self, s: _Stream) -> None:
        del self.streams[s.sid]
        if s.inbound:
            self._open_in -= 1
        else:
            self._open_out -= 1

    def _remember_reset(self, sid: int) -> None:
        self._reset_ids.add(sid)
        order = self._reset_order
        order.append(sid)
        if len(order) > _RESET_MEMORY:
            self._reset_ids.discard(order.popleft())

    # -- receiving ---------------------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> list[Event]:
        """Take bytes from the peer; the events of every complete frame. On a connection error, a GOAWAY
        is queued and :class:`ProtocolError` raised (the events of the same read are lost with it)."""
        if self.failed:
            raise ProtocolError("the connection already failed")
        events: list[Event] = []
        try:
            if self._pending_error is not None:
                raise self._pending_error
            self._receive(data, events)
        except ProtocolError as exc:
            self.failed = True
            self._out.append(frames.goaway(self.highest_inbound_stream_id, exc.error_code))
            raise
        if self._fresh:
            self._fresh.clear()
            if self._cancelled:
                events = self._drop_cancelled(events)
        return events

    def _drop_cancelled(self, events: list[Event]) -> list[Event]:
        """Leave out the events of streams opened and reset within this read: the application never
        learns of a request cancelled before it could act. Their DATA returns its connection window."""
        cancelled = self._cancelled
        kept: list[Event] = []
        for ev in events:
            if getattr(ev, "stream_id", 0) in cancelled and type(ev) is not RequestRefused:
                if type(ev) is DataReceived:
                    self._return_connection_window(ev.flow_controlled_length)
                continue
            kept.append(ev)
        cancelled.clear()
        return kept

    def answers_delivered(self) -> None:
        """The I/O layer saw everything written so far taken by the peer (:mod:`~sc_proxy.http2.guard`)."""
        if self.guard is not None:
            self.guard.answers_delivered()

    def _receive(self, data: bytes, events: list[Event]) -> None:
        buf = self._buf + data if self._buf else data
        i = 0
        n = len(buf)
        if self._awaiting_preface:
            if n < len(frames.PREFACE):
                if frames.PREFACE[:n] != buf:
                    raise ProtocolError("invalid connection preface")
                self._buf = buf
                return
            if buf[: len(frames.PREFACE)] != frames.PREFACE:
                raise ProtocolError("invalid connection preface")
            self._awaiting_preface = False
            i = len(frames.PREFACE)
        streams = self.streams
        max_frame = self._max_frame
        guard = self.guard
        while n - i >= 9:
            hi, lo, ftype, flags, sid = _HEAD_UNPACK(buf, i)
            length = hi << 8 | lo
            if length > max_frame:
                raise ProtocolError(f"a frame of {length} bytes, above SETTINGS_MAX_FRAME_SIZE", _FRAME_SIZE)
            end = i + 9 + length
            if end > n:
                break
            sid &= 0x7FFFFFFF
            payload = buf[i + 9 : end]
            i = end
            if self._cont is not None and ftype != CONTINUATION:
                raise ProtocolError("a header block was not continued by CONTINUATION")
            if not self._settings_seen:
                if ftype != SETTINGS or flags & ACK:
                    raise ProtocolError("the peer's first frame was not SETTINGS")
                self._settings_seen = True
            if ftype == DATA:
                if not length and guard is not None and not flags & END_STREAM:
                    guard.control_frame()  # an empty DATA frame: work for nothing
                s = streams.get(sid)
                if s is not None and s.recv_open and s.heads_in and not flags & PADDED and s.expected is None:
                    # The common case, inline: an open stream's unpadded DATA.
                    self._conn_in -= length
                    s.in_window -= length
                    if self._conn_in >= 0 and s.in_window >= 0:
                        ended = bool(flags & END_STREAM)
                        events.append(DataReceived(sid, payload, length, ended))
                        if ended:
                            s.recv_open = False
                            events.append(StreamEnded(sid))
                            if not s.send_open:
                                self._close(s)
                        continue
                    self._conn_in += length
                    s.in_window += length
                self._on_data(sid, flags, payload, events)
            elif ftype == HEADERS:
                self._on_headers(sid, flags, payload, events)
            elif ftype == frames.WINDOW_UPDATE:
                if guard is not None:
                    guard.window_update()
                self._on_window_update(sid, payload, events)
            elif ftype == SETTINGS:
                if guard is not None:
                    guard.control_frame()
                self._on_settings(sid, flags, payload, events)
            elif ftype == CONTINUATION:
                self._on_continuation(sid, flags, payload, events)
            elif ftype == frames.RST_STREAM:
                self._on_rst_stream(sid, payload, events)
            elif ftype == frames.PING:
                if guard is not None:
                    guard.control_frame()
                self._on_ping(sid, flags, payload)
            elif ftype == frames.GOAWAY:
                self._on_goaway(sid, payload, events)
            elif ftype == frames.PRIORITY:
                if not sid:
                    raise ProtocolError("PRIORITY on stream 0")
                if length != 5:
                    raise ProtocolError("PRIORITY frame not of 5 bytes", _FRAME_SIZE)
                if guard is not None:
                    guard.control_frame()
            elif ftype == frames.PUSH_PROMISE:
                raise ProtocolError("PUSH_PROMISE, with push disabled")
            elif guard is not None:
                guard.control_frame()  # frames of unknown types are ignored (RFC 9113 §5.5), at a cost
        self._buf = buf[i:] if i < n else b""

    def _is_idle(self, sid: int) -> bool:
        """Never opened: above every id its opener used so far."""
        if (sid & 1 == 1) == self.client_side:
            return sid >= self._next_out
        return sid > self.highest_inbound_stream_id

    def _stream_error(self, s: _Stream, code: int, events: list[Event]) -> None:
        """The peer broke the rules on one stream: RST_STREAM, and the stream's users learn of it."""
        self._out.append(frames.rst_stream(s.sid, code))
        self._close(s)
        self._remember_reset(s.sid)
        events.append(StreamReset(s.sid, code, remote_reset=False))
        guard = self.guard
        if guard is not None:
            guard.answer_queued()
            if s.inbound:
                if s.sid in self._fresh:
                    self._cancelled.add(s.sid)  # broken within the read that opened it: never reported
                guard.stream_reset()

    def _return_connection_window(self, length: int) -> None:
        """DATA that will never reach the application: its connection window goes back at once."""
        self.acknowledge_received_data(length, 0)

    def _on_data(self, sid: int, flags: int, payload: bytes, events: list[Event]) -> None:
        if not sid:
            raise ProtocolError("DATA on stream 0")
        length = len(payload)
        self._conn_in -= length
        if self._conn_in < 0:
            raise ProtocolError("DATA beyond the connection's flow-control window", _FLOW)
        data = payload
        if flags & PADDED:
            if not length or payload[0] >= length:
                raise ProtocolError("DATA padding longer than the frame")
            data = payload[1 : length - payload[0]]
        s = self.streams.get(sid)
        if s is None or not s.recv_open or not s.heads_in:
            self._return_connection_window(length)
            if s is None:
                if self._is_idle(sid):
                    raise ProtocolError(f"DATA on idle stream {sid}")
                if sid not in self._reset_ids:
                    self._out.append(frames.rst_stream(sid, _CLOSED))
                    if self.guard is not None:
                        self.guard.answer_queued()
                return
            self._stream_error(s, _CLOSED if not s.recv_open else _PROTOCOL, events)
            return
        s.in_window -= length
        if s.in_window < 0:
            self._return_connection_window(length)
            self._stream_error(s, _FLOW, events)
            return
        ended = bool(flags & END_STREAM)
        if s.expected is not None:
            s.received += len(data)
            if s.received > s.expected or (ended and s.received != s.expected):
                self._return_connection_window(length)
                self._stream_error(s, _PROTOCOL, events)
                return
        events.append(DataReceived(sid, data, length, ended))
        if ended:
            s.recv_open = False
            events.append(StreamEnded(sid))
            if not s.send_open:
                self._close(s)

    def _on_headers(self, sid: int, flags: int, payload: bytes, events: list[Event]) -> None:
        if not sid:
            raise ProtocolError("HEADERS on stream 0")
        start = 0
        end = len(payload)
        if flags & PADDED:
            if not end:
                raise ProtocolError("HEADERS padding longer than the frame")
            end -= payload[0]
            start = 1
        if flags & PRIORITY_FLAG:
            start += 5
        if start > end:
            raise ProtocolError("HEADERS padding longer than the frame")
        fragment = payload[start:end] if start or end < len(payload) else payload
        if not fragment and self.guard is not None and not flags & END_STREAM:
            self.guard.control_frame()  # an empty HEADERS frame: work for nothing
        if flags & END_HEADERS:
            self._on_header_block(sid, flags, fragment, events)
        else:
            self._cont = (sid, flags, [fragment])
            self._cont_size = len(fragment)
            if self._cont_size > self._block_limit:
                raise ProtocolError("a header block too large", ErrorCodes.ENHANCE_YOUR_CALM)

    def _on_continuation(self, sid: int, flags: int, payload: bytes, events: list[Event]) -> None:
        cont = self._cont
        if cont is None or cont[0] != sid:
            raise ProtocolError("CONTINUATION without the HEADERS it continues")
        pieces = cont[2]
        pieces.append(payload)
        self._cont_size += len(payload)
        if self._cont_size > self._block_limit:
            raise ProtocolError("a header block too large", ErrorCodes.ENHANCE_YOUR_CALM)
        if len(pieces) > _MAX_CONTINUATIONS:
            # Empty CONTINUATION frames add no bytes but cost a frame each (the 2024 "CONTINUATION flood").
            raise ProtocolError("too many CONTINUATION frames", ErrorCodes.ENHANCE_YOUR_CALM)
        if flags & END_HEADERS:
            self._cont = None
            self._on_header_block(sid, cont[1], b"".join(cont[2]), events)

    def _on_header_block(self, sid: int, flags: int, block: bytes, events: list[Event]) -> None:
        # Decoded whatever becomes of the stream: the HPACK table is shared by the whole connection.
        try:
            headers: Headers = self.decoder.decode(block, raw=True)  # type: ignore[assignment]
        except OversizedHeaderListError as exc:
            raise ProtocolError(f"header list too large: {exc}", ErrorCodes.ENHANCE_YOUR_CALM) from exc
        except (HPACKError, IndexError, ValueError, TypeError) as exc:
            raise ProtocolError(f"undecodable header block: {exc}", ErrorCodes.COMPRESSION_ERROR) from exc
        ended = bool(flags & END_STREAM)
        s = self.streams.get(sid)
        if s is None:
            if self._is_idle(sid):
                if self.client_side or sid & 1 == 0:
                    raise ProtocolError(f"HEADERS opening stream {sid}, which the peer may not open")
                self._open_inbound(sid, headers, ended, events)
                return
            if sid in self._reset_ids:
                return  # trailers of a stream we reset: ignored
            raise ProtocolError(f"HEADERS on closed stream {sid}", _CLOSED)
        if not s.recv_open:
            self._stream_error(s, _CLOSED, events)
            return
        if s.heads_in:
            # Trailers: they end the stream.
            if not ended:
                self._stream_error(s, _PROTOCOL, events)
                return
            if self.check_requests:
                check_request(headers, trailers=True)
            limit = self._max_fields
            if limit is not None and len(headers) > limit and _field_count(headers) > limit:
                self._stream_error(s, _TOO_MANY_HEADERS, events)
                events.append(RequestRefused(sid, "header_count"))
                return
            if s.expected is not None and s.received != s.expected:
                self._stream_error(s, _PROTOCOL, events)
                return
            events.append(TrailersReceived(sid, headers))
        else:
            # A response head (client side): 1xx heads are interim, the final one follows.
            if _informational(headers):
                if ended:
                    self._stream_error(s, _PROTOCOL, events)
                return
            s.heads_in = True
            events.append(ResponseReceived(sid, headers, ended))
        if ended:
            s.recv_open = False
            events.append(StreamEnded(sid))
            if not s.send_open:
                self._close(s)

    def _open_inbound(self, sid: int, headers: Headers, ended: bool, events: list[Event]) -> None:
        if self.guard is not None:
            fresh = self._fresh
            fresh.add(sid)
            if len(fresh) > self._max_fresh:
                # At most max_concurrent_streams of them can still be open: the others were reset within
                # this read. nginx refuses new streams beyond twice its limit in one event-loop iteration.
                raise LimitExceeded(f"more than {self._max_fresh} streams opened in one read", RAPID_RESET)
        if self.check_requests:
            check_request(headers, trailers=False)
        self.highest_inbound_stream_id = sid
        if self._open_in >= self._max_in_streams:
            raise ProtocolError(
                f"stream {sid} beyond SETTINGS_MAX_CONCURRENT_STREAMS {self._max_in_streams}", _PROTOCOL
            )
        limit = self._max_fields
        if limit is not None and len(headers) > limit and _field_count(headers) > limit:
            # Refused before it is a stream: its late frames are ignored as those of a stream we reset.
            self._out.append(frames.rst_stream(sid, _TOO_MANY_HEADERS))
            self._remember_reset(sid)
            events.append(RequestRefused(sid, "header_count"))
            if self.guard is not None:
                self.guard.answer_queued()
                self.guard.stream_reset()
            return
        if self.guard is not None:
            self.guard.stream_opened()
        s = _Stream(sid, True, self._stream_window, self.remote_initial_window)
        s.heads_in = True
        s.expected = _content_length(headers)
        if ended and s.expected:
            raise ProtocolError(f"stream {sid}: content-length {s.expected} without a body")
        self.streams[sid] = s
        self._open_in += 1
        events.append(RequestReceived(sid, headers, ended))
        if ended:
            s.recv_open = False
            events.append(StreamEnded(sid))

    def _on_rst_stream(self, sid: int, payload: bytes, events: list[Event]) -> None:
        if not sid:
            raise ProtocolError("RST_STREAM on stream 0")
        if len(payload) != 4:
            raise ProtocolError("RST_STREAM frame not of 4 bytes", _FRAME_SIZE)
        s = self.streams.get(sid)
        guard = self.guard
        if s is None:
            if self._is_idle(sid):
                raise ProtocolError(f"RST_STREAM on idle stream {sid}")
            if guard is not None:
                guard.control_frame()  # a reset of a stream already closed: work for nothing
            return
        self._close(s)
        if guard is not None and s.inbound:
            guard.stream_reset()
            if sid in self._fresh:
                self._cancelled.add(sid)
        events.append(StreamReset(sid, frames.u32(payload, 0)))

    def _on_settings(self, sid: int, flags: int, payload: bytes, events: list[Event]) -> None:
        if sid:
            raise ProtocolError("SETTINGS on a stream")
        if flags & ACK:
            if payload:
                raise ProtocolError("SETTINGS acknowledgement with a payload", _FRAME_SIZE)
            return
        if len(payload) % 6:
            raise ProtocolError("SETTINGS payload not a multiple of 6 bytes", _FRAME_SIZE)
        changed: dict[int, int] = {}
        for code, value in frames.read_settings(payload):
            if code == SettingCodes.HEADER_TABLE_SIZE:
                self.encoder.header_table_size = value
            elif code == SettingCodes.ENABLE_PUSH:
                if value > 1:
                    raise ProtocolError(f"SETTINGS_ENABLE_PUSH {value}")
            elif code == SettingCodes.MAX_CONCURRENT_STREAMS:
                self.remote_max_concurrent_streams = value
            elif code == SettingCodes.INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise ProtocolError(f"SETTINGS_INITIAL_WINDOW_SIZE {value}", _FLOW)
                delta = value - self.remote_initial_window
                self.remote_initial_window = value
                if delta:
                    for s in self.streams.values():
                        s.out_window += delta
                        if s.out_window > MAX_WINDOW:
                            raise ProtocolError("a stream's window above 2^31-1", _FLOW)
            elif code == SettingCodes.MAX_FRAME_SIZE:
                if not frames.DEFAULT_FRAME_SIZE <= value <= frames.MAX_FRAME_SIZE_LIMIT:
                    raise ProtocolError(f"SETTINGS_MAX_FRAME_SIZE {value}")
                self.max_outbound_frame_size = value
            elif code == SettingCodes.MAX_HEADER_LIST_SIZE:
                self.remote_max_header_list_size = value
            changed[code] = value
        self._out.append(frames.SETTINGS_ACK)
        if self.guard is not None:
            self.guard.answer_queued()
        events.append(RemoteSettingsChanged(changed))

    def _on_ping(self, sid: int, flags: int, payload: bytes) -> None:
        if sid:
            raise ProtocolError("PING on a stream")
        if len(payload) != 8:
            raise ProtocolError("PING frame not of 8 bytes", _FRAME_SIZE)
        if not flags & ACK:
            self._out.append(frames.ping_ack(payload))
            if self.guard is not None:
                self.guard.answer_queued()

    def _on_goaway(self, sid: int, payload: bytes, events: list[Event]) -> None:
        if sid:
            raise ProtocolError("GOAWAY on a stream")
        if len(payload) < 8:
            raise ProtocolError("GOAWAY frame shorter than 8 bytes", _FRAME_SIZE)
        self.goaway_received = True
        last = frames.u32(payload, 0) & 0x7FFFFFFF
        events.append(ConnectionTerminated(frames.u32(payload, 4), last, payload[8:] or None))

    def _on_window_update(self, sid: int, payload: bytes, events: list[Event]) -> None:
        if len(payload) != 4:
            raise ProtocolError("WINDOW_UPDATE frame not of 4 bytes", _FRAME_SIZE)
        increment = frames.u32(payload, 0) & 0x7FFFFFFF
        if not sid:
            if not increment:
                raise ProtocolError("WINDOW_UPDATE of 0 on the connection")
            self._conn_out += increment
            if self._conn_out > MAX_WINDOW:
                raise ProtocolError("the connection's window above 2^31-1", _FLOW)
            events.append(WindowUpdated(0, increment))
            return
        s = self.streams.get(sid)
        if s is None:
            if self._is_idle(sid):
                raise ProtocolError(f"WINDOW_UPDATE on idle stream {sid}")
            return
        if not increment:
            self._stream_error(s, _PROTOCOL, events)
            return
        s.out_window += increment
        if s.out_window > MAX_WINDOW:
            self._stream_error(s, _FLOW, events)
            return
        events.append(WindowUpdated(sid, increment))
