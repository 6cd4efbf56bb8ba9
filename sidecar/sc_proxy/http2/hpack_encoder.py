"""An HPACK encoder (RFC 7541) with constant-time table lookups, in place of hpack's own.

hpack's encoder searches its dynamic table linearly for every header field and makes several Python calls
per field (integer coding, logging, type conversions): about a third of the proxy's CPU per request. This
one keeps dicts from (name, value) and from name to the insertion number of the newest matching entry, so
a field costs a few dict lookups; a field sent before and still in a table costs one (its indexed
representation is remembered until the next insertion renumbers the dynamic table). It writes the same
representations hpack's decoder (and any HPACK decoder) reads: indexed fields, literals with incremental
indexing, without indexing, or never indexed.

Policy: literals are not Huffman-coded (cheaper to write here and to read at the next hop, a few more
bytes on the wire); fields whose value is unique to a request or response (``x-request-id``, ``date`` …)
are written without indexing, so they do not push reusable entries out of the peer's table; fields marked
never-indexed (:class:`hpack.NeverIndexedHeaderTuple`, or a 3-tuple with a true third item) stay so.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any, Final

from hpack import Encoder, HeaderTuple
from hpack.table import HeaderTable

#: Values that differ on (almost) every message: indexing them only evicts useful entries.
_NOT_INDEXED: Final = frozenset(
    {
        b"x-request-id",
        b"date",
        b"x-envoy-upstream-service-time",
        b"x-envoy-expected-rq-timeout-ms",
        b"set-cookie",
        b"etag",
        b"last-modified",
        b"if-modified-since",
        b"if-none-match",
        b"age",
        b"location",
        b"grpc-timeout",
    }
)

_STATIC_LENGTH: Final = HeaderTable.STATIC_TABLE_LENGTH
_STATIC_EXACT: Final[dict[tuple[bytes, bytes], int]] = {}
_STATIC_NAME: Final[dict[bytes, int]] = {}
for _i, (_n, _v) in enumerate(HeaderTable.STATIC_TABLE, 1):
    _STATIC_EXACT.setdefault((_n, _v), _i)
    _STATIC_NAME.setdefault(_n, _i)


def _integer(value: int, prefix_bits: int, flags: int) -> bytes:
    """``value`` as an HPACK integer with an N-bit prefix, ``flags`` or-ed into the first byte (§5.1)."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((flags | value,))
    out = bytearray((flags | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


#: Precomputed short forms: indexed fields (7-bit prefix) and string lengths (7-bit, no Huffman flag).
_INDEXED: Final = tuple(_integer(i, 7, 0x80) for i in range(512))
_LENGTH: Final = tuple(_integer(i, 7, 0) for i in range(512))


#: Fields whose indexed representation is remembered at most (a bound against hostile variety).
_INDEXED_CACHE: Final = 1024


def _length(n: int) -> bytes:
    return _LENGTH[n] if n < 512 else _integer(n, 7, 0)


class FastEncoder(Encoder):
    """A drop-in :class:`hpack.Encoder` for h2: same interface (``encode``, ``header_table_size``)."""

    def __init__(self) -> None:
        super().__init__()
        self._max = HeaderTable.DEFAULT_SIZE
        self._size = 0
        self._inserted = 0  # entries ever inserted; the newest has insertion number _inserted - 1
        # Oldest first: (name, value, size, insertion number).
        self._entries: deque[tuple[bytes, bytes, int, int]] = deque()
        self._exact: dict[tuple[bytes, bytes], int] = {}
        self._names: dict[bytes, int] = {}
        self._size_updates: list[int] = []
        # The indexed representation of fields seen before: valid until the next insertion renumbers the
        # dynamic table (cleared then). Most fields of a proxy's traffic repeat: one lookup each.
        self._indexed: dict[tuple[bytes, bytes], bytes] = {}
        # Likewise the name part of literals without indexing, for the names in _NOT_INDEXED.
        self._unindexed: dict[bytes, bytes] = {}

    # h2 sets this when the peer's SETTINGS_HEADER_TABLE_SIZE changes.
    @property
    def header_table_size(self) -> int:
        return self._max

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        value = int(value)
        if value != self._max:
            self._indexed.clear()
            self._unindexed.clear()
            self._max = value
            self._size_updates.append(value)
            self._evict(0)

    def _evict(self, room: int) -> None:
        """Drop the oldest entries until ``room`` more bytes fit in the table."""
        entries = self._entries
        limit = self._max - room
        while entries and self._size > limit:
            name, value, size, seq = entries.popleft()
            self._size -= size
            key = (name, value)
            if self._exact.get(key) == seq:
                del self._exact[key]
            if self._names.get(name) == seq:
                del self._names[name]

    def _insert(self, name: bytes, value: bytes) -> None:
        size = 32 + len(name) + len(value)
        if size > self._max:
            # Too big for the table: inserting it empties the table (§4.4).
            self._evict(self._max + 1)
            self._indexed.clear()
            self._unindexed.clear()
            return
        self._evict(size)
        self._indexed.clear()
        self._unindexed.clear()
        seq = self._inserted
        self._inserted = seq + 1
        self._entries.append((name, value, size, seq))
        self._size += size
        self._exact[(name, value)] = seq
        self._names[name] = seq

    def _name_part(self, name: bytes, flags: int) -> bytes:
        """A literal's first byte(s) with the name's index (or a literal name), before its value."""
        index = _STATIC_NAME.get(name, 0)
        if not index:
            seq = self._names.get(name)
            if seq is not None:
                index = _STATIC_LENGTH + self._inserted - seq
        if index:
            return _integer(index, 4, flags)
        return _integer(0, 4, flags) + _length(len(name)) + name

    def encode(self, headers: Iterable[Any], huffman: bool = False) -> bytes:
        """One header block for ``headers`` (an iterable of 2-tuples, 3-tuples or HeaderTuples of bytes or
        str). ``huffman`` is accepted for compatibility and ignored: literals are never Huffman-coded."""
        out: list[bytes] = []
        if self._size_updates:
            out.extend(_integer(size, 5, 0x20) for size in self._size_updates)
            self._size_updates = []
        if isinstance(headers, dict):
            headers = sorted(headers.items(), key=lambda kv: not _as_bytes(kv[0]).startswith(b":"))
        exact = self._exact
        names = self._names
        static_exact = _STATIC_EXACT
        indexed = self._indexed
        unindexed = self._unindexed
        append = out.append
        for header in headers:
            if type(header) is tuple and len(header) == 2:
                hit = indexed.get(header)
                if hit is not None:
                    append(hit)
                    continue
                name, value = header
                never = False
            elif isinstance(header, HeaderTuple):
                name, value = header
                never = not header.indexable
            else:
                name, value = header[0], header[1]
                never = len(header) > 2 and bool(header[2])
            if type(name) is not bytes:
                name = _as_bytes(name)
            if type(value) is not bytes:
                value = _as_bytes(value)
            key = (name, value)
            if not never:
                index = static_exact.get(key)
                if index is None:
                    seq = exact.get(key)
                    if seq is not None:
                        index = _STATIC_LENGTH + self._inserted - seq
                if index is not None:
                    rep = _INDEXED[index] if index < 512 else _integer(index, 7, 0x80)
                    if len(indexed) < _INDEXED_CACHE:
                        indexed[key] = rep
                    append(rep)
                    continue
            if not never and name in _NOT_INDEXED:
                # A value unique to this message: literal without indexing, its name part remembered.
                prefix = unindexed.get(name)
                if prefix is None:
                    prefix = unindexed[name] = self._name_part(name, 0x00)
                append(prefix)
                append(_length(len(value)))
                append(value)
                continue
            index = _STATIC_NAME.get(name, 0)
            if not index:
                seq = names.get(name)
                if seq is not None:
                    index = _STATIC_LENGTH + self._inserted - seq
            if never:
                append(_integer(index, 4, 0x10))
            elif name in _NOT_INDEXED or 32 + len(name) + len(value) > self._max * 3 // 4:
                append(_integer(index, 4, 0x00))
            else:
                append(_integer(index, 6, 0x40))
                self._insert(name, value)
            if not index:
                append(_length(len(name)))
                append(name)
            append(_length(len(value)))
            append(value)
        return b"".join(out)


def _as_bytes(v: object) -> bytes:
    if type(v) is bytes:
        return v
    return (v if type(v) is str else str(v)).encode()
