"""Access log lines: TEXT and JSON, query strings off unless enabled."""

from __future__ import annotations

import io
import json

from sc_proxy.accesslog import AccessLogger, AccessRecord

REC = AccessRecord(
    start_time=1_700_000_000.25,
    direction="egress",
    name="back",
    method="GET",
    path="/items?token=secret",
    protocol="HTTP/1.1",
    status=200,
    bytes_received=3,
    bytes_sent=10,
    duration_ms=7,
    upstream_service_time_ms=5,
    request_id="abc",
    authority="back:80",
    upstream_host="10.0.0.1:80",
)


def test_text_drops_query_by_default() -> None:
    out = io.StringIO()
    AccessLogger("TEXT", stream=out).log(REC)
    line = out.getvalue()
    assert line == (
        '[2023-11-14T22:13:20.250Z] "GET /items HTTP/1.1" 200 - 3 10 7 5 "-" "-" "abc" "back:80" '
        '"10.0.0.1:80" egress back - "-" -\n'
    )


def test_json_keeps_query_when_enabled() -> None:
    out = io.StringIO()
    AccessLogger("JSON", include_query=True, stream=out).log(REC)
    doc = json.loads(out.getvalue())
    assert doc["path"] == "/items?token=secret"
    assert doc["start_time"] == "2023-11-14T22:13:20.250Z"
    assert doc["status"] == 200
    assert doc["upstream_host"] == "10.0.0.1:80"


def test_json_drops_query_by_default() -> None:
    out = io.StringIO()
    AccessLogger("JSON", stream=out).log(REC)
    assert json.loads(out.getvalue())["path"] == "/items"


def test_a_defence_is_named_in_both_formats() -> None:
    rec = AccessRecord(start_time=REC.start_time, direction="ingress", name="front", status=431,
                       response_flags="DPE", protection="header_count")  # fmt: skip
    text, js = io.StringIO(), io.StringIO()
    AccessLogger("TEXT", stream=text).log(rec)
    AccessLogger("JSON", stream=js).log(rec)
    assert text.getvalue().endswith(' 431 DPE 0 0 0 - "-" "-" "-" "-" "-" ingress front header_count "-" -\n')
    doc = json.loads(js.getvalue())
    assert (doc["response_flags"], doc["protection"]) == ("DPE", "header_count")


def test_tls_failure_and_caller_identity_in_both_formats() -> None:
    rec = AccessRecord(start_time=REC.start_time, direction="egress", name="back", status=503,
                       response_flags="UF", transport_failure="TLS error: CERTIFICATE_VERIFY_FAILED: x",
                       peer_identity="spiffe://ns/ns/shop/connectservice/a")  # fmt: skip
    text, js = io.StringIO(), io.StringIO()
    AccessLogger("TEXT", stream=text).log(rec)
    AccessLogger("JSON", stream=js).log(rec)
    assert text.getvalue().endswith(
        ' egress back - "TLS error: CERTIFICATE_VERIFY_FAILED: x" spiffe://ns/ns/shop/connectservice/a\n'
    )
    doc = json.loads(js.getvalue())
    assert doc["transport_failure"] == "TLS error: CERTIFICATE_VERIFY_FAILED: x"
    assert doc["peer_identity"] == "spiffe://ns/ns/shop/connectservice/a"
