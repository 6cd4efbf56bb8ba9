"""HTTP/2 frames on the wire (RFC 9113 §4, §6): types, flags, setting codes, and frames as bytes."""

from __future__ import annotations

import enum
import struct
from typing import Final

#: The connection preface a prior-knowledge HTTP/2 client sends first (RFC 9113 §3.4).
PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA: Final = 0x0
HEADERS: Final = 0x1
PRIORITY: Final = 0x2
RST_STREAM: Final = 0x3
SETTINGS: Final = 0x4
PUSH_PROMISE: Final = 0x5
PING: Final = 0x6
GOAWAY: Final = 0x7
WINDOW_UPDATE: Final = 0x8
CONTINUATION: Final = 0x9

END_STREAM: Final = 0x1
ACK: Final = 0x1
END_HEADERS: Final = 0x4
PADDED: Final = 0x8
PRIORITY_FLAG: Final = 0x20


class SettingCodes(enum.IntEnum):
    """SETTINGS parameters (RFC 9113 §6.5.2, RFC 8441)."""

    HEADER_TABLE_SIZE = 0x1
    ENABLE_PUSH = 0x2
    MAX_CONCURRENT_STREAMS = 0x3
    INITIAL_WINDOW_SIZE = 0x4
    MAX_FRAME_SIZE = 0x5
    MAX_HEADER_LIST_SIZE = 0x6
    ENABLE_CONNECT_PROTOCOL = 0x8


#: The largest flow-control window (and WINDOW_UPDATE increment) there may be.
MAX_WINDOW: Final = 2**31 - 1
DEFAULT_WINDOW: Final = 65535
DEFAULT_FRAME_SIZE: Final = 16384
MAX_FRAME_SIZE_LIMIT: Final = 2**24 - 1

#: length (24 bits, as 16 + 8), type, flags, stream id (the reserved bit masked off after reading).
HEAD: Final = struct.Struct(">HBBBL")
HEAD_SIZE: Final = 9
_U32: Final = struct.Struct(">L")
_U32_PAIR: Final = struct.Struct(">LL")
_SETTING: Final = struct.Struct(">HL")


def head(length: int, ftype: int, flags: int, stream_id: int) -> bytes:
    """The 9-byte head of a frame."""
    return HEAD.pack(length >> 8, length & 0xFF, ftype, flags, stream_id)


def rst_stream(stream_id: int, error_code: int) -> bytes:
    return head(4, RST_STREAM, 0, stream_id) + _U32.pack(error_code)


def window_update(stream_id: int, increment: int) -> bytes:
    return head(4, WINDOW_UPDATE, 0, stream_id) + _U32.pack(increment)


def settings(values: dict[int, int]) -> bytes:
    body = b"".join(_SETTING.pack(code, value) for code, value in values.items())
    return head(len(body), SETTINGS, 0, 0) + body


SETTINGS_ACK: Final = head(0, SETTINGS, ACK, 0)


def ping_ack(opaque: bytes) -> bytes:
    return head(8, PING, ACK, 0) + opaque


def goaway(last_stream_id: int, error_code: int, debug: bytes = b"") -> bytes:
    return head(8 + len(debug), GOAWAY, 0, 0) + _U32_PAIR.pack(last_stream_id, error_code) + debug


def u32(data: bytes, offset: int) -> int:
    """The 32-bit number at ``offset``, reserved bit included (callers mask it where it is reserved)."""
    value: int = _U32.unpack_from(data, offset)[0]
    return value


def read_settings(payload: bytes) -> list[tuple[int, int]]:
    """The (code, value) pairs of a SETTINGS payload whose length is a multiple of 6."""
    return [_SETTING.unpack_from(payload, i) for i in range(0, len(payload), 6)]
