"""The network-namespace demo, end to end: `hack/demo.sh --netns --once` sets up, shows, sends traffic,
cleans up.

The demo runs the operator as a real process: both example ConnectServices must be accepted by it and
materialised as Deployments, immutable ConfigMaps and nginx's headless Service. Where network namespaces
can be made (root, ip, iptables) it runs the example tasks as rendered and curls nginx from the client
task through both proxies; it must show nginx's answers with the proxies' headers and both proxies'
counts, and leave no namespace, process or file behind.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.envtest import REPO
from support.tasks import missing_prerequisites


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # the process ended while we looked
            continue
        if text in args:
            found.append(f"{cmdline.parent.name}: {args}")
    return found


def run_demo(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    """hack/demo.sh ARGS; if it hangs, SIGTERM it (the demo cleans up on SIGTERM) and fail with its output."""
    proc = subprocess.Popen(
        [str(REPO / "hack" / "demo.sh"), "--netns", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        pytest.fail(f"demo.sh {' '.join(args)} still running after {timeout:.0f} s\n{out}\n{err}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture
def demo_tmpdir() -> Iterator[Path]:
    """The demo's TMPDIR: its own, so leftovers are easy to see, and not under pytest's private (0700)
    directories, because the task proxies run as a non-root user that must read their configuration."""
    path = Path(tempfile.mkdtemp(prefix="sc-demo-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_demo_once_applies_the_examples_and_leaves_nothing_behind(
    envtest_assets: Path, tools_dir: Path, demo_tmpdir: Path
) -> None:
    tmp_path = demo_tmpdir
    env = {
        **os.environ,
        "KUBEBUILDER_ASSETS": str(envtest_assets),
        "SC_TOOLS_DIR": str(tools_dir),
        "TMPDIR": str(tmp_path),
    }
    result = run_demo(["--once"], env, timeout=240)  # below pytest-timeout's 300 s
    out = result.stdout
    assert result.returncode == 0, f"stdout:\n{out}\nstderr:\n{result.stderr}"
    assert "customresourcedefinition.apiextensions.k8s.io/connectservices.serviceconnect.dev" in out
    assert "connectservice.serviceconnect.dev/service-connect-nginx-service serverside-applied" in out
    # `kubectl get serviceconnect -A` lists both services and the namespace.
    assert "connectservice.serviceconnect.dev/client" in out
    assert "connectnamespace.serviceconnect.dev/service-connect" in out
    assert "export KUBECONFIG=" in out
    # The operator judged both services and rendered their workloads.
    assert "tutorial/service-connect-nginx-service: Accepted" in out
    assert "tutorial/client: Accepted" in out
    assert "deployment.apps/service-connect-nginx-service" in out
    assert "service/sc-nginx-" in out
    assert "stopped and removed everything it started" in out

    if missing_prerequisites() is None:
        # The data path: three answers from nginx, through the client's and the server's proxies.
        assert out.count("HTTP/1.1 200 OK") == 3, out
        assert out.count("server: envoy") == 3
        assert out.count("x-envoy-upstream-service-time:") == 3
        assert out.count("<h1>Welcome to nginx!</h1>") == 3
        assert "RequestCountPerTarget 3  HTTPCode_Target_2XX_Count 3" in out
        assert "RequestCount 3  HTTPCode_2XX_Count 3" in out
        # Both rollouts completed once the tasks were Ready.
        assert re.search(r"^client\s+1\s+1\s+COMPLETED", out, re.M), out
        tag = re.search(r"network namespaces (sc-wp-demo\d+)-\*", out)
        assert tag, out
        netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
        assert f"{tag.group(1)}-" not in netns
        assert not list(Path("/etc/netns").glob(f"{tag.group(1)}-*"))
    else:
        assert "skipping the data path" in out

    # Torn down: its work directory is gone and none of its servers still run.
    assert not list(tmp_path.iterdir()), list(tmp_path.iterdir())
    # (etcd and kube-apiserver get paths under TMPDIR on their command lines).
    assert not _processes_mentioning(str(tmp_path))
