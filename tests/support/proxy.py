"""Run the real ``sc-proxy`` in tests, plus tiny real TCP upstreams.

- :class:`ProxyProcess`: writes a config file, starts ``sc-proxy --config FILE`` as a process, waits until
  ``/ready`` answers 200 (and records how long that took), reads ``/metrics``, stops it with a signal.
- :class:`TcpUpstream`: a TCP server on a loopback address in a background thread (its own event loop), in
  ``echo`` mode (bytes back, half-close honoured: EOF from the client → echo the rest, then EOF) or ``tag``
  mode (first sends ``<name>\\n``, then echoes), counting connections; :meth:`TcpUpstream.kill` closes the
  listener and resets every connection, like a task that died.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import yaml

from support.procs import _die_with_parent, free_port

SC_PROXY = Path(sys.executable).parent / "sc-proxy"


def _url_host(address: str) -> str:
    """How to reach a listener bound to ``address`` from this host, as a URL host."""
    if address in ("0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{address}]" if ":" in address else address


_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})? (\S+)$")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')
#: The labels every Service Connect sample of one proxy carries (sc_proxy.metrics.identify_proxy).
CONSTANT_LABELS = frozenset({"ServiceName", "ClusterName"})


def parse_metrics(text: str, constant_labels: bool = False) -> dict[str, float]:
    """Prometheus text → {"Name{labels}": value} (``Name`` alone when unlabelled).

    The proxy's constant labels (``ServiceName``, ``ClusterName``: the same on every sample of a process)
    are left out of the keys unless ``constant_labels``, so ``'RequestCount{DiscoveryName="a"}'`` reads
    the same sample whichever service and cluster the proxy names.
    """
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if not m:
            continue
        labels = m.group(2) or ""
        if labels and not constant_labels:
            kept = [f'{k}="{v}"' for k, v in _LABEL.findall(labels) if k not in CONSTANT_LABELS]
            labels = "{" + ",".join(kept) + "}" if kept else ""
        out[m.group(1) + labels] = float(m.group(3))
    return out


def http_get(url: str, method: str = "GET", timeout: float = 5.0) -> tuple[int, bytes]:
    """(status, body) of one request, without raising on 4xx/5xx."""
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class ProxyProcess:
    """One ``sc-proxy`` process."""

    def __init__(
        self, config: dict[str, Any], workdir: Path, name: str = "proxy", start: bool = True
    ) -> None:
        admin = dict(config.get("admin", {}))
        # Many proxies run side by side here: a free loopback admin port unless the test chose one.
        admin.setdefault("localPort", free_port(admin.get("localAddress", "127.0.0.1")))
        config = {**config, "admin": admin}
        self.config = config
        self.workdir = workdir
        self.path = workdir / f"{name}.yaml"
        self.path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.log = workdir / f"{name}.log"
        #: The stats & health listener (/ready, /live, /metrics) and the loopback admin listener (all paths).
        self.stats = f"http://{_url_host(admin.get('address', '127.0.0.1'))}:{admin['port']}"
        self.admin = f"http://{_url_host(admin.get('localAddress', '127.0.0.1'))}:{admin['localPort']}"
        self.popen: subprocess.Popen[bytes] | None = None
        #: Seconds from process start to the first 200 from /ready.
        self.ready_after: float | None = None
        if start:
            self.start()

    def start(self, ready_timeout: float = 15.0) -> None:
        t0 = time.monotonic()
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                [str(SC_PROXY), "--config", str(self.path)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        deadline = t0 + ready_timeout
        while True:
            if self.popen.poll() is not None:
                raise RuntimeError(f"sc-proxy exited {self.popen.returncode}:\n{self.output()[-3000:]}")
            with contextlib.suppress(OSError):
                if http_get(self.stats + "/ready", timeout=1)[0] == 200:
                    self.ready_after = time.monotonic() - t0
                    return
            if time.monotonic() > deadline:
                self.stop(signal.SIGKILL)
                raise TimeoutError(f"sc-proxy not ready after {ready_timeout} s:\n{self.output()[-3000:]}")
            time.sleep(0.01)

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def get(self, path: str, method: str = "GET") -> tuple[int, bytes]:
        """A request to the loopback admin listener (which answers every path)."""
        return http_get(self.admin + path, method)

    def get_stats(self, path: str, method: str = "GET") -> tuple[int, bytes]:
        """A request to the stats & health listener (``/ready``, ``/live``, ``/metrics``)."""
        return http_get(self.stats + path, method)

    def metrics(self) -> dict[str, float]:
        status, body = self.get("/metrics")
        assert status == 200, body
        return parse_metrics(body.decode())

    def metric(self, name: str, label: str = "", **labels: str) -> float:
        """One sample; 0 when absent. ``metric("RequestCount", DiscoveryName="a")``, or with the label
        set as written in the exposition: ``metric("RequestCount", 'DiscoveryName="a"')``."""
        if labels:
            label = ",".join(f'{k}="{v}"' for k, v in labels.items())
        key = f"{name}{{{label}}}" if label else name
        return self.metrics().get(key, 0.0)

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        """Send ``sig``, wait up to ``timeout`` (then SIGKILL); returns the exit code."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        return self.popen.returncode


def wait_for(what: str, check: Any, timeout: float = 10.0, step: float = 0.02) -> Any:
    """Poll ``check()`` until truthy; its value, or AssertionError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} (last: {value!r})")
        time.sleep(step)


class _UpstreamProtocol(asyncio.Protocol):
    def __init__(self, up: TcpUpstream) -> None:
        self.up = up
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.up._conns.add(self)
        self.up.connections += 1
        if self.up.mode == "tag":
            self.transport.write(self.up.name.encode() + b"\n")  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        self.up.bytes_received += len(data)
        assert self.transport is not None
        self.transport.write(data)

    def eof_received(self) -> bool:
        # Everything read was echoed: returning False closes after flushing the write buffer.
        return False

    # Honest back-pressure: an echo that reads faster than it can write would hide the proxy's behaviour.
    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.up._conns.discard(self)


class TcpUpstream:
    """A TCP echo/tag server on ``host:port`` served from a background thread."""

    def __init__(self, name: str, host: str, port: int | None = None, mode: str = "echo") -> None:
        self.name = name
        self.host = host
        self.port = port or free_port(host)
        self.mode = mode
        self.connections = 0
        self.bytes_received = 0
        self._conns: set[_UpstreamProtocol] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"upstream-{name}", daemon=True)
        self._thread.start()
        self.start()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def start(self) -> None:
        async def go() -> asyncio.Server:
            return await self._loop.create_server(
                lambda: _UpstreamProtocol(self), self.host, self.port, reuse_address=True
            )

        self._server = self._call(go())

    def kill(self) -> None:
        """Stop listening and reset every open connection (the task died)."""

        async def go() -> None:
            if self._server is not None:
                self._server.close()
                self._server = None
            for conn in list(self._conns):
                if conn.transport is not None:
                    conn.transport.abort()

        self._call(go())

    def close(self) -> None:
        self.kill()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


@contextlib.contextmanager
def tcp_upstreams(*specs: tuple[str, str], mode: str = "echo") -> Iterator[list[TcpUpstream]]:
    """Start one :class:`TcpUpstream` per (name, host); closed afterwards."""
    ups = [TcpUpstream(name, host, mode=mode) for name, host in specs]
    try:
        yield ups
    finally:
        for up in ups:
            up.close()


def tcp_roundtrip(host: str, port: int, payload: bytes, timeout: float = 5.0) -> bytes:
    """Connect, send ``payload``, half-close, read until EOF; what arrived before a close or reset."""
    chunks: list[bytes] = []
    with socket.create_connection((host, port), timeout=timeout) as s:
        try:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            while data := s.recv(65536):
                chunks.append(data)
        except (ConnectionResetError, BrokenPipeError, OSError) as exc:
            if isinstance(exc, TimeoutError):
                raise
    return b"".join(chunks)


def config_json(config: dict[str, Any]) -> str:
    return json.dumps(config)


def serve_tag(name: str, host: str, port: int) -> None:
    """Run a tag server in the foreground (for processes started inside a network namespace): each
    connection gets ``<name> <peer address>\\n``, then an echo."""

    class Tag(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = cast(asyncio.Transport, transport)
            peer = transport.get_extra_info("peername")[0]
            self.transport.write(f"{name} {peer}\n".encode())

        def data_received(self, data: bytes) -> None:
            self.transport.write(data)

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Tag, host, port, reuse_address=True)
        print(f"listening {host}:{port}", flush=True)
        await server.serve_forever()

    asyncio.run(main())


if __name__ == "__main__":
    # python -m support.proxy tag NAME HOST PORT
    if len(sys.argv) == 5 and sys.argv[1] == "tag":
        serve_tag(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit("usage: python -m support.proxy tag NAME HOST PORT")
