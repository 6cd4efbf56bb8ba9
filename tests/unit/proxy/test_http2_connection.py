"""The proxy's HTTP/2 codec against the rules of RFC 9113: what a peer may do, and what it may not.

The well-behaved peer is h2 (an independent implementation); hostile frames are built with hyperframe, h2's
own frame layer, so neither side shares code with the codec under test.
"""

from __future__ import annotations

import random
import struct

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import ConnectionTerminated, PingAckReceived, SettingsAcknowledged, WindowUpdated
from h2.settings import SettingCodes
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    ExtensionFrame,
    Frame,
    HeadersFrame,
    PingFrame,
    PushPromiseFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from sc_proxy.http2 import codec
from sc_proxy.http2.connection import Connection
from sc_proxy.http2.errors import ErrorCodes, FlowControlError, ProtocolError, StreamClosedError
from sc_proxy.http2.events import (
    DataReceived,
    RequestReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
)
from sc_proxy.http2.events import WindowUpdated as OurWindowUpdated
from sc_proxy.http2.hpack_encoder import FastEncoder

HEAD = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"x")]


def _h2(client_side: bool, **settings_: int) -> H2Connection:
    conn = H2Connection(H2Configuration(client_side=client_side, header_encoding=None))
    conn.initiate_connection()
    if settings_:
        conn.update_settings({getattr(SettingCodes, k): v for k, v in settings_.items()})
    return conn


def _server_pair(**client_settings: int) -> tuple[H2Connection, Connection]:
    """An h2 client and the proxy's server side, past the preface and both SETTINGS."""
    client = _h2(True, **client_settings)
    server = codec.server_connection(65536)
    codec.start(server)
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    return client, server


def _client_pair(**server_settings: int) -> tuple[Connection, H2Connection]:
    """The proxy's client side and an h2 server, past both SETTINGS."""
    proxy = codec.client_connection(65536)
    codec.start(proxy)
    upstream = _h2(False, **server_settings)
    upstream.receive_data(proxy.data_to_send())
    proxy.receive_data(upstream.data_to_send())
    upstream.receive_data(proxy.data_to_send())
    proxy.receive_data(upstream.data_to_send())
    return proxy, upstream


def _raw(*frames: Frame) -> bytes:
    return b"".join(f.serialize() for f in frames)


def _block(headers: list[tuple[bytes, bytes]]) -> bytes:
    return FastEncoder().encode(headers)


def _goaway_code(server: Connection, data: bytes) -> int:
    """Feed ``data``; it must be a connection error; the GOAWAY's code as a peer reads it."""
    with pytest.raises(ProtocolError) as caught:
        server.receive_data(data)
    out = server.data_to_send()
    # The last frame queued is the GOAWAY: 9-byte head, last-stream-id, error code.
    assert out[-17 + 3] == 0x07, out
    code: int = struct.unpack(">L", out[-4:])[0]
    assert code == caught.value.error_code
    return code


def _fresh_server() -> Connection:
    server = codec.server_connection(65536)
    codec.start(server)
    server.receive_data(codec.PREFACE + _raw(SettingsFrame(0)))
    server.data_to_send()
    return server


# -- the start of a connection ------------------------------------------------------------------------


def test_a_wrong_preface_is_refused() -> None:
    server = codec.server_connection(65536)
    with pytest.raises(ProtocolError):
        server.receive_data(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")


def test_the_first_frame_must_be_settings() -> None:
    server = codec.server_connection(65536)
    assert _goaway_code(server, codec.PREFACE + _raw(PingFrame(0))) == ErrorCodes.PROTOCOL_ERROR


def test_settings_are_acknowledged_and_ping_answered() -> None:
    client, server = _server_pair()
    client.update_settings({SettingCodes.HEADER_TABLE_SIZE: 1024})
    client.ping(b"12345678")
    server.receive_data(client.data_to_send())
    events = client.receive_data(server.data_to_send())
    assert any(isinstance(e, SettingsAcknowledged) for e in events)
    assert [e.ping_data for e in events if isinstance(e, PingAckReceived)] == [b"12345678"]


@pytest.mark.parametrize(
    ("setting", "value", "code"),
    [
        (SettingCodes.INITIAL_WINDOW_SIZE, 2**31, ErrorCodes.FLOW_CONTROL_ERROR),
        (SettingCodes.MAX_FRAME_SIZE, 16383, ErrorCodes.PROTOCOL_ERROR),
        (SettingCodes.MAX_FRAME_SIZE, 2**24, ErrorCodes.PROTOCOL_ERROR),
        (SettingCodes.ENABLE_PUSH, 2, ErrorCodes.PROTOCOL_ERROR),
    ],
)
def test_settings_out_of_range_are_connection_errors(setting: int, value: int, code: int) -> None:
    server = _fresh_server()
    assert _goaway_code(server, _raw(SettingsFrame(0, settings={setting: value}))) == code


def test_split_reads_give_the_same_events() -> None:
    """Frames cut anywhere (down to one byte per read) decode as when read whole."""
    client = _h2(True)
    client.send_headers(1, HEAD)
    client.send_data(1, b"a" * 5000)
    client.send_headers(1, [(b"grpc-status", b"0")], end_stream=True)
    client.send_headers(3, [*HEAD[:1], (b":scheme", b"http"), (b":path", b"/b"), (b":authority", b"x")])
    wire = client.data_to_send()

    def summary(chunks: list[bytes]) -> list[tuple[str, int, object]]:
        server = codec.server_connection(65536)
        codec.start(server)
        out: list[tuple[str, int, object]] = []
        for chunk in chunks:
            for e in server.receive_data(chunk):
                payload = getattr(e, "data", None) or getattr(e, "headers", None)
                out.append((type(e).__name__, getattr(e, "stream_id", 0), payload))
        return out

    whole = summary([wire])
    assert [k for k, *_ in whole].count("RequestReceived") == 2
    rng = random.Random(7)
    cuts = sorted(rng.sample(range(1, len(wire)), 40))
    pieces = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
    merged = summary(pieces)

    # DATA may arrive in more events when cut; the bytes and everything else are the same.
    def squash(events: list[tuple[str, int, object]]) -> list[tuple[str, int, object]]:
        out: list[tuple[str, int, object]] = []
        for kind, sid, payload in events:
            if kind == "DataReceived" and out and out[-1][0] == kind and out[-1][1] == sid:
                out[-1] = (kind, sid, out[-1][2] + payload)  # type: ignore[operator]
            else:
                out.append((kind, sid, payload))
        return out

    assert squash(merged) == squash(whole)
    assert squash(summary([wire[i : i + 1] for i in range(len(wire))])) == squash(whole)


# -- header blocks ----------------------------------------------------------------------------------------


def test_header_blocks_in_pieces_padding_and_priority() -> None:
    server = _fresh_server()
    block = _block(HEAD)
    first = HeadersFrame(1, data=block[:5], flags=["PADDED", "PRIORITY"], pad_length=3, depends_on=0)
    events = server.receive_data(
        _raw(
            first,
            ContinuationFrame(1, data=block[5:9]),
            ContinuationFrame(1, block[9:], flags=["END_HEADERS"]),
        )
    )
    assert [type(e) for e in events] == [RequestReceived]
    assert events[0].headers == HEAD  # type: ignore[union-attr]


def test_a_header_block_interrupted_is_a_connection_error() -> None:
    server = _fresh_server()
    block = _block(HEAD)
    assert (
        _goaway_code(server, _raw(HeadersFrame(1, data=block[:5]), DataFrame(1, b"x")))
        == ErrorCodes.PROTOCOL_ERROR
    )


def test_a_flood_of_empty_continuation_frames_is_refused() -> None:
    server = _fresh_server()
    block = _block(HEAD)
    flood = [HeadersFrame(1, data=block)] + [ContinuationFrame(1, b"")] * 100
    assert _goaway_code(server, _raw(*flood)) == ErrorCodes.ENHANCE_YOUR_CALM


def test_an_undecodable_header_block_is_a_compression_error() -> None:
    server = _fresh_server()
    # Indexed field 126: beyond the static table, and the dynamic table is empty.
    frame = HeadersFrame(1, data=b"\xfe", flags=["END_HEADERS"])
    assert _goaway_code(server, _raw(frame)) == ErrorCodes.COMPRESSION_ERROR


def test_long_header_blocks_are_sent_with_continuation() -> None:
    proxy, upstream = _client_pair()
    big = [*HEAD, *((f"x-h{i}".encode(), b"v" * 1000) for i in range(40))]  # ~40 KB of fields
    proxy.send_headers(1, big, end_stream=True)
    wire = proxy.data_to_send()
    assert wire.count(b"\x09\x00\x00\x00\x00\x01") or wire.count(b"\x09\x04\x00\x00\x00\x01")
    events = upstream.receive_data(wire)
    assert [e.headers for e in events if type(e).__name__ == "RequestReceived"] == [big]


def test_trailers_must_end_the_stream() -> None:
    server = _fresh_server()
    server.receive_data(_raw(HeadersFrame(1, _block(HEAD), flags=["END_HEADERS"])))
    events = server.receive_data(_raw(HeadersFrame(1, _block([(b"x-t", b"1")]), flags=["END_HEADERS"])))
    assert [(type(e), e.error_code) for e in events if isinstance(e, StreamReset)] == [
        (StreamReset, ErrorCodes.PROTOCOL_ERROR)
    ]
    assert 1 not in server.streams


def test_interim_responses_are_skipped() -> None:
    proxy, upstream = _client_pair()
    proxy.send_headers(1, HEAD, end_stream=True)
    upstream.receive_data(proxy.data_to_send())
    upstream.send_headers(1, [(b":status", b"103"), (b"link", b"</a>")])
    upstream.send_headers(1, [(b":status", b"200")])
    upstream.send_data(1, b"ok", end_stream=True)
    events = proxy.receive_data(upstream.data_to_send())
    assert [type(e) for e in events] == [ResponseReceived, DataReceived, StreamEnded]
    assert events[0].headers == [(b":status", b"200")]  # type: ignore[union-attr]


# -- streams -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        DataFrame(5, b"x"),
        WindowUpdateFrame(5, window_increment=1),
        RstStreamFrame(5),
    ],
    ids=["DATA", "WINDOW_UPDATE", "RST_STREAM"],
)
def test_frames_on_idle_streams_are_connection_errors(frame: Frame) -> None:
    assert _goaway_code(_fresh_server(), _raw(frame)) == ErrorCodes.PROTOCOL_ERROR


def test_a_client_may_not_open_even_streams_nor_push() -> None:
    assert (
        _goaway_code(_fresh_server(), _raw(HeadersFrame(2, _block(HEAD), flags=["END_HEADERS"])))
        == ErrorCodes.PROTOCOL_ERROR
    )
    proxy, _ = _client_pair()
    push = PushPromiseFrame(1, promised_stream_id=2, data=_block(HEAD), flags=["END_HEADERS"])
    with pytest.raises(ProtocolError):
        proxy.receive_data(_raw(push))


def test_stream_ids_must_increase() -> None:
    server = _fresh_server()
    server.receive_data(_raw(HeadersFrame(5, _block(HEAD), flags=["END_HEADERS", "END_STREAM"])))
    server.send_headers(5, [(b":status", b"204")], end_stream=True)
    assert (
        _goaway_code(server, _raw(HeadersFrame(3, _block(HEAD), flags=["END_HEADERS"])))
        == ErrorCodes.STREAM_CLOSED
    )


def test_late_frames_of_a_reset_stream_are_ignored() -> None:
    server = _fresh_server()
    server.receive_data(_raw(HeadersFrame(1, _block(HEAD), flags=["END_HEADERS"])))
    server.reset_stream(1, ErrorCodes.CANCEL)
    server.data_to_send()
    late = _raw(
        DataFrame(1, b"in flight"),
        HeadersFrame(1, _block([(b"x-t", b"1")]), flags=["END_HEADERS", "END_STREAM"]),
        WindowUpdateFrame(1, window_increment=10),
        RstStreamFrame(1),
    )
    assert server.receive_data(late) == []
    # The in-flight DATA still counted against the connection window, and is given back.
    assert server._conn_in + server._conn_unacked == codec.CONNECTION_WINDOW


def test_data_after_the_end_of_the_stream_is_a_stream_error() -> None:
    server = _fresh_server()
    server.receive_data(_raw(HeadersFrame(1, _block(HEAD), flags=["END_HEADERS", "END_STREAM"])))
    events = server.receive_data(_raw(DataFrame(1, b"late")))
    assert [(type(e), e.error_code) for e in events] == [(StreamReset, ErrorCodes.STREAM_CLOSED)]
    assert server.data_to_send() == _raw(RstStreamFrame(1, error_code=ErrorCodes.STREAM_CLOSED))


def test_a_body_that_disagrees_with_content_length_is_refused() -> None:
    server = _fresh_server()
    head = [*HEAD, (b"content-length", b"3")]
    server.receive_data(_raw(HeadersFrame(1, _block(head), flags=["END_HEADERS"])))
    events = server.receive_data(_raw(DataFrame(1, b"four", flags=["END_STREAM"])))
    assert [type(e) for e in events] == [StreamReset]
    server.receive_data(_raw(HeadersFrame(3, _block(head), flags=["END_HEADERS"])))
    events = server.receive_data(_raw(DataFrame(3, b"abc", flags=["END_STREAM"])))
    assert [type(e) for e in events] == [DataReceived, StreamEnded]


def test_trailers_and_data_reach_the_application() -> None:
    client, server = _server_pair()
    client.send_headers(1, HEAD)
    client.send_data(1, b"body", pad_length=4)
    client.send_headers(1, [(b"grpc-status", b"0")], end_stream=True)
    events = server.receive_data(client.data_to_send())
    assert [type(e) for e in events] == [RequestReceived, DataReceived, TrailersReceived, StreamEnded]
    data = events[1]
    assert isinstance(data, DataReceived)
    assert (data.data, data.flow_controlled_length) == (b"body", 4 + 1 + 4)


def test_unknown_frame_types_are_ignored() -> None:
    server = _fresh_server()
    assert server.receive_data(_raw(ExtensionFrame(0xBB, 0, flag_byte=0, body=b"hello"))) == []


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_after_the_preface_is_only_ever_a_protocol_error(garbage: bytes) -> None:
    server = _fresh_server()
    failure: ProtocolError | None = None
    try:
        server.receive_data(garbage)
    except ProtocolError as exc:
        failure = exc
    if failure is not None:
        assert failure.error_code in set(ErrorCodes)
        assert server.data_to_send()  # the GOAWAY


# -- flow control -------------------------------------------------------------------------------------------


def test_a_frame_above_the_maximum_frame_size_is_a_frame_size_error() -> None:
    server = _fresh_server()
    server.receive_data(_raw(HeadersFrame(1, _block(HEAD), flags=["END_HEADERS"])))
    assert _goaway_code(server, _raw(DataFrame(1, b"x" * 16385))) == ErrorCodes.FRAME_SIZE_ERROR


def test_data_beyond_the_stream_window_is_a_stream_error() -> None:
    server = _fresh_server()
    server.receive_data(_raw(HeadersFrame(1, _block(HEAD), flags=["END_HEADERS"])))
    chunk = DataFrame(1, b"x" * 16384)
    frames_ = [chunk] * (codec.STREAM_WINDOW // 16384)
    events = server.receive_data(_raw(*frames_))
    assert all(isinstance(e, DataReceived) for e in events)
    events = server.receive_data(_raw(DataFrame(1, b"x")))
    assert [(type(e), e.error_code) for e in events] == [(StreamReset, ErrorCodes.FLOW_CONTROL_ERROR)]


def test_data_beyond_the_connection_window_is_a_connection_error() -> None:
    server = _fresh_server()
    full = codec.CONNECTION_WINDOW // 16384
    per_stream = codec.STREAM_WINDOW // 16384
    frames_: list[Frame] = []
    for i in range(full // per_stream):
        sid = 1 + 2 * i
        frames_.append(HeadersFrame(sid, _block(HEAD), flags=["END_HEADERS"]))
        frames_ += [DataFrame(sid, b"x" * 16384)] * per_stream
    server.receive_data(_raw(*frames_))
    server.receive_data(_raw(HeadersFrame(99, _block(HEAD), flags=["END_HEADERS"])))
    assert _goaway_code(server, _raw(DataFrame(99, b"x"))) == ErrorCodes.FLOW_CONTROL_ERROR


def test_acknowledged_data_reopens_the_windows() -> None:
    client, server = _server_pair()
    client.send_headers(1, HEAD)
    server.receive_data(client.data_to_send())
    half = codec.STREAM_WINDOW // 2
    for _ in range(half // 16384):
        client.send_data(1, b"x" * 16384)
    events = server.receive_data(client.data_to_send())
    # Nothing goes back until the application says it handled the bytes.
    assert server.data_to_send() == b""
    for e in events:
        assert isinstance(e, DataReceived)
        server.acknowledge_received_data(e.flow_controlled_length, 1)
    updates = [e for e in client.receive_data(server.data_to_send()) if isinstance(e, WindowUpdated)]
    assert [(u.stream_id, u.delta) for u in updates] == [(1, half)]
    assert client.local_flow_control_window(1) == codec.STREAM_WINDOW


def test_sending_respects_the_peers_windows_and_their_changes() -> None:
    proxy, upstream = _client_pair(INITIAL_WINDOW_SIZE=10)
    proxy.send_headers(1, HEAD)
    assert proxy.local_flow_control_window(1) == 10
    with pytest.raises(FlowControlError):
        proxy.send_data(1, b"x" * 11)
    proxy.send_data(1, b"x" * 10)
    assert proxy.local_flow_control_window(1) == 0
    upstream.receive_data(proxy.data_to_send())
    # The peer lowers the initial window: open streams' windows go negative (RFC 9113 §6.9.2).
    upstream.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 4})
    proxy.receive_data(upstream.data_to_send())
    assert proxy.local_flow_control_window(1) == -6
    upstream.increment_flow_control_window(100, stream_id=1)
    events = proxy.receive_data(upstream.data_to_send())
    assert [(type(e), e.stream_id) for e in events] == [(OurWindowUpdated, 1)]
    assert proxy.local_flow_control_window(1) == 94


def test_window_overflow_is_refused() -> None:
    server = _fresh_server()
    server.receive_data(_raw(HeadersFrame(1, _block(HEAD), flags=["END_HEADERS"])))
    events = server.receive_data(_raw(WindowUpdateFrame(1, window_increment=2**31 - 1)))
    assert [(type(e), e.error_code) for e in events] == [(StreamReset, ErrorCodes.FLOW_CONTROL_ERROR)]
    assert _goaway_code(server, _raw(WindowUpdateFrame(0, window_increment=2**31 - 1))) == (
        ErrorCodes.FLOW_CONTROL_ERROR
    )


def test_closed_streams_refuse_sending() -> None:
    client, server = _server_pair()
    client.send_headers(1, HEAD, end_stream=True)
    server.receive_data(client.data_to_send())
    server.send_headers(1, [(b":status", b"200")], end_stream=True)
    with pytest.raises(StreamClosedError):
        server.send_data(1, b"more")
    with pytest.raises(StreamClosedError):
        server.reset_stream(1)
    assert server.open_inbound_streams == 0
    events = client.receive_data(server.data_to_send())
    assert not any(isinstance(e, ConnectionTerminated) for e in events)
