"""The sans-IO HTTP/1.1 readers: framing, limits and every refusal rule (no sockets)."""

from __future__ import annotations

import pytest

from sc_proxy.http1.parse import (
    END,
    ParseError,
    RequestHead,
    RequestReader,
    ResponseHead,
    ResponseReader,
    Upgraded,
)


def feed_all(data: bytes, *, step: int = 0, max_header_bytes: int = 65536) -> list[object]:
    reader = RequestReader(max_header_bytes)
    if not step:
        return list(reader.feed(data))
    events: list[object] = []
    for i in range(0, len(data), step):
        events.extend(reader.feed(data[i : i + step]))
    return events


def error_of(events: list[object]) -> ParseError:
    assert events, "expected a ParseError event"
    last = events[-1]
    assert isinstance(last, ParseError), events
    return last


def body_of(events: list[object]) -> bytes:
    return b"".join(e for e in events if isinstance(e, bytes))


@pytest.mark.parametrize("step", [0, 1, 7])
def test_simple_get_in_any_split(step: int) -> None:
    events = feed_all(b"GET /a?b=1 HTTP/1.1\r\nHost: svc\r\nX-Request-Id: r1\r\n\r\n", step=step)
    head = events[0]
    assert isinstance(head, RequestHead)
    assert (head.method, head.target, head.keep_alive, head.has_body) == (b"GET", b"/a?b=1", True, False)
    assert head.headers == [(b"Host", b"svc"), (b"X-Request-Id", b"r1")]
    assert events[-1] == END


def test_pipelined_requests_come_out_in_order() -> None:
    data = b"".join(b"GET /%d HTTP/1.1\r\nHost: a\r\n\r\n" % i for i in range(3))
    heads = [e for e in feed_all(data) if isinstance(e, RequestHead)]
    assert [h.target for h in heads] == [b"/0", b"/1", b"/2"]


@pytest.mark.parametrize("step", [0, 3])
def test_content_length_body(step: int) -> None:
    events = feed_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", step=step)
    head = events[0]
    assert isinstance(head, RequestHead)
    assert head.content_length == 5
    assert not head.chunked
    assert body_of(events) == b"hello"
    assert events[-1] == END


@pytest.mark.parametrize("step", [0, 1, 5])
def test_chunked_body_is_decoded_and_trailers_dropped(step: int) -> None:
    data = (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nT: x\r\n\r\n"
    )
    events = feed_all(data, step=step)
    head = events[0]
    assert isinstance(head, RequestHead)
    assert head.chunked
    assert body_of(events) == b"abcde"
    assert events[-1] == END
    assert (b"T", b"x") not in head.headers


def test_expect_continue_and_connection_close_are_seen() -> None:
    events = feed_all(
        b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nConnection: close\r\nContent-Length: 1\r\n\r\n"
    )
    head = events[0]
    assert isinstance(head, RequestHead)
    assert head.expect_continue
    assert not head.keep_alive


def test_websocket_upgrade_hands_over_the_rest() -> None:
    events = feed_all(
        b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x00"
    )
    head = events[0]
    assert isinstance(head, RequestHead)
    assert head.upgrade
    assert isinstance(events[-1], Upgraded)
    assert events[-1].rest == b"\x81\x00"


@pytest.mark.parametrize(
    ("name", "data", "status", "words"),
    [
        ("http/1.0 is refused like Envoy", b"GET / HTTP/1.0\r\nHost: a\r\n\r\n", 426, "HTTP/1.0"),
        ("http/0.9-style line", b"GET /\r\n\r\n", 426, "HTTP/0.9"),
        ("unknown version", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505, "HTTP/2.0"),
        ("bad version", b"GET / HTTP/1.7\r\nHost: a\r\n\r\n", 400, "version"),
        ("garbage", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", 400, "malformed"),
        ("bad method", b"G@T / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "malformed"),
        ("space before colon", b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, "malformed"),
        ("obs-fold", b"GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n", 400, "malformed"),
        ("bare LF", b"GET / HTTP/1.1\nHost: a\n\n", 400, "malformed"),
        ("bare LF in headers", b"GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n", 400, "malformed"),
        ("NUL in value", b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n", 400, "malformed"),
        (
            "CL and TE (smuggling)",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
            "Content-Length",
        ),
        (
            "TE and CL (smuggling)",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
            400,
            "Content-Length",
        ),
        (
            "differing duplicate CL",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            400,
            "Duplicate Content-Length",
        ),
        ("CL list", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 2\r\n\r\nab", 400, "Content-Length"),
        ("negative CL", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400, "Content-Length"),
        (
            "bad chunk size",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n",
            400,
            "chunk size",
        ),
        (
            "chunk size overflow",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n",
            400,
            "overflow",
        ),
        (
            "chunk without CRLF",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd\r\n",
            400,
            "malformed",
        ),
        (
            "TE not ending in chunked",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            400,
            "Transfer-Encoding",
        ),
        (
            "TE we do not frame",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            501,
            "Transfer-Encoding",
        ),
        ("no Host", b"GET / HTTP/1.1\r\nX: y\r\n\r\n", 400, "Host"),
        ("two Hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "Host"),
        ("CONNECT", b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 405, "CONNECT"),
    ],
)
def test_refusals(name: str, data: bytes, status: int, words: str) -> None:
    err = error_of(feed_all(data))
    assert err.status == status, (name, err)
    assert words in err.reason, (name, err)


def test_error_after_a_good_pipelined_request_keeps_the_good_one_first() -> None:
    events = feed_all(b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.0\r\n\r\n")
    assert isinstance(events[0], RequestHead)
    assert events[1] == END
    assert error_of(events).status == 426


def test_reader_is_finished_after_an_error() -> None:
    reader = RequestReader()
    assert isinstance(reader.feed(b"BAD\r\n\r\n")[-1], ParseError)
    assert reader.finished
    assert reader.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n") == []


@pytest.mark.parametrize("step", [0, 1000])
def test_headers_over_the_limit_get_431(step: int) -> None:
    data = b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-Pad: " + b"p" * 5000 + b"\r\n\r\n"
    assert error_of(feed_all(data, step=step, max_header_bytes=4096)).status == 431
    assert isinstance(feed_all(data, step=step, max_header_bytes=8192)[0], RequestHead)


def test_unterminated_header_line_is_cut_at_the_limit() -> None:
    reader = RequestReader(4096)
    reader.feed(b"GET / HTTP/1.1\r\nHost: a\r\nX: ")
    assert reader.in_head
    events: list[object] = []
    for _ in range(10):
        events.extend(reader.feed(b"y" * 1000))
    assert error_of(events).status == 431


def test_many_small_headers_count_towards_the_limit() -> None:
    data = b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(2000)) + b"\r\n"
    assert error_of(feed_all(data, max_header_bytes=4096)).status == 431


def test_in_head_tracks_the_header_timeout_window() -> None:
    reader = RequestReader()
    assert not reader.in_head
    reader.feed(b"GET / HT")
    assert reader.in_head
    reader.feed(b"TP/1.1\r\nHost: a\r\n\r\n")
    assert not reader.in_head


# --- responses --------------------------------------------------------------------------------------------


def response_events(data: bytes, *, head_request: bool = False, eof: bool = False) -> list[object]:
    reader = ResponseReader(head_request=head_request)
    events: list[object] = list(reader.feed(data))
    if eof:
        events.extend(reader.feed_eof())
    return events


def test_response_with_content_length() -> None:
    events = response_events(b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 2\r\n\r\nhi")
    head = events[0]
    assert isinstance(head, ResponseHead)
    assert (head.status, head.reason, head.content_length, head.keep_alive) == (200, b"OK", 2, True)
    assert body_of(events) == b"hi"
    assert events[-1] == END


def test_chunked_response_is_decoded() -> None:
    events = response_events(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n")
    head = events[0]
    assert isinstance(head, ResponseHead)
    assert head.chunked
    assert body_of(events) == b"hi"
    assert events[-1] == END


def test_close_delimited_response_ends_at_eof() -> None:
    events = response_events(b"HTTP/1.1 200 OK\r\n\r\nstream", eof=True)
    head = events[0]
    assert isinstance(head, ResponseHead)
    assert head.close_delimited
    assert not head.keep_alive
    assert body_of(events) == b"stream"
    assert events[-1] == END


def test_eof_inside_a_content_length_body_is_an_error() -> None:
    events = response_events(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", eof=True)
    assert error_of(events).status == 502


def test_response_to_head_has_no_body_despite_content_length() -> None:
    events = response_events(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", head_request=True)
    assert isinstance(events[0], ResponseHead)
    assert events[-1] == END


def test_interim_100_then_final() -> None:
    events = response_events(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"
    )
    statuses = [e.status for e in events if isinstance(e, ResponseHead)]
    assert statuses == [100, 201]
    assert events[-1] == END


def test_switching_protocols_hands_over_the_rest() -> None:
    events = response_events(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\nXY"
    )
    assert isinstance(events[0], ResponseHead)
    assert events[0].status == 101
    assert isinstance(events[-1], Upgraded)
    assert events[-1].rest == b"XY"


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nxx\r\n",
        b"SSH-2.0-OpenSSH\r\n",
    ],
)
def test_malformed_upstream_responses_become_502(data: bytes) -> None:
    assert error_of(response_events(data)).status == 502


def test_response_reader_is_reused_for_the_next_response_on_a_keep_alive_connection() -> None:
    reader = ResponseReader()
    first = reader.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na")
    assert first[-1] == END
    assert reader.reusable
    reader.reset(head_request=False)
    second = reader.feed(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno")
    assert isinstance(second[0], ResponseHead)
    assert second[0].status == 404
    assert body_of(second) == b"no"


def test_response_reader_after_head_or_trailing_garbage_is_not_reusable() -> None:
    head = ResponseReader(head_request=True)
    head.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
    assert head.finished
    assert not head.reusable
    extra = ResponseReader()
    extra.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 200 OK\r\n")
    assert not extra.reusable


def test_upstream_response_head_over_the_limit_is_a_502() -> None:
    reader = ResponseReader(max_header_bytes=4096)
    events = reader.feed(b"HTTP/1.1 200 OK\r\nX-Big: " + b"b" * 5000)
    assert error_of(events).status == 502


def test_header_name_cache_stays_bounded_under_many_distinct_names() -> None:
    # Clients choose header names: a hostile one must not grow the per-name cache without bound, and
    # names past the cache are still classified (Transfer-Encoding in a new spelling still frames).
    from sc_proxy.http1 import parse

    reader = RequestReader()
    for i in range(1500):
        name = b"X-%d-" % i + b"n" * (i % 200)
        events = reader.feed(b"GET / HTTP/1.1\r\nHost: a\r\n" + name + b": v\r\n\r\n")
        head = events[0]
        assert isinstance(head, RequestHead)
        assert (name, b"v") in head.headers
    assert len(parse._REQUEST_KINDS) <= 1024
    assert max(len(n) for n in parse._REQUEST_KINDS) <= 64
    events = reader.feed(b"POST / HTTP/1.1\r\nHost: a\r\ntRaNsFeR-eNcOdInG: chunked\r\n\r\n0\r\n\r\n")
    head = events[0]
    assert isinstance(head, RequestHead)
    assert head.chunked
    assert (b"tRaNsFeR-eNcOdInG", b"chunked") not in zip(head.lines[0::4], head.lines[2::4], strict=True)


def _request_with_fields(count: int) -> bytes:
    """A GET with ``count`` header fields in all (Host included)."""
    return b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(count - 1)) + b"\r\n"


@pytest.mark.parametrize("step", [0, 5])
def test_header_count_limit_is_100_fields_by_default(step: int) -> None:
    events = feed_all(_request_with_fields(100), step=step)
    assert isinstance(events[0], RequestHead)
    assert len(events[0].headers) == 100
    err = error_of(feed_all(_request_with_fields(101), step=step))
    assert (err.status, err.protection) == (431, "header_count")
    assert "maxHeaderCount (100)" in err.reason


def test_header_count_limit_is_a_setting_and_counts_per_request() -> None:
    reader = RequestReader(max_header_count=3)
    events = reader.feed(_request_with_fields(3) * 2)  # two pipelined requests of 3 fields each
    assert [type(e) for e in events] == [RequestHead, bytes, RequestHead, bytes]
    err = error_of(reader.feed(_request_with_fields(4)))
    assert (err.status, err.protection) == (431, "header_count")


def test_upstream_response_with_too_many_header_fields_is_a_502() -> None:
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(101))
    err = error_of(ResponseReader().feed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n" + fields + b"\r\n"))
    assert (err.status, err.protection) == (502, "header_count")
    ok = ResponseReader().feed(
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n" + fields[: fields.index(b"X-99:")] + b"\r\n"
    )
    assert isinstance(ok[0], ResponseHead)


@pytest.mark.parametrize("step", [0, 1])
def test_a_few_empty_lines_before_a_request_are_ignored(step: int) -> None:
    """RFC 9112 §2.2: at least one empty line before a request line is ignored; we allow 8."""
    events = feed_all(b"\r\n" * 8 + b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", step=step)
    assert isinstance(events[0], RequestHead)
    err = error_of(feed_all(b"\r\n" * 9 + b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", step=step))
    assert err.status == 400
    assert "more than 8 empty lines" in err.reason


def test_empty_lines_do_not_begin_a_request() -> None:
    reader = RequestReader()
    assert reader.between_requests
    assert reader.feed(b"\r\n") == []
    assert reader.between_requests
    assert not reader.in_head
    reader.feed(b"GET / HT")
    assert not reader.between_requests
    assert reader.in_head
    reader.feed(b"TP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nab")
    assert not reader.between_requests
    assert not reader.in_head
    reader.feed(b"c")
    assert reader.between_requests
    # The count starts again for each request.
    assert reader.feed(b"\r\n" * 8) == []
    assert isinstance(reader.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")[0], RequestHead)


def test_transfer_encoding_field_lines_are_one_list() -> None:
    """``Transfer-Encoding: gzip`` then ``Transfer-Encoding: chunked`` means "gzip, chunked": refused (501),
    never forwarded as plain chunked with the gzip coding silently dropped."""
    te = b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"
    err = error_of(feed_all(b"POST / HTTP/1.1\r\nHost: a\r\n" + te + b"\r\n0\r\n\r\n"))
    assert err.status == 501
    assert "gzip, chunked" in err.reason
