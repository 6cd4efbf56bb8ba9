"""The optional PodMonitor against a real API server, which (like most clusters without
prometheus-operator) has no PodMonitor CRD: helm asks the server what it serves and the chart refuses,
naming the value, instead of failing later on an unknown kind or rendering something nobody reads."""

from __future__ import annotations

import pytest

from support.envtest import KubeAPI
from support.helmchart import Helm, HelmError, by_kind


def test_pod_monitor_is_refused_on_a_cluster_without_its_crd(
    helm: Helm, kube_api: KubeAPI, release_namespace: str
) -> None:
    validate = ("--validate", f"--kubeconfig={kube_api.kubeconfig}")
    # The same call without the PodMonitor renders: the server is reachable and the rest is valid.
    docs = helm.template(namespace=release_namespace, extra=validate)
    assert by_kind(docs, "Deployment")
    assert not by_kind(docs, "PodMonitor")
    with pytest.raises(HelmError, match=r"metrics.podMonitor.enabled needs the PodMonitor CRD"):
        helm.template(namespace=release_namespace, sets={"metrics.podMonitor.enabled": True}, extra=validate)
