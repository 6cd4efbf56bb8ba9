"""Interception for real, inside network namespaces this test creates (reference §2.2).

Namespace "pod": ``sc-proxy install-redirect`` installs the nat rules, then the proxy, an upstream task
(127.0.0.2) and the app run there. The app binds 0.0.0.0 on the same port as the client alias; a client
dialling the alias VIP 127.255.0.1 must reach the proxy (and through it the upstream), not the app.
Namespace "peer", joined by a veth pair, plays another host: its connections to the pod's containerPort
must be redirected to the ingress listener, while the pod's own loopback connections reach the app directly.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.meshtls import NAME, Pki
from support.proxy import SC_PROXY, parse_metrics

pytestmark = pytest.mark.netns

TESTS_DIR = Path(__file__).resolve().parents[2]
APP_PORT = 8080  # the app's containerPort, also the client alias port
INGRESS_PORT = 15080
EGRESS_PORT = 15001
ADMIN_PORT = 9901
UPSTREAM_PORT = 9000
POD_IP, PEER_IP = "10.250.0.1", "10.250.0.2"
POD_IP6, PEER_IP6 = "fd00:250::1", "fd00:250::2"


def _prerequisites() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    for tool in ("ip", "iptables", "curl"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    return None


class Netns:
    def __init__(self, name: str) -> None:
        self.name = name
        self.procs: list[subprocess.Popen[bytes]] = []
        subprocess.run(["ip", "netns", "add", name], check=True)
        self.run("ip", "link", "set", "lo", "up")

    def argv(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *cmd]

    def run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*cmd), capture_output=True, text=True, check=check, timeout=30)

    def start(self, log: Path, *cmd: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONPATH": str(TESTS_DIR)}
        with log.open("ab") as out:
            proc = subprocess.Popen(self.argv(*cmd), stdout=out, stderr=subprocess.STDOUT, env=env)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        subprocess.run(["ip", "netns", "del", self.name], check=False)


@pytest.fixture
def pod(tmp_path: Path) -> Iterator[tuple[Netns, Netns]]:
    reason = _prerequisites()
    if reason:
        pytest.skip(reason)
    tag = uuid.uuid4().hex[:6]
    made: list[Netns] = []
    try:
        pod, peer = Netns(f"sc-test-{tag}-pod"), Netns(f"sc-test-{tag}-peer")
        made += [pod, peer]
        veth_pod, veth_peer = f"scp{tag}", f"scq{tag}"
        subprocess.run(["ip", "link", "add", veth_pod, "type", "veth", "peer", "name", veth_peer], check=True)
        subprocess.run(["ip", "link", "set", veth_pod, "netns", pod.name], check=True)
        subprocess.run(["ip", "link", "set", veth_peer, "netns", peer.name], check=True)
        for ns, dev, ip, ip6 in ((pod, veth_pod, POD_IP, POD_IP6), (peer, veth_peer, PEER_IP, PEER_IP6)):
            ns.run("ip", "addr", "add", f"{ip}/30", "dev", dev)
            # nodad: usable at once instead of after duplicate address detection.
            ns.run("ip", "-6", "addr", "add", f"{ip6}/64", "dev", dev, "nodad", check=False)
            ns.run("ip", "link", "set", dev, "up")
        yield pod, peer
    finally:
        for ns in made:
            ns.close()


def _wait_port(ns: Netns, host: str, port: int) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if ns.run("bash", "-c", f"exec 3<>/dev/tcp/{host}/{port}", check=False).returncode == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"{host}:{port} never listened in {ns.name}")


def _first_line(ns: Netns, host: str, port: int) -> str:
    code = (
        "import socket;"
        f"s=socket.create_connection(('{host}',{port}),timeout=5);"
        "print(s.makefile().readline().strip())"
    )
    return ns.run(sys.executable, "-c", code).stdout.strip()


def _metrics(ns: Netns) -> dict[str, float]:
    out = ns.run("curl", "-sf", f"http://127.0.0.1:{ADMIN_PORT}/metrics").stdout
    return parse_metrics(out)


def config() -> dict[str, Any]:
    return {
        "version": "netns-test",
        "admin": {"address": "127.0.0.1", "port": ADMIN_PORT},
        "egress": {"mode": "redirect", "port": EGRESS_PORT},
        "endpoints": [
            {"name": "backend", "discovery": {"static": [{"address": "127.0.0.2", "port": UPSTREAM_PORT}]}}
        ],
        "aliases": [{"address": "127.255.0.1", "port": APP_PORT, "endpoint": "backend"}],
        "ingress": [
            {"discoveryName": "front", "port": INGRESS_PORT, "appPort": APP_PORT, "interceptPort": APP_PORT}
        ],
    }


def test_redirect_rules_send_vip_traffic_to_the_proxy(pod: tuple[Netns, Netns], tmp_path: Path) -> None:
    pod_ns, peer_ns = pod
    cfg_path = tmp_path / "proxy.yaml"
    cfg_path.write_text(yaml.safe_dump(config()))

    # The init container's job, twice: the second run must converge, not duplicate.
    for _ in range(2):
        result = pod_ns.run(str(SC_PROXY), "install-redirect", "--config", str(cfg_path))
        assert result.returncode == 0, result.stderr
    rules = pod_ns.run("iptables", "-t", "nat", "-S").stdout
    assert rules.count("-j SC_EGRESS") == 1
    assert rules.count("-j SC_INGRESS") == 1
    assert f"-A SC_EGRESS -d 127.255.0.0/16 -p tcp -j REDIRECT --to-ports {EGRESS_PORT}" in rules
    assert f"-A SC_INGRESS -p tcp -m tcp --dport {APP_PORT} -j REDIRECT --to-ports {INGRESS_PORT}" in rules
    # REDIRECT of locally generated loopback traffic needs no route_localnet.
    assert pod_ns.run("sysctl", "-n", "net.ipv4.conf.all.route_localnet").stdout.strip() == "0"

    py = sys.executable
    pod_ns.start(tmp_path / "app.log", py, "-m", "support.proxy", "tag", "app", "0.0.0.0", str(APP_PORT))
    pod_ns.start(
        tmp_path / "up.log", py, "-m", "support.proxy", "tag", "backend", "127.0.0.2", str(UPSTREAM_PORT)
    )
    proxy = pod_ns.start(tmp_path / "proxy.log", str(SC_PROXY), "--config", str(cfg_path))
    for host, port in (("127.0.0.1", APP_PORT), ("127.0.0.2", UPSTREAM_PORT), ("127.0.0.1", INGRESS_PORT)):
        _wait_port(pod_ns, host, port)
    assert proxy.poll() is None, (tmp_path / "proxy.log").read_text()

    # Egress: the alias VIP on the app's own port reaches the proxy, which picks the endpoint from
    # SO_ORIGINAL_DST and connects to the upstream task (which sees the proxy, 127.0.0.1, as its peer).
    assert _first_line(pod_ns, "127.255.0.1", APP_PORT) == "backend 127.0.0.1"
    # The app itself is still reachable directly on loopback.
    assert _first_line(pod_ns, "127.0.0.1", APP_PORT) == "app 127.0.0.1"
    # A VIP:port with no alias is closed and counted, not sent anywhere.
    assert _first_line(pod_ns, "127.255.0.9", APP_PORT) == ""

    # Ingress: another host calling the pod's containerPort goes through the ingress listener; the app sees
    # the proxy (127.0.0.1) as its peer, not the caller.
    front = 'RequestCount{DiscoveryName="front"}'
    before = _metrics(pod_ns)[front]  # the readiness probe above connected once
    assert _first_line(peer_ns, POD_IP, APP_PORT) == "app 127.0.0.1"

    # The ingress listener (address 0.0.0.0) also listens on [::], as Envoy does, and ip6tables redirects
    # IPv6 callers of the containerPort to it.
    if "::1" in pod_ns.run("ip", "-6", "addr", "show", "dev", "lo", check=False).stdout:  # IPv6 enabled
        assert _first_line(pod_ns, "::1", INGRESS_PORT) == "app 127.0.0.1"
        assert _first_line(peer_ns, POD_IP6, APP_PORT) == "app 127.0.0.1"
        before += 2
        rules6 = pod_ns.run("ip6tables", "-t", "nat", "-S").stdout
        assert rules6.count("-j SC_INGRESS") == 1

    m = _metrics(pod_ns)
    assert m['RequestCountPerTarget{TargetDiscoveryName="backend"}'] == 1
    assert m["EgressUnknownDestinationCount"] == 1
    assert m[front] == before + 1


def test_missing_net_admin_is_explained(pod: tuple[Netns, Netns], tmp_path: Path) -> None:
    pod_ns, _ = pod
    if shutil.which("capsh") is None and shutil.which("setpriv") is None:
        pytest.skip("needs setpriv or capsh to drop CAP_NET_ADMIN")
    cfg_path = tmp_path / "proxy.yaml"
    cfg_path.write_text(yaml.safe_dump(config()))
    drop = ["setpriv", "--inh-caps=-net_admin,-net_raw", "--bounding-set=-net_admin,-net_raw", "--"]
    result = pod_ns.run(*drop, str(SC_PROXY), "install-redirect", "--config", str(cfg_path), check=False)
    assert result.returncode == 1
    assert "needs the NET_ADMIN capability" in result.stderr


def test_intercepted_container_port_traffic_is_tls_terminated(
    pod: tuple[Netns, Netns], tmp_path: Path
) -> None:
    """With ``tls`` on the ingress, a caller redirected from the containerPort speaks TLS 1.3 to the
    listener; plaintext to the containerPort gets nothing from the app."""
    pod_ns, peer_ns = pod
    pki = Pki(tmp_path)
    cfg = config()
    cfg["ingress"][0]["tls"] = pki.ingress_tls()
    cfg_path = tmp_path / "proxy.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    result = pod_ns.run(str(SC_PROXY), "install-redirect", "--config", str(cfg_path))
    assert result.returncode == 0, result.stderr
    py = sys.executable
    pod_ns.start(tmp_path / "app.log", py, "-m", "support.proxy", "tag", "app", "0.0.0.0", str(APP_PORT))
    proxy = pod_ns.start(tmp_path / "proxy.log", str(SC_PROXY), "--config", str(cfg_path))
    for host, port in (("127.0.0.1", APP_PORT), ("127.0.0.1", INGRESS_PORT)):
        _wait_port(pod_ns, host, port)
    assert proxy.poll() is None, (tmp_path / "proxy.log").read_text()
    code = (
        "import socket,ssl;"
        f"c=ssl.create_default_context(cafile={pki.bundle.file('ca.crt')!r});"
        f"s=c.wrap_socket(socket.create_connection(({POD_IP!r},{APP_PORT}),timeout=5),server_hostname={NAME!r});"
        "print(s.version(), s.makefile().readline().strip())"
    )
    assert peer_ns.run(py, "-c", code).stdout.strip() == "TLSv1.3 app 127.0.0.1"
    # Plaintext to the containerPort from another host: refused at the handshake, nothing from the app.
    plain = (
        "import socket;"
        f"s=socket.create_connection(({POD_IP!r},{APP_PORT}),timeout=5);"
        "s.sendall(b'GET / HTTP/1.1\\r\\n\\r\\n');print(repr(s.recv(100)))"
    )
    assert peer_ns.run(py, "-c", plain).stdout.strip() == "b''"
    m = _metrics(pod_ns)
    assert m['ClientTLSNegotiationErrorCount{DiscoveryName="front"}'] >= 1
