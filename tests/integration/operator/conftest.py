"""Fixtures for operator integration tests: the operator process, a ConnectNamespace, the kubelet stand-in.

See ``support.operator`` for what is real and what is simulated (only the kubelet).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sc_operator.kube import Kube
from support.envtest import KubeAPI
from support.operator import Kubelet, OperatorProcess


@pytest.fixture(scope="module")
def operator(
    kube_api: KubeAPI,
    controller_manager: Any,
    crds_installed: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    op = OperatorProcess(kube_api, tmp_path_factory.mktemp("operator"))
    op.start()
    try:
        yield op
    finally:
        op.stop()


@pytest.fixture
def k8s_namespace(kube: Kube, namespace: str) -> str:
    return namespace


@pytest.fixture
def kubelet(kube: Kube, namespace: str) -> Kubelet:
    return Kubelet(kube, namespace)
