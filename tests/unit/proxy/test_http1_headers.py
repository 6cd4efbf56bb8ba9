"""Rendering of the heads the proxy writes: hop-by-hop removal and Service Connect's header policy."""

from __future__ import annotations

import uuid

from sc_proxy.http1.headers import (
    downstream_response_head,
    error_response,
    new_request_id,
    upstream_request_head,
)
from sc_proxy.http1.parse import RequestHead, RequestReader, ResponseHead, ResponseReader


def request(raw: bytes) -> RequestHead:
    head = RequestReader().feed(raw)[0]
    assert isinstance(head, RequestHead)
    return head


def response(raw: bytes) -> ResponseHead:
    head = ResponseReader().feed(raw)[0]
    assert isinstance(head, ResponseHead)
    return head


def header_lines(rendered: bytes) -> list[bytes]:
    assert rendered.endswith(b"\r\n\r\n")
    return rendered[:-4].split(b"\r\n")


def test_request_keeps_host_and_adds_service_connect_headers() -> None:
    head = request(b"GET /p?q=1 HTTP/1.1\r\nHost: backend:80\r\nAccept: */*\r\n\r\n")
    out = upstream_request_head(head, b"rid-1", 15000, has_request_id=False)
    assert header_lines(out) == [
        b"GET /p?q=1 HTTP/1.1",
        b"Host: backend:80",
        b"Accept: */*",
        b"x-request-id: rid-1",
        b"x-forwarded-proto: http",
        b"x-envoy-expected-rq-timeout-ms: 15000",
    ]


def test_request_id_of_the_client_is_kept_and_own_headers_replaced() -> None:
    head = request(
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: abc\r\nX-Forwarded-Proto: https\r\n"
        b"X-Envoy-Expected-Rq-Timeout-Ms: 1\r\n\r\n"
    )
    rid = head.request_id  # what the server forwards: the parser's reading of the client's x-request-id
    assert rid == b"abc"
    lines = header_lines(upstream_request_head(head, rid, None, has_request_id=True))
    assert lines.count(b"X-Request-Id: abc") == 1
    assert not any(b"x-request-id" in line.lower() and b"abc" not in line for line in lines)
    assert b"x-forwarded-proto: http" in lines
    assert b"X-Forwarded-Proto: https" not in lines
    assert not any(line.lower().startswith(b"x-envoy-expected") for line in lines)


def test_hop_by_hop_and_connection_listed_headers_are_dropped() -> None:
    head = request(
        b"POST / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: 5\r\nX-Secret: s\r\n"
        b"TE: trailers\r\nProxy-Authorization: x\r\nUpgrade: h2c\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    lines = header_lines(upstream_request_head(head, b"r", None, has_request_id=False))
    names = {line.split(b":")[0].lower() for line in lines[1:]}
    assert names == {b"host", b"transfer-encoding", b"x-request-id", b"x-forwarded-proto"}
    assert b"transfer-encoding: chunked" in lines


def test_upgrade_request_keeps_upgrade() -> None:
    head = request(b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
    lines = header_lines(upstream_request_head(head, b"r", None, has_request_id=False))
    assert b"connection: upgrade" in lines
    assert b"upgrade: websocket" in lines


def test_response_server_is_overwritten_and_service_time_added() -> None:
    resp = response(
        b"HTTP/1.1 200 OK\r\nServer: nginx/1.22\r\nContent-Length: 3\r\nKeep-Alive: timeout=5\r\n\r\n"
    )
    lines = header_lines(downstream_response_head(resp, 7, chunked=False, close=False))
    assert lines == [
        b"HTTP/1.1 200 OK",
        b"Content-Length: 3",
        b"server: envoy",
        b"x-envoy-upstream-service-time: 7",
    ]


def test_response_reframed_as_chunked_and_closing() -> None:
    resp = response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    lines = header_lines(downstream_response_head(resp, None, chunked=True, close=True))
    assert lines[1:] == [b"server: envoy", b"connection: close", b"transfer-encoding: chunked"]


def test_error_response_is_complete_and_closes() -> None:
    out = error_response(426)
    head, body = out.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 426 Upgrade Required\r\n")
    assert b"connection: close" in head
    assert b"server: envoy" in head
    assert b"content-length: %d" % len(body) in head
    assert body == b"Upgrade Required"


def test_error_response_names_the_rule() -> None:
    out = error_response(431, "request headers exceed maxHeaderBytes (65536)")
    assert out.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert out.endswith(b"maxHeaderBytes (65536)")


def test_new_request_ids_are_uuid4_and_distinct() -> None:
    ids = [new_request_id() for _ in range(600)]  # ids are made in batches of 256: cross two refills
    assert len(set(ids)) == len(ids)
    for rid in ids:
        parsed = uuid.UUID(rid.decode())
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert str(parsed).encode() == rid  # canonical text form: lower-case, 8-4-4-4-12


def test_response_headers_listed_in_connection_are_dropped() -> None:
    resp = response(
        b"HTTP/1.1 200 OK\r\nConnection: X-Hop\r\nX-Hop: 1\r\nX-Keep: 2\r\nContent-Length: 0\r\n\r\n"
    )
    lines = header_lines(downstream_response_head(resp, None, chunked=False, close=False))
    assert lines == [b"HTTP/1.1 200 OK", b"X-Keep: 2", b"Content-Length: 0", b"server: envoy"]
