"""kind end to end: a real cluster, the real images, the chart installed with helm.

Needs docker (with a running engine), kind, and kubectl/helm (hack/tools.sh). Where one is missing the
tests are skipped with the reason; with SC_E2E=1 (hack/kind-e2e.sh sets it) they fail instead, because
then the run was asked for.

- SC_E2E_CLUSTER: kind cluster name (default sc-e2e); created if missing, deleted afterwards if the
  session created it, unless SC_E2E_KEEP=1.
- SC_E2E_SKIP_BUILD=1: use the images already loaded into the cluster (tag SC_E2E_TAG, default e2e).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from support.envtest import REPO, Unavailable, find_tools
from support.helmchart import CHART, Helm
from support.kindenv import (
    KIND_CONFIG,
    OPERATOR_IMAGE,
    PROXY_IMAGE,
    RELEASE,
    RELEASE_NS,
    Cluster,
    Release,
    Tools,
    flag,
    missing,
    run,
)
from support.kubectl import Kubectl


@pytest.fixture(scope="session")
def tools() -> Tools:
    docker, kind = shutil.which("docker"), shutil.which("kind")
    if docker is None:
        missing("no docker CLI on PATH: the kind e2e tests need docker with a running engine")
    if kind is None:
        missing("no kind on PATH: install kind (https://kind.sigs.k8s.io) to run the e2e tests")
    try:
        info = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        missing("docker info timed out: the docker engine is not answering")
    if info.returncode != 0:
        missing(f"the docker engine is not running: {info.stderr.strip()[:200]}")
    try:
        bin_dir = find_tools()
    except Unavailable as exc:
        missing(f"no kubectl/helm: {exc}")
    return Tools(docker, kind, bin_dir / "kubectl", bin_dir / "helm")


@pytest.fixture(scope="session")
def cluster(tools: Tools, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    name = os.environ.get("SC_E2E_CLUSTER", "sc-e2e")
    existing = run(tools.kind, "get", "clusters").stdout.split()
    created = name not in existing
    if created:
        run(
            tools.kind,
            "create",
            "cluster",
            "--name",
            name,
            "--config",
            "-",
            "--wait",
            "180s",
            input=KIND_CONFIG,
        )
    kubeconfig = tmp_path_factory.mktemp("kind") / "kubeconfig"
    kubeconfig.write_text(run(tools.kind, "get", "kubeconfig", "--name", name).stdout)
    kubeconfig.chmod(0o600)
    try:
        yield Cluster(name, kubeconfig)
    finally:
        if created and not flag("SC_E2E_KEEP"):
            subprocess.run([tools.kind, "delete", "cluster", "--name", name], timeout=300, check=False)


@pytest.fixture(scope="session")
def image_tag(tools: Tools, cluster: Cluster) -> str:
    """Build both images from the repository and load them into the kind nodes."""
    tag = os.environ.get("SC_E2E_TAG", "e2e")
    if not flag("SC_E2E_SKIP_BUILD"):
        for image, dockerfile in (
            (OPERATOR_IMAGE, "operator/Dockerfile"),
            (PROXY_IMAGE, "sidecar/Dockerfile"),
        ):
            run(
                tools.docker,
                "build",
                "-f",
                str(REPO / dockerfile),
                "-t",
                f"{image}:{tag}",
                str(REPO),
                timeout=1200,
            )
            run(tools.kind, "load", "docker-image", "--name", cluster.name, f"{image}:{tag}", timeout=600)
    return tag


@pytest.fixture(scope="session")
def kubectl(tools: Tools, cluster: Cluster) -> Kubectl:
    return Kubectl(tools.kubectl, cluster.kubeconfig)


@pytest.fixture(scope="session")
def release(tools: Tools, cluster: Cluster, image_tag: str) -> Release:
    """`helm install` of the chart with the freshly built images; waits until the operator is ready."""
    helm = Helm(tools.helm)
    helm.run(
        "upgrade", "--install", RELEASE, str(CHART),
        "--namespace", RELEASE_NS, "--create-namespace", "--wait", "--timeout", "5m",
        "--kubeconfig", str(cluster.kubeconfig),
        "--set", f"image.repository={OPERATOR_IMAGE}", "--set", f"image.tag={image_tag}",
        "--set", f"proxy.image.repository={PROXY_IMAGE}", "--set", f"proxy.image.tag={image_tag}",
        timeout=600,
    )  # fmt: skip
    return Release(RELEASE, RELEASE_NS, helm, cluster.kubeconfig)
