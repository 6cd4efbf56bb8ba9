"""Sans-IO HTTP/1.1 message readers: bytes in, events out, no sockets.

:class:`RequestReader` turns the downstream byte stream into :class:`RequestHead`, body ``bytes`` (already
de-chunked), :data:`END` and :class:`Upgraded` events; a violation of the rules below ends the stream with a
:class:`ParseError` event carrying the status to answer. :class:`ResponseReader` does the same for one
upstream response.

Parsing is done by llhttp (through httptools) in strict mode, which already refuses what request smuggling
needs: both Content-Length and Transfer-Encoding, duplicate Content-Length, bad chunk sizes, obs-fold, bare
LF and invalid characters. On top of it we enforce the header-size and header-count limits (431; 502 for an
upstream response), HTTP/1.1 only (HTTP/1.0 gets 426 as Service Connect's Envoy answers),
``Transfer-Encoding: chunked`` as the only coding we frame (501 else), exactly one Host header, no CONNECT,
and at most :data:`MAX_EMPTY_LINES` empty lines before a request line (RFC 9112 §2.2 asks to ignore at least
one; an endless run of them is a way to hold a connection open, so more is refused with 400).
"""

from __future__ import annotations

from typing import Final

import httptools

#: Marks the end of a message's body.
END: Final = b""
#: Empty lines (CRLF or LF) tolerated before a request line; RFC 9112 §2.2 asks for at least one.
MAX_EMPTY_LINES: Final = 8

#: Lower-cased names that are hop-by-hop (RFC 9110 §7.6.1, plus the legacy Proxy-Connection): never forwarded
#: as they are; each hop is framed by the proxy. ``Proxy-*`` names are dropped too.
HOP_BY_HOP: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
    }
)
#: Request headers the proxy sets itself (an incoming value is replaced).
REQUEST_OWN: Final = frozenset({b"x-forwarded-proto", b"x-envoy-expected-rq-timeout-ms"})
#: Response headers the proxy sets itself.
RESPONSE_OWN: Final = frozenset({b"server", b"x-envoy-upstream-service-time"})
_REQUEST_DROP: Final = HOP_BY_HOP | REQUEST_OWN
_RESPONSE_DROP: Final = HOP_BY_HOP | RESPONSE_OWN
_PLAIN_CONNECTION_TOKENS: Final = frozenset({b"keep-alive", b"close", b"upgrade", b""})
#: Connection values as usually spelled that name nothing else: no function call for them.
_PLAIN_CONNECTION_VALUES: Final = frozenset(
    {b"keep-alive", b"Keep-Alive", b"close", b"Close", b"upgrade", b"Upgrade"}
)

# What a reader does with a header field, by name. The kinds are looked up by the name as received, in a
# cache, so the common field costs one dict lookup instead of lower-casing and several comparisons.
_K_PLAIN: Final = 0  # forwarded as is
_K_DROP: Final = 1  # hop-by-hop or set by the proxy: not forwarded
_K_TE: Final = 2  # Transfer-Encoding (dropped; framing)
_K_CONNECTION: Final = 3  # Connection (dropped; may name further hop-by-hop fields)
_K_LENGTH: Final = 4  # Content-Length (forwarded; framing)
_K_HOST: Final = 5  # Host (requests: counted)
_K_REQUEST_ID: Final = 6  # x-request-id (requests: kept and remembered)
_K_EXPECT: Final = 7  # Expect (requests)
#: Distinct names cached per direction, and the longest name cached: beyond that names are classified each
#: time, so hostile clients cannot grow the cache (at most 1024 x 64 bytes of names).
_KIND_CACHE_SIZE: Final = 1024
_KIND_CACHE_NAME_MAX: Final = 64


def _kind(lname: bytes, drop: frozenset[bytes], request: bool) -> int:
    if lname in drop or lname.startswith(b"proxy-"):
        if lname == b"transfer-encoding":
            return _K_TE
        if lname == b"connection":
            return _K_CONNECTION
        return _K_DROP
    if lname == b"content-length":
        return _K_LENGTH
    if request:
        if lname == b"host":
            return _K_HOST
        if lname == b"x-request-id":
            return _K_REQUEST_ID
        if lname == b"expect":
            return _K_EXPECT
    return _K_PLAIN


_REQUEST_KINDS: dict[bytes, int] = {}
_RESPONSE_KINDS: dict[bytes, int] = {}


def _request_kind(name: bytes) -> int:
    kind = _kind(name.lower(), _REQUEST_DROP, True)
    if len(_REQUEST_KINDS) < _KIND_CACHE_SIZE and len(name) <= _KIND_CACHE_NAME_MAX:
        _REQUEST_KINDS[name] = kind
    return kind


def _response_kind(name: bytes) -> int:
    kind = _kind(name.lower(), _RESPONSE_DROP, False)
    if len(_RESPONSE_KINDS) < _KIND_CACHE_SIZE and len(name) <= _KIND_CACHE_NAME_MAX:
        _RESPONSE_KINDS[name] = kind
    return kind


def _flat_lines(headers: list[tuple[bytes, bytes]]) -> list[bytes]:
    lines: list[bytes] = []
    for name, value in headers:
        lines += (name, b": ", value, b"\r\n")
    return lines


def _fields(lines: list[bytes], dropped: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [*zip(lines[0::4], lines[2::4], strict=True), *dropped]


def _lists_other_headers(connection_value: bytes) -> bool:
    """A Connection header naming more than keep-alive/close/upgrade makes those names hop-by-hop."""
    value = connection_value.lower()
    if value in _PLAIN_CONNECTION_TOKENS:  # the common "keep-alive" / "close", without splitting
        return False
    return any(t.strip() not in _PLAIN_CONNECTION_TOKENS for t in value.split(b","))


class ParseError:
    """The stream cannot be continued; answer ``status`` (``reason`` says which rule) and close.
    ``protection``: the defence that refused it (a ``ProtectionTriggeredCount`` label), if any."""

    __slots__ = ("protection", "reason", "status")

    def __init__(self, status: int, reason: str, protection: str | None = None) -> None:
        self.status = status
        self.reason = reason
        self.protection = protection

    def __repr__(self) -> str:
        return f"ParseError({self.status}, {self.reason!r})"


class Upgraded:
    """The request asked to switch protocols; ``rest`` is what the client sent after the request head."""

    __slots__ = ("rest",)

    def __init__(self, rest: bytes) -> None:
        self.rest = rest


class RequestHead:
    """One parsed request line and header block. Header names keep their case; ``chunked`` and
    ``content_length`` describe the body framing (neither means no body).

    ``lines``: the end-to-end headers in order, as pieces whose concatenation is their rendering (four per
    field: name, ``b": "``, value, CRLF): what is forwarded, unless ``conn_listed`` (a Connection header
    names further hop-by-hop headers to remove). ``request_id``: the client's ``x-request-id``, if any.
    """

    __slots__ = (
        "_dropped",
        "chunked",
        "conn_listed",
        "content_length",
        "expect_continue",
        "keep_alive",
        "lines",
        "method",
        "request_id",
        "target",
        "upgrade",
    )

    def __init__(
        self,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        keep_alive: bool,
        content_length: int | None,
        chunked: bool,
        expect_continue: bool,
        upgrade: bool,
        lines: list[bytes] | None = None,
        request_id: bytes | None = None,
        conn_listed: bool = False,
    ) -> None:
        # With ``lines`` given, ``headers`` holds only the fields that are not in them (hop-by-hop).
        self.lines = lines if lines is not None else _flat_lines(headers)
        self._dropped = headers if lines is not None else []
        self.request_id = request_id
        self.conn_listed = conn_listed
        self.method = method
        self.target = target
        self.keep_alive = keep_alive
        self.content_length = content_length
        self.chunked = chunked
        self.expect_continue = expect_continue
        self.upgrade = upgrade

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        """All fields as (name, value): the end-to-end ones in order, then the hop-by-hop ones."""
        return _fields(self.lines, self._dropped)


class ResponseHead:
    """One parsed status line and header block.

    ``close_delimited``: the body runs until the upstream closes the connection. ``lines``: as in
    :class:`RequestHead`.
    """

    __slots__ = (
        "_dropped",
        "chunked",
        "close_delimited",
        "conn_listed",
        "content_length",
        "keep_alive",
        "lines",
        "reason",
        "status",
    )

    def __init__(
        self,
        status: int,
        reason: bytes,
        headers: list[tuple[bytes, bytes]],
        keep_alive: bool,
        content_length: int | None,
        chunked: bool,
        close_delimited: bool,
        lines: list[bytes] | None = None,
        conn_listed: bool = False,
    ) -> None:
        self.lines = lines if lines is not None else _flat_lines(headers)
        self._dropped = headers if lines is not None else []
        self.conn_listed = conn_listed
        self.status = status
        self.reason = reason
        self.keep_alive = keep_alive
        self.content_length = content_length
        self.chunked = chunked
        self.close_delimited = close_delimited

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        """All fields as (name, value): the end-to-end ones in order, then the hop-by-hop ones."""
        return _fields(self.lines, self._dropped)


RequestEvent = RequestHead | bytes | Upgraded | ParseError
ResponseEvent = ResponseHead | bytes | Upgraded | ParseError

_STATUS_FOR_VERSION: Final = {"1.0": 426, "0.9": 426}


class _Violation(Exception):
    def __init__(self, status: int, reason: str, protection: str | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.protection = protection


class RequestReader:
    """Parses a downstream connection's requests (pipelined ones included) into events.

    ``feed`` returns the events completed by the bytes given, in order. After a :class:`ParseError` or an
    :class:`Upgraded` event the reader is finished and ignores further input.
    """

    __slots__ = (
        "_between",
        "_conn_listed",
        "_content_length",
        "_empty_lines",
        "_events",
        "_expect",
        "_head_bytes",
        "_header_count",
        "_header_sum",
        "_headers",
        "_host_count",
        "_in_head",
        "_lines",
        "_max_header_bytes",
        "_max_header_count",
        "_parser",
        "_rid",
        "_te",
        "_url",
        "finished",
    )

    def __init__(self, max_header_bytes: int = 65536, max_header_count: int = 100) -> None:
        self._max_header_bytes = max_header_bytes
        self._max_header_count = max_header_count
        self._parser = httptools.HttpRequestParser(self)
        self._events: list[RequestEvent] = []
        self._in_head = False
        self._between = True  # no request begun since the last one ended
        self._empty_lines = 0
        self._head_bytes = 0
        self._reset_head()
        self.finished = False

    def _reset_head(self) -> None:
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._lines: list[bytes] = []
        self._rid: bytes | None = None
        self._conn_listed = False
        self._header_sum = 0
        self._content_length: int | None = None
        self._te: bytes | None = None
        self._expect = False
        self._host_count = 0
        self._header_count = 0

    @property
    def in_head(self) -> bool:
        """A request head has begun and is not complete (the header timeout runs)."""
        return self._in_head

    @property
    def between_requests(self) -> bool:
        """No request has begun since the last one ended (empty lines do not begin one)."""
        return self._between

    # --- httptools callbacks -------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._in_head = True
        self._between = False
        self._empty_lines = 0
        self._reset_head()

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._header_sum += len(url)
        if self._header_sum > self._max_header_bytes:
            raise _Violation(431, f"request headers exceed maxHeaderBytes ({self._max_header_bytes})")

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._in_head:
            return  # trailers of a chunked body: dropped, we do not forward trailers
        self._header_count += 1
        if self._header_count > self._max_header_count:
            raise _Violation(
                431,
                f"more than maxHeaderCount ({self._max_header_count}) request header fields",
                "header_count",
            )
        self._header_sum += len(name) + len(value) + 4
        if self._header_sum > self._max_header_bytes:
            raise _Violation(431, f"request headers exceed maxHeaderBytes ({self._max_header_bytes})")
        kind = _REQUEST_KINDS.get(name)
        if kind is None:
            kind = _request_kind(name)
        if kind == _K_PLAIN:
            self._lines += (name, b": ", value, b"\r\n")
            return
        if kind <= _K_CONNECTION:
            self._headers.append((name, value))
            if kind == _K_TE:
                # Several field lines are one comma-separated list (RFC 9110 §5.3): "gzip" then "chunked" is
                # "gzip, chunked", a coding we do not frame, not plain "chunked".
                self._te = value if self._te is None else self._te + b", " + value
            elif (
                kind == _K_CONNECTION
                and value not in _PLAIN_CONNECTION_VALUES
                and _lists_other_headers(value)
            ):
                self._conn_listed = True
            return
        if kind == _K_LENGTH:
            self._content_length = int(value)  # llhttp has validated the digits and refused duplicates
        elif kind == _K_HOST:
            self._host_count += 1
        elif kind == _K_REQUEST_ID:
            if self._rid is None:
                self._rid = value
        elif value.lower() == b"100-continue":  # Expect
            self._expect = True
        self._lines += (name, b": ", value, b"\r\n")

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        parser = self._parser
        version = parser.get_http_version()
        if version != "1.1":
            status = _STATUS_FOR_VERSION.get(version, 505)
            raise _Violation(status, f"HTTP/{version} is not supported (HTTP/1.1 only)")
        method: bytes = parser.get_method()
        if method == b"CONNECT":
            raise _Violation(405, "CONNECT is not supported")
        if self._host_count != 1:
            raise _Violation(400, f"a request needs exactly one Host header (got {self._host_count})")
        chunked = False
        if self._te is not None:
            if self._te.strip().lower() != b"chunked":
                raise _Violation(501, f"Transfer-Encoding {self._te.decode('latin-1')!r} is not supported")
            chunked = True
        self._events.append(
            RequestHead(
                method,
                self._url,
                self._headers,
                parser.should_keep_alive(),
                self._content_length,
                chunked,
                self._expect,
                parser.should_upgrade(),
                self._lines,
                self._rid,
                self._conn_listed,
            )
        )

    def on_body(self, body: bytes) -> None:
        self._events.append(body)

    def on_message_complete(self) -> None:
        self._between = True
        self._events.append(END)

    # --- feeding -------------------------------------------------------------------------------------
    def feed(self, data: bytes) -> list[RequestEvent]:
        """Parse ``data``; return the events it completes (empty once finished)."""
        if self.finished:
            return []
        if self._between and data[:1] in (b"\r", b"\n"):
            # Empty lines before a request line: counted here (llhttp skips them silently), then dropped.
            rest = data.lstrip(b"\r\n")
            self._empty_lines += data.count(b"\n", 0, len(data) - len(rest))
            if self._empty_lines > MAX_EMPTY_LINES:
                self.finished = True
                return [ParseError(400, f"more than {MAX_EMPTY_LINES} empty lines before a request line")]
            if not rest:
                return []
            data = rest
        events: list[RequestEvent] = []
        self._events = events
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self.finished = True
            events.append(Upgraded(data[exc.args[0] :]))
            return events
        except httptools.HttpParserCallbackError as exc:
            self.finished = True
            cause = exc.__context__
            if isinstance(cause, _Violation):
                events.append(ParseError(cause.status, cause.reason, cause.protection))
            else:  # a bug of ours, not the client's; still a clean refusal
                events.append(ParseError(400, f"malformed request: {exc}"))
            return events
        except httptools.HttpParserError as exc:
            self.finished = True
            events.append(ParseError(400, f"malformed request: {exc}"))
            return events
        if self._in_head:
            # llhttp buffers a partial header line internally: also bound the raw bytes of an unfinished head.
            self._head_bytes += len(data)
            if self._head_bytes > self._max_header_bytes:
                self.finished = True
                events.append(
                    ParseError(431, f"request headers exceed maxHeaderBytes ({self._max_header_bytes})")
                )
        return events


class ResponseReader:
    """Parses the upstream's response to one request (``1xx`` interim responses come first as their own
    heads, each followed by :data:`END`). ``head_request`` makes the head the whole message."""

    __slots__ = (
        "_content_length",
        "_events",
        "_head_request",
        "_header_count",
        "_header_sum",
        "_headers",
        "_in_head",
        "_lines",
        "_max_header_bytes",
        "_max_header_count",
        "_parser",
        "_reason",
        "_te",
        "close_delimited",
        "conn_listed",
        "finished",
        "reusable",
    )

    def __init__(
        self, head_request: bool = False, max_header_bytes: int = 65536, max_header_count: int = 100
    ) -> None:
        self._head_request = head_request
        self._max_header_bytes = max_header_bytes
        self._max_header_count = max_header_count
        self._header_count = 0
        self._parser = httptools.HttpResponseParser(self)
        self._events: list[ResponseEvent] = []
        self._in_head = False
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._lines: list[bytes] = []
        self._header_sum = 0
        self._content_length: int | None = None
        self._te: bytes | None = None
        self.close_delimited = False
        self.conn_listed = False
        self.finished = False
        self.reusable = False  # the last response ended cleanly: the parser can read the next one

    def reset(self, head_request: bool) -> None:
        """Read the next response on the same keep-alive connection (only when :attr:`reusable`)."""
        self._head_request = head_request
        self.finished = False
        self.reusable = False

    def on_message_begin(self) -> None:
        if self.finished:
            self.reusable = False  # bytes after the final response: this connection cannot be trusted
        self._in_head = True
        self._reason = b""
        self._headers = []
        self._lines = []
        self.conn_listed = False
        self._header_sum = 0
        self._header_count = 0
        self._content_length = None
        self._te = None

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._in_head:
            return
        self._header_count += 1
        if self._header_count > self._max_header_count:
            raise _Violation(
                502,
                f"upstream response has more than maxHeaderCount ({self._max_header_count}) header fields",
                "header_count",
            )
        kind = _RESPONSE_KINDS.get(name)
        if kind is None:
            kind = _response_kind(name)
        if kind == _K_PLAIN:
            self._lines += (name, b": ", value, b"\r\n")
            return
        if kind == _K_LENGTH:
            self._content_length = int(value)
            self._lines += (name, b": ", value, b"\r\n")
            return
        self._headers.append((name, value))
        if kind == _K_TE:
            self._te = value
        elif kind == _K_CONNECTION and value not in _PLAIN_CONNECTION_VALUES and _lists_other_headers(value):
            self.conn_listed = True

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self._parser
        status: int = parser.get_status_code()
        if parser.get_http_version() not in ("1.1", "1.0"):
            raise _Violation(502, "upstream answered with an unsupported HTTP version")
        chunked = self._te is not None and self._te.strip().lower().endswith(b"chunked")
        bodiless = status < 200 or status in (204, 304) or self._head_request
        close_delimited = not bodiless and not chunked and self._content_length is None
        self.close_delimited = close_delimited
        self._events.append(
            ResponseHead(
                status,
                self._reason,
                self._headers,
                parser.should_keep_alive() and not close_delimited,
                self._content_length,
                chunked,
                close_delimited,
                self._lines,
                self.conn_listed,
            )
        )
        if self._head_request and status >= 200:
            # llhttp cannot be told the response to HEAD has no body; the head is the whole message.
            self.finished = True
            self._events.append(END)

    def on_body(self, body: bytes) -> None:
        self._events.append(body)

    def on_message_complete(self) -> None:
        if not self.finished:
            self._events.append(END)
        if self._parser.get_status_code() >= 200:
            self.reusable = not self.finished  # a HEAD response leaves llhttp expecting a body
            self.finished = True

    def feed(self, data: bytes) -> list[ResponseEvent]:
        """Parse ``data``; bytes after the final response are ignored (nothing is pipelined upstream)."""
        if self.finished:
            return []
        events: list[ResponseEvent] = []
        self._events = events
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self.finished = True
            events.append(Upgraded(data[exc.args[0] :]))
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if self.finished:  # the HEAD response ended in on_headers_complete
                return events
            self.finished = True
            if isinstance(cause, _Violation):
                events.append(ParseError(502, cause.reason, cause.protection))
            else:
                events.append(ParseError(502, f"malformed upstream response: {exc}"))
        except httptools.HttpParserError as exc:
            if self.finished:
                return events
            self.finished = True
            events.append(ParseError(502, f"malformed upstream response: {exc}"))
            return events
        if self._in_head:
            # The task is trusted more than clients: its head is bounded per read, not per header line.
            self._header_sum += len(data)
            if self._header_sum > self._max_header_bytes:
                self.finished = True
                events.append(ParseError(502, "upstream response headers exceed maxHeaderBytes"))
        return events

    def feed_eof(self) -> list[ResponseEvent]:
        """The upstream closed: that ends a close-delimited body; anywhere else it is an error."""
        if self.finished:
            return []
        self.finished = True
        if self.close_delimited and not self._in_head:
            return [END]
        return [ParseError(502, "upstream closed the connection before the response was complete")]
