"""The proxy's one-pass check of client request headers and trailers decides as h2's own validation does:
compared with h2's ``validate_headers`` on header lists mixing valid fields with every kind of fault."""

from __future__ import annotations

import pytest
from h2.exceptions import ProtocolError
from h2.utilities import HeaderValidationFlags, validate_headers
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sc_proxy.http2.errors import ProtocolError as OurProtocolError
from sc_proxy.http2.validate import check_request

NAMES = [
    b":method", b":scheme", b":path", b":authority", b":status", b":protocol", b":custom", b":",
    b"", b"host", b"Host", b"te", b"connection", b"keep-alive", b"x-a", b"a:b", b"a b", b"\x7fx", b"\xc3\xa9",
    b"content-type", b"user-agent",
]  # fmt: skip
VALUES = [
    b"", b"GET", b"CONNECT", b"http", b"/", b"example", b"other", b"trailers", b"TRAILERS", b"gzip",
    b" lead", b"trail\t", b"a\nb", b"a\x00", b"a\rb", b"websocket", b"x y",
]  # fmt: skip

field = st.tuples(st.sampled_from(NAMES), st.sampled_from(VALUES)) | st.tuples(
    st.binary(max_size=6), st.binary(max_size=6)
)
VALID = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"example")]


def _h2_accepts(headers: list[tuple[bytes, bytes]], trailers: bool) -> bool:
    flags = HeaderValidationFlags(
        is_client=False, is_trailer=trailers, is_response_header=False, is_push_promise=False
    )
    try:
        list(validate_headers(headers, flags))
    except ProtocolError:
        return False
    return True


def _ours_accept(headers: list[tuple[bytes, bytes]], trailers: bool) -> bool:
    try:
        check_request(headers, trailers)
    except OurProtocolError:
        return False
    return True


@settings(max_examples=2000, deadline=None)
@given(st.lists(field, max_size=4), st.lists(field, max_size=4), st.booleans(), st.booleans())
@example([], [], False, False)
@example([(b"host", b"a"), (b"host", b"a")], [], False, True)
@example([(b"host", b"example")], [], True, False)
@example([], [(b":method", b"CONNECT"), (b":authority", b"example")], False, True)
@example([], [(b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":authority", b"e")], False, True)
def test_same_decision_as_h2(
    before: list[tuple[bytes, bytes]],
    after: list[tuple[bytes, bytes]],
    with_valid_head: bool,
    trailers: bool,
) -> None:
    # Faults around a valid request head, or header lists of faults alone.
    headers = [*before, *VALID, *after] if with_valid_head else [*before, *after]
    assert _ours_accept(headers, trailers) == _h2_accepts(headers, trailers)


@pytest.mark.parametrize(
    "headers",
    [
        [*VALID, (b"x-a", b"1")],
        [*VALID[:3], (b"host", b"example"), (b"te", b"trailers")],
        [(b":method", b"CONNECT"), (b":authority", b"example:443")],
        [(b":method", b"CONNECT"), (b":protocol", b"websocket"), *VALID[1:]],
    ],
)
def test_valid_requests_pass(headers: list[tuple[bytes, bytes]]) -> None:
    assert _h2_accepts(headers, trailers=False)
    check_request(headers, trailers=False)


@pytest.mark.parametrize(
    "headers",
    [
        [*VALID, (b"X-Upper", b"1")],
        [*VALID, (b"x-a", b"line\r\nbreak")],
        [*VALID, (b"x-a", b"trailing ")],
        [*VALID, (b"x-a", b"\tleading")],
        [*VALID, (b"host", b"example"), (b"host", b"example")],
        [*VALID, (b"connection", b"close")],
        [*VALID, (b":path", b"/again")],
        [(b"x-a", b"1"), *VALID],
        [*VALID[:3]],
        [*VALID, (b"host", b"elsewhere")],
        [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b""), (b":authority", b"e")],
    ],
)
def test_faulty_requests_are_refused(headers: list[tuple[bytes, bytes]]) -> None:
    assert not _h2_accepts(headers, trailers=False)
    with pytest.raises(OurProtocolError):
        check_request(headers, trailers=False)
