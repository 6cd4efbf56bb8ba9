"""A real DNS server for discovery tests (dnslib, UDP on a loopback port, in a background thread).

Records are changed while it runs; ``failing = True`` answers SERVFAIL to everything; ``queries`` counts
what it was asked.
"""

from __future__ import annotations

import threading
from typing import Any

from dnslib import AAAA, QTYPE, RCODE, RR, SRV, A, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer


class _Resolver(BaseResolver):  # type: ignore[misc]
    def __init__(self, zone: LocalDns) -> None:
        self.zone = zone

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()
        zone = self.zone
        with zone.lock:
            zone.queries += 1
            if zone.failing:
                reply.header.rcode = RCODE.SERVFAIL
                return reply
            qname = str(request.q.qname).rstrip(".")
            qtype = QTYPE[request.q.qtype]
            if qtype == "A":
                for addr in zone.a.get(qname, []):
                    reply.add_answer(RR(qname, QTYPE.A, rdata=A(addr), ttl=1))
            elif qtype == "AAAA":
                for addr in zone.aaaa.get(qname, []):
                    reply.add_answer(RR(qname, QTYPE.AAAA, rdata=AAAA(addr), ttl=1))
            elif qtype == "SRV":
                for target, port in zone.srv.get(qname, []):
                    reply.add_answer(RR(qname, QTYPE.SRV, rdata=SRV(0, 100, port, target), ttl=1))
                    if zone.additional:  # what CoreDNS does for a headless Service's SRV answer
                        for addr in zone.a.get(target, []):
                            reply.add_ar(RR(target, QTYPE.A, rdata=A(addr), ttl=1))
                        for addr in zone.aaaa.get(target, []):
                            reply.add_ar(RR(target, QTYPE.AAAA, rdata=AAAA(addr), ttl=1))
            known = qname in zone.a or qname in zone.aaaa or qname in zone.srv
            if not reply.rr and not known:
                reply.header.rcode = RCODE.NXDOMAIN
        return reply


class LocalDns:
    """Authoritative answers for whatever names the test sets."""

    def __init__(self, address: str = "127.0.0.1", port: int = 0) -> None:
        self.lock = threading.Lock()
        self.a: dict[str, list[str]] = {}
        self.aaaa: dict[str, list[str]] = {}
        self.srv: dict[str, list[tuple[str, int]]] = {}
        self.failing = False
        #: Put the SRV targets' addresses in the additional section (else clients must look them up).
        self.additional = True
        self.queries = 0
        self._server = DNSServer(
            _Resolver(self),
            address=address,
            port=port,
            logger=DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data"),
        )
        self.address = address
        self.port = int(self._server.server.server_address[1])
        self._server.start_thread()

    @property
    def resolver(self) -> str:
        return f"{self.address}:{self.port}"

    def set(self, **kw: Any) -> None:
        with self.lock:
            for k, v in kw.items():
                setattr(self, k, v)

    def close(self) -> None:
        self._server.stop()
        self._server.server.server_close()
