"""Request smuggling through a real ``sc-proxy``: a table of classic desync payloads (CL.TE, TE.CL, TE.TE
obfuscations, duplicate and malformed Content-Length, chunk-size tricks, bare CR/LF, obs-fold, request-line
and upgrade tricks), each followed by a ``GET /last`` on the same connection.

Each payload is either **refused** (one error response, then the connection closes: nothing after the
refusal, ``/last`` included, is read) or **normalised**: the proxy re-frames what it forwards, so the
upstream answers exactly the requests the proxy parsed, in order, and the client gets one response per
request. A hidden request (``/smuggled``) may only ever be answered where the table lists it as an ordinary
pipelined request both sides see.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.http1env import http_endpoint, proxy_config, raw_exchange, start_upstreams
from support.proxy import ProxyProcess

HIDDEN = b"GET /smuggled HTTP/1.1\r\nHost: backend\r\n\r\n"
LAST = b"GET /last HTTP/1.1\r\nHost: backend\r\nConnection: close\r\n\r\n"


def post(headers: bytes, body: bytes = b"") -> bytes:
    return b"POST / HTTP/1.1\r\nHost: backend\r\n" + headers + b"\r\n" + body


def cl(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n" % len(body)


CHUNKED = b"Transfer-Encoding: chunked\r\n"
ZERO = b"0\r\n\r\n"

# (name, payload, expected): an int is the status of a refusal; a tuple lists the paths the upstream answers.
CASES: list[tuple[str, bytes, int | tuple[str, ...]]] = [
    # CL.TE and TE.CL: both framings in one request are refused whatever their order.
    ("CL.TE", post(cl(ZERO + HIDDEN) + CHUNKED, ZERO + HIDDEN), 400),
    ("TE.CL", post(CHUNKED + b"Content-Length: 4\r\n", b"5c\r\n" + HIDDEN + b"\r\n" + ZERO), 400),
    ("CL.TE with CL 0", post(b"Content-Length: 0\r\n" + CHUNKED, ZERO), 400),
    ("CL.TE with Expect", post(b"Expect: 100-continue\r\n" + cl(ZERO) + CHUNKED, ZERO), 400),
    # TE.TE: an obfuscated Transfer-Encoding next to a Content-Length.
    ("TE.TE xchunked", post(b"Transfer-Encoding: xchunked\r\n" + cl(ZERO + HIDDEN), ZERO + HIDDEN), 400),
    ("TE.TE space before colon", post(b"Transfer-Encoding : chunked\r\n" + cl(ZERO), ZERO), 400),
    ("TE.TE tab value", post(b"Transfer-Encoding:\tchunked\r\n" + cl(ZERO), ZERO), 400),
    ("TE.TE vertical tab", post(b"Transfer-Encoding:\x0bchunked\r\n" + cl(ZERO), ZERO), 400),
    ("TE.TE quoted", post(b'Transfer-Encoding: "chunked"\r\n' + cl(ZERO), ZERO), 400),
    ("TE.TE mixed case", post(b"Transfer-encoding: cHuNkEd\r\n" + cl(ZERO), ZERO), 400),
    ("TE.TE two headers", post(CHUNKED + b"Transfer-Encoding: x\r\n" + cl(ZERO), ZERO), 400),
    ("TE.TE chunked, identity", post(b"Transfer-Encoding: chunked, identity\r\n" + cl(ZERO), ZERO), 400),
    ("TE.TE obs-folded", post(b"X: y\r\n Transfer-Encoding: chunked\r\n" + cl(ZERO), ZERO), 400),
    ("TE.TE leading space", post(b" Transfer-Encoding: chunked\r\n" + cl(ZERO), ZERO), 400),
    ("TE.TE NUL", post(b"Transfer-Encoding: chunked\x00\r\n" + cl(ZERO), ZERO), 400),
    ("TE.TE line folded value", post(b"Transfer-Encoding:\r\n chunked\r\n" + cl(ZERO), ZERO), 400),
    # Transfer-Encoding alone: only plain chunked is framed.
    ("TE identity", post(b"Transfer-Encoding: identity\r\n", ZERO + HIDDEN), 501),
    ("TE gzip, chunked", post(b"Transfer-Encoding: gzip, chunked\r\n", ZERO), 501),
    ("TE chunked, gzip", post(b"Transfer-Encoding: chunked, gzip\r\n", ZERO), 400),
    ("TE gzip then chunked", post(b"Transfer-Encoding: gzip\r\n" + CHUNKED, ZERO), 501),
    ("TE chunked twice", post(CHUNKED + CHUNKED, ZERO), 400),
    ("TE quoted alone", post(b'Transfer-Encoding: "chunked"\r\n', ZERO), 501),
    # Content-Length tricks.
    ("duplicate CL, same value", post(b"Content-Length: 3\r\nContent-Length: 3\r\n", b"abc"), 400),
    ("duplicate CL, differing", post(b"Content-Length: 3\r\nContent-Length: 40\r\n", b"abc" + HIDDEN), 400),
    ("CL list", post(b"Content-Length: 3, 3\r\n", b"abc"), 400),
    ("CL plus sign", post(b"Content-Length: +3\r\n", b"abc"), 400),
    ("CL negative", post(b"Content-Length: -1\r\n", b"abc"), 400),
    ("CL hex", post(b"Content-Length: 0x3\r\n", b"abc"), 400),
    ("CL overflow", post(b"Content-Length: 99999999999999999999999\r\n", b"abc"), 400),
    ("CL space before colon", post(b"Content-Length : 3\r\n", b"abc"), 400),
    ("CL in a trailer", post(CHUNKED, b"0\r\nContent-Length: 44\r\n\r\n" + HIDDEN), 400),
    # Chunked body tricks.
    ("chunk-size overflow", post(CHUNKED, b"FFFFFFFFFFFFFFFFF1\r\nabc\r\n" + ZERO), 400),
    ("chunk-size negative", post(CHUNKED, b"-1\r\nabc\r\n" + ZERO), 400),
    ("chunk-size 0x prefix", post(CHUNKED, b"0x3\r\nabc\r\n" + ZERO), 400),
    ("chunk-size trailing space", post(CHUNKED, b"3 \r\nabc\r\n" + ZERO), 400),
    ("chunk longer than its size", post(CHUNKED, b"3\r\nabcdef\r\n" + ZERO), 400),
    ("chunk without its CRLF", post(CHUNKED, b"3\r\nabc0\r\n\r\n"), 400),
    ("chunk extension with bare LF", post(CHUNKED, b"3;x\nabc\r\n" + ZERO), 400),
    # Line endings and folding.
    ("bare LF line ends", b"GET / HTTP/1.1\nHost: backend\n\n", 400),
    ("bare CR", b"GET / HTTP/1.1\rHost: backend\r\n\r\n", 400),
    ("bare LF in one header", b"GET / HTTP/1.1\r\nHost: backend\nX: y\r\n\r\n", 400),
    ("obs-fold", b"GET / HTTP/1.1\r\nHost: backend\r\nX-A: 1\r\n  folded\r\n\r\n", 400),
    # Request line and header syntax.
    ("junk after the version", b"GET / HTTP/1.1 x\r\nHost: backend\r\n\r\n", 400),
    ("header without colon", b"GET / HTTP/1.1\r\nHost: backend\r\nFoo\r\n\r\n", 400),
    ("space in a header name", b"GET / HTTP/1.1\r\nHost: backend\r\nFoo Bar: x\r\n\r\n", 400),
    ("two Host headers", b"GET / HTTP/1.1\r\nHost: backend\r\nHost: evil\r\n\r\n", 400),
    ("HTTP/2.0 request line", b"GET / HTTP/2.0\r\nHost: backend\r\n\r\n", 505),
    ("CONNECT", b"CONNECT backend:443 HTTP/1.1\r\nHost: backend:443\r\n\r\n", 405),
    # Normalised: what the proxy accepts it re-frames, so both sides see the same requests.
    ("TE chunked, then a pipelined request", post(CHUNKED, ZERO) + HIDDEN, ("/", "/smuggled", "/last")),
    ("CL body holding a request", post(cl(HIDDEN), HIDDEN), ("/", "/last")),
    ("CL with OWS", post(b"Content-Length:  3 \r\n", b"abc"), ("/", "/last")),
    ("Transfer_Encoding is not TE", post(b"Transfer_Encoding: chunked\r\n" + cl(ZERO), ZERO), ("/", "/last")),
    ("chunk extension", post(CHUNKED, b"3;ext=1\r\nabc\r\n" + ZERO), ("/", "/last")),
    ("trailer dropped", post(CHUNKED, b"0\r\nX-Trailer: 1\r\n\r\n"), ("/", "/last")),
    (
        "GET with a CL body",
        b"GET / HTTP/1.1\r\nHost: backend\r\nContent-Length: 3\r\n\r\nabc",
        ("/", "/last"),
    ),
    ("two empty lines first", b"\r\n\r\n" + HIDDEN, ("/smuggled", "/last")),
    # llhttp reads "GET  /" as "GET /"; the proxy sends its own request line upstream.
    ("double space in request line", b"GET  / HTTP/1.1\r\nHost: backend\r\n\r\n", ("/", "/last")),
]


def responses(data: bytes) -> list[tuple[int, bytes]]:
    """(status, body) of each Content-Length-framed response in ``data``, in order."""
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, data[:200]
        lines = head.split(b"\r\n")
        assert lines[0].startswith(b"HTTP/1.1 "), lines[0]
        length = next(
            int(v) for k, _, v in (h.partition(b": ") for h in lines[1:]) if k.lower() == b"content-length"
        )
        out.append((int(lines[0][9:12]), rest[:length]))
        data = rest[length:]
    return out


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    tmp: Path = tmp_path_factory.mktemp("smuggling")
    (up,) = start_upstreams(tmp, "a")
    cfg, ports = proxy_config(
        [http_endpoint("backend", [(up.host, up.port)], timeouts={"idleTimeoutSeconds": 2})],
        limits={"headerTimeoutSeconds": 0.5},
    )
    proxy = ProxyProcess(cfg, tmp)
    try:
        yield ports["backend"]
    finally:
        alive = proxy.alive()
        proxy.stop(signal.SIGKILL)
        up.stop()
        assert alive, "the proxy died during the smuggling table"


@pytest.mark.parametrize(("name", "payload", "expected"), CASES, ids=[c[0] for c in CASES])
def test_smuggling_payload_is_refused_or_normalised(
    port: int, name: str, payload: bytes, expected: int | tuple[str, ...]
) -> None:
    data, closed = raw_exchange(port, payload + LAST)
    assert closed, name
    got = responses(data)
    if isinstance(expected, int):
        assert [status for status, _ in got] == [expected], (name, data[:300])
        return
    assert [status for status, _ in got] == [200] * len(expected), (name, data[:300])
    assert tuple(json.loads(body)["path"] for _, body in got) == expected, name
