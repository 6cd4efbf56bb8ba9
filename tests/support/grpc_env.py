"""The HTTP/2 and gRPC test environment: real gRPC server processes, proxy configs for one or two hops,
and a small scriptable HTTP/2 server (h2 on asyncio, in a thread) for behaviour grpcio cannot produce on
demand (refused streams, GOAWAY, plain HTTP/2 echo).

Addresses: gRPC "tasks" on 127.0.0.31-39, the scriptable server on 127.0.0.41+, client aliases on
127.255.0.x — loopback only.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import ConnectionTerminated, DataReceived, RequestReceived, StreamEnded, StreamReset

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


class _ScriptedProtocol(asyncio.Protocol):
    def __init__(self, server: ScriptedH2Server) -> None:
        self.server = server
        self.h2 = H2Connection(H2Configuration(client_side=False, header_encoding=None))
        self.transport: asyncio.Transport | None = None
        self.bodies: dict[int, bytearray] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.connections += 1
        self.h2.initiate_connection()
        transport.write(self.h2.data_to_send())

    def data_received(self, data: bytes) -> None:
        events = self.h2.receive_data(data)
        for ev in events:
            if isinstance(ev, RequestReceived):
                assert ev.stream_id is not None
                self.server.requests += 1
                if self.server.mode == "refuse":
                    self.h2.reset_stream(ev.stream_id, ErrorCodes.REFUSED_STREAM)
                    continue
                self.bodies[ev.stream_id] = bytearray()
            elif isinstance(ev, DataReceived):
                assert ev.stream_id is not None
                assert ev.data is not None
                self.h2.acknowledge_received_data(ev.flow_controlled_length or 0, ev.stream_id)
                if ev.stream_id in self.bodies:
                    self.bodies[ev.stream_id] += ev.data
            elif isinstance(ev, StreamEnded):
                assert ev.stream_id is not None
                body = self.bodies.pop(ev.stream_id, None)
                if body is not None:
                    self._answer(ev.stream_id, bytes(body))
            elif isinstance(ev, StreamReset | ConnectionTerminated):
                pass
        out = self.h2.data_to_send()
        if out and self.transport is not None:
            self.transport.write(out)

    def _answer(self, sid: int, body: bytes) -> None:
        payload = body or self.server.name.encode()
        self.h2.send_headers(
            sid,
            [
                (b":status", b"200"),
                (b"content-type", b"application/octet-stream"),
                (b"x-served-by", self.server.name.encode()),
            ],
        )
        self.h2.send_data(sid, payload)
        self.h2.send_headers(sid, [(b"x-trailer", b"intact")], end_stream=True)


class ScriptedH2Server:
    """An HTTP/2 server on ``host`` in a background thread. ``mode``: ``echo`` (200, the request body back,
    or the server name; trailer ``x-trailer: intact``) or ``refuse`` (RST_STREAM REFUSED_STREAM)."""

    def __init__(self, name: str, host: str, mode: str = "echo") -> None:
        self.name = name
        self.host = host
        self.mode = mode
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
