"""Fixtures for a real Kubernetes API server (etcd + kube-apiserver) shared by a test session.

The binaries are KUBEBUILDER_ASSETS (hack/test.sh: the current Kubernetes, then the oldest supported one
for the tests marked `oldest_k8s`). SC_EXPECT_KUBE_VERSION (say "v1.20" or "v1.37.2"), when set, is the
version the server must be: hack/test.sh sets it so that a run meant for one version cannot silently
test another.

- `kube_api`: the running server (URL, admin token, kubeconfig, `api_client()` factory, `version`).
- `controller_manager`: also run kube-controller-manager (ReplicaSets, Pods, garbage collection).
- `kubectl`: the kubectl from hack/tools.sh aimed at `kube_api`.
- `namespace`: a fresh Kubernetes namespace for one test, deleted afterwards.
- `crds_installed`: the CRDs from crds/ applied and Established.
- `kube` (module): our JSON API client (``sc_operator.kube.Kube``) on the server.
- `connect_namespace`: a fresh ConnectNamespace for one test, deleted afterwards.

Without the binaries the tests are skipped with the reason, except in CI (CI=true), where
they fail: CI must prove they ran.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sc_operator import API_VERSION
from sc_operator.kube import CONNECT_NAMESPACES, Kube
from support.crds import CRD_DIR, crd_documents, wait_established
from support.envtest import REPO, EnvTest, KubeAPI, Unavailable, find_assets, find_tools
from support.gate import unavailable
from support.kubectl import Kubectl
from support.procs import Proc


@pytest.fixture(scope="session")
def envtest_assets() -> Path:
    try:
        return find_assets()
    except Unavailable as exc:
        unavailable(f"no kube-apiserver/etcd: {exc}")


def _is_version(git_version: str, expected: str) -> bool:
    """Whether ``git_version`` is ``expected``: v1.20.2 is v1.20 and v1.20.2, not v1.2."""
    want = expected if expected.startswith("v") else f"v{expected}"
    return git_version == want or git_version.startswith((f"{want}.", f"{want}-", f"{want}+"))


@pytest.fixture(scope="session")
def envtest(envtest_assets: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EnvTest]:
    env = EnvTest(envtest_assets, tmp_path_factory.mktemp("envtest"))
    try:
        env.start()
        expected = os.environ.get("SC_EXPECT_KUBE_VERSION", "")
        if expected and not _is_version(env.git_version, expected):
            binary = envtest_assets / "kube-apiserver"
            pytest.fail(
                f"{binary} is {env.git_version}, not {expected} (SC_EXPECT_KUBE_VERSION)", pytrace=False
            )
        yield env
    finally:
        env.stop()


@pytest.fixture(scope="session")
def kube_api(envtest: EnvTest) -> KubeAPI:
    assert envtest.api is not None
    return envtest.api


@pytest.fixture(scope="session")
def controller_manager(envtest: EnvTest) -> Proc:
    """kube-controller-manager, for tests that need ReplicaSets, Pods and garbage collection."""
    try:
        return envtest.start_controller_manager()
    except Unavailable as exc:
        unavailable(str(exc))


@pytest.fixture(scope="session")
def tools_dir() -> Path:
    try:
        return find_tools()
    except Unavailable as exc:
        unavailable(f"no kubectl/helm: {exc}")


@pytest.fixture(scope="session")
def kubectl(tools_dir: Path, kube_api: KubeAPI) -> Kubectl:
    return Kubectl(binary=tools_dir / "kubectl", kubeconfig=kube_api.kubeconfig)


@pytest.fixture(scope="session")
def api_client(kube_api: KubeAPI) -> Iterator[Any]:
    """One shared `kubernetes.client.ApiClient` for the session."""
    client = kube_api.api_client()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def namespace(api_client: Any) -> Iterator[str]:
    """A fresh namespace named after nothing in particular; deleted (not awaited) afterwards."""
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    name = f"sc-test-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name, "labels": {"serviceconnect.dev/test": "true"}}})
    try:
        yield name
    finally:
        core.delete_namespace(name)


@pytest.fixture(scope="session")
def crds_installed(api_client: Any) -> list[str]:
    """Create (or replace) the generated CRDs from crds/ and wait until they are served."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    docs = crd_documents()
    if not docs:
        pytest.fail(f"no CRDs in {CRD_DIR.relative_to(REPO)}/ (generate them with hack/gen-crds)")
    ext = client.ApiextensionsV1Api(api_client)
    names = []
    for doc in docs:
        name = doc["metadata"]["name"]
        names.append(name)
        try:
            ext.create_custom_resource_definition(doc)
        except ApiException as exc:
            if exc.status != 409:
                raise
            current = ext.read_custom_resource_definition(name)
            doc = {
                **doc,
                "metadata": {**doc["metadata"], "resourceVersion": current.metadata.resource_version},
            }
            ext.replace_custom_resource_definition(name, doc)
    wait_established(api_client, names)
    return names


@pytest.fixture(scope="module")
def kube(kube_api: KubeAPI) -> Iterator[Kube]:
    client = kube_api.api_client()
    try:
        yield Kube(client)
    finally:
        client.close()


@pytest.fixture
def connect_namespace(kube: Kube, crds_installed: list[str]) -> Iterator[str]:
    name = f"cns-{uuid.uuid4().hex[:8]}"
    kube.create(
        CONNECT_NAMESPACES,
        {"apiVersion": API_VERSION, "kind": "ConnectNamespace", "metadata": {"name": name}},
    )
    yield name
    kube.delete(CONNECT_NAMESPACES, name)
