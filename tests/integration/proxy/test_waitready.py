"""``sc-proxy wait-ready`` (the start-up gate before native sidecars) against a real proxy on loopback."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from support.proxy import SC_PROXY, ProxyProcess, free_port


def wait_ready_cmd(port: int, timeout: float) -> list[str]:
    return [str(SC_PROXY), "wait-ready", "--admin-port", str(port), "--timeout", str(timeout)]


def test_returns_once_the_proxy_is_ready(tmp_path: Path) -> None:
    port = free_port()
    gate = subprocess.Popen(wait_ready_cmd(port, 30), stderr=subprocess.PIPE)
    try:
        time.sleep(0.5)  # the gate is polling a port nobody listens on yet
        assert gate.poll() is None, "wait-ready returned before the proxy existed"
        proxy = ProxyProcess({"version": "gate-1", "admin": {"address": "127.0.0.1", "port": port}}, tmp_path)
        try:
            _, err = gate.communicate(timeout=10)
            assert gate.returncode == 0, err
            assert b"proxy ready after" in err
        finally:
            proxy.stop(signal.SIGTERM, timeout=10)
    finally:
        if gate.poll() is None:
            gate.kill()
            gate.wait()


def test_times_out_with_a_clear_message() -> None:
    port = free_port()
    started = time.monotonic()
    done = subprocess.run(wait_ready_cmd(port, 0.5), capture_output=True, timeout=10, check=False)
    elapsed = time.monotonic() - started
    assert done.returncode == 1
    assert f"the proxy on 127.0.0.1:{port} was not ready within 0.5 s" in done.stderr.decode()
    assert elapsed < 5


def test_bad_port_is_refused() -> None:
    done = subprocess.run(wait_ready_cmd(70000, 1), capture_output=True, timeout=10, check=False)
    assert done.returncode == 2
    assert "--admin-port 70000 is out of range 1-65535" in done.stderr.decode()
