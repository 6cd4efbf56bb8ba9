"""An HPACK decoder (RFC 7541) in one loop, in place of hpack's own for the raw-bytes decoding h2 does.

hpack's decoder makes several Python calls per header field (a slice of the block, integer decoding, a
HeaderTuple, logging, a conversion pass at the end): about 15 % of the proxy's CPU per request. This one
reads the same representations inline with the same checks and the same exceptions — invalid indices,
truncated strings and integers, integers longer than hpack accepts, table-size updates above the allowed
size or after a field, header lists above ``max_header_list_size`` — so h2 reacts to a hostile peer exactly
as before. It keeps hpack's :class:`~hpack.table.HeaderTable` for the dynamic table. Fields come back as
plain ``(name, value)`` byte tuples, or :class:`hpack.NeverIndexedHeaderTuple` for never-indexed fields
(so the encoder of the next hop keeps them never-indexed).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from hpack import Decoder, HeaderTuple, NeverIndexedHeaderTuple
from hpack.exceptions import (
    HPACKDecodingError,
    InvalidTableIndex,
    InvalidTableSizeError,
    OversizedHeaderListError,
)
from hpack.huffman_table import decode_huffman
from hpack.table import HeaderTable

# Typed as a tuple of any length: as hpack's 61-tuple, mypyc would keep it unpacked in C and build it anew
# (61 tuples) for every lookup by index.
_STATIC: Final[tuple[tuple[bytes, bytes], ...]] = HeaderTable.STATIC_TABLE
_STATIC_LENGTH: Final = HeaderTable.STATIC_TABLE_LENGTH
#: Bytes an integer may take at most, prefix byte included (hpack's VARINT_MAX_LENGTH of 5, plus one).
_MAX_INTEGER_BYTES: Final = 6


#: Huffman-coded strings decoded before (hpack decodes bit by bit in Python). Peers such as nginx send
#: every response field as a Huffman-coded literal without indexing, the same values over and over.
_HUFFMAN_SEEN: dict[bytes, bytes] = {}
_HUFFMAN_MEMORY: Final = 4096
_HUFFMAN_LONGEST: Final = 128  # bytes coded; at most 4096 x 128 coded bytes (and ~1.6x that decoded) kept


def _integer(data: bytes, i: int, value: int) -> tuple[int, int]:
    """The rest of an integer whose prefix (``value``, all ones) ended at ``i``: (value, next index)."""
    start = i - 1
    shift = 0
    n = len(data)
    while True:
        if i >= n:
            raise HPACKDecodingError("Unable to decode HPACK integer representation")
        byte = data[i]
        i += 1
        value += (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7
        if i - start >= _MAX_INTEGER_BYTES:
            raise HPACKDecodingError("Variable integer representation is too long")


def _string(data: bytes, i: int) -> tuple[bytes, int]:
    """A string literal at ``i``: (bytes, next index)."""
    if i >= len(data):
        raise HPACKDecodingError("Truncated header block")
    first = data[i]
    length = first & 0x7F
    i += 1
    if length == 0x7F:
        length, i = _integer(data, i, length)
    end = i + length
    if end > len(data):
        raise HPACKDecodingError("Truncated header block")
    s = data[i:end]
    if first & 0x80:
        plain = _HUFFMAN_SEEN.get(s)
        if plain is None:
            plain = decode_huffman(s)
            if length <= _HUFFMAN_LONGEST:
                if len(_HUFFMAN_SEEN) >= _HUFFMAN_MEMORY:
                    _HUFFMAN_SEEN.clear()
                _HUFFMAN_SEEN[s] = plain
        s = plain
    return s, end


class FastDecoder(Decoder):
    """A drop-in :class:`hpack.Decoder` for h2 (``decode(..., raw=True)``, ``max_header_list_size``,
    ``max_allowed_table_size``, ``header_table_size``)."""

    def _entry(self, index: int) -> tuple[bytes, bytes]:
        if 0 < index <= _STATIC_LENGTH:
            return _STATIC[index - 1]
        dynamic = self.header_table.dynamic_entries
        j = index - _STATIC_LENGTH - 1
        if 0 <= j < len(dynamic):
            return dynamic[j]
        raise InvalidTableIndex(f"Invalid table index {index}")

    def decode(self, data: bytes, raw: bool = False) -> Iterable[HeaderTuple]:
        if not raw:
            return super().decode(data, raw)
        data = bytes(data)
        headers: list[Any] = []
        append = headers.append
        entry = self._entry
        limit = self.max_header_list_size
        inflated = 0
        n = len(data)
        i = 0
        while i < n:
            first = data[i]
            i += 1
            if first & 0x80:
                # Indexed field.
                index = first & 0x7F
                if index == 0x7F:
                    index, i = _integer(data, i, index)
                header = _STATIC[index - 1] if 0 < index <= _STATIC_LENGTH else entry(index)
                append(header)
                inflated += 32 + len(header[0]) + len(header[1])
            else:
                if first & 0x40:
                    # Literal with incremental indexing.
                    index = first & 0x3F
                    mask = 0x3F
                    indexing = True
                    never = False
                elif first & 0x20:
                    # Dynamic table size update: only before the first field.
                    if headers:
                        raise HPACKDecodingError("Table size update not at the start of the block")
                    size = first & 0x1F
                    if size == 0x1F:
                        size, i = _integer(data, i, size)
                    if size > self.max_allowed_table_size:
                        raise InvalidTableSizeError("Encoder exceeded max allowable table size")
                    self.header_table_size = size
                    continue
                else:
                    # Literal without indexing, or never indexed.
                    index = first & 0x0F
                    mask = 0x0F
                    indexing = False
                    never = bool(first & 0x10)
                if index == mask:
                    index, i = _integer(data, i, index)
                if index:
                    name = entry(index)[0]
                else:
                    name, i = _string(data, i)
                value, i = _string(data, i)
                if indexing:
                    self.header_table.add(name, value)
                # Not one conditional expression: its type would be the plain 2-tuple both branches share,
                # and mypyc would rebuild the NeverIndexedHeaderTuple as a plain tuple.
                if never:
                    append(NeverIndexedHeaderTuple(name, value))
                else:
                    append((name, value))
                inflated += 32 + len(name) + len(value)
            if inflated > limit:
                raise OversizedHeaderListError(f"A header list larger than {limit} has been received")
        if self.header_table_size > self.max_allowed_table_size:
            raise InvalidTableSizeError("Encoder did not shrink table size to within the max")
        return headers
