"""Tiny real upstream servers for the proxy's HTTP tests, run as separate processes (so a test can kill one).

``python -m support.upstreams --name a --listen 127.0.0.2:8080 [--ws]`` serves HTTP/1.1 with h11 (an
implementation independent of the proxy's parser):

- ``/`` and anything unknown: 200, JSON ``{"name", "method", "path", "headers", "body_len"}``, a
  ``Server: upstream-<name>`` header;
- ``/status/<code>``: that status; ``/delay/<ms>``: answer after a pause; ``/close``: ``Connection: close``;
- ``/reset``: abort the connection without answering;
- ``/stream/<bytes>``: a chunked body of that size;
- ``/fail-on/<name>[,<name>…]/<reset|midreset|code>``: the upstreams named reset (``midreset``: after the
  head and a first chunk of the body) or answer ``<code>``, others 200;
- ``/garbage``: a reply that is not HTTP;
- ``/echo``: the request body streamed back (chunked); ``/sink``: the body's length and sha256 (streamed).

With ``--ws`` it also serves a WebSocket echo on ``/ws`` (the ``websockets`` package), on ``--ws-port``.

:class:`UpstreamProcess` starts one and waits until it accepts connections (``sc-proxy`` itself is
started by :class:`support.proxy.ProxyProcess`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import h11

CHUNK = 64 * 1024
_CHUNKED = (b"transfer-encoding", b"chunked")
Reader = asyncio.StreamReader
Writer = asyncio.StreamWriter


async def _send(writer: asyncio.StreamWriter, conn: h11.Connection, event: Any) -> None:
    data = conn.send(event)
    if data:
        writer.write(data)
        await writer.drain()


async def _next_event(reader: asyncio.StreamReader, conn: h11.Connection) -> Any:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            if conn.they_are_waiting_for_100_continue:
                pass  # answered by the handler when it starts reading the body
            data = await reader.read(CHUNK)
            conn.receive_data(data)
            continue
        return event


async def _serve_conn(name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    conn = h11.Connection(h11.SERVER)
    served = 0
    try:
        while True:
            event = await _next_event(reader, conn)
            if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return
            if not isinstance(event, h11.Request):
                return
            served += 1
            await _handle(name, conn, event, reader, writer, served)
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return
    except (ConnectionError, h11.RemoteProtocolError, asyncio.IncompleteReadError):
        return
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _body(conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Any:
    """Yield the request body in pieces (answering Expect: 100-continue first)."""
    if conn.they_are_waiting_for_100_continue:
        await _send(writer, conn, h11.InformationalResponse(status_code=100, headers=[]))
    while True:
        event = await _next_event(reader, conn)
        if isinstance(event, h11.Data):
            yield bytes(event.data)
        else:
            return


async def _handle(
    name: str,
    conn: h11.Connection,
    req: h11.Request,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    served: int = 1,
) -> None:
    path = req.target.decode()
    base = [(b"server", f"upstream-{name}".encode()), (b"x-upstream", name.encode())]
    parts = path.split("?")[0].strip("/").split("/")
    if parts[0] == "fail-on" and len(parts) > 2 and name in parts[1].split(","):
        # /fail-on/<names>/<reset|status>: only the upstreams named fail; the others answer 200.
        parts = [parts[2]] if parts[2] in ("reset", "midreset") else ["status", parts[2]]
    if parts[0] == "midreset":
        await _send(
            writer, conn, h11.Response(status_code=200, headers=[*base, (b"transfer-encoding", b"chunked")])
        )
        await _send(writer, conn, h11.Data(data=b"partial "))
        await writer.drain()
    if parts[0] in ("reset", "midreset"):
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        writer.transport.abort()
        raise ConnectionError("reset on purpose")
    if parts[0] == "garbage":
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        raise ConnectionError("garbage on purpose")
    if parts[0] == "echo":
        await _send(
            writer, conn, h11.Response(status_code=200, headers=[*base, (b"transfer-encoding", b"chunked")])
        )
        async for piece in _body(conn, reader, writer):
            await _send(writer, conn, h11.Data(data=piece))
        await _send(writer, conn, h11.EndOfMessage())
        return
    if parts[0] == "sink":
        digest = hashlib.sha256()
        total = 0
        async for piece in _body(conn, reader, writer):
            digest.update(piece)
            total += len(piece)
        payload = json.dumps({"name": name, "body_len": total, "sha256": digest.hexdigest()}).encode()
        await _reply(writer, conn, 200, base, payload)
        return
    total = 0
    async for piece in _body(conn, reader, writer):
        total += len(piece)
    if parts[0] == "delay" and len(parts) > 1:
        await asyncio.sleep(int(parts[1]) / 1000)
    if parts[0] == "status" and len(parts) > 1:
        await _reply(writer, conn, int(parts[1]), base, f"status {parts[1]} from {name}".encode())
        return
    if parts[0] == "stream" and len(parts) > 1:
        size = int(parts[1])
        await _send(
            writer, conn, h11.Response(status_code=200, headers=[*base, (b"transfer-encoding", b"chunked")])
        )
        block = b"x" * CHUNK
        while size > 0:
            n = min(size, CHUNK)
            await _send(writer, conn, h11.Data(data=block[:n]))
            size -= n
        await _send(writer, conn, h11.EndOfMessage())
        return
    extra = [(b"connection", b"close")] if parts[0] == "close" else []
    doc = {
        "name": name,
        "method": req.method.decode(),
        "path": path,
        "headers": {k.decode(): v.decode() for k, v in req.headers},
        "body_len": total,
        "conn_requests": served,  # requests served on this connection so far (pool reuse is visible)
    }
    await _reply(writer, conn, 200, [*base, *extra], json.dumps(doc).encode())


async def _reply(
    writer: asyncio.StreamWriter,
    conn: h11.Connection,
    status: int,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
) -> None:
    hdrs = [*headers, (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    # One write, as most servers do for small responses (a kill cannot fall between head and body).
    data = conn.send(h11.Response(status_code=status, headers=hdrs)) or b""
    data += conn.send(h11.Data(data=body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    writer.write(data)
    await writer.drain()


async def _main(name: str, host: str, port: int, ws_port: int | None) -> None:
    server = await asyncio.start_server(lambda r, w: _serve_conn(name, r, w), host, port, reuse_address=True)
    ws_server = None
    if ws_port is not None:
        import websockets.asyncio.server as ws

        async def echo(sock: Any) -> None:
            async for message in sock:
                await sock.send(message)

        ws_server = await ws.serve(echo, host, ws_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("listening", flush=True)
    await stop.wait()
    server.close()
    if ws_server is not None:
        ws_server.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--listen", required=True, help="address:port (loopback only)")
    ap.add_argument("--ws-port", type=int)
    args = ap.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    asyncio.run(_main(args.name, host, int(port), args.ws_port))


# --- test-side helpers ------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def wait_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


class UpstreamProcess:
    """One upstream server process on ``host:port``."""

    def __init__(self, name: str, host: str, port: int, log: Path, ws_port: int | None = None) -> None:
        self.name, self.host, self.port, self.ws_port = name, host, port, ws_port
        argv = [sys.executable, "-m", "support.upstreams", "--name", name, "--listen", f"{host}:{port}"]
        if ws_port is not None:
            argv += ["--ws-port", str(ws_port)]
        env = {**os.environ, "PYTHONPATH": str(REPO / "tests")}
        self.popen = subprocess.Popen(argv, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env)
        wait_port(host, port)

    def kill(self) -> None:
        """SIGKILL: the task dies without closing anything gracefully."""
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(5)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)


if __name__ == "__main__":
    main()
