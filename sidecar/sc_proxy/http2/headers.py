"""Pure header rewriting for HTTP/2 streams: the policy of the HTTP/1.1 side (``sc_proxy.http1.headers``).

Requests: connection-specific fields are dropped (HTTP/2 forbids them; the codec already refuses them
inbound) except ``te: trailers``, which gRPC needs; ``x-request-id`` is kept or created;
``x-forwarded-proto: http`` and ``x-envoy-expected-rq-timeout-ms`` are set by the proxy. Responses:
``server: envoy`` and ``x-envoy-upstream-service-time`` as every Service Connect hop adds them.
"""

from __future__ import annotations

import os
from typing import Final

Headers = list[tuple[bytes, bytes]]

_DROP: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"upgrade",
        b"x-forwarded-proto",
        b"x-envoy-expected-rq-timeout-ms",
    }
)
_RESPONSE_OWN: Final = frozenset({b"server", b"x-envoy-upstream-service-time"})


def upstream_request(headers: Headers, timeout_ms: int | None) -> Headers:
    """The request headers sent upstream (pseudo-headers first, as received)."""
    out: Headers = []
    append = out.append
    has_id = False
    for item in headers:
        name = item[0]
        if name in _DROP:
            continue
        if name == b"te":
            if item[1].strip().lower() == b"trailers":
                append((b"te", b"trailers"))
            continue
        if name == b"x-request-id":
            has_id = True
        append(item)
    if not has_id:
        append((b"x-request-id", request_id()))
    append((b"x-forwarded-proto", b"http"))
    if timeout_ms is not None:
        append((b"x-envoy-expected-rq-timeout-ms", str(timeout_ms).encode()))
    return out


# Random hex digits for request ids, read from the OS 256 ids at a time: one getrandom system call per
# request was 1 % of the proxy's time.
_RANDOM = [""]
_RANDOM_AT = [0]


def request_id() -> bytes:
    """A random UUID (version 4) in its text form, as Envoy generates them."""
    at = _RANDOM_AT[0]
    if at >= len(_RANDOM[0]):
        _RANDOM[0] = os.urandom(16 * 256).hex()
        at = 0
    _RANDOM_AT[0] = at + 32
    h = _RANDOM[0][at : at + 32]
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}".encode()


def downstream_response(headers: Headers, service_ms: int) -> Headers:
    """The response headers sent to the client."""
    out: Headers = [item for item in headers if item[0] not in _RESPONSE_OWN]
    out.append((b"server", b"envoy"))
    out.append((b"x-envoy-upstream-service-time", str(service_ms).encode()))
    return out


def status_of(headers: Headers) -> int:
    """The ``:status`` of a response head (0 when missing or malformed)."""
    for name, value in headers:
        if name == b":status":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


def pseudo(headers: Headers, name: bytes) -> bytes:
    """A request pseudo-header (``:method``, ``:path`` …), or b"-"."""
    for key, value in headers:
        if key == name:
            return value
        if not key.startswith(b":"):
            break
    return b"-"


def local_response(status: int, body: bytes) -> Headers:
    """Headers for a response the proxy makes itself (504, 503 …)."""
    return [
        (b":status", str(status).encode()),
        (b"content-type", b"text/plain"),
        (b"content-length", str(len(body)).encode()),
        (b"server", b"envoy"),
    ]
