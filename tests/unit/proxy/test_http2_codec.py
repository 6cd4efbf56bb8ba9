"""The HTTP/2 codec layer: preface detection, settings we advertise, graceful GOAWAY in both directions,
request checks and stream limits.

The proxy's codec talks to h2, an independent implementation, in memory (no sockets needed for
frame-level behaviour)."""

from __future__ import annotations

from collections import deque

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import ConnectionTerminated, RemoteSettingsChanged
from h2.settings import SettingCodes

from sc_proxy.http2 import codec
from sc_proxy.http2.connection import Connection
from sc_proxy.http2.errors import ProtocolError, TooManyStreamsError
from sc_proxy.http2.events import ConnectionTerminated as Terminated
from sc_proxy.http2.events import (
    DataReceived,
    RequestReceived,
    ResponseReceived,
    StreamEnded,
    TrailersReceived,
)


def test_preface_prefix_detection() -> None:
    assert codec.is_preface_prefix(b"")
    assert codec.is_preface_prefix(b"PRI * HT")
    assert codec.is_preface_prefix(codec.PREFACE + b"\x00\x00")
    assert not codec.is_preface_prefix(b"GET / HTTP/1.1\r\n")
    assert not codec.is_preface_prefix(b"PRX")


def _pair() -> tuple[H2Connection, Connection]:
    """A plain h2 client and the proxy's server side, connected in memory."""
    client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    server = codec.server_connection(65536)
    client.initiate_connection()
    codec.start(server)
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    return client, server


def test_advertised_settings_reach_the_peer() -> None:
    client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    server = codec.server_connection(32768)
    client.initiate_connection()
    codec.start(server)
    events = client.receive_data(server.data_to_send())
    changed = next(e for e in events if isinstance(e, RemoteSettingsChanged)).changed_settings
    assert changed[SettingCodes.INITIAL_WINDOW_SIZE].new_value == codec.STREAM_WINDOW
    assert changed[SettingCodes.MAX_CONCURRENT_STREAMS].new_value == codec.MAX_CONCURRENT_STREAMS
    assert changed[SettingCodes.MAX_HEADER_LIST_SIZE].new_value == 32768
    # The connection window is opened beyond the 65535 default.
    assert client.outbound_flow_control_window == codec.CONNECTION_WINDOW


HEAD = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"x")]


def test_drain_goaway_leaves_open_streams_working() -> None:
    client, server = _pair()
    client.send_headers(1, HEAD, end_stream=True)
    server.receive_data(client.data_to_send())
    # The drain GOAWAY leaves the connection serving the streams up to its last-stream-id.
    events = client.receive_data(codec.goaway_frame(last_stream_id=1))
    assert [(type(e), e.error_code, e.last_stream_id) for e in events] == [(ConnectionTerminated, 0, 1)]
    # ... so the server side still answers the stream that was open.
    server.send_headers(1, [(b":status", b"200")])
    server.send_data(1, b"done", end_stream=True)
    assert server.data_to_send()


def test_graceful_goaway_received_lets_the_stream_finish() -> None:
    proxy_client = codec.client_connection(65536)
    codec.start(proxy_client)
    upstream = H2Connection(H2Configuration(client_side=False, header_encoding=None))
    upstream.initiate_connection()
    upstream.receive_data(proxy_client.data_to_send())
    proxy_client.receive_data(upstream.data_to_send())
    proxy_client.send_headers(1, HEAD, end_stream=True)
    upstream.receive_data(proxy_client.data_to_send())
    # The upstream announces shutdown (raw GOAWAY NO_ERROR, last stream 1), then answers stream 1.
    events = proxy_client.receive_data(codec.goaway_frame(1))
    assert isinstance(events[0], Terminated)
    assert (events[0].error_code, events[0].last_stream_id) == (0, 1)
    # No new stream after it...
    with pytest.raises(TooManyStreamsError):
        proxy_client.send_headers(3, HEAD, end_stream=True)
    upstream.send_headers(1, [(b":status", b"200")])
    upstream.send_data(1, b"finished", end_stream=True)
    events = proxy_client.receive_data(upstream.data_to_send())
    kinds = [type(e) for e in events]
    assert ResponseReceived in kinds
    assert StreamEnded in kinds
    assert b"".join(e.data for e in events if isinstance(e, DataReceived)) == b"finished"


def _careless_client() -> H2Connection:
    # A client that sends whatever it is given (h2 would refuse these header fields otherwise).
    return H2Connection(
        H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
    )


@pytest.mark.parametrize(
    ("headers", "trailers"),
    [
        ([*HEAD, (b"X-Upper", b"1")], None),
        ([*HEAD, (b"connection", b"close")], None),
        (HEAD[:3], None),  # no :authority nor host
        (HEAD, [(b":path", b"/late")]),  # a pseudo-header in trailers
    ],
)
def test_malformed_request_headers_end_the_connection_with_protocol_error(
    headers: list[tuple[bytes, bytes]], trailers: list[tuple[bytes, bytes]] | None
) -> None:
    client = _careless_client()
    server = codec.server_connection(65536)
    client.initiate_connection()
    codec.start(server)
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    client.send_headers(1, headers, end_stream=trailers is None)
    if trailers is not None:
        server.receive_data(client.data_to_send())
        client.send_headers(1, trailers, end_stream=True)
    with pytest.raises(ProtocolError):
        server.receive_data(client.data_to_send())
    events = client.receive_data(server.data_to_send())
    assert [(type(e), e.error_code) for e in events if isinstance(e, ConnectionTerminated)] == [
        (ConnectionTerminated, ErrorCodes.PROTOCOL_ERROR)
    ]


def test_valid_request_and_trailers_pass_the_checks() -> None:
    client, server = _pair()
    client.send_headers(1, [*HEAD, (b"te", b"trailers")])
    client.send_headers(1, [(b"grpc-status", b"0")], end_stream=True)
    kinds = [type(e) for e in server.receive_data(client.data_to_send())]
    assert RequestReceived in kinds
    assert TrailersReceived in kinds


def test_finished_streams_are_forgotten_and_the_stream_limit_still_holds() -> None:
    client, server = _pair()
    client.remote_settings.acknowledge()
    for sid in range(1, 2001, 2):  # 1000 requests answered one after another
        client.send_headers(sid, HEAD, end_stream=True)
        server.receive_data(client.data_to_send())
        server.send_headers(sid, [(b":status", b"204")], end_stream=True)
        client.receive_data(server.data_to_send())
    # The state of finished streams does not pile up.
    assert server.streams == {}
    assert server.open_inbound_streams == 0
    # The concurrency limit is exact: 128 open streams are accepted, the 129th is a protocol error.
    client.remote_settings._settings[SettingCodes.MAX_CONCURRENT_STREAMS] = deque([1000])
    first = 2001
    for sid in range(first, first + 2 * codec.MAX_CONCURRENT_STREAMS, 2):
        client.send_headers(sid, HEAD)
    server.receive_data(client.data_to_send())
    client.send_headers(first + 2 * codec.MAX_CONCURRENT_STREAMS, HEAD)
    with pytest.raises(ProtocolError):
        server.receive_data(client.data_to_send())
    events = client.receive_data(server.data_to_send())
    codes = [e.error_code for e in events if isinstance(e, ConnectionTerminated)]
    assert codes == [ErrorCodes.PROTOCOL_ERROR]


def test_outbound_streams_stop_at_the_peers_limit_and_resume_when_one_ends() -> None:
    proxy_client = codec.client_connection(65536)
    codec.start(proxy_client)
    upstream = H2Connection(H2Configuration(client_side=False, header_encoding=None))
    upstream.initiate_connection()
    upstream.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: 2})
    upstream.receive_data(proxy_client.data_to_send())
    proxy_client.receive_data(upstream.data_to_send())
    proxy_client.send_headers(1, HEAD, end_stream=True)
    proxy_client.send_headers(3, HEAD, end_stream=True)
    with pytest.raises(TooManyStreamsError):
        proxy_client.send_headers(5, HEAD, end_stream=True)
    upstream.receive_data(proxy_client.data_to_send())
    upstream.send_headers(1, [(b":status", b"204")], end_stream=True)
    proxy_client.receive_data(upstream.data_to_send())
    proxy_client.send_headers(5, HEAD, end_stream=True)  # stream 1 ended: room for one more


def test_finished_upstream_streams_are_forgotten_under_a_very_high_peer_limit() -> None:
    proxy_client = codec.client_connection(65536)
    codec.start(proxy_client)
    upstream = H2Connection(H2Configuration(client_side=False, header_encoding=None))
    upstream.initiate_connection()
    upstream.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: 2**31 - 1})  # as grpc-go announces
    upstream.receive_data(proxy_client.data_to_send())
    proxy_client.receive_data(upstream.data_to_send())
    for sid in range(1, 2001, 2):
        proxy_client.send_headers(sid, HEAD, end_stream=True)
        upstream.receive_data(proxy_client.data_to_send())
        upstream.send_headers(sid, [(b":status", b"204")], end_stream=True)
        proxy_client.receive_data(upstream.data_to_send())
    assert proxy_client.streams == {}
    assert proxy_client.open_outbound_streams == 0
