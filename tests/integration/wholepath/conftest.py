"""Fixtures for the whole path: the operator's rendered output run for real in network namespaces.

- `wp_network` (module): the hub namespace with its bridge and DNS server (see ``support.tasks``).
- `wp_operator` (module): ``sc-operator`` against the session's envtest API server, with
  ``SC_DNS_RESOLVER`` pointing at the hub's DNS so every rendered proxy config resolves there.
- `kube`, `connect_namespace`, `namespace` come from tests/integration.
- `scratch_namespaces(kube)`: a Kubernetes namespace and a ConnectNamespace for a module's own services.
- `harness`: the kubelet and CoreDNS stand-in for `namespace`, closed (tasks killed, namespaces deleted)
  after the test even when it fails.

Skipped with the reason when not root or a tool is missing; in CI (CI=true) that fails instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sc_operator.kube import Kube
from support.envtest import KubeAPI
from support.gate import unavailable
from support.operator import OperatorProcess, running_operator
from support.tasks import Harness, Network, missing_prerequisites

pytestmark = pytest.mark.netns


@pytest.fixture(scope="module")
def wp_network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    reason = missing_prerequisites()
    if reason:
        unavailable(f"whole-path tests: {reason}")
    net = Network(tmp_path_factory.mktemp("network"))
    try:
        yield net
    finally:
        net.close()


@pytest.fixture(scope="module")
def wp_operator(
    kube_api: KubeAPI,
    controller_manager: Any,
    crds_installed: list[str],
    wp_network: Network,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    yield from running_operator(
        kube_api, tmp_path_factory.mktemp("operator"), SC_DNS_RESOLVER=wp_network.resolver
    )


@pytest.fixture
def harness(
    kube: Kube, wp_network: Network, wp_operator: OperatorProcess, namespace: str, tmp_path: Path
) -> Iterator[Harness]:
    h = Harness(kube, wp_network, namespace, tmp_path)
    try:
        yield h
    finally:
        h.close()
