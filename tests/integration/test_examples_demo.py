"""The README's first command, end to end: `hack/demo.sh --once` sets up, shows and cleans up.

The demo runs the operator as a real process: both example ConnectServices must be accepted by it and
materialised as Deployments, immutable ConfigMaps and nginx's headless Service.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from support.envtest import REPO


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


def test_demo_once_applies_the_examples_and_leaves_nothing_behind(
    envtest_assets: Path, tools_dir: Path, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "KUBEBUILDER_ASSETS": str(envtest_assets),
        "SC_TOOLS_DIR": str(tools_dir),
        "TMPDIR": str(tmp_path),
    }
    result = subprocess.run(
        [str(REPO / "hack" / "demo.sh"), "--once"],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        check=False,
        stdin=subprocess.DEVNULL,
    )
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

    # Torn down: its work directory is gone and none of its servers still run.
    assert not list(tmp_path.glob("serviceconnect-demo-*")), list(tmp_path.iterdir())
    # (etcd and kube-apiserver get paths under TMPDIR on their command lines).
    assert not _processes_mentioning(str(tmp_path))
