"""The proxy's HPACK encoder against hpack's reference decoder: every block it writes decodes to exactly the
header list it was given, across table evictions, peer table-size changes and never-indexed fields."""

from __future__ import annotations

from hpack import Decoder, NeverIndexedHeaderTuple
from hypothesis import given, settings
from hypothesis import strategies as st

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
