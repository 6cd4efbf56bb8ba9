"""Pure rules of the HTTP/2 handler: header rewriting and gRPC status handling."""

from __future__ import annotations

import uuid

import pytest

from sc_proxy.http2 import grpc
from sc_proxy.http2.headers import (
    downstream_response,
    local_response,
    pseudo,
    request_id,
    status_of,
    upstream_request,
)

REQ = [
    (b":method", b"POST"),
    (b":scheme", b"http"),
    (b":path", b"/svc/M"),
    (b":authority", b"svc"),
    (b"content-type", b"application/grpc+proto"),
    (b"te", b"trailers"),
]


def test_upstream_request_keeps_grpc_fields_and_adds_the_proxy_ones() -> None:
    out = upstream_request([*REQ, (b"x-forwarded-proto", b"https"), (b"connection", b"close")], 15000)
    names = [n for n, _ in out]
    assert out[:4] == REQ[:4]  # pseudo-headers first, untouched
    assert (b"te", b"trailers") in out
    assert (b"connection", b"close") not in out
    assert dict(out)[b"x-forwarded-proto"] == b"http"
    assert dict(out)[b"x-envoy-expected-rq-timeout-ms"] == b"15000"
    assert names.count(b"x-request-id") == 1
    assert len(dict(out)[b"x-request-id"]) == 36


def test_upstream_request_keeps_the_request_id_and_drops_other_te() -> None:
    out = upstream_request([*REQ[:4], (b"te", b"gzip"), (b"x-request-id", b"abc")], None)
    assert dict(out)[b"x-request-id"] == b"abc"
    assert b"te" not in dict(out)
    assert b"x-envoy-expected-rq-timeout-ms" not in dict(out)


def test_downstream_response_replaces_server() -> None:
    out = downstream_response([(b":status", b"200"), (b"server", b"app")], 7)
    assert out == [(b":status", b"200"), (b"server", b"envoy"), (b"x-envoy-upstream-service-time", b"7")]


def test_status_and_pseudo() -> None:
    assert status_of([(b":status", b"503")]) == 503
    assert status_of([(b":status", b"x")]) == 0
    assert pseudo(REQ, b":path") == b"/svc/M"
    assert pseudo(REQ, b":protocol") == b"-"
    assert dict(local_response(504, b"upstream request timeout"))[b"content-length"] == b"24"


def test_grpc_detection_and_status() -> None:
    assert grpc.is_grpc(REQ)
    assert not grpc.is_grpc([(b"content-type", b"application/json")])
    assert grpc.status_of([(b"grpc-status", b"14")]) == 14
    assert grpc.status_of([(b"grpc-status", b"x")]) is None
    assert grpc.status_of([]) is None


@pytest.mark.parametrize(
    ("code", "klass"),
    [(0, "ok"), (1, "client"), (3, "client"), (5, "client"), (16, "client"), (2, "server"), (4, "server"),
     (13, "server"), (14, "server"), (99, "server")],
)  # fmt: skip
def test_grpc_status_classes(code: int, klass: str) -> None:
    assert grpc.status_class(code) == klass


def test_trailers_only_answer_is_a_complete_grpc_response() -> None:
    head = dict(grpc.trailers_only(grpc.DEADLINE_EXCEEDED, "upstream request timeout"))
    assert head[b":status"] == b"200"
    assert head[b"content-type"] == b"application/grpc"
    assert head[b"grpc-status"] == b"4"
    assert head[b"grpc-message"] == b"upstream request timeout"
    # grpc-message is percent-encoded outside printable ASCII.
    assert dict(grpc.status_trailers(14, "caf\u00e9 100%"))[b"grpc-message"] == b"caf%C3%A9 100%25"


def test_request_ids_are_random_version_4_uuids() -> None:
    ids = {request_id() for _ in range(1000)}
    assert len(ids) == 1000
    for rid in ids:
        parsed = uuid.UUID(rid.decode())
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed).encode() == rid
