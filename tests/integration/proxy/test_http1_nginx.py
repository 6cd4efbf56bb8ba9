"""The HTTP/1.1 proxy in front of Debian's nginx (a real, widely used upstream), driven by curl and raw
sockets: the cases where framing is subtle — HEAD, 304, 206 — on one keep-alive connection.

Skipped when nginx or curl is not installed (``apt-get install -y nginx curl``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.http1env import VIP, http_endpoint, proxy_config, read_until_close
from support.procs import free_port
from support.proxy import ProxyProcess
from support.upstreams import wait_port

BODY = b"0123456789" * 1000  # 10 000 bytes

pytestmark = pytest.mark.skipif(
    shutil.which("nginx") is None or shutil.which("curl") is None, reason="needs nginx and curl (Debian)"
)


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[int]:
    root = tmp_path / "www"
    root.mkdir()
    (root / "file.txt").write_bytes(BODY)
    port = free_port()
    conf = tmp_path / "nginx.conf"
    # As root, nginx's workers would run as nobody, who cannot enter pytest's private temporary directory.
    user = "user root;" if os.geteuid() == 0 else ""
    conf.write_text(
        f"""
{user}
worker_processes 1;
daemon off;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/nginx-error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {tmp_path};
    proxy_temp_path {tmp_path};
    fastcgi_temp_path {tmp_path};
    uwsgi_temp_path {tmp_path};
    scgi_temp_path {tmp_path};
    server {{ listen 127.0.0.1:{port}; root {root}; etag on; }}
}}
"""
    )
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(tmp_path)], stderr=subprocess.DEVNULL)
    try:
        wait_port("127.0.0.1", port)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def proxy_port(nginx: int, tmp_path: Path) -> Iterator[int]:
    cfg, ports = proxy_config([http_endpoint("backend", [("127.0.0.1", nginx)])])
    workdir = tmp_path / "proxy"
    workdir.mkdir()
    proxy = ProxyProcess(cfg, workdir)
    try:
        yield ports["backend"]
    finally:
        proxy.stop(signal.SIGKILL)


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "10", *args], capture_output=True, check=True, timeout=20
    )


def test_curl_get_sees_envoy_not_nginx(proxy_port: int) -> None:
    out = curl("-D", "-", f"http://{VIP}:{proxy_port}/file.txt").stdout
    head, body = out.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 ")
    lower = head.lower()
    assert b"\r\nserver: envoy" in lower
    assert b"nginx" not in lower  # the app's Server header is replaced, as Service Connect does
    assert b"x-envoy-upstream-service-time: " in lower
    assert body == BODY


def test_head_304_and_206_keep_one_connection_in_sync(proxy_port: int) -> None:
    etag = next(
        line.split(b":", 1)[1].strip()
        for line in curl("-I", f"http://{VIP}:{proxy_port}/file.txt").stdout.split(b"\r\n")
        if line.lower().startswith(b"etag:")
    )
    requests = [
        b"HEAD /file.txt HTTP/1.1\r\nHost: backend\r\n\r\n",
        b"GET /file.txt HTTP/1.1\r\nHost: backend\r\nIf-None-Match: " + etag + b"\r\n\r\n",
        b"GET /file.txt HTTP/1.1\r\nHost: backend\r\nRange: bytes=10-19\r\n\r\n",
        b"GET /file.txt HTTP/1.1\r\nHost: backend\r\nConnection: close\r\n\r\n",
    ]
    with socket.create_connection((VIP, proxy_port), timeout=5) as sock:
        sock.sendall(b"".join(requests))  # pipelined: any framing mistake shifts every later response
        data, closed = read_until_close(sock, 10)
    assert closed
    head1, rest = data.split(b"\r\n\r\n", 1)
    assert head1.startswith(b"HTTP/1.1 200 ")
    assert b"content-length: 10000" in head1.lower()  # HEAD: the length is reported, no body follows
    head2, rest = rest.split(b"\r\n\r\n", 1)
    assert head2.startswith(b"HTTP/1.1 304 ")
    head3, rest = rest.split(b"\r\n\r\n", 1)
    assert head3.startswith(b"HTTP/1.1 206 ")
    assert rest.startswith(b"0123456789HTTP/1.1 200 ")
    head4, body4 = rest[10:].split(b"\r\n\r\n", 1)
    assert b"connection: close" in head4.lower()
    assert body4 == BODY
