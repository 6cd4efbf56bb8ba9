"""The HTTP/2 flood defences of the proxy's codec, in memory, against an independent peer.

The well-behaved client is h2; hostile frames are built with hyperframe. Each limit of ``limits.http2``
is driven past its edge (GOAWAY ENHANCE_YOUR_CALM, named by the ``protection`` of the error) and a
well-behaved client doing a lot of ordinary work never trips any of them. Time is a fake clock.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes as H2Codes
from h2.events import ConnectionTerminated, StreamReset
from h2.events import DataReceived as H2DataReceived
from hyperframe.frame import (
    DataFrame,
    Frame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from sc_proxy.config import Http2Limits, Limits
from sc_proxy.http2 import codec
from sc_proxy.http2.connection import Connection
from sc_proxy.http2.errors import ErrorCodes, LimitExceeded
from sc_proxy.http2.events import RequestReceived, RequestRefused
from sc_proxy.http2.events import StreamReset as OurStreamReset
from sc_proxy.http2.guard import CONTROL_FLOOD, RAPID_RESET, UNREAD_ANSWERS, FloodGuard
from sc_proxy.http2.hpack_encoder import FastEncoder

HEAD = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"x")]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _pair(clock: Clock, max_header_count: int = 100, **http2: Any) -> tuple[H2Connection, Connection]:
    """An h2 client and the proxy's server side with these limits, past the preface and both SETTINGS."""
    client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    limits = Limits(max_header_count=max_header_count, http2=Http2Limits(**http2))
    server = codec.server_connection(65536, limits, clock)
    codec.start(server)
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.answers_delivered()
    return client, server


def _raw(*frames: Frame) -> bytes:
    return b"".join(f.serialize() for f in frames)


def _calm_down(client: H2Connection, server: Connection, data: bytes) -> str:
    """Feed ``data``: it must end the connection with GOAWAY ENHANCE_YOUR_CALM, as h2 reads it; the name
    of the defence that fired."""
    with pytest.raises(LimitExceeded) as caught:
        server.receive_data(data)
    assert caught.value.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    events = client.receive_data(server.data_to_send())
    goaways = [e for e in events if isinstance(e, ConnectionTerminated)]
    assert [g.error_code for g in goaways] == [H2Codes.ENHANCE_YOUR_CALM]
    return caught.value.protection


def _rapid_resets(first_sid: int, count: int) -> bytes:
    """What a rapid-reset client writes: a request, at once its RST_STREAM (CANCEL), ``count`` times."""
    enc = FastEncoder()
    out = []
    for sid in range(first_sid, first_sid + 2 * count, 2):
        out.append(HeadersFrame(sid, enc.encode(HEAD), flags=["END_HEADERS", "END_STREAM"]).serialize())
        out.append(RstStreamFrame(sid, error_code=ErrorCodes.CANCEL).serialize())
    return b"".join(out)


# -- rapid reset ---------------------------------------------------------------------------------------------


def test_rapid_reset_gets_goaway_enhance_your_calm() -> None:
    client, server = _pair(Clock())
    # The default allows 1000 resets in the window: the 1001st is one too many.
    for first in range(1, 2000, 200):
        server.receive_data(_rapid_resets(first, 100))
    assert _calm_down(client, server, _rapid_resets(2001, 1)) == RAPID_RESET


def test_more_streams_in_one_read_than_twice_the_concurrency_limit() -> None:
    client, server = _pair(Clock(), max_resets_per_window=100_000)
    # 128 concurrent streams: 256 opened (and reset) in one read pass, 257 do not.
    server.receive_data(_rapid_resets(1, 256))
    server.receive_data(_rapid_resets(513, 256))
    assert _calm_down(client, server, _rapid_resets(1025, 257)) == RAPID_RESET


def test_streams_opened_and_reset_in_one_read_are_never_reported() -> None:
    client, server = _pair(Clock(), max_resets_per_window=50)
    assert server.receive_data(_rapid_resets(1, 10)) == []
    assert not server.streams
    # Reset in a later read, a stream was reported: its reset is reported too.
    client.send_headers(21, HEAD, end_stream=True)
    assert next(type(e) for e in server.receive_data(client.data_to_send())) is RequestReceived
    client.reset_stream(21, H2Codes.CANCEL)
    assert [type(e) for e in server.receive_data(client.data_to_send())] == [OurStreamReset]
    assert not server.streams


def test_request_data_of_a_cancelled_stream_gives_its_connection_window_back() -> None:
    client, server = _pair(Clock())
    # 40 uploads of 60 000 bytes, each cancelled within its read: 2.4 MB through a 1 MiB connection
    # window, which h2 would refuse to send unless the proxy gave the window of dropped data back.
    for sid in range(1, 81, 2):
        client.send_headers(sid, [(b":method", b"POST"), *HEAD[1:]])
        for _ in range(4):
            client.send_data(sid, b"x" * 15000)
        client.reset_stream(sid, H2Codes.CANCEL)
        assert server.receive_data(client.data_to_send()) == []
        client.receive_data(server.data_to_send())


def test_resets_are_counted_over_a_sliding_window() -> None:
    clock = Clock()
    client, server = _pair(clock, max_resets_per_window=50, reset_window_seconds=10)
    sid = 1
    # 40 resets per 10 s, reset one at a time: never more than 50 in any 10 s.
    for _ in range(6):
        for _ in range(40):
            server.receive_data(_rapid_resets(sid, 1))
            sid += 2
            clock.now += 10 / 40
    # 51 within one second is past it.
    assert _calm_down(client, server, _rapid_resets(sid, 51)) == RAPID_RESET


def test_refused_streams_count_as_resets() -> None:
    client, server = _pair(Clock(), max_resets_per_window=3)
    for sid in (1, 3, 5, 7):
        client.send_headers(sid, HEAD, end_stream=True)
        server.receive_data(client.data_to_send())
        server.reset_stream(sid, ErrorCodes.REFUSED_STREAM)  # as after a drain's GOAWAY
    # The limit passed outside a read: the next read ends the connection.
    client.ping(b"12345678")
    assert _calm_down(client, server, client.data_to_send()) == RAPID_RESET


# -- frames without work -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        SettingsFrame(0, settings={0x1: 4096}),
        PingFrame(0, opaque_data=b"12345678"),
        PriorityFrame(1, depends_on=0, stream_weight=16),
        None,  # a frame of an unknown type (0xAB), built below
    ],
    ids=["settings", "ping", "priority", "unknown-type"],
)
def test_control_frame_flood_gets_goaway(frame: Frame | None) -> None:
    client, server = _pair(Clock())
    wire = frame.serialize() if frame is not None else struct.pack(">HBBBL", 0, 1, 0xAB, 0, 0) + b"x"
    # The default bucket holds 1000 frames; the clock does not move.
    assert _calm_down(client, server, wire * 1001) == CONTROL_FLOOD


def test_empty_data_flood_gets_goaway() -> None:
    client, server = _pair(Clock())
    client.send_headers(1, [(b":method", b"POST"), *HEAD[1:]])
    server.receive_data(client.data_to_send())
    assert _calm_down(client, server, DataFrame(1, b"").serialize() * 1001) == CONTROL_FLOOD


def test_control_frames_at_the_allowed_rate_pass() -> None:
    clock = Clock()
    client, server = _pair(clock, control_frames_per_second=100, control_frame_burst=1000)
    ping = PingFrame(0, opaque_data=b"12345678").serialize()
    server.receive_data(ping * 990)  # the handshake's SETTINGS and SETTINGS ACK took 2 of the 1000
    server.answers_delivered()
    # 9 frames per 0.1 s (90/s) for 5 s: under the rate, the bucket fills up by 1 a step.
    for _ in range(50):
        clock.now += 0.1
        server.receive_data(ping * 9)
        server.answers_delivered()
    assert _calm_down(client, server, ping * 60) == CONTROL_FLOOD


def test_window_update_flood_gets_goaway() -> None:
    client, server = _pair(Clock())
    # No stream, no DATA sent: 5 WINDOW_UPDATE frames are allowed (Envoy's rule), the 6th is not.
    assert _calm_down(client, server, WindowUpdateFrame(0, 1).serialize() * 6) == CONTROL_FLOOD


def test_window_updates_grow_with_data_sent() -> None:
    client, server = _pair(Clock())
    client.send_headers(1, HEAD, end_stream=True)
    server.receive_data(client.data_to_send())
    server.send_headers(1, [(b":status", b"200")])
    for _ in range(3):
        server.send_data(1, b"d" * 1000)
    client.receive_data(server.data_to_send())
    # 5 + 2 * (1 stream + 10 * 3 DATA frames) = 67.
    server.receive_data(WindowUpdateFrame(1, 1).serialize() * 67)
    assert _calm_down(client, server, WindowUpdateFrame(1, 1).serialize()) == CONTROL_FLOOD


# -- answers the client does not read ------------------------------------------------------------------------


def test_unread_control_answers_are_bounded() -> None:
    client, server = _pair(Clock(), control_frame_burst=100_000, max_pending_control_answers=500)
    ping = PingFrame(0, opaque_data=b"12345678").serialize()
    # Taken by the client between reads: any number.
    for _ in range(4):
        server.receive_data(ping * 400)
        server.data_to_send()
        server.answers_delivered()
    # Not taken (the I/O layer does not report them delivered): the 501st answer ends the connection.
    server.receive_data(ping * 400)
    server.data_to_send()
    assert _calm_down(client, server, ping * 101) == UNREAD_ANSWERS


# -- header count --------------------------------------------------------------------------------------------


def _with_fields(n: int) -> list[tuple[bytes, bytes]]:
    return [*HEAD, *((f"x-h{i}".encode(), b"v") for i in range(n))]


def test_a_request_with_101_header_fields_is_refused() -> None:
    client, server = _pair(Clock())
    client.send_headers(1, _with_fields(101), end_stream=True)
    events = server.receive_data(client.data_to_send())
    assert len(events) == 1
    assert isinstance(events[0], RequestRefused)
    assert (events[0].stream_id, events[0].protection) == (1, "header_count")
    resets = [e for e in client.receive_data(server.data_to_send()) if isinstance(e, StreamReset)]
    assert [(r.stream_id, r.error_code) for r in resets] == [(1, H2Codes.INTERNAL_ERROR)]
    # The connection goes on: 100 fields (pseudo-header fields not counted, cookie crumbs as one) pass.
    cookies = [(b"cookie", b"a=1"), (b"cookie", b"b=2"), (b"cookie", b"c=3")]
    client.send_headers(3, [*_with_fields(99), *cookies], end_stream=True)
    events = server.receive_data(client.data_to_send())
    assert next(type(e) for e in events) is RequestReceived


def test_trailers_with_too_many_fields_reset_the_stream() -> None:
    client, server = _pair(Clock(), max_header_count=10)
    client.send_headers(1, [(b":method", b"POST"), *HEAD[1:]])
    client.send_data(1, b"body")
    client.send_headers(1, [(f"t{i}".encode(), b"v") for i in range(11)], end_stream=True)
    events = server.receive_data(client.data_to_send())
    # Opened and broken within one read: only the refusal is reported (for the metric).
    assert [type(e) for e in events] == [RequestRefused]
    assert not server.streams
    # Trailers in a later read than the head: the application learns that its stream was reset.
    client.send_headers(3, [(b":method", b"POST"), *HEAD[1:]])
    server.receive_data(client.data_to_send())
    client.send_headers(3, [(f"t{i}".encode(), b"v") for i in range(11)], end_stream=True)
    events = server.receive_data(client.data_to_send())
    assert [type(e) for e in events] == [OurStreamReset, RequestRefused]


def test_request_body_of_a_refused_request_is_ignored() -> None:
    client, server = _pair(Clock())
    client.send_headers(1, [(b":method", b"POST"), *_with_fields(101)[1:]])
    client.send_data(1, b"b" * 1000, end_stream=True)
    events = server.receive_data(client.data_to_send())
    assert [type(e) for e in events] == [RequestRefused]


# -- a well-behaved client -----------------------------------------------------------------------------------


def _read_and_ack(client: H2Connection, server: Connection) -> None:
    """The client reads what the server sent and returns the window of every DATA frame (h2 sends the
    WINDOW_UPDATE frames it finds due)."""
    for ev in client.receive_data(server.data_to_send()):
        if isinstance(ev, H2DataReceived) and ev.flow_controlled_length and ev.stream_id:
            client.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
    server.receive_data(client.data_to_send())


def test_a_well_behaved_client_never_trips_a_limit() -> None:
    """3000 requests over 60 s of fake time, a download of 1 MiB, one cancel in ten, a keepalive PING and a
    SETTINGS change now and then, every window update h2 sends: no limit fires."""
    clock = Clock()
    client, server = _pair(clock)
    sid = 1
    for i in range(3000):
        client.send_headers(sid, HEAD, end_stream=True)
        if i % 10 == 0:
            client.reset_stream(sid, H2Codes.CANCEL)
        if i % 100 == 0:
            client.ping(struct.pack(">Q", i))
        if i % 500 == 0:
            client.update_settings({0x4: 65535 + i})
        events = server.receive_data(client.data_to_send())
        if any(isinstance(e, RequestReceived) for e in events):
            server.send_headers(sid, [(b":status", b"200")])
            body = b"r" * (1 << 20 if i == 1500 else 100)
            for pos in range(0, len(body), 16384):
                while server.local_flow_control_window(sid) < min(16384, len(body) - pos):
                    _read_and_ack(client, server)
                server.send_data(sid, body[pos : pos + 16384])
            server.end_stream(sid)
        _read_and_ack(client, server)
        server.answers_delivered()
        sid += 2
        clock.now += 0.02
    assert not server.failed


# -- the guard alone -----------------------------------------------------------------------------------------


def test_the_reset_window_forgets_old_resets() -> None:
    clock = Clock()
    guard = FloodGuard(Http2Limits(reset_window_seconds=10, max_resets_per_window=100), clock)
    for _ in range(100):
        guard.stream_reset()
    assert guard.resets_in_window() == 100
    clock.now += 15  # halfway through the next window: half of the previous one still counts
    assert guard.resets_in_window() == pytest.approx(50)
    clock.now += 10  # two windows on: nothing left
    assert guard.resets_in_window() == 0
    for _ in range(100):
        guard.stream_reset()
    with pytest.raises(LimitExceeded):
        guard.stream_reset()


def test_limits_are_settings_with_named_errors() -> None:
    from sc_proxy.config import ConfigError, parse_config

    cfg = parse_config({"version": "v", "limits": {"maxHeaderCount": 50, "http2": {"maxResetsPerWindow": 7}}})
    assert (cfg.limits.max_header_count, cfg.limits.http2.max_resets_per_window) == (50, 7)
    assert cfg.limits.http2.control_frame_burst == 1000
    with pytest.raises(ConfigError, match=r"limits\.http2\.controlFramesPerSecond"):
        parse_config({"version": "v", "limits": {"http2": {"controlFramesPerSecond": 0}}})
    with pytest.raises(ConfigError, match=r"limits\.http2\.resetWindow"):
        parse_config({"version": "v", "limits": {"http2": {"resetWindow": 1}}})
