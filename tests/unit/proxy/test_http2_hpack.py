"""The proxy's HPACK coders against hpack's: every block the encoder writes decodes (with hpack's decoder) to
exactly the header list it was given, across table evictions, peer table-size changes and never-indexed
fields; the decoder gives hpack's answers, and raises hpack's errors, for valid, mutated and random bytes."""

from __future__ import annotations

import pytest
from hpack import Decoder, Encoder, NeverIndexedHeaderTuple
from hpack.exceptions import (
    HPACKDecodingError,
    HPACKError,
    InvalidTableIndex,
    InvalidTableSizeError,
    OversizedHeaderListError,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from sc_proxy.http2.hpack_decoder import FastDecoder
from sc_proxy.http2.hpack_encoder import FastEncoder

NAMES = [b":method", b":path", b":status", b"content-type", b"x-request-id", b"x-custom", b"date", b"te"]
VALUES = [b"", b"GET", b"/", b"200", b"application/grpc", b"0", b"x" * 200, b"\x00\xff binary"]

field = st.tuples(
    st.sampled_from(NAMES) | st.binary(min_size=1, max_size=40),
    st.sampled_from(VALUES) | st.binary(max_size=300),
    st.booleans(),  # never indexed
)
# A block of fields, optionally preceded by a change of the peer's SETTINGS_HEADER_TABLE_SIZE.
block = st.tuples(st.none() | st.integers(0, 4096), st.lists(field, max_size=20))


@settings(max_examples=300, deadline=None)
@given(st.lists(block, min_size=1, max_size=30))
def test_every_block_decodes_to_its_fields(
    blocks: list[tuple[int | None, list[tuple[bytes, bytes, bool]]]],
) -> None:
    encoder = FastEncoder()
    decoder = Decoder()
    for table_size, fields in blocks:
        if table_size is not None:
            # What h2 does on the peer's SETTINGS; the peer's decoder allows that size from then on.
            encoder.header_table_size = table_size
            decoder.max_allowed_table_size = table_size
        headers = [NeverIndexedHeaderTuple(n, v) if never else (n, v) for n, v, never in fields]
        decoded = decoder.decode(encoder.encode(headers), raw=True)
        assert [(bytes(n), bytes(v)) for n, v in decoded] == [(n, v) for n, v, _ in fields]
        # Never-indexed stays never-indexed at the next hop (RFC 7541 §7.1.3); others are not marked so.
        assert [not h.indexable for h in decoded] == [never for _, _, never in fields]


def test_repeated_fields_become_one_byte_each() -> None:
    encoder = FastEncoder()
    head = [(b":status", b"200"), (b"content-type", b"application/grpc"), (b"x-custom", b"abc")]
    first = encoder.encode(head)
    again = encoder.encode(head)
    assert len(again) == 3 < len(first)
    assert Decoder().decode(first + again, raw=True) == head + head


def test_per_message_values_are_not_indexed() -> None:
    # A request id differs on every request: indexing it would only push reusable entries out of the table.
    encoder = FastEncoder()
    decoder = Decoder()
    for i in range(100):
        decoder.decode(encoder.encode([(b"x-request-id", b"%036d" % i), (b"x-app", b"stable")]), raw=True)
    assert list(decoder.header_table.dynamic_entries) == [(b"x-app", b"stable")]


def test_str_fields_and_dict_input() -> None:
    encoder = FastEncoder()
    block = encoder.encode({"x-a": "1", ":status": "204"})
    decoded: list[tuple[object, object]] = [(n, v) for n, v in Decoder().decode(block)]
    assert decoded == [(":status", "204"), ("x-a", "1")]


def test_large_indices_and_lengths_use_multi_byte_integers() -> None:
    # 150 small entries: dynamic indices beyond 127 need a second byte; a 1000-byte value a long length.
    encoder = FastEncoder()
    decoder = Decoder()
    heads = [[(b"n%d" % i, b"v")] for i in range(150)]
    for head in heads:
        decoder.decode(encoder.encode(head), raw=True)
    oldest_kept = [(b"n40", b"v"), (b"x-long", b"y" * 1000)]
    assert decoder.decode(encoder.encode(oldest_kept), raw=True) == oldest_kept


# -- the decoder: the same answers and the same refusals as hpack's, for any bytes -------------------------


def _reference(decoder: Decoder, block: bytes) -> object:
    try:
        return [(bytes(n), bytes(v), h.indexable) for h in decoder.decode(block, raw=True) for n, v in [h]]
    except HPACKError as e:
        return type(e)


def _ours(decoder: FastDecoder, block: bytes) -> object:
    try:
        out = []
        for h in decoder.decode(block, raw=True):
            n, v = h
            assert type(n) is bytes
            assert type(v) is bytes
            out.append((n, v, not isinstance(h, NeverIndexedHeaderTuple)))
        return out
    except HPACKError as e:
        return type(e)


def _decoders(max_list: int, max_table: int) -> tuple[Decoder, FastDecoder]:
    ref, ours = Decoder(), FastDecoder()
    for d in (ref, ours):
        d.max_header_list_size = max_list
        d.max_allowed_table_size = max_table
    return ref, ours


# Blocks from a real encoder (Huffman or not, indexing or not) mixed with arbitrary and mutated bytes.
_encoded = st.lists(
    st.tuples(
        st.sampled_from(NAMES) | st.binary(max_size=20),
        st.sampled_from(VALUES) | st.binary(max_size=150),
        st.booleans(),
    ),
    max_size=12,
)


@st.composite
def _blocks(draw: st.DrawFn) -> list[bytes]:
    encoder = Encoder()
    out = []
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["encoded", "huffman", "random", "mutated"]))
        if kind == "random":
            out.append(draw(st.binary(max_size=60)))
            continue
        fields = draw(_encoded)
        headers = [NeverIndexedHeaderTuple(n, v) if never else (n, v) for n, v, never in fields]
        block = encoder.encode(headers, huffman=kind != "encoded")
        if kind == "mutated" and block:
            pos = draw(st.integers(0, len(block) - 1))
            block = block[:pos] + bytes([draw(st.integers(0, 255))]) + block[pos + 1 :]
            block = block[: draw(st.integers(0, len(block)))]
        out.append(block)
    return out


@settings(max_examples=500, deadline=None)
@given(_blocks(), st.sampled_from([200, 4096, 65536]), st.sampled_from([0, 256, 4096]))
def test_decoder_agrees_with_hpack(blocks: list[bytes], max_list: int, max_table: int) -> None:
    ref, ours = _decoders(max_list, max_table)
    for block in blocks:
        expected = _reference(ref, block)
        assert _ours(ours, block) == expected
        if not isinstance(expected, list):
            return  # the connection is over after a decoding error
        assert list(ours.header_table.dynamic_entries) == list(ref.header_table.dynamic_entries)


@pytest.mark.parametrize(
    ("block", "error"),
    [
        (b"\x80", InvalidTableIndex),  # index 0
        (b"\xbe", InvalidTableIndex),  # index 62, empty dynamic table
        (b"\xff\x80\x80\x80\x80\x80\x01", HPACKDecodingError),  # an integer longer than hpack accepts
        (b"\xff", HPACKDecodingError),  # truncated integer
        (b"\x40\x05ab", HPACKDecodingError),  # truncated name
        (b"\x82\x3f\xe1\x1f", HPACKDecodingError),  # table size update after a field
        (b"\x3f\xe2\x1f", InvalidTableSizeError),  # table size update above the allowed 4096
    ],
)
def test_decoder_refuses_what_hpack_refuses(block: bytes, error: type[HPACKError]) -> None:
    ref, ours = _decoders(65536, 4096)
    assert _reference(ref, block) is error
    assert _ours(ours, block) is error


def test_decoder_enforces_the_header_list_limit() -> None:
    _, ours = _decoders(100, 4096)
    with pytest.raises(OversizedHeaderListError):
        ours.decode(Encoder().encode([(b"a", b"x" * 40), (b"b", b"y" * 40)]), raw=True)
