"""End to end on a real cluster: the real images, the chart installed with helm, pods on a real kubelet.

Which cluster (hack/e2e.sh chooses and says so):
- SC_E2E_KUBECONFIG: the cluster that kubeconfig points at — the single-node cluster of hack/cluster.sh
  on this machine, or any other. The images must already be on its nodes (SC_E2E_TAG names them;
  hack/build-images.sh builds and loads them).
- otherwise kind, where docker (with a running engine) and kind are installed: SC_E2E_CLUSTER (default
  sc-e2e) is created if missing and deleted afterwards if the session created it, unless SC_E2E_KEEP=1;
  the images are built and loaded by hack/build-images.sh --load kind.
Where neither is given the tests are skipped with the reason; with SC_E2E=1 (hack/e2e.sh sets it) they
fail instead, because then the run was asked for. A KUBECONFIG in the environment is never used by
itself: running these tests against a cluster must be asked for by name.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.e2estory import wait_for, webhook_answers
from support.envtest import REPO, Unavailable, find_tools
from support.helmchart import CHART, Helm
from support.kindenv import (
    KIND_CONFIG,
    OPERATOR_IMAGE,
    PROXY_IMAGE,
    RELEASE,
    RELEASE_NS,
    Cluster,
    Images,
    Release,
    flag,
    missing,
    run,
)
from support.kubectl import Kubectl

#: What every proxy asks for in the e2e story (see the release fixture).
E2E_PROXY_RESOURCES = {"requests": {"cpu": "25m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}


@pytest.fixture(scope="session")
def bin_dir() -> Path:
    try:
        return find_tools()
    except Unavailable as exc:
        missing(f"no kubectl/helm: {exc}")


def _kind_tools() -> tuple[str, str]:
    docker, kind = shutil.which("docker"), shutil.which("kind")
    if docker is None or kind is None:
        missing(
            "no cluster to run on: set SC_E2E_KUBECONFIG (hack/e2e.sh does, with the local node of "
            "hack/cluster.sh), or install docker and kind"
        )
    try:
        info = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        missing("docker info timed out: the docker engine is not answering")
    if info.returncode != 0:
        missing(f"the docker engine is not running: {info.stderr.strip()[:200]}")
    return docker, kind


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    given = os.environ.get("SC_E2E_KUBECONFIG")
    if given:
        path = Path(given)
        if not path.is_file():
            missing(f"SC_E2E_KUBECONFIG={given} is not a file")
        yield Cluster("kubeconfig", path, kind=None)
        return
    _, kind = _kind_tools()
    name = os.environ.get("SC_E2E_CLUSTER", "sc-e2e")
    created = name not in run(kind, "get", "clusters").stdout.split()
    if created:
        run(kind, "create", "cluster", "--name", name, "--config", "-", "--wait", "180s", input=KIND_CONFIG)
    kubeconfig = tmp_path_factory.mktemp("kind") / "kubeconfig"
    kubeconfig.write_text(run(kind, "get", "kubeconfig", "--name", name).stdout)
    kubeconfig.chmod(0o600)
    try:
        yield Cluster(name, kubeconfig, kind=kind)
    finally:
        if created and not flag("SC_E2E_KEEP"):
            subprocess.run([kind, "delete", "cluster", "--name", name], timeout=300, check=False)


@pytest.fixture(scope="session")
def images(cluster: Cluster) -> Images:
    """The operator, proxy, nginx and client images on the cluster's nodes (hack/build-images.sh)."""
    tag = os.environ.get("SC_E2E_TAG", "")
    if not flag("SC_E2E_SKIP_BUILD") or not tag:
        load = "kind" if cluster.kind else os.environ.get("SC_E2E_LOAD", "none")
        env = {**os.environ, "SC_KIND_CLUSTER": cluster.name} if cluster.kind else None
        tag = run(
            str(REPO / "hack" / "build-images.sh"), "--load", load, timeout=1800, env=env
        ).stdout.strip()
    return Images(tag)


@pytest.fixture(scope="session")
def kubectl(bin_dir: Path, cluster: Cluster) -> Kubectl:
    return Kubectl(bin_dir / "kubectl", cluster.kubeconfig)


@pytest.fixture(scope="session")
def release(bin_dir: Path, cluster: Cluster, images: Images, kubectl: Kubectl) -> Release:
    """`helm install` of the chart with the freshly built images; waits until the operator is ready."""
    helm = Helm(bin_dir / "helm")
    helm.run(
        "upgrade", "--install", RELEASE, str(CHART),
        "--namespace", RELEASE_NS, "--create-namespace", "--wait", "--timeout", "5m",
        "--kubeconfig", str(cluster.kubeconfig),
        "--set", f"image.repository={OPERATOR_IMAGE}", "--set", f"image.tag={images.tag}",
        "--set", f"proxy.image.repository={PROXY_IMAGE}", "--set", f"proxy.image.tag={images.tag}",
        # The story runs up to 8 tasks at once (a rolling update of 3 surging to 6) beside the others; the
        # seeds' 256 CPU units per proxy would ask for more than the 2 cores of the test node, and the
        # surge would wait for capacity forever (as an ECS placement would). Memory stays as sized.
        "--set-json", f"proxy.resources={json.dumps(E2E_PROXY_RESOURCES)}",
        timeout=600,
    )  # fmt: skip
    wait_for("the admission webhook to answer", lambda: webhook_answers(kubectl), timeout=60)
    return Release(RELEASE, RELEASE_NS, helm, cluster.kubeconfig)
