"""The HTTP/2 and gRPC test environment: real gRPC server processes, proxy configs for one or two hops,
and a small scriptable HTTP/2 server (h2 on asyncio, in a thread) for behaviour grpcio cannot produce on
demand (refused streams, GOAWAY, plain HTTP/2 echo).

Addresses: gRPC "tasks" on 127.0.0.31-39, the scriptable server on 127.0.0.41+, client aliases on
127.255.0.x — loopback only.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import subprocess
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import h11
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import ConnectionTerminated, DataReceived, RequestReceived, StreamEnded, TrailersReceived
from h2.settings import SettingCodes, Settings

from support.procs import _die_with_parent, free_port

VIP = "127.255.0.7"
SERVICE_SCRIPT = Path(__file__).with_name("grpc_service.py")


class GrpcServer:
    """``grpc_service.py`` in its own process: a task that can be killed."""

    def __init__(self, name: str, host: str, log: Path) -> None:
        self.name = name
        self.host = host
        self.port = free_port(host)
        self.log = log
        with log.open("ab") as out:
            self.popen = subprocess.Popen(
                [
                    sys.executable,
                    str(SERVICE_SCRIPT),
                    "--address",
                    host,
                    "--port",
                    str(self.port),
                    "--name",
                    name,
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=out,
                preexec_fn=_die_with_parent,
            )
        assert self.popen.stdout is not None
        line = self.popen.stdout.readline()
        if line.strip() != b"ready":
            self.kill()
            raise RuntimeError(f"gRPC server {name} did not start:\n{log.read_text()[-2000:]}")

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(5)


def endpoint(
    name: str, hosts: Iterable[tuple[str, int]], protocol: str = "grpc", **extra: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "appProtocol": protocol,
        "discovery": {"static": [{"address": h, "port": p} for h, p in hosts]},
        **extra,
    }


def client_config(endpoints: list[dict[str, Any]], **extra: Any) -> tuple[dict[str, Any], dict[str, int]]:
    """A client-side proxy: one alias ``VIP:port`` per endpoint (no-privilege listeners mode)."""
    ports = {e["name"]: free_port(VIP) for e in endpoints}
    cfg: dict[str, Any] = {
        "version": "test-h2",
        "admin": {"address": "127.0.0.1", "port": free_port()},
        "egress": {"mode": "listeners"},
        "endpoints": endpoints,
        "aliases": [{"address": VIP, "port": ports[e["name"]], "endpoint": e["name"]} for e in endpoints],
        **extra,
    }
    return cfg, ports


def server_config(
    name: str, app: tuple[str, int], protocol: str = "grpc", address: str = "127.0.0.1", **ingress: Any
) -> tuple[dict[str, Any], int]:
    """A server-side proxy: one ingress listener for ``name`` forwarding to the app."""
    port = free_port(address)
    cfg: dict[str, Any] = {
        "version": "test-h2",
        "admin": {"address": "127.0.0.1", "port": free_port()},
        "ingress": [
            {
                "discoveryName": name,
                "address": address,
                "port": port,
                "appAddress": app[0],
                "appPort": app[1],
                "appProtocol": protocol,
                **ingress,
            }
        ],
    }
    return cfg, port


def _fails_on(headers: dict[bytes, bytes], name: str) -> bool:
    parts = headers.get(b":path", b"").decode().strip("/").split("/")
    return len(parts) > 1 and parts[0] == "fail-on" and name in parts[1].split(",")


class _ScriptedProtocol(asyncio.Protocol):
    def __init__(self, server: ScriptedH2Server) -> None:
        self.server = server
        self.h2 = H2Connection(H2Configuration(client_side=False, header_encoding=None))
        if server.max_streams:
            initial = {SettingCodes.MAX_CONCURRENT_STREAMS: server.max_streams}
            self.h2.local_settings = Settings(client=False, initial_values=initial)
        self.h11: h11.Connection | None = None
        self.transport: asyncio.Transport | None = None
        self.bodies: dict[int, bytearray] = {}
        self.buf = b""
        self.answered = 0
        self.closing = False
        self.trailers: dict[int, list[tuple[bytes, bytes]]] = {}
        self.failing: set[int] = set()  # streams asking this server to fail (``/fail-on/…``)
        self.resetting: set[int] = set()  # … to break the response midway (``/fail-on/…/midreset``)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections += 1

    def data_received(self, data: bytes) -> None:
        if self.h11 is not None:
            self._http1(data)
            return
        if self.buf is not None:
            self.buf += data
            if len(self.buf) < 24:
                return
            data, self.buf = self.buf, None  # type: ignore[assignment]
            if not data.startswith(b"PRI * HTTP/2.0"):
                self.h11 = h11.Connection(h11.SERVER)
                self._http1(data)
                return
            self.h2.initiate_connection()
        if self.closing:
            return  # after our GOAWAY: streams above its last-stream-id are ignored, as RFC 9113 allows
        for ev in self.h2.receive_data(data):
            if isinstance(ev, RequestReceived):
                assert ev.stream_id is not None
                self.server.requests += 1
                self.answered += 1
                if self.server.mode == "refuse":
                    self.h2.reset_stream(ev.stream_id, ErrorCodes.REFUSED_STREAM)
                    continue
                self.bodies[ev.stream_id] = bytearray()
                headers = dict(ev.headers or [])
                if self.server.mode == "echo" and _fails_on(headers, self.server.name):
                    if headers.get(b":path", b"").rstrip(b"/").endswith(b"/midreset"):
                        self.resetting.add(ev.stream_id)
                    else:
                        self.failing.add(ev.stream_id)
            elif isinstance(ev, DataReceived):
                assert ev.stream_id is not None
                assert ev.data is not None
                self.h2.acknowledge_received_data(ev.flow_controlled_length or 0, ev.stream_id)
                if ev.stream_id in self.bodies:
                    self.bodies[ev.stream_id] += ev.data
            elif isinstance(ev, TrailersReceived):
                assert ev.stream_id is not None
                self.trailers[ev.stream_id] = list(ev.headers or [])
            elif isinstance(ev, StreamEnded):
                assert ev.stream_id is not None
                body = self.bodies.pop(ev.stream_id, None)
                if body is not None and self.server.mode == "slow":
                    self.server.open_streams += 1
                    self.server.max_open = max(self.server.max_open, self.server.open_streams)
                    loop = asyncio.get_running_loop()
                    loop.call_later(0.2, self._answer_later, ev.stream_id, bytes(body))
                if body is not None and ev.stream_id in self.resetting:
                    # A response broken midway: the head and some data, then RST_STREAM.
                    self.resetting.discard(ev.stream_id)
                    head = [(b":status", b"200"), (b"x-served-by", self.server.name.encode())]
                    self.h2.send_headers(ev.stream_id, head)
                    self.h2.send_data(ev.stream_id, b"partial ")
                    self.h2.reset_stream(ev.stream_id, ErrorCodes.INTERNAL_ERROR)
                    continue
                if body is not None and (self.server.mode == "fail" or ev.stream_id in self.failing):
                    self.failing.discard(ev.stream_id)
                    head = [(b":status", b"503"), (b"x-served-by", self.server.name.encode())]
                    self.h2.send_headers(ev.stream_id, head, end_stream=True)
                    continue
                if body is not None and self.server.mode in ("echo", "goaway"):
                    self._answer(ev.stream_id, bytes(body))
                    if self.server.mode == "goaway" and self.answered >= self.server.goaway_after:
                        # Like nginx's keepalive_requests: enough on this connection, go away.
                        self.h2.close_connection(last_stream_id=ev.stream_id)
                        self.closing = True
                        break
        self._flush()

    def _flush(self) -> None:
        out = self.h2.data_to_send()
        if out and self.transport is not None:
            self.transport.write(out)

    def _answer_later(self, sid: int, body: bytes) -> None:
        self.server.open_streams -= 1
        self._answer(sid, body)
        self._flush()

    def _answer(self, sid: int, body: bytes) -> None:
        payload = body or self.server.name.encode()
        head = [(b":status", b"200"), (b"x-served-by", self.server.name.encode())]
        self.h2.send_headers(sid, head)
        self.h2.send_data(sid, payload)
        # Request trailers come back as response trailers, prefixed, so a test can see they arrived.
        echoed = [(b"x-request-trailer-" + n, v) for n, v in self.trailers.pop(sid, [])]
        self.h2.send_headers(sid, [(b"x-trailer", b"intact"), *echoed], end_stream=True)

    def _http1(self, data: bytes) -> None:
        conn = self.h11
        assert conn is not None
        assert self.transport is not None
        conn.receive_data(data)
        while True:
            ev = conn.next_event()
            if ev is h11.NEED_DATA or ev is h11.PAUSED or isinstance(ev, h11.ConnectionClosed):
                break
            if isinstance(ev, h11.Request):
                self.server.requests += 1
            elif isinstance(ev, h11.EndOfMessage):
                body = f"{self.server.name} HTTP/1.1".encode()
                head = [("content-length", str(len(body))), ("x-served-by", self.server.name)]
                self.transport.write(conn.send(h11.Response(status_code=200, headers=head)) or b"")
                self.transport.write(conn.send(h11.Data(data=body)) or b"")
                self.transport.write(conn.send(h11.EndOfMessage()) or b"")
                conn.start_next_cycle()


class ScriptedH2Server:
    """An HTTP/2 server on ``host`` in a background thread (HTTP/1.1 too, when a client does not start with
    the HTTP/2 preface). ``mode``: ``echo`` (200, the request body back or the server name, trailer
    ``x-trailer: intact``), ``refuse`` (RST_STREAM REFUSED_STREAM), ``hang`` (never answers) or ``goaway``
    (echo, then GOAWAY after ``goaway_after`` streams on a connection, ignoring the streams above it) or
    ``slow`` (echo after 200 ms) or ``fail`` (503). In ``echo`` mode a request for
    ``/fail-on/<name>[,<name>…]/…`` naming this server is answered 503 too (``…/midreset``: the head and
    some data, then RST_STREAM INTERNAL_ERROR). ``max_streams``: the
    SETTINGS_MAX_CONCURRENT_STREAMS it announces."""

    def __init__(
        self, name: str, host: str, mode: str = "echo", goaway_after: int = 0, max_streams: int = 0
    ) -> None:
        self.name = name
        self.host = host
        self.mode = mode
        self.goaway_after = goaway_after
        self.max_streams = max_streams
        self.open_streams = 0
        self.max_open = 0  # most streams open at once on this server (all connections)
        self.port = free_port(host)
        self.connections = 0
        self.requests = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(5):
            raise RuntimeError("scripted HTTP/2 server did not start")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._server = await self._loop.create_server(
                lambda: _ScriptedProtocol(self), self.host, self.port
            )
            self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    def close(self) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


class _GracefulH2Connection(H2Connection):
    """h2 closes its state on any GOAWAY; RFC 9113 §6.8 lets streams up to last-stream-id finish, and the
    tests need to read them."""

    def _receive_goaway_frame(self, frame: Any) -> Any:
        if frame.error_code:
            return super()._receive_goaway_frame(frame)
        ev = ConnectionTerminated()
        ev.error_code = frame.error_code
        ev.last_stream_id = frame.last_stream_id
        ev.additional_data = frame.additional_data or None
        return [], [ev]


class RawH2Client:
    """A blocking HTTP/2 client on a plain socket that reads only when told to: for tests that need to see
    frames (GOAWAY) or to be a slow consumer. ``window`` is the initial stream window it advertises;
    ``tls``: (context, server name) to speak TLS (ALPN h2) to a TLS listener."""

    def __init__(
        self, host: str, port: int, window: int = 65535, tls: tuple[ssl.SSLContext, str] | None = None
    ) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        if tls is not None:
            ctx, name = tls
            ctx.set_alpn_protocols(["h2"])
            self.sock = ctx.wrap_socket(self.sock, server_hostname=name)
            assert self.sock.selected_alpn_protocol() == "h2"
        self.h2 = _GracefulH2Connection(H2Configuration(client_side=True, header_encoding=None))
        self.h2.local_settings = Settings(
            client=True, initial_values={SettingCodes.INITIAL_WINDOW_SIZE: window}
        )
        self.h2.initiate_connection()
        self.sock.sendall(self.h2.data_to_send())

    def request(
        self,
        headers: list[tuple[bytes, bytes]],
        body: bytes = b"",
        trailers: list[tuple[bytes, bytes]] | None = None,
    ) -> int:
        sid = self.h2.get_next_available_stream_id()
        self.h2.send_headers(sid, headers, end_stream=not body and not trailers)
        if body:
            self.h2.send_data(sid, body, end_stream=not trailers)
        if trailers:
            self.h2.send_headers(sid, trailers, end_stream=True)
        self.sock.sendall(self.h2.data_to_send())
        return sid

    def events(self, timeout: float = 5.0, ack: bool = True) -> list[Any]:
        """Events from one read (empty on timeout or EOF); DATA is acknowledged unless ``ack`` is False."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return []
        if not data:
            return [None]
        evs = self.h2.receive_data(data)
        for ev in evs:
            if ack and isinstance(ev, DataReceived):
                assert ev.stream_id is not None
                self.h2.acknowledge_received_data(ev.flow_controlled_length or 0, ev.stream_id)
        out = self.h2.data_to_send()
        if out:
            self.sock.sendall(out)
        return evs

    def close(self) -> None:
        self.sock.close()


def grpc_frame(message: bytes) -> bytes:
    """A gRPC length-prefixed message (uncompressed)."""
    return b"\x00" + struct.pack(">I", len(message)) + message


def grpc_request_headers(authority: str, method: str) -> list[tuple[bytes, bytes]]:
    return [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", f"/test.Echo/{method}".encode()),
        (b":authority", authority.encode()),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
    ]
