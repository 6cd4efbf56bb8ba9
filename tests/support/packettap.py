"""A bounded packet tap in a network namespace: what crossed the wire between tasks, byte for byte.

Neither tshark nor tcpdump is needed: a raw ``AF_PACKET`` socket opened in the harness's hub namespace
sees every frame entering the bridge from a task's veth, and every frame the hub's own stack sends through
the bridge device; frames the bridge forwards out of a port are skipped, so each frame counts once.
IPv4/TCP segments are kept with their payload; :meth:`streams` reassembles each TCP connection's two
directions by sequence number, and :func:`tls_records` reads TLS records off a stream.

The tap runs in a thread for at most ``max_seconds`` and keeps at most ``max_bytes`` of payload; use it as
a context manager around the traffic to observe.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType

from support.tasks import in_netns

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
PACKET_OUTGOING = 4
IPPROTO_TCP = 6


@dataclass(frozen=True)
class Segment:
    src: str
    sport: int
    dst: str
    dport: int
    seq: int
    payload: bytes


@dataclass
class Stream:
    """One TCP connection's payload, reassembled: client (``src``) to server and back."""

    client: tuple[str, int]
    server: tuple[str, int]
    to_server: bytes = b""
    to_client: bytes = b""


@dataclass(frozen=True)
class Record:
    content_type: int  # 20 change_cipher_spec, 21 alert, 22 handshake, 23 application_data
    version: int
    length: int


def parse_frame(frame: bytes) -> Segment | None:
    """The TCP segment in an Ethernet frame carrying IPv4, or None (other protocols, no payload)."""
    if len(frame) < 14 + 20 or struct.unpack("!H", frame[12:14])[0] != ETH_P_IP:
        return None
    ip = frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    total = struct.unpack("!H", ip[2:4])[0]
    if ip[9] != IPPROTO_TCP or len(ip) < ihl + 20:
        return None
    tcp = ip[ihl:total]
    offset = (tcp[12] >> 4) * 4
    payload = tcp[offset:]
    if not payload:
        return None
    sport, dport, seq = struct.unpack("!HHI", tcp[:8])
    return Segment(socket.inet_ntoa(ip[12:16]), sport, socket.inet_ntoa(ip[16:20]), dport, seq, payload)


def _reassemble(segments: list[Segment]) -> bytes:
    out = bytearray()
    start = min(s.seq for s in segments)
    for seg in sorted({s.seq: s for s in segments}.values(), key=lambda s: s.seq):
        at = seg.seq - start
        if at >= len(out):  # a gap (a lost capture) is left out, retransmissions overlap and are skipped
            out += seg.payload
        elif at + len(seg.payload) > len(out):
            out += seg.payload[len(out) - at :]
    return bytes(out)


def tls_records(data: bytes) -> list[Record]:
    """The TLS records at the start of ``data``, up to the first byte that is not a record header (a
    plaintext stream gives none or stops early; compare the bytes consumed with ``len(data)``)."""
    records: list[Record] = []
    at = 0
    while at + 5 <= len(data):
        kind, version, length = struct.unpack("!BHH", data[at : at + 5])
        if kind not in (20, 21, 22, 23) or version >> 8 != 3 or at + 5 + length > len(data):
            break
        records.append(Record(kind, version, length))
        at += 5 + length
    return records


def record_bytes(records: list[Record]) -> int:
    return sum(5 + r.length for r in records)


@dataclass
class PacketTap:
    """Capture TCP payloads in network namespace ``netns`` (see the module docstring)."""

    netns: str
    #: The hub's bridge: frames it sends come from the hub's own stack (seen nowhere else as incoming).
    bridge: str = "br0"
    max_seconds: float = 60.0
    max_bytes: int = 16 << 20
    segments: list[Segment] = field(default_factory=list)
    frames: int = 0
    last_frame: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _sock: socket.socket | None = None

    def __enter__(self) -> PacketTap:
        self._sock = in_netns(
            self.netns, lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        )
        self._sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._run, name=f"tap-{self.netns}", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _run(self) -> None:
        assert self._sock is not None
        deadline = time.monotonic() + self.max_seconds
        kept = 0
        while not self._stop.is_set() and time.monotonic() < deadline and kept < self.max_bytes:
            try:
                frame, address = self._sock.recvfrom(1 << 17)
            except TimeoutError:
                continue
            except OSError:
                return
            if address[2] == PACKET_OUTGOING and address[0] != self.bridge:
                continue
            self.frames += 1
            self.last_frame = time.monotonic()
            seg = parse_frame(frame)
            if seg is not None:
                self.segments.append(seg)
                kept += len(seg.payload)

    def settle(self, quiet: float = 0.5, timeout: float = 10.0) -> None:
        """Wait until no frame arrived for ``quiet`` seconds (the tap has read what was sent), at most
        ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and time.monotonic() - self.last_frame < quiet:
            time.sleep(0.05)

    def streams(self, server: tuple[str, int]) -> list[Stream]:
        """Every captured connection to ``server`` (address, port), in order of first appearance."""
        by_client: dict[tuple[str, int], tuple[list[Segment], list[Segment]]] = {}
        for seg in self.segments:
            if (seg.dst, seg.dport) == server:
                by_client.setdefault((seg.src, seg.sport), ([], []))[0].append(seg)
            elif (seg.src, seg.sport) == server:
                by_client.setdefault((seg.dst, seg.dport), ([], []))[1].append(seg)
        return [
            Stream(
                client,
                server,
                _reassemble(up) if up else b"",
                _reassemble(down) if down else b"",
            )
            for client, (up, down) in by_client.items()
        ]

    @property
    def payload_bytes(self) -> int:
        return sum(len(s.payload) for s in self.segments)
