"""Pure gRPC helpers: recognising gRPC requests, reading grpc-status, building the proxy's own answers."""

from __future__ import annotations

from typing import Final

Headers = list[tuple[bytes, bytes]]

OK: Final = 0
CANCELLED: Final = 1
DEADLINE_EXCEEDED: Final = 4
UNAVAILABLE: Final = 14

#: gRPC code -> the HTTP status it corresponds to (the gRPC HTTP mapping Envoy uses); the class of that
#: status is what egress metrics count. Codes outside 0-16 count as 500.
_HTTP_EQUIVALENT: Final = (
    200, 499, 500, 400, 504, 404, 409, 403, 429, 400, 409, 400, 501, 500, 503, 500, 401,
)  # fmt: skip


def is_grpc(headers: Headers) -> bool:
    """Whether a request's content-type is gRPC (``application/grpc`` or ``application/grpc+proto`` …)."""
    for name, value in headers:
        if name == b"content-type":
            return value.startswith(b"application/grpc")
    return False


def status_of(headers: Headers) -> int | None:
    """The grpc-status in trailers (or a trailers-only response), or None when absent or not a number."""
    for name, value in headers:
        if name == b"grpc-status":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def status_class(code: int) -> str:
    """``"ok"``, ``"client"`` or ``"server"`` for metrics (from the HTTP-equivalent status of the code)."""
    http = _HTTP_EQUIVALENT[code] if 0 <= code < len(_HTTP_EQUIVALENT) else 500
    if http < 300:
        return "ok"
    return "client" if http < 500 else "server"


def trailers_only(code: int, message: str) -> Headers:
    """A complete gRPC response carrying only a status (the proxy's own errors)."""
    return [
        (b":status", b"200"),
        (b"content-type", b"application/grpc"),
        (b"grpc-status", str(code).encode()),
        (b"grpc-message", _percent_encode(message)),
        (b"server", b"envoy"),
    ]


def status_trailers(code: int, message: str) -> Headers:
    """Trailers ending a gRPC response whose headers were already sent."""
    return [(b"grpc-status", str(code).encode()), (b"grpc-message", _percent_encode(message))]


def _percent_encode(message: str) -> bytes:
    # grpc-message is percent-encoded UTF-8 for bytes outside printable ASCII (and '%').
    out = bytearray()
    for b in message.encode():
        if 0x20 <= b <= 0x7E and b != 0x25:
            out.append(b)
        else:
            out += b"%%%02X" % b
    return bytes(out)
