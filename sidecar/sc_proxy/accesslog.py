"""Access logs on stdout, TEXT or JSON (ECS ``accessLogConfiguration``).

TEXT follows Envoy's default access-log format, which is what Service Connect users see today, then the
direction, the endpoint name, the defence that refused the request (``protection``, ``-`` when none), the
transport failure reason (a failed TLS handshake) and the caller's mutual-TLS identity; JSON
carries the same fields under Envoy's operator names. Query strings are dropped unless
``includeQueryParameters`` is ENABLED (they often carry tokens).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from typing import Literal, TextIO


@dataclass(slots=True)
class AccessRecord:
    """One request (HTTP kinds) or one connection (TCP)."""

    start_time: float  # epoch seconds
    direction: Literal["ingress", "egress"]
    name: str  # DiscoveryName (ingress) or TargetDiscoveryName (egress)
    method: str = "-"
    path: str = "-"
    protocol: str = "-"
    status: int = 0
    response_flags: str = "-"
    bytes_received: int = 0
    bytes_sent: int = 0
    duration_ms: int = 0
    upstream_service_time_ms: int | None = None
    forwarded_for: str = "-"
    user_agent: str = "-"
    request_id: str = "-"
    authority: str = "-"
    upstream_host: str = "-"
    #: The defence that refused this request or connection (a ``ProtectionTriggeredCount`` label, e.g.
    #: ``header_count``, ``http1_header_timeout``); ``-`` when none fired.
    protection: str = "-"
    #: Why the connection to the task (egress) or from the caller (ingress) failed at the transport layer,
    #: e.g. ``TLS error: CERTIFICATE_VERIFY_FAILED: certificate has expired`` (Envoy's
    #: ``%UPSTREAM_TRANSPORT_FAILURE_REASON%``); ``-`` when none.
    transport_failure: str = "-"
    #: The caller's identity (URI SAN of its certificate) on a mutual-TLS listener (Envoy's
    #: ``%DOWNSTREAM_PEER_URI_SAN%``); ``-`` otherwise.
    peer_identity: str = "-"


def strip_query(path: str) -> str:
    cut = path.find("?")
    return path if cut < 0 else path[:cut]


def _iso(ts: float) -> str:
    ms = int(ts * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{ms:03d}Z"


class AccessLogger:
    """Formats and writes access records; one line each, flushed (stdout is usually a pipe)."""

    __slots__ = ("_json", "_keep_query", "_stream")

    def __init__(
        self, format: Literal["TEXT", "JSON"], include_query: bool = False, stream: TextIO | None = None
    ) -> None:
        self._json = format == "JSON"
        self._keep_query = include_query
        self._stream = stream if stream is not None else sys.stdout

    def format(self, rec: AccessRecord) -> str:
        path = rec.path if self._keep_query else strip_query(rec.path)
        if self._json:
            doc = asdict(rec)
            doc["start_time"] = _iso(rec.start_time)
            doc["path"] = path
            return json.dumps(doc, separators=(",", ":"))
        ust = "-" if rec.upstream_service_time_ms is None else str(rec.upstream_service_time_ms)
        return (
            f'[{_iso(rec.start_time)}] "{rec.method} {path} {rec.protocol}" {rec.status or 0} '
            f"{rec.response_flags} {rec.bytes_received} {rec.bytes_sent} {rec.duration_ms} {ust} "
            f'"{rec.forwarded_for}" "{rec.user_agent}" "{rec.request_id}" "{rec.authority}" '
            f'"{rec.upstream_host}" {rec.direction} {rec.name} {rec.protection} "{rec.transport_failure}" '
            f"{rec.peer_identity}"
        )

    def log(self, rec: AccessRecord) -> None:
        stream = self._stream
        stream.write(self.format(rec) + "\n")
        stream.flush()
