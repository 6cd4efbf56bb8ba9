"""Pure rendering of the heads the proxy writes: the request towards the upstream, the response towards the
client, and the proxy's own error responses.

Header policy (Service Connect's Envoy, reference §5):

- hop-by-hop headers (Connection and the names it lists, Keep-Alive, TE, Trailer, Transfer-Encoding,
  Upgrade, Proxy-*) are not forwarded; the proxy frames each hop itself. Upgrade/Connection survive only on
  an upgrade request and its 101 answer.
- requests: ``x-request-id`` kept when present, else a new uuid4; ``x-forwarded-proto: http``;
  ``x-envoy-expected-rq-timeout-ms`` set to the per-request timeout when one applies (both directions, as
  every Envoy hop does; the server-side proxy overwrites the client-side value with its own).
- responses: ``server: envoy`` replaces the app's Server header (drop-in compatible with what ECS users
  see), ``x-envoy-upstream-service-time`` is the milliseconds from sending the request to the response head.
"""

from __future__ import annotations

import os
from http import HTTPStatus
from typing import Final

from sc_proxy.http1.parse import RequestHead, ResponseHead

SERVER: Final = b"envoy"

#: Lower-cased names never forwarded as they are (RFC 9110 §7.6.1 plus the legacy Proxy-Connection).
_HOP_BY_HOP: Final = frozenset(
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
_REQUEST_OWN: Final = frozenset({b"x-forwarded-proto", b"x-envoy-expected-rq-timeout-ms"})
_RESPONSE_OWN: Final = frozenset({b"server", b"x-envoy-upstream-service-time"})


def _connection_tokens(headers: list[tuple[bytes, bytes]]) -> frozenset[bytes]:
    tokens: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b","))
    tokens.discard(b"")
    return frozenset(tokens)


def request_id_of(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The client's ``x-request-id``, if it sent one."""
    for name, value in headers:
        if len(name) == 12 and name.lower() == b"x-request-id":
            return value
    return None


def new_request_id() -> bytes:
    """A random (version 4) UUID in its text form, built without the ``uuid`` module's object overhead."""
    h = bytearray(os.urandom(16))
    h[6] = (h[6] & 0x0F) | 0x40
    h[8] = (h[8] & 0x3F) | 0x80
    x = h.hex().encode()
    return b"%s-%s-%s-%s-%s" % (x[:8], x[8:12], x[12:16], x[16:20], x[20:])


def upstream_request_head(
    head: RequestHead, request_id: bytes, timeout_ms: int | None, *, has_request_id: bool
) -> bytes:
    """The request line and headers sent upstream for ``head``.

    ``has_request_id``: the client's headers already carry ``request_id`` (so it is not added twice).
    """
    parts = [head.method, b" ", head.target, b" HTTP/1.1\r\n"]
    append = parts.append
    saw_connection = False
    for name, value in head.headers:
        lname = name.lower()
        if lname in _HOP_BY_HOP or lname in _REQUEST_OWN or lname.startswith(b"proxy-"):
            saw_connection = saw_connection or lname == b"connection"
            continue
        append(name)
        append(b": ")
        append(value)
        append(b"\r\n")
    if saw_connection:
        parts = _drop_listed(parts, 4, head.headers)
        append = parts.append
    if head.upgrade:
        for name, value in head.headers:
            if name.lower() == b"upgrade":
                append(b"connection: upgrade\r\nupgrade: " + value + b"\r\n")
                break
    if head.chunked:
        append(b"transfer-encoding: chunked\r\n")
    if not has_request_id:
        append(b"x-request-id: " + request_id + b"\r\n")
    append(b"x-forwarded-proto: http\r\n")
    if timeout_ms is not None:
        append(b"x-envoy-expected-rq-timeout-ms: %d\r\n" % timeout_ms)
    append(b"\r\n")
    return b"".join(parts)


def _drop_listed(parts: list[bytes], start: int, headers: list[tuple[bytes, bytes]]) -> list[bytes]:
    """Remove the header groups (name, ": ", value, CRLF) from ``parts[start:]`` whose names the
    Connection header lists: they are hop-by-hop too. Rare, so kept off the common path."""
    listed = _connection_tokens(headers) - _HOP_BY_HOP
    if not listed:
        return parts
    kept = parts[:start]
    for i in range(start, len(parts), 4):
        if parts[i].lower() not in listed:
            kept.extend(parts[i : i + 4])
    return kept


def downstream_response_head(
    resp: ResponseHead, service_time_ms: int | None, *, chunked: bool, close: bool, upgrade: bool = False
) -> bytes:
    """The status line and headers written to the client for ``resp``.

    ``chunked``: the proxy frames the body with chunked encoding (upstream sent chunked or close-delimited);
    ``close``: this is the last response on the client connection.
    """
    parts = [b"HTTP/1.1 %d " % resp.status, resp.reason, b"\r\n"]
    append = parts.append
    saw_connection = False
    for name, value in resp.headers:
        lname = name.lower()
        if lname in _HOP_BY_HOP or lname in _RESPONSE_OWN or lname.startswith(b"proxy-"):
            saw_connection = saw_connection or lname == b"connection"
            continue
        append(name)
        append(b": ")
        append(value)
        append(b"\r\n")
    if saw_connection:
        parts = _drop_listed(parts, 3, resp.headers)
        append = parts.append
    append(b"server: envoy\r\n")
    if upgrade:
        for name, value in resp.headers:
            if name.lower() == b"upgrade":
                append(b"connection: upgrade\r\nupgrade: " + value + b"\r\n")
                break
    elif close:
        append(b"connection: close\r\n")
    if chunked:
        append(b"transfer-encoding: chunked\r\n")
    if service_time_ms is not None:
        append(b"x-envoy-upstream-service-time: %d\r\n" % service_time_ms)
    append(b"\r\n")
    return b"".join(parts)


def interim_response_head(resp: ResponseHead) -> bytes:
    """A 1xx (e.g. ``100 Continue``) passed to the client; 1xx never carry framing headers."""
    parts = [b"HTTP/1.1 %d " % resp.status, resp.reason, b"\r\n"]
    for name, value in resp.headers:
        lname = name.lower()
        if lname in _HOP_BY_HOP or lname.startswith(b"proxy-"):
            continue
        parts.append(name + b": " + value + b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"

#: Bodies of the proxy's own answers, worded as Envoy words them so clients and runbooks recognise them.
ERROR_BODIES: Final[dict[int, bytes]] = {
    426: b"Upgrade Required",
    502: b"upstream connect error or disconnect/reset before headers. reset reason: connection termination",
    503: b"upstream connect error or disconnect/reset before headers. reset reason: connection failure",
    504: b"upstream request timeout",
}


def error_response(
    status: int, detail: str = "", *, close: bool = True, request_id: bytes | None = None
) -> bytes:
    """A complete response the proxy itself sends (``detail`` names the rule that was broken)."""
    if status in ERROR_BODIES and not detail:
        body = ERROR_BODIES[status]
    else:
        body = (detail or HTTPStatus(status).phrase).encode("latin-1", "replace")
    phrase = HTTPStatus(status).phrase.encode()
    head = [
        b"HTTP/1.1 %d %s\r\n" % (status, phrase),
        b"server: envoy\r\n",
        b"content-type: text/plain\r\n",
        b"content-length: %d\r\n" % len(body),
    ]
    if request_id is not None:
        head.append(b"x-request-id: " + request_id + b"\r\n")
    if status == 426:
        head.append(b"upgrade: HTTP/1.1\r\n")
    if close:
        head.append(b"connection: close\r\n")
    head.append(b"\r\n")
    return b"".join(head) + body


def chunk(data: bytes) -> bytes:
    """``data`` as one chunk of a chunked body (never empty: an empty chunk would end the body)."""
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK: Final = b"0\r\n\r\n"
