"""Fixtures for the chart on a real API server: helm, a release namespace, kopf's peering CRD."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.crds import wait_established
from support.helmchart import CHART, Helm
from support.kubectl import Kubectl


@pytest.fixture(scope="session")
def helm(tools_dir: Path) -> Helm:
    return Helm(tools_dir / "helm")


@pytest.fixture
def release_namespace(api_client: Any) -> Iterator[str]:
    """A namespace to install the chart into (as `helm install -n`), deleted afterwards."""
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    name = f"sc-system-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": name}})
    try:
        yield name
    finally:
        core.delete_namespace(name)


@pytest.fixture(scope="session")
def kopf_peering_crd(kubectl: Kubectl, api_client: Any) -> str:
    """The chart's crds/ (kopf's ClusterKopfPeering), installed as `helm install` would, before templates."""
    path = CHART / "crds" / "clusterkopfpeerings.kopf.dev.yaml"
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
    name = str(yaml.safe_load(path.read_text())["metadata"]["name"])
    wait_established(api_client, [name])
    return name
