"""PROXY protocol version 2 (HAProxy's spec, section 2.2): the header a client proxy sends before any
byte of a connection it makes through a peer cluster's gateway, naming the task it wants.

Only what the gateway path needs: the ``PROXY`` command over TCP/IPv4 or TCP/IPv6 is encoded and decoded,
``LOCAL`` is decoded (it carries no destination, so the gateway refuses it), TLVs after the addresses are
skipped. The binary form has a fixed 16-byte prefix and a length, so a reader knows after 16 bytes how much
to wait for and can bound it; the text form (version 1) is refused. Pure functions, no I/O.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import NamedTuple

#: The 12-byte signature that starts every version 2 header.
SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_PREFIX = struct.Struct("!12sBBH")  # signature, version|command, family|transport, length
PREFIX_LEN = _PREFIX.size  # 16
#: The largest header this reader accepts: prefix + a Unix-socket address block (216) + TLV room. A longer
#: length field is refused rather than buffered.
MAX_HEADER_LEN = PREFIX_LEN + 216 + 256

_VERSION_2 = 0x20
_CMD_LOCAL = 0x0
_CMD_PROXY = 0x1
_TCP4 = 0x11
_TCP6 = 0x21
_IPV4 = struct.Struct("!4s4sHH")  # 12 bytes
_IPV6 = struct.Struct("!16s16sHH")  # 36 bytes


class HeaderError(ValueError):
    """The bytes are not a usable PROXY v2 header (the message says why)."""


class ProxyHeader(NamedTuple):
    """A decoded header: ``destination`` is None for the LOCAL command."""

    source: tuple[str, int] | None
    destination: tuple[str, int] | None


def encode(destination: tuple[str, int], source: tuple[str, int] | None = None) -> bytes:
    """A ``PROXY`` TCP header naming ``destination``; ``source`` defaults to the unspecified address of
    the destination's family, port 0 (the gateway routes on the destination alone)."""
    dst = ipaddress.ip_address(destination[0])
    src = (
        ipaddress.ip_address(source[0])
        if source
        else ipaddress.ip_address("::" if dst.version == 6 else "0.0.0.0")
    )
    if src.version != dst.version:
        raise ValueError(f"source {src} and destination {dst} are of different address families")
    sport = source[1] if source else 0
    dport = destination[1]
    if not (0 <= sport <= 65535 and 0 <= dport <= 65535):
        raise ValueError("port out of range 0-65535")
    if dst.version == 4:
        body = _IPV4.pack(src.packed, dst.packed, sport, dport)
        fam = _TCP4
    else:
        body = _IPV6.pack(src.packed, dst.packed, sport, dport)
        fam = _TCP6
    return _PREFIX.pack(SIGNATURE, _VERSION_2 | _CMD_PROXY, fam, len(body)) + body


def header_length(prefix: bytes) -> int:
    """The whole header's length from its first 16 bytes; raises :class:`HeaderError` when they are not
    a version 2 prefix or announce more than :data:`MAX_HEADER_LEN`."""
    if len(prefix) < PREFIX_LEN:
        raise ValueError("need 16 bytes")
    sig, ver_cmd, _fam, length = _PREFIX.unpack_from(prefix)
    if sig != SIGNATURE:
        raise HeaderError("not a PROXY protocol v2 signature")
    if ver_cmd & 0xF0 != _VERSION_2:
        raise HeaderError(f"PROXY protocol version {ver_cmd >> 4} (only 2 is accepted)")
    total: int = PREFIX_LEN + length
    if total > MAX_HEADER_LEN:
        raise HeaderError(f"header of {total} bytes exceeds {MAX_HEADER_LEN}")
    return total


def decode(buffer: bytes) -> tuple[ProxyHeader, int] | None:
    """Decode a header at the start of ``buffer``: (header, bytes consumed), or None while more bytes are
    needed. Raises :class:`HeaderError` for anything that is not a TCP PROXY or LOCAL v2 header."""
    if len(buffer) < PREFIX_LEN:
        if not SIGNATURE.startswith(buffer[: len(SIGNATURE)]):
            raise HeaderError("not a PROXY protocol v2 signature")
        return None
    total = header_length(buffer)
    if len(buffer) < total:
        return None
    _sig, ver_cmd, fam, length = _PREFIX.unpack_from(buffer)
    cmd = ver_cmd & 0x0F
    if cmd == _CMD_LOCAL:
        return ProxyHeader(None, None), total
    if cmd != _CMD_PROXY:
        raise HeaderError(f"unknown PROXY protocol command {cmd}")
    body = buffer[PREFIX_LEN:total]
    if fam == _TCP4 and length >= _IPV4.size:
        s, d, sp, dp = _IPV4.unpack_from(body)
    elif fam == _TCP6 and length >= _IPV6.size:
        s, d, sp, dp = _IPV6.unpack_from(body)
    else:
        raise HeaderError(f"address family/transport 0x{fam:02x} is not TCP over IPv4 or IPv6")
    src = (str(ipaddress.ip_address(s)), int(sp))
    dst = (str(ipaddress.ip_address(d)), int(dp))
    return ProxyHeader(src, dst), total
