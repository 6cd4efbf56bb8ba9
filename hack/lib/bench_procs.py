"""The processes of the proxy benchmarks (hack/bench-proxy, hack/bench-proxy-h2), written once: loopback
ports, nginx, HAProxy and sc-proxy 2-hop in a temporary directory, h2load runs, and what /proc says about
a process (CPU seconds, RSS, write system calls). The arithmetic is in bench_stats.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import bench_stats
import bench_tls

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
# The tests' helpers (standard library only); free_port is part of this module's interface too.
from support.procs import free_port as free_port  # noqa: E402
from support.procs import wait_until  # noqa: E402

VIP = "127.255.0.1"  # the client sc-proxy's alias address (any 127/8 address is local)


def _accepts(host: str, port: int) -> bool:
    with socket.create_connection((host, port), timeout=0.5):
        return True


def wait_port(host: str, port: int, timeout: float = 10) -> None:
    wait_until(f"{host}:{port}", lambda: _accepts(host, port), timeout, step=0.02)


def venv_bin(name: str) -> str:
    """``name`` from the project's virtualenv, else from PATH."""
    path = REPO / ".venv" / "bin" / name
    found = str(path) if path.exists() else shutil.which(name)
    if not found:
        sys.exit(f"{name} not found (install the project: pip install -e '.[test]')")
    return found


def need(tools: tuple[str, ...], packages: str) -> None:
    for tool in tools:
        if not shutil.which(tool):
            sys.exit(f"{tool} not found: apt-get install -y {packages}")


class Procs:
    """Servers started for one benchmark run, each logging to ``<tmp>/<name>.log``; stopped together."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"{name}.log").open("ab")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp)
        self.procs.append(proc)
        return proc

    def log_tail(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")[-2000:]

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextlib.contextmanager
def workspace(prefix: str) -> Iterator[Path]:
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def start_nginx(procs: Procs, port: int, body: bytes, http2: bool) -> subprocess.Popen[bytes]:
    """nginx, one worker, serving ``body`` on 127.0.0.1:``port`` (HTTP/2 cleartext when ``http2``)."""
    root = procs.tmp / "www"
    root.mkdir()
    (root / "index.html").write_bytes(body)
    temp = " ".join(
        f"{k}_temp_path {procs.tmp};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    listen = f"127.0.0.1:{port} http2" if http2 else f"127.0.0.1:{port} reuseport"
    conf = procs.tmp / "nginx.conf"
    conf.write_text(
        f"""
worker_processes 1;
daemon off;
pid {procs.tmp}/nginx.pid;
error_log {procs.tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    http2_max_concurrent_streams 128;
    {temp}
    server {{
        listen {listen};
        root {root};
        location / {{ index index.html; }}
    }}
}}
"""
    )
    proc = procs.start("nginx", ["nginx", "-c", str(conf), "-p", str(procs.tmp)])
    wait_port("127.0.0.1", port)
    return proc


def start_haproxy(
    procs: Procs,
    name: str,
    listen: int,
    target: int,
    http2: bool,
    bind_opts: str = "",
    server_opts: str = "",
) -> subprocess.Popen[bytes]:
    """One HAProxy hop, ``nbthread 1``, with what Service Connect's defaults amount to: ``retries 2``,
    ``option redispatch``, ``timeout server 15s``, keep-alive; ``proto h2`` on both sides when ``http2``."""
    proto = "proto h2 " if http2 else ""
    conf = procs.tmp / f"{name}.cfg"
    conf.write_text(
        f"""
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    retries 2
    option redispatch
    option http-keep-alive
    timeout connect 5s
    timeout client 300s
    timeout server 15s
    timeout http-keep-alive 300s
frontend fe
    bind 127.0.0.1:{listen} {proto}{bind_opts}
    default_backend be
backend be
    server s1 127.0.0.1:{target} {proto}{server_opts}
"""
    )
    proc = procs.start(name, ["haproxy", "-f", str(conf)])
    wait_port("127.0.0.1", listen)
    return proc


@dataclass(frozen=True)
class Started:
    proc: subprocess.Popen[bytes]
    ready_ms: float  # from spawning the process to /ready answering 200


def start_sc_proxy(procs: Procs, name: str, config: Mapping[str, object]) -> Started:
    path = procs.tmp / f"{name}.json"
    path.write_text(json.dumps(config))
    admin = config["admin"]
    assert isinstance(admin, dict)
    ready = f"http://127.0.0.1:{admin['port']}/ready"
    t0 = time.monotonic()
    proc = procs.start(name, [venv_bin("sc-proxy"), "--config", str(path)])
    deadline = t0 + 20
    while True:
        if proc.poll() is not None:
            sys.exit(f"{name} exited: {procs.log_tail(name)}")
        with contextlib.suppress(OSError), urllib.request.urlopen(ready, timeout=1) as r:
            if r.status == 200:
                return Started(proc, (time.monotonic() - t0) * 1000)
        if time.monotonic() > deadline:
            sys.exit(f"{name} not ready")
        time.sleep(0.005)  # fine enough to see a 300 ms start-to-ready target


@dataclass(frozen=True)
class TwoHop:
    client: Started
    server: Started
    alias: int  # the client proxy's listener on VIP
    ingress: int  # the server proxy's listener on 127.0.0.1

    def pids(self) -> dict[str, int]:
        return {"client": self.client.proc.pid, "server": self.server.proc.pid}

    def ready_targets(self, limit_ms: float = 300.0) -> list[bench_stats.Target]:
        return [
            bench_stats.Target(f"start to ready, {hop} sc-proxy", started.ready_ms, limit_ms, False, "ms")
            for hop, started in (("client", self.client), ("server", self.server))
        ]

    def ready_line(self) -> str:
        client, server = self.client.ready_ms, self.server.ready_ms
        return f"sc-proxy start to ready: client {client:.0f} ms, server {server:.0f} ms"


def start_two_hop(
    procs: Procs, name: str, app_port: int, protocol: str, tls: bench_tls.TlsFiles | None = None
) -> TwoHop:
    """sc-proxy 2-hop in front of ``app_port``: client proxy (egress, listeners mode, alias on VIP) ->
    server proxy (ingress) -> the app, every default policy and metric on; TLS between the hops when
    ``tls`` is given. The server proxy starts first (the client's static endpoint is its ingress)."""
    ingress, alias = free_port(), free_port(VIP)
    listener: dict[str, object] = {
        "discoveryName": "app",
        "address": "127.0.0.1",
        "port": ingress,
        "appPort": app_port,
        "appProtocol": protocol,
    }
    endpoint: dict[str, object] = {
        "name": "app",
        "appProtocol": protocol,
        "discovery": {"static": [{"address": "127.0.0.1", "port": ingress}]},
    }
    if tls is not None:
        listener["tls"] = bench_tls.ingress_tls(tls)
        endpoint["tls"] = bench_tls.endpoint_tls(tls)
    server = start_sc_proxy(
        procs,
        f"{name}-server",
        {"version": "bench", "admin": _admin(), "ingress": [listener]},
    )
    client = start_sc_proxy(
        procs,
        f"{name}-client",
        {
            "version": "bench",
            "admin": _admin(),
            "egress": {"mode": "listeners"},
            "endpoints": [endpoint],
            "aliases": [{"address": VIP, "port": alias, "endpoint": "app"}],
        },
    )
    return TwoHop(client, server, alias, ingress)


@dataclass
class Paths:
    """The paths under test: ``targets`` (name -> URL), the proxy processes of each (name -> hop -> pid)."""

    targets: dict[str, str]
    pids: dict[str, dict[str, int]]
    sc: TwoHop
    # With TLS: HAProxy's server-side TLS listener and pid, and the sc-proxy 2-hop with TLS.
    haproxy_tls_server: tuple[int, int] | None = None
    sc_tls: TwoHop | None = None


def start_paths(procs: Procs, body: bytes, http2: bool, tls: bench_tls.TlsFiles | None) -> Paths:
    """nginx direct, HAProxy 2-hop and sc-proxy 2-hop (HTTP/2 on every hop when ``http2``), and with ``tls``
    both 2-hop paths again with TLS 1.3 between the hops (``haproxy-tls``, ``sc-proxy-tls``)."""
    nginx_port = free_port()
    start_nginx(procs, nginx_port, body, http2)
    ha_server, ha_client = free_port(), free_port()
    hs = start_haproxy(procs, "haproxy-server", ha_server, nginx_port, http2)
    hc = start_haproxy(procs, "haproxy-client", ha_client, ha_server, http2)
    protocol = "http2" if http2 else "http"
    sc = start_two_hop(procs, "sc-proxy", nginx_port, protocol)
    paths = Paths(
        targets={
            "nginx": f"http://127.0.0.1:{nginx_port}/",
            "haproxy": f"http://127.0.0.1:{ha_client}/",
            "sc-proxy": f"http://{VIP}:{sc.alias}/",
        },
        pids={"nginx": {}, "haproxy": {"client": hc.pid, "server": hs.pid}, "sc-proxy": sc.pids()},
        sc=sc,
    )
    if tls is not None:
        alpn = "h2" if http2 else "http/1.1"
        ha_tls_server, ha_tls_client = free_port(), free_port()
        bind, opts = bench_tls.haproxy_bind_opts(tls, alpn), bench_tls.haproxy_server_opts(tls, alpn)
        hts = start_haproxy(procs, "haproxy-tls-server", ha_tls_server, nginx_port, http2, bind_opts=bind)
        htc = start_haproxy(
            procs, "haproxy-tls-client", ha_tls_client, ha_tls_server, http2, server_opts=opts
        )
        sct = start_two_hop(procs, "sc-proxy-tls", nginx_port, protocol, tls)
        paths.targets["haproxy-tls"] = f"http://127.0.0.1:{ha_tls_client}/"
        paths.targets["sc-proxy-tls"] = f"http://{VIP}:{sct.alias}/"
        paths.pids["haproxy-tls"] = {"client": htc.pid, "server": hts.pid}
        paths.pids["sc-proxy-tls"] = sct.pids()
        paths.haproxy_tls_server, paths.sc_tls = (ha_tls_server, hts.pid), sct
    return paths


@contextlib.contextmanager
def running_paths(prefix: str, body: bytes, http2: bool, tls: bool) -> Iterator[tuple[Procs, Paths]]:
    """``start_paths`` in a temporary directory; everything stopped and removed on the way out."""
    with workspace(prefix) as tmp:
        procs = Procs(tmp)
        try:
            yield procs, start_paths(procs, body, http2, bench_tls.make_certs(tmp) if tls else None)
        finally:
            procs.stop_all()


def _admin() -> dict[str, object]:
    return {"address": "127.0.0.1", "port": free_port(), "localPort": free_port()}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat utime + stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_snapshot(pids: Mapping[str, int]) -> dict[str, float]:
    return {label: cpu_seconds(pid) for label, pid in pids.items()}


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """``VmRSS`` (all resident pages, shared libraries included) or ``RssAnon`` (the process's own heap)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def write_syscalls(pid: int) -> int:
    """Write system calls the process made so far (``syscw`` of /proc/PID/io)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("syscw:"):
            return int(line.split()[1])
    return 0


def _h2load_argv(argv: list[str], url: str, log: Path | None) -> list[str]:
    return ["h2load", *argv, *(["--log-file", str(log)] if log is not None else []), url]


def h2load(argv: list[str], url: str, log: Path | None, timeout: float) -> dict[str, float]:
    """Run h2load with ``argv`` against ``url``: its summary, and with ``log`` the latency percentiles of
    its per-request log (``p50_ms`` ... ``p99.9_ms``)."""
    cmd = _h2load_argv(argv, url, log)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=timeout).stdout
    result = bench_stats.parse_h2load_summary(out)
    if log is not None:
        parsed = bench_stats.parse_h2load_log(log.read_text())
        result.update({f"{k}_ms": v for k, v in bench_stats.percentiles(parsed.latencies_ms).items()})
    return result


def paced_h2load(
    url: str, rate: float, connections: int, duration: float, logs: Path
) -> tuple[dict[str, float], list[float]]:
    """HTTP/1.1 at a fixed ``rate`` (req/s in all) over ``connections`` keep-alive connections for
    ``duration`` seconds: the summed h2load summaries (``rps``, ``done``, ``succeeded``, ``failed``,
    ``2xx``; ``not_ok``: failed or answered neither 2xx nor 3xx; ``omitted``: samples the
    coordinated-omission correction added) and the latency in ms of every request answered 2xx or 3xx,
    corrected (bench_stats.with_omitted).

    One h2load process per connection (``-c 1 --rps rate/connections``), started a fraction of the
    per-connection interval apart: one h2load with ``-c N`` would tick all its connections at once, a
    burst of N requests every interval instead of a steady rate. With one connection per log, a response
    slower than the interval holds back exactly the requests the correction adds back.
    """
    per_connection = rate / connections
    interval = 1 / per_connection
    requests = max(1, round(per_connection * duration))
    argv = ["--h1", "-n", str(requests), "-c", "1", "-m", "1", "--rps", f"{per_connection:g}"]
    running: list[tuple[subprocess.Popen[str], Path]] = []
    try:
        for i in range(connections):
            log = logs / f"paced-{i}.tsv"
            cmd = _h2load_argv(argv, url, log)
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            running.append((proc, log))
            time.sleep(interval / connections)
        total: dict[str, float] = {}
        latencies: list[float] = []
        for proc, log in running:
            out, _ = proc.communicate(timeout=duration + 60)
            if proc.returncode != 0:
                sys.exit(f"h2load failed ({proc.returncode}): {out[-2000:]}")
            for key, value in bench_stats.parse_h2load_summary(out).items():
                total[key] = total.get(key, 0.0) + value
            parsed = bench_stats.parse_h2load_log(log.read_text())
            corrected = bench_stats.with_omitted(parsed.latencies_ms, interval * 1000)
            total["omitted"] = total.get("omitted", 0.0) + len(corrected) - len(parsed.latencies_ms)
            total["not_ok"] = total.get("not_ok", 0.0) + parsed.failed
            latencies += corrected
    finally:
        for proc, _ in running:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return total, latencies
