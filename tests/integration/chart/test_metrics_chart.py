"""The optional PodMonitor against a real API server, which (like most clusters without
prometheus-operator) has no PodMonitor CRD: helm asks the server what it serves and the chart refuses,
naming the value, instead of failing later on an unknown kind or rendering something nobody reads."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from support.envtest import KubeAPI
from support.helmchart import Helm, HelmError, by_kind


def test_pod_monitor_is_refused_on_a_cluster_without_its_crd(
    helm: Helm, kube_api: KubeAPI, release_namespace: str
) -> None:
    # --validate: helm reads the server's API versions (and checks the objects against it). A release of
    # its own, and the CRDs left out: other tests in the session created them, owned by no release.
    validate = ("--validate", f"--kubeconfig={kube_api.kubeconfig}")
    release = f"metrics-{uuid.uuid4().hex[:6]}"
    sets: dict[str, Any] = {"crds.install": False}
    # Without the PodMonitor the same call renders: the server is reachable and the rest is valid.
    docs = helm.template(release=release, namespace=release_namespace, sets=sets, extra=validate)
    assert by_kind(docs, "Deployment")
    assert not by_kind(docs, "PodMonitor")
    sets["metrics.podMonitor.enabled"] = True
    with pytest.raises(HelmError, match=r"metrics.podMonitor.enabled needs the PodMonitor CRD"):
        helm.template(release=release, namespace=release_namespace, sets=sets, extra=validate)
