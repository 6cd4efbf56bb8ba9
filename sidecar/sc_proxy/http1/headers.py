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
import re
from http import HTTPStatus
from typing import Final

from sc_proxy.http1.parse import HOP_BY_HOP, RequestHead, ResponseHead


def _connection_tokens(headers: list[tuple[bytes, bytes]]) -> frozenset[bytes]:
    tokens: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b","))
    tokens.discard(b"")
    return frozenset(tokens)


def _without_listed(lines: list[bytes], headers: list[tuple[bytes, bytes]]) -> list[bytes]:
    """``lines`` (four pieces per field) minus the fields a Connection header names (hop-by-hop too; rare,
    off the common path)."""
    listed = _connection_tokens(headers) - HOP_BY_HOP
    kept: list[bytes] = []
    for i in range(0, len(lines), 4):
        if lines[i].lower() not in listed:
            kept += lines[i : i + 4]
    return kept


def _upgrade_value(headers: list[tuple[bytes, bytes]]) -> bytes:
    for name, value in headers:
        if name.lower() == b"upgrade":
            return value
    return b""


#: 32 random hex digits as the 5 groups of a UUID, minus the version digit (always 4) and with the variant
#: digit on its own (mapped to 8, 9, a or b).
_UUID_GROUPS: Final = re.compile(rb"(.{8})(.{4}).(.{3})(.)(.{3})(.{12})", re.DOTALL)
_VARIANT: Final = {b"%x" % n: b"89ab"[n & 3 : (n & 3) + 1] for n in range(16)}
_IDS: list[bytes] = []


def _make_request_ids() -> None:
    # One getrandom() and one regex pass per 256 ids: a fraction of the per-id work of building each alone.
    _IDS[:] = [
        b"%s-%s-4%s-%s%s-%s" % (a, b, c, _VARIANT[d], e, f)
        for a, b, c, d, e, f in _UUID_GROUPS.findall(os.urandom(16 * 256).hex().encode())
    ]


def new_request_id() -> bytes:
    """A random (version 4) UUID in its text form, built without the ``uuid`` module's object overhead."""
    try:
        return _IDS.pop()
    except IndexError:
        _make_request_ids()
        return _IDS.pop()


def upstream_request_head(
    head: RequestHead, request_id: bytes, timeout_ms: int | None, *, has_request_id: bool
) -> bytes:
    """The request line and headers sent upstream for ``head``.

    ``has_request_id``: the client's headers already carry ``request_id`` (so it is not added twice).
    """
    lines = _without_listed(head.lines, head.headers) if head.conn_listed else head.lines
    if head.upgrade or head.chunked:  # off the common path
        extra = (
            b"connection: upgrade\r\nupgrade: " + _upgrade_value(head.headers) + b"\r\n"
            if head.upgrade
            else b""
        )
        if head.chunked:
            extra += b"transfer-encoding: chunked\r\n"
    else:
        extra = b""
    # One formatting operation: this runs once per request.
    return b"%s %s HTTP/1.1\r\n%s%s%sx-forwarded-proto: http\r\n%s\r\n" % (
        head.method,
        head.target,
        b"".join(lines),
        extra,
        b"" if has_request_id else b"x-request-id: " + request_id + b"\r\n",
        b"" if timeout_ms is None else b"x-envoy-expected-rq-timeout-ms: %d\r\n" % timeout_ms,
    )


def downstream_response_head(
    resp: ResponseHead, service_time_ms: int | None, *, chunked: bool, close: bool, upgrade: bool = False
) -> bytes:
    """The status line and headers written to the client for ``resp``.

    ``chunked``: the proxy frames the body with chunked encoding (upstream sent chunked or close-delimited);
    ``close``: this is the last response on the client connection.
    """
    lines = _without_listed(resp.lines, resp.headers) if resp.conn_listed else resp.lines
    if upgrade:
        conn = b"connection: upgrade\r\nupgrade: " + _upgrade_value(resp.headers) + b"\r\n"
    else:
        conn = b"connection: close\r\n" if close else b""
    return b"HTTP/1.1 %d %s\r\n%sserver: envoy\r\n%s%s%s\r\n" % (
        resp.status,
        resp.reason,
        b"".join(lines),
        conn,
        b"transfer-encoding: chunked\r\n" if chunked else b"",
        b"" if service_time_ms is None else b"x-envoy-upstream-service-time: %d\r\n" % service_time_ms,
    )


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
