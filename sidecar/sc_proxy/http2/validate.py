"""The checks on a client's request headers and trailers (RFC 9113 §8.2, §8.3), in one pass.

The rules h2's inbound validation applies (it chains seven generators per header block; this is one loop):
field name and value characters, empty names, ``te`` other than ``trailers``, connection-specific fields,
pseudo-header duplicates, order, names and the set a request needs (CONNECT and extended CONNECT
included), no pseudo-header in trailers, ``:authority``/``host`` present and equal, a non-empty ``:path``.
A violation raises :class:`~sc_proxy.http2.errors.ProtocolError`: the connection ends with GOAWAY
PROTOCOL_ERROR.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from sc_proxy.http2.errors import ProtocolError

#: A name byte outside 0x21-0x7e, or an upper-case letter (RFC 9113 §8.2.1).
_BAD_NAME: Final = re.compile(rb"[^\x21-\x40\x5b-\x7e]")
#: NUL, LF or CR anywhere in a value.
_BAD_VALUE: Final = re.compile(rb"[\x00\n\r]")
_CONNECTION_FIELDS: Final = frozenset(
    {b"connection", b"proxy-connection", b"keep-alive", b"transfer-encoding", b"upgrade"}
)
#: Regular fields (not ``host``, ``te``, nor connection-specific) that passed every check before: clients
#: send the same ``user-agent``, ``accept`` … on every request. Bounded in number and size.
_CLEAN: set[tuple[bytes, bytes]] = set()
_CLEAN_MEMORY: Final = 4096
_CLEAN_LONGEST: Final = 256
_PSEUDO: Final = frozenset({b":method", b":scheme", b":authority", b":path", b":status", b":protocol"})


def check_request(headers: Iterable[tuple[bytes, bytes]], trailers: bool) -> None:
    """Raise ProtocolError unless ``headers`` is a valid request head (or, with ``trailers``, valid
    request trailers) as h2's own inbound validation decides."""
    pseudo: set[bytes] = set()
    regular_seen = False
    method: bytes | None = None
    authority: bytes | None = None
    host: bytes | None = None
    clean = _CLEAN
    for field in headers:
        if field in clean:  # a regular field already found valid: only its position matters
            regular_seen = True
            continue
        name, value = field
        if not name:
            raise ProtocolError("Received header name with zero length.")
        if _BAD_NAME.search(name) is not None or name.find(b":", 1) != -1:
            raise ProtocolError(f"Illegal character in header name: {name!r}")
        if value:
            if _BAD_VALUE.search(value) is not None:
                raise ProtocolError(f"Illegal character in header value: {value!r}")
            if value[0] in (0x20, 0x09) or value[-1] in (0x20, 0x09):
                raise ProtocolError(f"Received header value surrounded by whitespace {value!r}")
        if name[0] == 0x3A:
            if name in pseudo:
                raise ProtocolError(f"Received duplicate pseudo-header field {name!r}")
            if regular_seen:
                raise ProtocolError(f"Received pseudo-header field out of sequence: {name!r}")
            if name not in _PSEUDO:
                raise ProtocolError(f"Received custom pseudo-header field {name!r}")
            pseudo.add(name)
            if name == b":method":
                method = value
            elif name == b":authority":
                authority = value
            elif name == b":path" and not value:
                raise ProtocolError("An empty :path header is forbidden")
            continue
        regular_seen = True
        if name == b"te" and value.lower() != b"trailers":
            raise ProtocolError(f"Invalid value for TE header: {value!r}")
        if name in _CONNECTION_FIELDS:
            raise ProtocolError(f"Connection-specific header field present: {name!r}.")
        if name == b"host":
            if not trailers:
                if host is not None:
                    raise ProtocolError("Request header block has multiple Host headers.")
                host = value
        elif name != b"te" and len(value) <= _CLEAN_LONGEST and len(clean) < _CLEAN_MEMORY:
            clean.add((name, value))
    if trailers:
        if pseudo:
            raise ProtocolError(f"Received pseudo-header in trailer {pseudo}")
        return
    _check_pseudo_set(pseudo, method)
    if authority is None and host is None:
        raise ProtocolError("Request header block does not have an :authority or Host header.")
    if authority is not None and host is not None and authority != host:
        raise ProtocolError("Request header block has mismatched :authority and Host headers")


def _check_pseudo_set(pseudo: set[bytes], method: bytes | None) -> None:
    if b":method" not in pseudo:
        raise ProtocolError("Header block missing mandatory b':method' header")
    connect = method == b"CONNECT"
    if connect and b":protocol" not in pseudo:
        # Ordinary CONNECT (RFC 9113 §8.5): no :scheme, no :path.
        if b":scheme" in pseudo or b":path" in pseudo:
            raise ProtocolError("Ordinary CONNECT MUST NOT include :scheme or :path")
    elif b":scheme" not in pseudo or b":path" not in pseudo:
        raise ProtocolError("Header block missing mandatory :scheme or :path header")
    if b":status" in pseudo:
        raise ProtocolError("Encountered response-only headers {b':status'}")
    if not connect and b":protocol" in pseudo:
        raise ProtocolError("Encountered connect-request-only headers {b':protocol'}")
